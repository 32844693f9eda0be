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

use dashmap::DashMap;
use oda_cdc_core::config::KafkaSettings;
use oda_cdc_core::shutdown::CancellationToken;
use oda_model::entity::{EdmType, EntitySet, entity_sets};
use oda_model::event::ChangeEvent;
use oda_model::topics::Topics;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;

use crate::runner::decode::Decoder;
use crate::runner::follow::decode_blocking;
use oda_cdc_core::kafka::TopicReader;
use oda_cdc_core::kafka::reader::key_text;

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
    topics: &Topics,
    decoder: Arc<Decoder>,
    shutdown: CancellationToken,
) -> Result<Tables, KafkaError> {
    let tables = Tables::default();
    let by_topic: HashMap<String, (String, String)> = lookup_sets()
        .into_iter()
        .map(|(table, label)| (topics.entity(&table), (table, label)))
        .collect();
    let names: Vec<String> = by_topic.keys().cloned().collect();
    let reader = TopicReader::whole_topics(kafka, "oda-normalize-lookups", &names)?;
    let runtime = tokio::runtime::Handle::current();
    let shared = tables.clone();
    reader
        .follow("lookup-tables", shutdown, move |message| {
            let Some((table, label)) = by_topic.get(message.topic()) else {
                return;
            };
            match decode_blocking(&runtime, &decoder, message) {
                Ok(event) => shared.apply(table, label, key_text(message), event.as_ref()),
                Err(error) => tracing::warn!(table, %error, "Lookup record skipped."),
            }
        })
        .await?;
    if tables.is_empty() {
        tracing::warn!("The lookup topics hold nothing yet; ids stay unresolved until they do.");
    }
    tracing::info!(labels = tables.len(), "Lookup tables loaded.");
    Ok(tables)
}
