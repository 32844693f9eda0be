//! `oda-history`: what changed, field by field, in every change of the
//! chosen entities.
//!
//! ODA publishes only the current state of each record: nothing in it
//! tells when a bill's status moved from "Fremsat" to "Vedtaget", when a
//! title was reworded or a meeting moved. A change-data-capture pipeline
//! is the only place that history exists. Researchers of the legislative
//! process want it as data; journalists want an alert that names the
//! change. This processor turns each change event into one record on
//! `<prefix>-history-processed` (key `<Entity>:<id>`, kept, never
//! compacted): the fields that changed with their value before and after,
//! lookup ids also as names (`statusid` 11 → 12, "Fremsat" → "Vedtaget"),
//! when the source stamped the change and when the pipeline saw it.
//!
//! To know "before", it keeps the last version of every record of its
//! entities, per input partition, in a changelog (`<prefix>-history-
//! changelog`, compacted). That is the whole entity in memory, so the
//! default is the sets that matter for the process and are small (Sag,
//! Sagstrin, Afstemning, Møde, Aktør); `entities` chooses others.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use oda_cdc_core::config::Settings;
use oda_cdc_core::config::TopicClass;
use oda_cdc_core::kafka::TopicSpec;
use oda_cdc_core::shutdown::CancellationToken;
use oda_model::entity::{entity_set, entity_sets};
use oda_model::event::{ChangeEvent, Op};
use oda_model::topics::Topics;
use serde_json::{Map, Value, json};
use tokio_util::sync::DropGuard;

use crate::processors::normalize::lookup::{self, Reference, Tables};
use crate::processors::passthrough::entity_inputs;
use crate::runner::changelog::{BadChange, ChangelogStore, PartitionState, partition_count};
use crate::runner::decode::Decoder;
use crate::runner::processor::{Context, Input, Output, ProcessError, Processor, Unusable};

/// The sets followed when `entities` is not configured.
pub const DEFAULT_ENTITIES: &[&str] = &["Sag", "Sagstrin", "Afstemning", "Møde", "Aktør"];

/// The last version of every record of one partition number, as compact
/// JSON (parsed again only when the record changes).
#[derive(Debug, Default)]
pub struct Versions {
    records: HashMap<(&'static str, i64), Box<[u8]>>,
}

fn state_key(entity: &str, id: i64) -> String {
    format!("{entity}:{id}")
}

impl PartitionState for Versions {
    fn restore(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), BadChange> {
        let bad = |reason: &str| BadChange {
            key: key.to_owned(),
            reason: reason.to_owned(),
        };
        let (entity, id) = key
            .rsplit_once(':')
            .and_then(|(e, id)| Some((entity_set(e)?.name.as_str(), id.parse().ok()?)))
            .ok_or_else(|| bad("not `<Entity>:<id>`"))?;
        match value {
            Some(bytes) => {
                self.records.insert((entity, id), bytes.into());
            }
            None => {
                self.records.remove(&(entity, id));
            }
        }
        Ok(())
    }
}

/// The processor.
pub struct History {
    store: ChangelogStore<Versions>,
    output: String,
    tables: Tables,
    references: HashMap<String, Vec<Reference>>,
    _follower: Option<DropGuard>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("output", &self.output)
            .finish()
    }
}

/// The name this processor's own topics carry.
const TOPIC_NAME: &str = "history";

fn changelog_topic(topics: &Topics) -> String {
    topics.processor_topic(TOPIC_NAME, "changelog")
}

/// One changed field.
fn change(field: &str, before: &Value, after: &Value) -> Map<String, Value> {
    let mut entry = Map::new();
    entry.insert("field".into(), json!(field));
    entry.insert("from".into(), before.clone());
    entry.insert("to".into(), after.clone());
    entry
}

/// The fields that differ between two versions (`opdateringsdato` aside:
/// it is the change's time, not a change), in the source's field order.
pub fn diff(before: &Map<String, Value>, after: &Map<String, Value>) -> Vec<Map<String, Value>> {
    let stamp = oda_model::hash::TIMESTAMP_FIELD;
    let mut changes: Vec<_> = after
        .iter()
        .filter(|(name, _)| name.as_str() != stamp)
        .filter_map(|(name, value)| {
            let old = before.get(name).unwrap_or(&Value::Null);
            (old != value).then(|| change(name, old, value))
        })
        .collect();
    // A field the source stopped sending.
    changes.extend(
        before
            .iter()
            .filter(|(name, value)| {
                name.as_str() != stamp && !after.contains_key(*name) && !value.is_null()
            })
            .map(|(name, value)| change(name, value, &Value::Null)),
    );
    changes
}

