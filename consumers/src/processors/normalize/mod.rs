//! `oda-normalize`: raw ODA records made into clean documents for search
//! indexes and analysts:
//!
//! - date-time fields as UTC RFC 3339 (the source sends Danish local time
//!   without an offset);
//! - lookup ids resolved to their names (`Sag.statusid` 11 → `status`
//!   "Afsluttet") from in-memory tables fed by the lookup topics; an id the
//!   tables do not know yet stays `null` and is listed in `unresolved`;
//! - HTML in text fields turned into plain text;
//! - empty and blank strings as `null`, text trimmed (ODA sends `""` in old
//!   rows and `null` in new ones for the same thing).
//!
//! One document per input record, keyed like it, to `<topic>-processed`;
//! a `d` event gives a document with `deleted: true` and a tombstone gives a
//! tombstone, so the compacted output forgets what the source deleted.

pub mod html;
pub mod lookup;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use oda_cdc_core::config::Settings;
use oda_model::entity::{EdmType, entity_set, entity_sets};
use oda_model::event::{ChangeEvent, Op};
use oda_model::odatime;
use oda_model::topics::Topics;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use tokio_util::sync::DropGuard;

use self::lookup::{Reference, Tables};
use crate::processors::passthrough::entity_inputs;
use crate::runner::decode::Decoder;
use crate::runner::processor::{Context, Input, Output, ProcessError, Processor};

/// The processor: the lookup tables and each entity's references.
#[derive(Debug)]
pub struct Normalize {
    tables: Tables,
    references: HashMap<String, Vec<Reference>>,
    /// Stops the thread that follows the lookup topics when this instance
    /// goes (the runner opens a new one after a failure).
    _follower: Option<DropGuard>,
}

impl Normalize {
    /// A normalizer over given tables (tests and benchmarks fill their own).
    pub fn with_tables(tables: Tables) -> Self {
        let lookups = lookup::lookup_sets();
        let references = entity_sets()
            .iter()
            .map(|set| (set.name.clone(), lookup::references(set, &lookups)))
            .collect();
        Self {
            tables,
            references,
            _follower: None,
        }
    }

    /// The clean document of one change event, as a JSON value.
    pub fn document(&self, event: &ChangeEvent) -> Value {
        serde_json::to_value(self.draft(event)).unwrap_or(Value::Null)
    }

    /// The clean document of one change event, written out as it is
    /// serialized: building a JSON tree first (a copy of every field's name
    /// and value and a sorted-map insert per field) was most of this
    /// processor's own time per record.
    pub fn draft<'a>(&self, event: &'a ChangeEvent) -> Document<'a> {
        let set = entity_set(&event.entity);
        let mut unresolved = Vec::new();
        let record = event.after.as_ref().map(|after| {
            let mut labels: Vec<(Cow<'a, str>, Clean<'a>)> = Vec::new();
            for reference in self.references.get(&event.entity).into_iter().flatten() {
                let name = if after.contains_key(&reference.label) {
                    Cow::Owned(format!("{}navn", reference.label))
                } else {
                    Cow::Owned(reference.label.clone())
                };
                let label = match after.get(&reference.field).and_then(Value::as_i64) {
                    Some(id) => match self.tables.get(&reference.table, id) {
                        Some(label) => Clean::Text(Cow::Owned(label)),
                        None => {
                            unresolved.push(reference.field.clone());
                            Clean::Null
                        }
                    },
                    None => Clean::Null,
                };
                // A later label of the same name wins, as in a map.
                labels.retain(|(earlier, _)| *earlier != name);
                labels.push((name, label));
            }
            // A label named like a field replaces it, as in a map.
            let mut fields: Vec<(Cow<'a, str>, Clean<'a>)> = after
                .iter()
                .filter(|(name, _)| !labels.iter().any(|(label, _)| label == name.as_str()))
                .map(|(name, value)| {
                    let edm = set.and_then(|s| s.field(name)).map(|f| f.edm);
                    (Cow::Borrowed(name.as_str()), clean(edm, value))
                })
                .collect();
            fields.append(&mut labels);
            fields.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
            fields
        });
        Document {
            event,
            record,
            unresolved,
        }
    }
}

/// One change event's clean document (see [`Normalize::draft`]); its keys
/// are written in sorted order, as a JSON map of them would be.
#[derive(Debug)]
pub struct Document<'a> {
    event: &'a ChangeEvent,
    /// The record's fields and resolved labels, sorted by name.
    record: Option<Vec<(Cow<'a, str>, Clean<'a>)>>,
    unresolved: Vec<String>,
}

