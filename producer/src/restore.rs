//! Reading the checkpoint and state topics back at start: the producer's
//! memory after a restart is exactly what committed transactions hold
//! (never a re-read of the entity topics).

use std::collections::HashMap;
use std::time::Duration;

use oda_cdc_core::config::KafkaSettings;
use oda_cdc_core::kafka::{ReadError, TopicReader};
use oda_cdc_core::shutdown::CancellationToken;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::state::IdState;

/// Why the stored state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("reading {topic}: {source}")]
    Kafka {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("reading {topic}: {reason}")]
    Incomplete { topic: String, reason: String },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// How long a restore waits for the end: longer than the transaction
/// timeout, within which a dead writer's open transaction is aborted.
const RESTORE_PATIENCE: Duration = Duration::from_secs(120);

/// Calls `each(key, value)` for every committed record of `topic`, oldest
/// first per partition, until the end every partition had when asked.
fn read_to_end(
    kafka: &KafkaSettings,
    topic: &str,
    mut each: impl FnMut(&str, Option<&[u8]>) -> Result<(), RestoreError>,
) -> Result<u64, RestoreError> {
    let err = |source: KafkaError| RestoreError::Kafka {
        topic: topic.to_owned(),
        source,
    };
    let mut reader = TopicReader::whole_topics(kafka, "oda-producer-restore", &[topic.to_owned()])
        .map_err(err)?;
    let mut read = 0;
    let mut failed = None;
    reader
        .read_to_end(RESTORE_PATIENCE, &CancellationToken::new(), |message| {
            if failed.is_some() {
                return;
            }
            let key = message
                .key()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            match each(&key, message.payload()) {
                Ok(()) => read += 1,
                Err(error) => failed = Some(error),
            }
        })
        .map_err(|error| match error {
            ReadError::Kafka(source) => err(source),
            other => RestoreError::Incomplete {
                topic: topic.to_owned(),
                reason: other.to_string(),
            },
        })?;
    match failed {
        Some(error) => Err(error),
        None => Ok(read),
    }
}

/// The latest checkpoint of every entity.
pub(crate) fn checkpoints(
    kafka: &KafkaSettings,
    topic: &str,
) -> Result<HashMap<String, Checkpoint>, RestoreError> {
    let mut latest: HashMap<String, Option<Vec<u8>>> = HashMap::new();
    read_to_end(kafka, topic, |key, value| {
        latest.insert(key.to_owned(), value.map(<[u8]>::to_vec));
        Ok(())
    })?;
    let mut checkpoints = HashMap::new();
    for (entity, value) in latest {
        if let Some(bytes) = value {
            checkpoints.insert(entity.clone(), Checkpoint::from_json(&entity, &bytes)?);
        }
    }
    Ok(checkpoints)
}

/// The last published hash of every id.
pub(crate) fn id_state(kafka: &KafkaSettings, topic: &str) -> Result<IdState, RestoreError> {
    let mut state = IdState::new();
    let read = read_to_end(kafka, topic, |key, value| {
        if let Some((entity, id)) = IdState::parse_key(key) {
            match value.and_then(|v| std::str::from_utf8(v).ok()) {
                Some(hash) => state.set(entity, id, hash),
                None => state.remove(entity, id),
            }
        }
        Ok(())
    })?;
    tracing::info!(
        records = read,
        ids = state.total(),
        "Restored per-id state."
    );
    Ok(state)
}
