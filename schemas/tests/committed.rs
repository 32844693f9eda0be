//! The committed `.avsc` files are exactly what the entity model
//! generates, and each parses and keeps ODA's own names: a model change
//! without `cargo run -p oda-schemas` fails here.

use std::path::Path;

use apache_avro::Schema;
use oda_model::avro::{NAMESPACE, entity_set_by_avro_name, schema_files};
use serde_json::json;

#[test]
fn committed_schema_files_match_the_model() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("avro");
    let files = schema_files();
    assert_eq!(files.len(), 100);
    for (name, content) in &files {
        let committed = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        assert!(
            committed == *content,
            "schemas/avro/{name} is missing or differs from the entity model; run `cargo run -p oda-schemas` and commit the result"
        );
    }
    let mut stale = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("schemas/avro exists") {
        let file = entry
            .expect("dir entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if file.ends_with(".avsc") && !files.iter().any(|(n, _)| *n == file) {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "stale files {stale:?} in schemas/avro; run `cargo run -p oda-schemas`"
    );
}

#[test]
fn every_committed_schema_parses_and_keeps_oda_names() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("avro");
    for (name, _) in schema_files() {
        let text = std::fs::read_to_string(dir.join(&name)).expect("committed file");
        let schema = Schema::parse_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let Schema::Record(record) = schema else {
            panic!("{name} is not a record");
        };
        let set = entity_set_by_avro_name(&record.name.fullname(None)).expect("maps to a set");
        assert_eq!(record.name.namespace(), Some(NAMESPACE));
        assert_eq!(
            record.attributes.get("oda.name"),
            Some(&json!(set.name)),
            "{name}"
        );
        if !name.starts_with("ChangeEvent") {
            for (field, model) in record.fields.iter().zip(&set.fields) {
                assert_eq!(
                    field.custom_attributes.get("oda.name"),
                    Some(&json!(model.name))
                );
            }
            assert_eq!(record.fields.len(), set.fields.len());
        }
    }
}
