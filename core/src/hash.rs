//! The content hash of SPEC §5, shared by the producer and `oda-sim`.
//!
//! Lowercase hex SHA-256 of the record's RFC 8785 (JCS) canonical JSON with
//! `opdateringsdato` removed. A re-stamp that changes nothing else keeps its
//! hash, which is how the producer tells real changes from bulk re-stamps;
//! `null` and `""` hash differently, and unknown fields count.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The field that does not take part in the hash.
pub const TIMESTAMP_FIELD: &str = "opdateringsdato";

/// Hashes a record as SPEC §5 defines.
pub fn content_hash(record: &Map<String, Value>) -> String {
    let canonical = canonical_json(record);
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// The JCS text that [`content_hash`] digests; public for tests and tools.
pub fn canonical_json(record: &Map<String, Value>) -> String {
    // Annotations such as `odata.metadata` on a single-entity response are
    // envelope, not record.
    let fields: BTreeMap<&str, &Value> = record
        .iter()
        .filter(|(k, _)| k.as_str() != TIMESTAMP_FIELD && !k.starts_with("odata."))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    serde_jcs::to_string(&fields).unwrap_or_else(|e| {
        // JSON values always serialize; keep a deterministic fallback anyway.
        format!("{{\"unserializable\":\"{e}\"}}")
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn restamp_keeps_the_hash() {
        let a = obj(json!({"id": 1, "titel": "x", "opdateringsdato": "2014-09-09T09:05:59.653"}));
        let b = obj(json!({"titel": "x", "id": 1, "opdateringsdato": "2019-03-20T19:21:12.267"}));
        assert_eq!(content_hash(&a), content_hash(&b));
    }

    #[test]
    fn null_and_empty_string_differ() {
        let a = obj(json!({"id": 1, "paragraf": null}));
        let b = obj(json!({"id": 1, "paragraf": ""}));
        assert_ne!(content_hash(&a), content_hash(&b));
    }

    #[test]
    fn canonical_form_sorts_keys_and_escapes_per_jcs() {
        let a = obj(json!({"navn": "Aktør", "id": 7, "aktiv": true, "opdateringsdato": "x"}));
        assert_eq!(
            canonical_json(&a),
            r#"{"aktiv":true,"id":7,"navn":"Aktør"}"#
        );
    }

    #[test]
    fn known_vector() {
        // sha256 of the bytes {"id":1}, computed with Python's hashlib.
        let a = obj(json!({"id": 1, "opdateringsdato": "2020-01-01T00:00:00"}));
        assert_eq!(
            content_hash(&a),
            "037c9214eef74cc3887f3a4f085b4e17d76280dafd273b0ee160c09c4ba1cfd4"
        );
    }
}
