//! Avro schemas for the entity records and the change-event envelope
//! (contract.md#change-event), derived from the compiled-in entity model, and the mapping
//! between the JSON change event and Avro values.
//!
//! The schemas are generated, never hand-written: `cargo run -p oda-schemas`
//! writes [`schema_files`] to `schemas/avro/`, and a test fails when the
//! committed files and this module drift apart. Avro names must match
//! `[A-Za-z_][A-Za-z0-9_]*`, so Danish names are transliterated
//! ([`avro_name`]) and the original spelling is kept in the `oda.name`
//! attribute; code maps back through the model ([`oda_field_name`],
//! [`entity_set_by_avro_name`]) rather than by reversing the
//! transliteration, which is not invertible (`oe` may be ODA's own `oe`).

mod codec;
#[cfg(test)]
mod tests;

use serde_json::{Map, Value, json};

use crate::entity::{EdmType, EntitySet, Field, entity_sets};

pub use codec::{EncodedRecord, avro_to_event, avro_to_record, event_to_avro, record_to_avro};

/// The namespace of every record, enum and envelope (contract.md#change-event).
pub const NAMESPACE: &str = "dk.ft.oda";

/// Field and record attribute that keeps ODA's own spelling of a name.
pub const ODA_NAME_ATTR: &str = "oda.name";

/// Field attribute with the `$metadata` type, because Avro's `int` and
/// `string` no longer tell `Edm.Int16` from `Edm.Int32`, nor `Edm.DateTime`
/// from `Edm.String`; readers that care can still see what the source said.
pub const ODA_EDM_ATTR: &str = "oda.edm";

/// The envelope's `op` symbols, in the order of the Avro enum (the codec's
/// symbol indexes follow it; a test checks). Avro resolves symbols by name,
/// so adding one is BACKWARD compatible and removing one is not.
pub const OP_SYMBOLS: [&str; 4] = ["r", "c", "u", "d"];

/// Why a value cannot be mapped to or from Avro.
///
/// [`AvroError::WrongType`], [`AvroError::NullNotAllowed`] and
/// [`AvroError::Timestamp`] are faults of the data (the producer
/// dead-letters the record); the others mean a schema and the code disagree.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AvroError {
    #[error("{entity}.{field}: expected {expected}, got {value}")]
    WrongType {
        entity: String,
        field: String,
        expected: &'static str,
        /// The offending value as JSON text.
        value: String,
    },
    #[error("{entity}.{field} is declared non-nullable but is null or missing")]
    NullNotAllowed { entity: String, field: String },
    #[error("{field}: `{value}` is not an RFC 3339 time")]
    Timestamp { field: &'static str, value: String },
    #[error("`{name}` is not a valid Avro name ([A-Za-z_][A-Za-z0-9_]*)")]
    InvalidName { name: String },
    #[error("an event of {event} cannot use the schema of {schema}")]
    EntityMismatch { event: String, schema: String },
    #[error("{entity}: the Avro field `{field}` is not in the entity model")]
    UnknownAvroField { entity: String, field: String },
    #[error("{context}: unexpected Avro value {value}")]
    Shape { context: String, value: String },
}

impl AvroError {
    /// A fault of the record rather than of the schema or the code: the
    /// caller should dead-letter the record and carry on.
    pub fn is_data_error(&self) -> bool {
        matches!(
            self,
            AvroError::WrongType { .. }
                | AvroError::NullNotAllowed { .. }
                | AvroError::Timestamp { .. }
        )
    }
}

/// ODA's name in Avro spelling: `æ→ae`, `ø→oe`, `å→aa` (`Æ→Ae`, `Ø→Oe`,
/// `Å→Aa`), the case of everything else kept, so `Aktør` becomes `Aktoer`
/// and `mødeid` becomes `moedeid` — the same transliteration as the topic
/// slugs of contract.md#topics, only without lower-casing.
///
/// Every model name gives a valid Avro name (a test checks); use
/// [`try_avro_name`] for names from elsewhere.
pub fn avro_name(oda_name: &str) -> String {
    let mut out = String::with_capacity(oda_name.len() + 2);
    for c in oda_name.chars() {
        match c {
            'æ' => out.push_str("ae"),
            'ø' => out.push_str("oe"),
            'å' => out.push_str("aa"),
            'Æ' => out.push_str("Ae"),
            'Ø' => out.push_str("Oe"),
            'Å' => out.push_str("Aa"),
            other => out.push(other),
        }
    }
    out
}

