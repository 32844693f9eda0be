//! Reading the checkpoint and state topics back at start: the producer's
//! memory after a restart is exactly what committed transactions hold
//! (never a re-read of the entity topics).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use oda_cdc_core::config::KafkaSettings;
use oda_cdc_core::kafka::LogContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

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
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// Calls `each(key, value)` for every committed record of `topic`, oldest
/// first per partition, until the end of every partition.
fn read_to_end(
    kafka: &KafkaSettings,
    topic: &str,
    mut each: impl FnMut(&str, Option<&[u8]>) -> Result<(), RestoreError>,
) -> Result<u64, RestoreError> {
    let err = |source: KafkaError| RestoreError::Kafka {
        topic: topic.to_owned(),
        source,
    };
    let mut config = kafka.consumer_config("oda-producer-restore");
    config.set("enable.partition.eof", "true");
    let consumer: BaseConsumer<LogContext> = config.create_with_context(LogContext).map_err(err)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(err)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut assignment = TopicPartitionList::new();
    let mut pending: HashSet<i32> = HashSet::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .map_err(err)?;
        if high > low {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .map_err(err)?;
            pending.insert(partition);
        }
    }
    if pending.is_empty() {
        return Ok(0);
    }
    consumer.assign(&assignment).map_err(err)?;
    let mut read = 0;
    while !pending.is_empty() {
        match consumer.poll(Duration::from_secs(5)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                pending.remove(&partition);
            }
            Some(Err(e)) => return Err(err(e)),
            Some(Ok(message)) => {
                let key = message
                    .key()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                each(&key, message.payload())?;
                read += 1;
            }
        }
    }
    Ok(read)
}

/// The latest checkpoint of every entity.
pub fn checkpoints(
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
pub fn id_state(kafka: &KafkaSettings, topic: &str) -> Result<IdState, RestoreError> {
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