impl Serialize for Document<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let event = self.event;
        let mut map = serializer.serialize_map(Some(7))?;
        map.serialize_entry("deleted", &(event.op == Op::Delete))?;
        map.serialize_entry("entity", &event.entity)?;
        map.serialize_entry("id", &event.id)?;
        map.serialize_entry("op", event.op.code())?;
        map.serialize_entry("opdateringsdato_utc", &event.source.opdateringsdato_utc)?;
        map.serialize_entry("record", &self.record.as_deref().map(Fields))?;
        map.serialize_entry("unresolved", &self.unresolved)?;
        map.end()
    }
}

/// A record's fields as a JSON object.
struct Fields<'s, 'a>(&'s [(Cow<'a, str>, Clean<'a>)]);

impl Serialize for Fields<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name.as_ref(), value)?;
        }
        map.end()
    }
}

/// One field's clean value, borrowed from the event where it is unchanged.
#[derive(Debug)]
enum Clean<'a> {
    Null,
    Text(Cow<'a, str>),
    Same(&'a Value),
}

impl Serialize for Clean<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Clean::Null => serializer.serialize_unit(),
            Clean::Text(text) => serializer.serialize_str(text),
            Clean::Same(value) => value.serialize(serializer),
        }
    }
}

/// One field's clean value.
fn clean(edm: Option<EdmType>, value: &Value) -> Clean<'_> {
    match (edm, value) {
        (Some(EdmType::DateTime), Value::String(literal)) => match odatime::parse_local(literal) {
            Ok(local) => Clean::Text(Cow::Owned(odatime::format_utc(odatime::local_to_utc(
                local,
            )))),
            Err(_) => text(literal),
        },
        (_, Value::String(s)) => text(s),
        (_, other) => Clean::Same(other),
    }
}

/// Plain text, trimmed; blank text is `null`.
fn text(s: &str) -> Clean<'_> {
    match html::to_plain_text(s) {
        Cow::Borrowed(plain) => match plain.trim() {
            "" => Clean::Null,
            t => Clean::Text(Cow::Borrowed(t)),
        },
        Cow::Owned(plain) => match plain.trim() {
            "" => Clean::Null,
            t => Clean::Text(Cow::Owned(t.to_owned())),
        },
    }
}

impl Processor for Normalize {
    const NAME: &'static str = "oda-normalize";
    const METRICS_PORT: u16 = 9465;

    fn inputs(settings: &Settings, topics: &Topics) -> Vec<String> {
        entity_inputs(settings, topics)
    }

    async fn open(context: &Context) -> anyhow::Result<Self> {
        let decoder = Arc::new(Decoder::new(&context.settings.schema_registry)?);
        let follower = context.shutdown.child_token();
        let tables = lookup::load(
            &context.settings.kafka,
            &context.topics,
            decoder,
            follower.clone(),
        )
        .await?;
        Ok(Self {
            _follower: Some(follower.drop_guard()),
            ..Self::with_tables(tables)
        })
    }

