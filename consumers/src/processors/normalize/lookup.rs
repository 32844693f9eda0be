//! Lookup tables (Sagstype, Sagsstatus, Aktørtype, Stemmetype, …) held in
//! memory and fed from their compacted entity topics: read to the end
//! before the first record is processed, then followed for as long as the
//! processor runs.
//!
//! Which field refers to which table comes from the entity model: a lookup
//! set has one text field besides `id` and `opdateringsdato` (`type`,
//! `status`, `kategori`, `rolle`), and an entity with a navigation to it
//! holds the reference as that name plus `id` (`Sag.statusid` →
//! `Sagsstatus.status`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use oda_cdc_core::config::KafkaSettings;
use oda_cdc_core::event::ChangeEvent;
use oda_cdc_core::model::{EdmType, EntitySet, entity_sets};
use oda_cdc_core::shutdown::CancellationToken;
use oda_cdc_core::topics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::decode::Decoder;

/// A field that refers to a lookup table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The referring field (`statusid`).
    pub field: String,
    /// The lookup set (`Sagsstatus`).
    pub table: String,
    /// The lookup's label field, also the name the resolved value gets in
    /// the document (`status`).
    pub label: String,
}

/// Lookup sets and their label field.
pub fn lookup_sets() -> HashMap<String, String> {
    entity_sets()
        .iter()
        .filter_map(|set| {
            let rest: Vec<_> = set
                .fields
                .iter()
                .filter(|f| f.name != "id" && f.name != "opdateringsdato")
                .collect();
            match rest.as_slice() {
                [only] if only.edm == EdmType::String => {
                    Some((set.name.clone(), only.name.clone()))
                }
                _ => None,
            }
        })
        .collect()
}

/// The references of one entity set, from its navigations.
pub fn references(set: &EntitySet, lookups: &HashMap<String, String>) -> Vec<Reference> {
    set.navigation
        .iter()
        .filter_map(|nav| {
            let label = lookups.get(&nav.target)?;
            let field = format!("{label}id");
            set.field(&field).map(|_| Reference {
                field,
                table: nav.target.clone(),
                label: label.clone(),
            })
        })
        .collect()
}

/// Labels by (table, id); cheap to clone and share.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    labels: Arc<DashMap<(String, i64), String>>,
}

impl Tables {
    pub fn get(&self, table: &str, id: i64) -> Option<String> {
        self.labels
            .get(&(table.to_owned(), id))
            .map(|v| v.value().clone())
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Applies one lookup-topic event (a `d` or tombstone forgets the id).
    pub fn apply(&self, table: &str, label: &str, key: Option<&str>, event: Option<&ChangeEvent>) {
        let id = match (event, key.and_then(|k| k.parse::<i64>().ok())) {
            (Some(e), _) => e.id,
            (None, Some(id)) => id,
            (None, None) => return,
        };
        let text = event
            .and_then(|e| e.after.as_ref())
            .and_then(|after| after.get(label))
            .and_then(|v| v.as_str());
        match text {
            Some(text) => {
                self.labels.insert((table.to_owned(), id), text.to_owned());
            }
            None => {
                self.labels.remove(&(table.to_owned(), id));
            }
        }
    }
}

/// Loads every lookup table that has a topic, then keeps following them on
/// a thread of its own until `shutdown`. Returns once the initial load is
/// complete.
pub async fn load(
    kafka: &KafkaSettings,
    decoder: Arc<Decoder>,
    shutdown: CancellationToken,
) -> Result<Tables, KafkaError> {
    let tables = Tables::default();
    let lookups = lookup_sets();
    let by_topic: HashMap<String, (String, String)> = lookups
        .iter()
        .map(|(table, label)| {
            (
                topics::entity_topic(&kafka.topic_prefix, table),
                (table.clone(), label.clone()),
            )
        })
        .collect();
    let config = kafka.consumer_config("oda-normalize-lookups");
    let consumer: BaseConsumer<oda_cdc_core::kafka::LogContext> =
        config.create_with_context(oda_cdc_core::kafka::LogContext)?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    let mut assignment = TopicPartitionList::new();
    // The initial load ends when every partition's position reaches the
    // end it had at start (positions step over transaction markers, which
    // a reader never receives).
    let mut ends: HashMap<(String, i32), i64> = HashMap::new();
    for topic in metadata.topics() {
        if !by_topic.contains_key(topic.name()) {
            continue;
        }
        for partition in topic.partitions() {
            let (low, high) =
                consumer.fetch_watermarks(topic.name(), partition.id(), Duration::from_secs(10))?;
            assignment.add_partition_offset(topic.name(), partition.id(), Offset::Beginning)?;
            if high > low {
                ends.insert((topic.name().to_owned(), partition.id()), high);
            }
        }
    }
    if assignment.count() == 0 {
        tracing::warn!("No lookup topics yet; ids stay unresolved.");
        return Ok(tables);
    }
    consumer.assign(&assignment)?;
    let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel();
    let handle = tokio::runtime::Handle::current();
    let shared = tables.clone();
    std::thread::Builder::new()
        .name("lookup-tables".into())
        .spawn(move || {
            let mut loaded = Some(loaded_tx);
            let mut since_check = 0;
            while !shutdown.is_cancelled() {
                let polled = consumer.poll(Duration::from_millis(200));
                since_check += 1;
                if loaded.is_some() && (polled.is_none() || since_check >= 500) {
                    since_check = 0;
                    if let Ok(positions) = consumer.position() {
                        ends.retain(|(topic, partition), end| {
                            positions
                                .find_partition(topic, *partition)
                                .and_then(|p| p.offset().to_raw())
                                .is_none_or(|at| at < *end)
                        });
                    }
                    if ends.is_empty()
                        && let Some(tx) = loaded.take()
                    {
                        let _ = tx.send(());
                    }
                }
                match polled {
                    None => {}
                    Some(Err(error)) => tracing::warn!(%error, "Reading lookup topics."),
                    Some(Ok(message)) => {
                        let Some((table, label)) = by_topic.get(message.topic()) else {
                            continue;
                        };
                        let header = |name: &str| {
                            use rdkafka::message::Headers;
                            message.headers().and_then(|h| {
                                h.iter()
                                    .find(|h| h.key == name)
                                    .and_then(|h| h.value)
                                    .and_then(|v| std::str::from_utf8(v).ok())
                            })
                        };
                        let decoded = handle.block_on(decoder.decode(
                            message.payload(),
                            header(oda_cdc_core::event::headers::CONTENT_TYPE),
                            header(oda_cdc_core::event::headers::ENTITY),
                        ));
                        let key = message.key().and_then(|k| std::str::from_utf8(k).ok());
                        match decoded {
                            Ok(event) => shared.apply(table, label, key, event.as_ref()),
                            Err(error) => {
                                tracing::warn!(table, %error, "Lookup record skipped.");
                            }
                        }
                    }
                }
            }
        })
        .map_err(|_| KafkaError::Canceled)?;
    let _ = loaded_rx.await;
    tracing::info!(labels = tables.len(), "Lookup tables loaded.");
    Ok(tables)
}
