//! The content hash of contract.md#content-hash, shared by the producer and `oda-sim`.
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

/// Hashes a record as contract.md#delivery-guarantees defines.
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
    if let Some(text) = flat_canonical(&fields) {
        return text;
    }
    serde_jcs::to_string(&fields).unwrap_or_else(|e| {
        // JSON values always serialize; keep a deterministic fallback anyway.
        format!("{{\"unserializable\":\"{e}\"}}")
    })
}

/// JCS for the records ODA actually sends — flat objects of null, booleans,
/// integers and strings — written directly, which is several times faster
/// than the general canonicaliser on text-heavy rows. For such values JCS
/// is plain JSON: integers print as themselves, strings escape exactly as
/// serde_json escapes them, and keys sort by UTF-16 code units, which for
/// keys below U+E000 is the UTF-8 byte order a `BTreeMap` already has.
/// Anything else (floats, nested values, other keys) takes the general path.
fn flat_canonical(fields: &BTreeMap<&str, &Value>) -> Option<String> {
    let simple = fields.iter().all(|(k, v)| {
        k.chars().all(|c| (c as u32) < 0xE000)
            && match v {
                Value::Null | Value::Bool(_) | Value::String(_) => true,
                // JCS prints numbers as IEEE doubles: exact only up to 2^53.
                Value::Number(n) => n.as_i64().is_some_and(|i| i.unsigned_abs() <= 1 << 53),
                Value::Array(_) | Value::Object(_) => false,
            }
    });
    if !simple {
        return None;
    }
    let mut out = Vec::with_capacity(64 * fields.len());
    out.push(b'{');
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, key).ok()?;
        out.push(b':');
        serde_json::to_writer(&mut out, value).ok()?;
    }
    out.push(b'}');
    String::from_utf8(out).ok()
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
    fn the_fast_path_equals_the_general_canonicaliser() {
        let records = [
            json!({"id": 1, "titel": "Æblegrød på øen <p>\"citat\"</p>\n\t", "tom": "", "nul": null, "ja": true}),
            json!({"b": 1, "a": -7, "å": "x", "z": "\u{1f600} emoji", "ctl": "\u{1}\u{1f}"}),
            json!({"id": 9_007_199_254_740_992_i64, "typeid": 3}),
        ];
        for record in records {
            let map = obj(record);
            let fields: BTreeMap<&str, &Value> = map.iter().map(|(k, v)| (k.as_str(), v)).collect();
            let fast = flat_canonical(&fields).expect("flat record");
            assert_eq!(fast, serde_jcs::to_string(&fields).expect("jcs"), "{map:?}");
        }
        // Beyond 2^53, floats and nested values take the general path.
        let big = obj(json!({"id": 9_007_199_254_740_993_i64}));
        let fields: BTreeMap<&str, &Value> = big.iter().map(|(k, v)| (k.as_str(), v)).collect();
        assert!(flat_canonical(&fields).is_none());
        assert_eq!(canonical_json(&big), r#"{"id":9007199254740992}"#);
        let nested = obj(json!({"a": [1, 2], "b": 1.5}));
        let fields: BTreeMap<&str, &Value> = nested.iter().map(|(k, v)| (k.as_str(), v)).collect();
        assert!(flat_canonical(&fields).is_none());
        assert_eq!(canonical_json(&nested), r#"{"a":[1,2],"b":1.5}"#);
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