impl History {
    /// A history over given tables (tests fill their own); restores stop
    /// at `shutdown`.
    pub fn new(
        settings: &Settings,
        topics: &Topics,
        tables: Tables,
        shutdown: CancellationToken,
    ) -> Self {
        let lookups = lookup::lookup_sets();
        Self {
            store: ChangelogStore::new(&settings.kafka, changelog_topic(topics), shutdown),
            output: topics.processor_output(TOPIC_NAME),
            tables,
            references: entity_sets()
                .iter()
                .map(|set| (set.name.clone(), lookup::references(set, &lookups)))
                .collect(),
            _follower: None,
        }
    }

    /// Adds the lookup names to the changes of reference fields.
    fn label(&self, entity: &str, changes: &mut [Map<String, Value>]) {
        let Some(references) = self.references.get(entity) else {
            return;
        };
        for entry in changes {
            let Some(reference) = references
                .iter()
                .find(|r| entry.get("field").and_then(Value::as_str) == Some(r.field.as_str()))
            else {
                continue;
            };
            for (side, label) in [("from", "from_label"), ("to", "to_label")] {
                let name = entry
                    .get(side)
                    .and_then(Value::as_i64)
                    .and_then(|id| self.tables.get(&reference.table, id));
                entry.insert(label.into(), name.map_or(Value::Null, Value::String));
            }
        }
    }

    /// The history record of one event, given the version before it.
    pub fn record(
        &self,
        event: &ChangeEvent,
        before: Option<&Map<String, Value>>,
    ) -> Option<Value> {
        let empty = Map::new();
        let mut changes = match (&event.after, event.op) {
            (Some(after), op) if op != Op::Delete => diff(before.unwrap_or(&empty), after),
            _ => Vec::new(),
        };
        let deleted = event.op == Op::Delete;
        if changes.is_empty() && !deleted {
            // A re-read (snapshot, backfill) of a version already known.
            return None;
        }
        self.label(&event.entity, &mut changes);
        Some(json!({
            "entity": event.entity,
            "id": event.id,
            "op": event.op.code(),
            "first_seen": before.is_none(),
            "deleted": deleted,
            "opdateringsdato": event.source.opdateringsdato,
            "changed_at": event.source.opdateringsdato_utc,
            "seen_at": event.source.polled_at,
            "changes": changes,
        }))
    }
}

impl Processor for History {
    const NAME: &'static str = "oda-history";
    const METRICS_PORT: u16 = 9468;

    fn inputs(settings: &Settings, topics: &Topics) -> Vec<String> {
        if settings.entities.is_some() {
            entity_inputs(settings, topics)
        } else {
            DEFAULT_ENTITIES.iter().map(|e| topics.entity(e)).collect()
        }
    }

    fn output_topic(_settings: &Settings, topics: &Topics, _input: &str) -> String {
        topics.processor_output(TOPIC_NAME)
    }

    fn output_topics(_settings: &Settings, topics: &Topics) -> Vec<TopicSpec> {
        vec![
            TopicSpec::kept(TopicClass::Processed, topics.processor_output(TOPIC_NAME)),
            TopicSpec::compacted(TopicClass::State, changelog_topic(topics)),
        ]
    }

    async fn open(context: &Context) -> anyhow::Result<Self> {
        let settings = &context.settings;
        let topics = &context.topics;
        let changelog = changelog_topic(topics);
        let partitions = partition_count(&settings.kafka, &changelog)?;
        // One instance must own partition p of every input (the range
        // assignor gives partition p of topics with equal counts to one
        // member), or two would write changelog partition p.
        let mut counts = std::collections::BTreeMap::new();
        for input in Self::inputs(settings, topics) {
            if let Ok(count) = partition_count(&settings.kafka, &input) {
                counts.insert(input, count);
            }
        }
        let distinct: BTreeSet<i32> = counts.values().copied().collect();
        if distinct.len() > 1 {
            return Err(Unusable(format!(
                "the inputs must have equal partition counts (one instance owns partition p of \
                 each): {counts:?}"
            ))
            .into());
        }
        for input in Self::inputs(settings, topics) {
            // An input that does not exist yet is created by the producer
            // with the same default partition count.
            if let Ok(count) = partition_count(&settings.kafka, &input)
                && count > partitions
            {
                return Err(Unusable(format!(
                    "{input} has {count} partitions and {changelog} only {partitions}: \
                     the changelog needs a partition for each input partition"
                ))
                .into());
            }
        }
        let decoder = Arc::new(Decoder::new(&settings.schema_registry)?);
        let follower = context.shutdown.child_token();
        let tables =
            lookup::load(&settings.kafka, &context.topics, decoder, follower.clone()).await?;
        Ok(Self {
            _follower: Some(follower.drop_guard()),
            ..Self::new(settings, &context.topics, tables, context.shutdown.clone())
        })
    }

