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
    let mut hasher = Sha256::new();
    if !write_flat(record, &mut Digesting(&mut hasher)) {
        hasher.update(general_canonical(record).as_bytes());
    }
    let mut hex = [0_u8; 64];
    // 32 bytes always fit 64 hex digits, which are always UTF-8.
    let _ = hex::encode_to_slice(hasher.finalize(), &mut hex);
    String::from_utf8_lossy(&hex).into_owned()
}

/// The JCS text that [`content_hash`] digests; public for tests and tools.
pub fn canonical_json(record: &Map<String, Value>) -> String {
    let mut out = Vec::with_capacity(256);
    if write_flat(record, &mut out)
        && let Ok(text) = String::from_utf8(out)
    {
        return text;
    }
    general_canonical(record)
}

/// The fields that take part: annotations such as `odata.metadata` on a
/// single-entity response are envelope, not record.
fn hashed_fields(record: &Map<String, Value>) -> impl Iterator<Item = (&str, &Value)> {
    record
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .filter(|(k, _)| *k != TIMESTAMP_FIELD && !k.starts_with("odata."))
}

fn general_canonical(record: &Map<String, Value>) -> String {
    let fields: BTreeMap<&str, &Value> = hashed_fields(record).collect();
    serde_jcs::to_string(&fields).unwrap_or_else(|e| {
        // JSON values always serialize; keep a deterministic fallback anyway.
        format!("{{\"unserializable\":\"{e}\"}}")
    })
}

/// JCS for the records ODA actually sends — flat objects of null, booleans,
/// integers and strings — written straight into `out` (the hasher), which
/// is several times faster than the general canonicaliser on text-heavy
/// rows. For such values JCS is plain JSON: integers print as themselves,
/// strings escape exactly as serde_json escapes them, and keys sort by
/// UTF-16 code units, which for keys below U+E000 is the UTF-8 byte order
/// the record's map already iterates in (checked, not assumed).
/// Anything else (floats, nested values, other keys) writes nothing and
/// returns `false`: the general path's turn.
fn write_flat(record: &Map<String, Value>, out: &mut impl std::io::Write) -> bool {
    let mut previous: Option<&str> = None;
    for (key, value) in hashed_fields(record) {
        let simple = key.chars().all(|c| (c as u32) < 0xE000)
            && match value {
                Value::Null | Value::Bool(_) | Value::String(_) => true,
                // JCS prints numbers as IEEE doubles: exact only up to 2^53.
                Value::Number(n) => n.as_i64().is_some_and(|i| i.unsigned_abs() <= 1 << 53),
                Value::Array(_) | Value::Object(_) => false,
            };
        if !simple || previous.is_some_and(|p| p >= key) {
            return false;
        }
        previous = Some(key);
    }
    let mut written = out.write_all(b"{").is_ok();
    for (i, (key, value)) in hashed_fields(record).enumerate() {
        written &= (i == 0 || out.write_all(b",").is_ok())
            && serde_json::to_writer(&mut *out, key).is_ok()
            && out.write_all(b":").is_ok()
            && serde_json::to_writer(&mut *out, value).is_ok();
    }
    written && out.write_all(b"}").is_ok()
}

/// Feeds written bytes to the digest, so the canonical text of a record
/// is never held in memory.
struct Digesting<'a>(&'a mut Sha256);

impl std::io::Write for Digesting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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

    /// The fast path's text, if it takes the record.
    fn flat(map: &Map<String, Value>) -> Option<String> {
        let mut out = Vec::new();
        write_flat(map, &mut out).then(|| String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn the_fast_path_equals_the_general_canonicaliser() {
        let records = [
            json!({"id": 1, "titel": "Æblegrød på øen <p>\"citat\"</p>\n\t", "tom": "", "nul": null, "ja": true}),
            json!({"b": 1, "a": -7, "å": "x", "z": "\u{1f600} emoji", "ctl": "\u{1}\u{1f}"}),
            json!({"id": 9_007_199_254_740_992_i64, "typeid": 3}),
            json!({"odata.metadata": "x", "id": 2, "opdateringsdato": "2020-01-01T00:00:00"}),
        ];
        for record in records {
            let map = obj(record);
            let fast = flat(&map).expect("flat record");
            assert_eq!(fast, general_canonical(&map), "{map:?}");
            let mut hasher = Sha256::new();
            hasher.update(fast.as_bytes());
            assert_eq!(
                content_hash(&map),
                hex::encode(hasher.finalize()),
                "streamed = hashed text"
            );
        }
        // Beyond 2^53, floats and nested values take the general path.
        let big = obj(json!({"id": 9_007_199_254_740_993_i64}));
        assert!(flat(&big).is_none());
        assert_eq!(canonical_json(&big), r#"{"id":9007199254740992}"#);
        let nested = obj(json!({"a": [1, 2], "b": 1.5}));
        assert!(flat(&nested).is_none());
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
