//! The code cites the contract by section (`contract.md#<anchor>`): every
//! citation must name a heading of `docs/contract.md` that exists, so a
//! renamed section cannot leave comments pointing nowhere.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// GitHub's anchor of a heading: lower case, spaces to `-`, punctuation
/// other than `-` and `_` dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(contract: &str) -> BTreeSet<String> {
    contract
        .lines()
        .filter_map(|line| {
            line.trim_start_matches('#')
                .strip_prefix(' ')
                .filter(|_| line.starts_with('#'))
        })
        .map(anchor)
        .collect()
}

/// Text files of the workspace that may cite the contract.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | ".git" | "node_modules") {
                sources(&path, out);
            }
        } else if [
            ".rs", ".md", ".yml", ".yaml", ".toml", ".py", ".sh", ".avsc", ".json",
        ]
        .iter()
        .any(|ext| name.ends_with(ext))
        {
            out.push(path);
        }
    }
}

#[test]
fn every_contract_citation_names_a_section_that_exists() {
    let contract =
        std::fs::read_to_string(repo().join("docs/contract.md")).expect("docs/contract.md");
    let known = anchors(&contract);
    for required in [
        "topics",
        "change-event",
        "delivery-guarantees",
        "dead-letters",
        "exit-codes",
    ] {
        assert!(
            known.contains(required),
            "docs/contract.md lacks `{required}`: {known:?}"
        );
    }
    let mut files = Vec::new();
    sources(&repo(), &mut files);
    let mut cited = 0;
    let mut broken = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (at, _) in text.match_indices("contract.md#") {
            let rest = &text[at + "contract.md#".len()..];
            let cite: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            if cite.is_empty() {
                // Prose about the form itself (`contract.md#<anchor>`).
                continue;
            }
            cited += 1;
            if !known.contains(&cite) {
                broken.push(format!("{}: contract.md#{cite}", file.display()));
            }
        }
        if file.extension().is_some_and(|e| e == "rs") {
            assert!(
                !text.contains(concat!("SPEC", " §")),
                "{} cites a section number of a contract the repository does not hold",
                file.display()
            );
        }
    }
    assert!(
        broken.is_empty(),
        "citations of sections that do not exist: {broken:#?}"
    );
    assert!(
        cited > 50,
        "only {cited} citations found: is the walk reading the workspace?"
    );
}

#[test]
fn anchors_follow_the_github_rules() {
    assert_eq!(
        anchor("Durability across failures"),
        "durability-across-failures"
    );
    assert_eq!(anchor("oda-sim"), "oda-sim");
    assert_eq!(anchor("Keys and headers"), "keys-and-headers");
    assert!(anchors("# Top\n## Exit codes\nno heading\n").contains("exit-codes"));
}
