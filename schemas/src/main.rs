//! Writes `schemas/avro/*.avsc` from the entity model: one record schema and
//! one change-event envelope per entity set.
//!
//! The files are generated so they cannot drift from `model/oda-metadata.json`
//! by hand edits; this crate's test compares them with the model and
//! tells whoever changed the model to run `cargo run -p oda-schemas`.
//! Stale `.avsc` files (an entity set renamed or dropped) are removed, so
//! the directory always holds exactly what the model produces.
//!
//! Usage: `cargo run -p oda-schemas [-- <output dir>]`; the default is the
//! `avro/` directory next to this crate.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Context;
use oda_model::avro::schema_files;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("avro"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let files = schema_files();
    let wanted: BTreeSet<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    let mut removed = 0;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let stale = path.extension().is_some_and(|e| e == "avsc")
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_none_or(|n| !wanted.contains(n));
        if stale {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            removed += 1;
        }
    }

    let mut changed = 0;
    for (name, content) in &files {
        let path = dir.join(name);
        // Rewriting only what changed keeps mtimes, so builds and editors
        // do not see 100 modified files after every run.
        if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
            std::fs::write(&path, content)
                .with_context(|| format!("writing {}", path.display()))?;
            changed += 1;
        }
    }
    println!(
        "{} schemas in {}: {changed} written, {} unchanged, {removed} stale removed",
        files.len(),
        dir.display(),
        files.len() - changed,
    );
    Ok(())
}
