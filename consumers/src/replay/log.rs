//! The replay log (`<prefix>-replay-log`, contract.md#replay-log): one JSON record per
//! executed replay, keyed by the command, kept for a long time.

use std::time::Duration;

use oda_cdc_core::config::TopicClass;
use oda_cdc_core::kafka::{LogContext, TopicSpec};
use oda_model::topics::Topics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Cluster, TIMEOUT};

/// Retention of the replay log: a year of who replayed what.
const RETENTION_DAYS: u64 = 365;

/// One executed replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// `reset`, `copy` or `dlq-redrive`.
    pub command: String,
    /// A unique id, also stamped on copied and redriven records.
    pub id: String,
    /// RFC 3339, UTC.
    pub at: String,
    /// Records the replay moved (reset: records to be processed again).
    pub records: u64,
    /// The command's own details (group, topics, times, per-partition numbers).
    pub details: Value,
}

impl Entry {
    pub fn new(command: &str, records: u64, details: Value) -> Self {
        let now = chrono::Utc::now();
        Self {
            command: command.to_owned(),
            id: format!("{command}-{}", now.format("%Y%m%dT%H%M%S%.3fZ")),
            at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            records,
            details,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The topic and its spec.
pub fn spec(topics: &Topics) -> TopicSpec {
    TopicSpec::retained(TopicClass::Internal, topics.replay_log(), RETENTION_DAYS)
        .with_partitions(1)
}

/// Every entry so far, oldest first (the log is small: one record per
/// replay).
pub fn read(cluster: Cluster<'_>) -> anyhow::Result<Vec<Entry>> {
    let (kafka, topic) = (cluster.kafka, cluster.topics.replay_log());
    let consumer: BaseConsumer<LogContext> = kafka
        .consumer_config("oda-replay-log-reader")
        .create_with_context(LogContext)?;
    let (low, high) = match consumer.fetch_watermarks(&topic, 0, TIMEOUT) {
        Ok(marks) => marks,
        Err(_) => return Ok(Vec::new()), // no log yet
    };
    if high <= low {
        return Ok(Vec::new());
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&topic, 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let mut entries = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let position = consumer
            .position()?
            .find_partition(&topic, 0)
            .and_then(|p| p.offset().to_raw())
            .unwrap_or(low);
        if position >= high {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "reading {topic} did not reach its end in 60 s"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message?;
            if let Some(entry) = message
                .payload()
                .and_then(|p| serde_json::from_slice::<Entry>(p).ok())
            {
                entries.push(entry);
            }
        }
    }
    Ok(entries)
}

/// Appends one entry (the topic must exist: the binary creates it at start).
pub fn append(cluster: Cluster<'_>, entry: &Entry) -> anyhow::Result<()> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let (kafka, topic) = (cluster.kafka, cluster.topics.replay_log());
    let producer: BaseProducer<LogContext> = kafka
        .producer_config(None)
        .create_with_context(LogContext)?;
    let payload = entry.to_json();
    producer
        .send(BaseRecord::to(&topic).key(&entry.command).payload(&payload))
        .map_err(|(e, _)| e)?;
    producer.flush(TIMEOUT)?;
    Ok(())
}