/// [`avro_name`], refusing a result Avro would reject (another non-ASCII
/// letter, a leading digit, punctuation).
pub fn try_avro_name(oda_name: &str) -> Result<String, AvroError> {
    let name = avro_name(oda_name);
    if is_valid_avro_name(&name) {
        Ok(name)
    } else {
        Err(AvroError::InvalidName { name })
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_valid_avro_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The ODA name of a field given its Avro name, looked up in the model.
pub fn oda_field_name<'a>(set: &'a EntitySet, avro_field: &str) -> Option<&'a str> {
    set.fields
        .iter()
        .find(|f| avro_name(&f.name) == avro_field)
        .map(|f| f.name.as_str())
}

/// The entity set whose record (`Aktoer`) or envelope (`ChangeEventAktoer`)
/// has this Avro name, with or without the namespace.
pub fn entity_set_by_avro_name(name: &str) -> Option<&'static EntitySet> {
    let local = name
        .strip_prefix(NAMESPACE)
        .and_then(|n| n.strip_prefix('.'))
        .unwrap_or(name);
    let record = local.strip_prefix(ENVELOPE_PREFIX).unwrap_or(local);
    entity_sets().iter().find(|s| avro_name(&s.name) == record)
}

const ENVELOPE_PREFIX: &str = "ChangeEvent";

/// The envelope's record name, `ChangeEvent<Entity>` (e.g.
/// `ChangeEventAktoer`), in [`NAMESPACE`].
pub fn envelope_name(set: &EntitySet) -> String {
    format!("{ENVELOPE_PREFIX}{}", avro_name(&set.name))
}

/// Every string is nullable whatever `$metadata` says: ODA returns `""` in
/// old rows and `null` in new ones for the same fields, and a schema that
/// refused `null` would dead-letter records the source considers fine.
fn is_nullable(field: &Field) -> bool {
    field.nullable || field.edm == EdmType::String
}

fn avro_type(edm: EdmType) -> &'static str {
    match edm {
        EdmType::Int16 | EdmType::Int32 => "int",
        EdmType::Boolean => "boolean",
        // The source literal, not a timestamp: it has no offset, it is what
        // ODA filters and the content hash compare, and converting it would
        // lose how many fraction digits the source wrote.
        EdmType::DateTime | EdmType::String => "string",
    }
}

fn field_schema(field: &Field) -> Value {
    let base = avro_type(field.edm);
    let mut out = Map::new();
    out.insert("name".into(), Value::String(avro_name(&field.name)));
    if is_nullable(field) {
        out.insert("type".into(), json!(["null", base]));
        out.insert("default".into(), Value::Null);
    } else {
        out.insert("type".into(), json!(base));
    }
    if field.edm == EdmType::DateTime {
        out.insert(
            "doc".into(),
            json!("The source literal: Danish local time without an offset, 0-3 fraction digits."),
        );
    }
    out.insert(ODA_NAME_ATTR.into(), json!(field.name));
    out.insert(ODA_EDM_ATTR.into(), json!(field.edm.edm_name()));
    Value::Object(out)
}

/// The Avro record of one entity set: `dk.ft.oda.<avro name>`, fields in
/// `$metadata` order, each with its ODA name in `oda.name`.
pub fn entity_schema(set: &EntitySet) -> Value {
    let fields: Vec<Value> = set.fields.iter().map(field_schema).collect();
    json!({
        "type": "record",
        "name": avro_name(&set.name),
        "namespace": NAMESPACE,
        "doc": format!("A record of the ODA entity set {}, as the API returns it.", set.name),
        ODA_NAME_ATTR: set.name,
        "fields": fields,
    })
}

