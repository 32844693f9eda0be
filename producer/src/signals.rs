//! The signals topic (contract.md#topics): how `oda-producer snapshot` and `rewind`
//! ask a running service for work, and how the service reports progress.
//!
//! Requests are plain records; progress records are written inside the
//! transactions that commit the work they report, so a reader using
//! `read_committed` never sees progress that could still be rolled back.

use std::collections::HashMap;
use std::time::Duration;

use oda_cdc_core::config::KafkaSettings;
use oda_cdc_core::kafka::LogContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// One record of the signals topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Signal {
    /// Re-read these entities (all rows, or those changed since a local
    /// time) and publish every row as `r`.
    Backfill {
        id: String,
        entities: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<String>,
    },
    /// Move one entity's cursor to a local time.
    Rewind {
        id: String,
        entity: String,
        to: String,
    },
    /// Work done for a request (written by the service).
    Progress {
        id: String,
        entity: String,
        /// Rows read so far.
        read: u64,
        /// Ids in the ranges still to read, an estimate.
        remaining: u64,
        done: bool,
    },
}

impl Signal {
    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// What a worker is asked to do between its polls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Backfill { id: String, since: Option<String> },
    Rewind { id: String, to: String },
}

/// The consumer group the service reads requests with: its members show
/// that a service is running, and its partition is the lease
/// ([`crate::lease`]).
pub(crate) fn group(transactional_id: &str) -> String {
    format!("{transactional_id}-signals")
}

/// Whether a service with this identity is running (its group has members).
pub(crate) fn service_running(
    kafka: &KafkaSettings,
    transactional_id: &str,
) -> anyhow::Result<bool> {
    let consumer: BaseConsumer<LogContext> =
        kafka.client_config().create_with_context(LogContext)?;
    let groups =
        consumer.fetch_group_list(Some(&group(transactional_id)), Duration::from_secs(10))?;
    Ok(groups.groups().iter().any(|g| !g.members().is_empty()))
}

/// Hands a request to the entity workers it names.
pub(crate) async fn dispatch(signal: Signal, workers: &HashMap<String, mpsc::Sender<Command>>) {
    match signal {
        Signal::Backfill {
            id,
            entities,
            since,
        } => {
            for entity in entities {
                match workers.get(&entity) {
                    Some(worker) => {
                        let command = Command::Backfill {
                            id: id.clone(),
                            since: since.clone(),
                        };
                        let _ = worker.send(command).await;
                        tracing::info!(%id, entity, "Backfill requested.");
                    }
                    None => {
                        tracing::warn!(%id, entity, "Backfill of an entity this service does not capture; ignored.")
                    }
                }
            }
        }
        Signal::Rewind { id, entity, to } => match workers.get(&entity) {
            Some(worker) => {
                let _ = worker.send(Command::Rewind { id, to }).await;
            }
            None => {
                tracing::warn!(%id, entity, "Rewind of an entity this service does not capture; ignored.")
            }
        },
        Signal::Progress { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_read_as_tagged_json() {
        let backfill = Signal::Backfill {
            id: "b1".into(),
            entities: vec!["Sag".into(), "Aktør".into()],
            since: None,
        };
        let text = String::from_utf8(backfill.to_json()).expect("utf8");
        assert_eq!(
            text,
            r#"{"type":"backfill","id":"b1","entities":["Sag","Aktør"]}"#
        );
        let back: Signal = serde_json::from_str(&text).expect("json");
        assert_eq!(back, backfill);
        let progress: Signal = serde_json::from_str(
            r#"{"type":"progress","id":"b1","entity":"Sag","read":10,"remaining":5,"done":false}"#,
        )
        .expect("json");
        assert!(matches!(progress, Signal::Progress { read: 10, .. }));
    }
}