    fn process(&mut self, input: &Input<'_>) -> Result<Vec<Output>, ProcessError> {
        let partition = input.partition;
        let Some(versions) = self.store.get_mut(partition) else {
            return Err(ProcessError::Retryable(format!(
                "partition {partition} is not restored"
            )));
        };
        let Some(event) = input.event else {
            // The tombstone after a `d` event: the event said it all.
            return Ok(Vec::new());
        };
        let Some(set) = entity_set(&event.entity) else {
            return Err(ProcessError::Permanent(format!(
                "unknown entity set `{}`",
                event.entity
            )));
        };
        let key = (set.name.as_str(), event.id);
        let before: Option<Map<String, Value>> = versions
            .records
            .get(&key)
            .and_then(|bytes| serde_json::from_slice(bytes).ok());
        let state_key = state_key(&set.name, event.id);
        let mut outputs = Vec::with_capacity(2);
        let stored = match (&event.after, event.op) {
            (Some(after), op) if op != Op::Delete => {
                let bytes = serde_json::to_vec(after)
                    .map_err(|e| ProcessError::Permanent(format!("record is not JSON: {e}")))?;
                versions.records.insert(key, bytes.clone().into());
                Some(bytes)
            }
            _ => {
                versions.records.remove(&key);
                None
            }
        };
        let Some(record) = self.record(event, before.as_ref()) else {
            return Ok(outputs);
        };
        outputs.push(self.store.record(partition, state_key.clone(), stored));
        outputs.push(Output::json(state_key, &record)?.to(&self.output));
        Ok(outputs)
    }

    async fn assigned(&mut self, partitions: &[(String, i32)]) -> anyhow::Result<()> {
        let numbers: BTreeSet<i32> = partitions.iter().map(|(_, p)| *p).collect();
        self.store.assign(numbers).await
    }

    fn committed(&mut self, written: &HashMap<(String, i32), i64>) {
        self.store.committed(written);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(op: Op, after: Option<Value>) -> ChangeEvent {
        ChangeEvent::new(
            op,
            "Sag",
            7,
            after.and_then(|a| a.as_object().cloned()),
            Some("2026-03-02T10:00:00.123".into()),
            "http://x",
            &oda_model::odatime::format_utc(chrono::Utc::now()),
        )
    }

    fn history() -> History {
        let tables = Tables::default();
        for (id, status) in [(11, "Fremsat"), (12, "Vedtaget")] {
            let row = ChangeEvent::new(
                Op::Read,
                "Sagsstatus",
                id,
                json!({"id": id, "status": status}).as_object().cloned(),
                None,
                "http://x",
                &oda_model::odatime::format_utc(chrono::Utc::now()),
            );
            tables.apply("Sagsstatus", "status", None, Some(&row));
        }
        History::new(
            &Settings::default(),
            &Topics::new("parliament", None),
            tables,
            CancellationToken::new(),
        )
    }

    #[test]
    fn a_status_change_names_both_statuses() {
        let h = history();
        let before = json!({"id": 7, "statusid": 11, "titel": "Forslag", "opdateringsdato": "a"});
        let after = json!({"id": 7, "statusid": 12, "titel": "Forslag", "opdateringsdato": "b"});
        let record = h
            .record(&event(Op::Update, Some(after)), before.as_object())
            .expect("a change");
        assert_eq!(
            record["changes"],
            json!([{"field": "statusid", "from": 11, "to": 12,
                    "from_label": "Fremsat", "to_label": "Vedtaget"}])
        );
        assert_eq!(record["first_seen"], false);
        assert_eq!(record["opdateringsdato"], "2026-03-02T10:00:00.123");
    }

    #[test]
    fn rereads_of_a_known_version_say_nothing_and_deletes_say_so() {
        let h = history();
        let version = json!({"id": 7, "statusid": 11, "opdateringsdato": "a"});
        let restamped = json!({"id": 7, "statusid": 11, "opdateringsdato": "b"});
        assert!(
            h.record(&event(Op::Read, Some(restamped)), version.as_object())
                .is_none()
        );
        let gone = h
            .record(&event(Op::Delete, None), version.as_object())
            .expect("a delete");
        assert_eq!(gone["deleted"], true);
        let first = h
            .record(&event(Op::Create, Some(version)), None)
            .expect("first version");
        assert_eq!(first["first_seen"], true);
        assert_eq!(first["changes"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn a_field_the_source_stops_sending_is_a_change_to_null() {
        let before = json!({"id": 7, "titel": "x", "resume": "y"});
        let after = json!({"id": 7, "titel": "x"});
        let changes = diff(
            before.as_object().expect("object"),
            after.as_object().expect("object"),
        );
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0]["field"], "resume");
        assert_eq!(changes[0]["to"], Value::Null);
    }

    #[test]
    fn versions_restore_from_their_changelog_keys() {
        let mut v = Versions::default();
        v.restore("Sag:7", Some(b"{\"id\":7}")).expect("valid");
        v.restore("Aktør:1", Some(b"{\"id\":1}")).expect("valid");
        v.restore("Sag:7", None).expect("valid");
        assert_eq!(v.records.len(), 1);
        assert!(v.restore("Nope:1", None).is_err());
    }
}