/// The change-event envelope of contract.md#change-event for one entity set:
/// `dk.ft.oda.ChangeEvent<Entity>` with `after` the entity record.
///
/// Each envelope defines `dk.ft.oda.Op` and `dk.ft.oda.Source` itself, so
/// every subject's schema stands alone in the registry without references.
/// `op` is an enum because the contract fixes its four symbols, so a reader can
/// rely on seeing nothing else (and it costs one byte). `id` is a `long`
/// like the JSON event's `i64`: Avro writes `int` and `long` as the same
/// zig-zag varint, so the wider type costs nothing and the envelope stays
/// the same for every set whatever the key's EDM type.
pub fn envelope_schema(set: &EntitySet) -> Value {
    let timestamp = json!({"type": "long", "logicalType": "timestamp-millis"});
    json!({
        "type": "record",
        "name": envelope_name(set),
        "namespace": NAMESPACE,
        "doc": format!("A change event (contract.md#change-event) of the ODA entity set {}.", set.name),
        ODA_NAME_ATTR: set.name,
        "fields": [
            {
                "name": "op",
                "type": {
                    "type": "enum",
                    "name": "Op",
                    "doc": "r snapshot or backfill read, c first seen, u later change, d vanished from the source.",
                    "symbols": OP_SYMBOLS,
                },
            },
            {"name": "entity", "type": "string", "doc": "The entity set name as ODA spells it."},
            {"name": "id", "type": "long"},
            {"name": "ts_ms", "type": "long", "doc": "When the producer emitted the event, epoch milliseconds."},
            {
                "name": "source",
                "type": {
                    "type": "record",
                    "name": "Source",
                    "fields": [
                        {"name": "system", "type": "string"},
                        {"name": "base_url", "type": "string"},
                        {
                            "name": "opdateringsdato",
                            "type": ["null", "string"],
                            "default": null,
                            "doc": "The source literal, Danish local time without an offset.",
                        },
                        {"name": "opdateringsdato_utc", "type": ["null", timestamp], "default": null},
                        {"name": "polled_at", "type": timestamp},
                        {"name": "snapshot", "type": "boolean"},
                    ],
                },
            },
            {"name": "after", "type": ["null", entity_schema(set)], "default": null},
            {
                "name": "extra",
                "type": {"type": "map", "values": "string"},
                "default": {},
                "doc": "Fields this schema does not know yet: name to JSON text.",
            },
        ],
    })
}

/// The generated files, `(file name, content)`: `<Entity>.avsc` and
/// `ChangeEvent<Entity>.avsc` for every entity set, in model order.
pub fn schema_files() -> Vec<(String, String)> {
    entity_sets()
        .iter()
        .flat_map(|set| {
            [
                (
                    format!("{}.avsc", avro_name(&set.name)),
                    render(&entity_schema(set)),
                ),
                (
                    format!("{}.avsc", envelope_name(set)),
                    render(&envelope_schema(set)),
                ),
            ]
        })
        .collect()
}

/// Pretty JSON with a trailing newline and a fixed, readable key order.
///
/// `serde_json` sorts object keys unless some crate in the build enables
/// `preserve_order`, so its own pretty printer could change the generated
/// files with the dependency graph; this one does not.
pub fn render(schema: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, schema, 0);
    out.push('\n');
    out
}

/// Keys of a type definition first by role, then anything else by name.
const TYPE_KEY_ORDER: &[&str] = &[
    "type",
    "name",
    "namespace",
    "logicalType",
    "doc",
    ODA_NAME_ATTR,
    "symbols",
    "values",
    "items",
    "fields",
];

/// A field declaration reads name, type, default.
const FIELD_KEY_ORDER: &[&str] = &[
    "name",
    "type",
    "default",
    "doc",
    ODA_NAME_ATTR,
    ODA_EDM_ATTR,
];

fn key_rank(order: &[&str], key: &str) -> usize {
    order.iter().position(|k| *k == key).unwrap_or(order.len())
}

fn write_value(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            let is_type = ["fields", "symbols", "values", "items", "logicalType"]
                .iter()
                .any(|k| map.contains_key(*k));
            let order = if is_type {
                TYPE_KEY_ORDER
            } else {
                FIELD_KEY_ORDER
            };
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| (key_rank(order, a), *a).cmp(&(key_rank(order, b), *b)));
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, indent + 1);
                out.push_str(&Value::String((*key).clone()).to_string());
                out.push_str(": ");
                if let Some(v) = map.get(*key) {
                    write_value(out, v, indent + 1);
                }
            }
            newline(out, indent);
            out.push('}');
        }
        // Unions of primitives and enum symbols stay on one line.
        Value::Array(items) if items.iter().all(|v| !v.is_object() && !v.is_array()) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&item.to_string());
            }
            out.push(']');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, indent + 1);
                write_value(out, item, indent + 1);
            }
            newline(out, indent);
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn newline(out: &mut String, indent: usize) {
    out.push('\n');
    for _ in 0..indent {
        out.push_str("  ");
    }
}