    fn process(&mut self, input: &Input<'_>) -> Result<Vec<Output>, ProcessError> {
        let key = input.key.unwrap_or_default().to_owned();
        match input.event {
            None => Ok(vec![Output::tombstone(key)]),
            Some(event) => Ok(vec![Output::json(key, &self.draft(event))?]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(entity: &str, after: Value) -> ChangeEvent {
        ChangeEvent::new(
            Op::Update,
            entity,
            after["id"].as_i64().unwrap_or(0),
            after.as_object().cloned(),
            after["opdateringsdato"].as_str().map(str::to_owned),
            "http://x",
            &oda_model::odatime::format_utc(chrono::Utc::now()),
        )
    }

    fn tables() -> Tables {
        let tables = Tables::default();
        let sagsstatus = event("Sagsstatus", json!({"id": 11, "status": "Afsluttet"}));
        tables.apply("Sagsstatus", "status", None, Some(&sagsstatus));
        tables
    }

    #[test]
    fn a_sag_becomes_a_clean_document() {
        let normalize = Normalize::with_tables(tables());
        let sag = event(
            "Sag",
            json!({
                "id": 7,
                "typeid": 3,
                "statusid": 11,
                "kategoriid": null,
                "titelkort": "",
                "titel": "  Forslag til lov  ",
                "resume": "<p>Lovforslaget&nbsp;<strong>ændrer</strong></p>",
                "afgørelsesdato": "2026-10-25T02:30:00",
                "opdateringsdato": "2026-07-01T12:00:00.123"
            }),
        );
        let doc = normalize.document(&sag);
        let record = &doc["record"];
        assert_eq!(record["status"], "Afsluttet");
        assert_eq!(record["type"], Value::Null, "Sagstype 3 is not loaded");
        assert_eq!(doc["unresolved"], json!(["typeid"]));
        assert_eq!(record["kategori"], Value::Null, "no id, nothing to resolve");
        assert_eq!(record["titelkort"], Value::Null);
        assert_eq!(record["titel"], "Forslag til lov");
        assert_eq!(record["resume"], "Lovforslaget ændrer");
        assert_eq!(
            record["afgørelsesdato"], "2026-10-25T00:30:00.000Z",
            "first of the repeated hour"
        );
        assert_eq!(record["opdateringsdato"], "2026-07-01T10:00:00.123Z");
        assert_eq!(doc["deleted"], false);
    }

    /// The document as a JSON tree, built as the processor built it before
    /// it wrote documents straight out: the oracle of the written bytes.
    fn tree(normalize: &Normalize, event: &ChangeEvent) -> Value {
        let set = entity_set(&event.entity);
        let mut unresolved = Vec::new();
        let record = event.after.as_ref().map(|after| {
            let mut record = serde_json::Map::new();
            for (name, value) in after {
                let edm = set.and_then(|s| s.field(name)).map(|f| f.edm);
                let value = serde_json::to_value(clean(edm, value)).expect("a value");
                record.insert(name.clone(), value);
            }
            for reference in normalize
                .references
                .get(&event.entity)
                .into_iter()
                .flatten()
            {
                let name = if after.contains_key(&reference.label) {
                    format!("{}navn", reference.label)
                } else {
                    reference.label.clone()
                };
                let label = match after.get(&reference.field).and_then(Value::as_i64) {
                    Some(id) => normalize
                        .tables
                        .get(&reference.table, id)
                        .map(Value::String)
                        .unwrap_or_else(|| {
                            unresolved.push(reference.field.clone());
                            Value::Null
                        }),
                    None => Value::Null,
                };
                record.insert(name, label);
            }
            record
        });
        json!({
            "entity": event.entity,
            "id": event.id,
            "op": event.op.code(),
            "deleted": event.op == Op::Delete,
            "opdateringsdato_utc": event.source.opdateringsdato_utc,
            "record": record,
            "unresolved": unresolved,
        })
    }

    #[test]
    fn the_document_is_written_as_its_json_tree_would_be() {
        let normalize = Normalize::with_tables(tables());
        // `status` is a field of its own, so the label becomes `statusnavn`,
        // replacing the field of that name, as a map insert would.
        let sag = event(
            "Sag",
            json!({
                "id": 7,
                "statusid": 11,
                "status": "x",
                "statusnavn": "replaced",
                "typeid": null,
                "titel": " <b>Lov</b> ",
                "nummer": "",
                "zeta": [1, {"b": 2, "a": 1}]
            }),
        );
        let written = serde_json::to_string(&normalize.draft(&sag)).expect("JSON");
        let expected = tree(&normalize, &sag);
        assert_eq!(
            written,
            expected.to_string(),
            "same keys, same order, same values"
        );
        assert_eq!(normalize.document(&sag), expected);
        assert_eq!(expected["record"]["statusnavn"], "Afsluttet");
        assert_eq!(expected["record"]["status"], "x");
        assert_eq!(expected["record"]["titel"], "Lov");
        assert_eq!(expected["record"]["nummer"], Value::Null);
        assert_eq!(expected["opdateringsdato_utc"], Value::Null);
        let deleted = ChangeEvent::new(Op::Delete, "Sag", 7, None, None, "http://x", "t");
        assert_eq!(
            serde_json::to_string(&normalize.draft(&deleted)).expect("JSON"),
            tree(&normalize, &deleted).to_string(),
            "no record: null"
        );
    }

    #[test]
    fn every_model_reference_points_at_a_lookup_set() {
        let normalize = Normalize::with_tables(Tables::default());
        let count: usize = normalize.references.values().map(Vec::len).sum();
        assert_eq!(count, 19, "the references the model declares");
        assert!(
            normalize.references["Stemme"]
                .iter()
                .any(|r| r.field == "typeid" && r.table == "Stemmetype" && r.label == "type")
        );
    }

    #[test]
    fn deletes_and_tombstones() {
        let mut normalize = Normalize::with_tables(Tables::default());
        let deleted = ChangeEvent::new(
            Op::Delete,
            "Sag",
            7,
            None,
            None,
            "http://x",
            &oda_model::odatime::format_utc(chrono::Utc::now()),
        );
        assert_eq!(normalize.document(&deleted)["deleted"], true);
        let input = Input {
            topic: "t",
            partition: 0,
            offset: 0,
            timestamp: None,
            key: Some("7"),
            value: None,
            headers: &[],
            event: None,
        };
        assert_eq!(normalize.process(&input), Ok(vec![Output::tombstone("7")]));
    }
}
