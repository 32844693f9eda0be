//! `oda-replay copy`: the records of a topic between two times, copied to
//! another topic with their keys, values, headers and timestamps, each
//! marked `oda.replay: <id>`. Written in transactions of
//! [`CHUNK`] records, so a reader with read_committed never sees half a
//! chunk; a copy that dies midway keeps its committed chunks (run again
//! with `--since` after the last copied time to finish it).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context as _, bail};
use oda_cdc_core::kafka::{LogContext, partitions};
use oda_cdc_core::progress::Progress;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use super::Cluster;
use super::{TIMEOUT, log};

/// Records per transaction.
pub const CHUNK: u64 = 10_000;

/// Header marking a copied record with the replay's id.
pub const REPLAY_HEADER: &str = "oda.replay";

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub id: String,
    pub records: u64,
}

/// Copies `from`'s records with timestamps in `[since, until)` to `to`.
pub fn copy(
    cluster: Cluster<'_>,
    from: &str,
    to: &str,
    since: i64,
    until: Option<i64>,
) -> anyhow::Result<Copied> {
    let kafka = cluster.kafka;
    let consumer: BaseConsumer<LogContext> = kafka
        .consumer_config("oda-replay-copy")
        .create_with_context(LogContext)?;
    let partitions = partitions(&consumer, from, TIMEOUT)?;
    if partitions.is_empty() {
        bail!("topic `{from}` does not exist");
    }
    let lookup = |ms: i64| -> anyhow::Result<HashMap<i32, i64>> {
        let mut times = TopicPartitionList::new();
        for p in &partitions {
            times.add_partition_offset(from, *p, Offset::Offset(ms))?;
        }
        let found = consumer.offsets_for_times(times, TIMEOUT)?;
        let mut offsets = HashMap::new();
        for p in &partitions {
            let (_, high) = consumer.fetch_watermarks(from, *p, TIMEOUT)?;
            let at = found
                .find_partition(from, *p)
                .and_then(|e| match e.offset() {
                    Offset::Offset(n) => Some(n),
                    _ => None,
                })
                .unwrap_or(high);
            offsets.insert(*p, at);
        }
        Ok(offsets)
    };
    let starts = lookup(since)?;
    let ends = match until {
        Some(ms) => lookup(ms)?,
        None => lookup(i64::MAX / 2)?, // the end as of now
    };
    let total: u64 = partitions
        .iter()
        .map(|p| (ends[p] - starts[p]).max(0) as u64)
        .sum();
    let entry_id = log::Entry::new("copy", 0, json!({})).id;
    let mut assignment = TopicPartitionList::new();
    let mut open: HashMap<i32, i64> = HashMap::new();
    for p in &partitions {
        if ends[p] > starts[p] {
            assignment.add_partition_offset(from, *p, Offset::Offset(starts[p]))?;
            open.insert(*p, ends[p]);
        }
    }
    let producer: ThreadedProducer<LogContext> = kafka
        .producer_config(Some(&format!("oda-replay-copy-{to}")))
        .create_with_context(LogContext)
        .context("creating the producer")?;
    producer.init_transactions(Timeout::After(TIMEOUT))?;
    let progress = Progress::new(&[from.to_owned()], "records");
    let mut copied = 0u64;
    let mut in_transaction = 0u64;
    if !open.is_empty() {
        consumer.assign(&assignment)?;
        producer.begin_transaction()?;
    }
    let deadline_idle = Duration::from_secs(30);
    let mut idle_since = std::time::Instant::now();
    while !open.is_empty() {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            // Positions step over transaction markers without a message.
            if let Ok(positions) = consumer.position() {
                open.retain(|p, end| {
                    positions
                        .find_partition(from, *p)
                        .and_then(|e| e.offset().to_raw())
                        .is_none_or(|at| at < *end)
                });
            }
            anyhow::ensure!(
                idle_since.elapsed() < deadline_idle,
                "no records from {from} for 30 s before the copy's end"
            );
            continue;
        };
        idle_since = std::time::Instant::now();
        let message = message?;
        let partition = message.partition();
        let Some(end) = open.get(&partition).copied() else {
            continue;
        };
        if message.offset() >= end {
            open.remove(&partition);
            continue;
        }
        let mut headers = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for h in original.iter().filter(|h| h.key != REPLAY_HEADER) {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        headers = headers.insert(Header {
            key: REPLAY_HEADER,
            value: Some(entry_id.as_bytes()),
        });
        let mut record = BaseRecord::to(to).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        if let Some(ms) = message.timestamp().to_millis() {
            record = record.timestamp(ms);
        }
        let mut record = record;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    back,
                )) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((error, _)) => return Err(error.into()),
            }
        }
        copied += 1;
        in_transaction += 1;
        if message.offset() + 1 >= end {
            open.remove(&partition);
        }
        if in_transaction >= CHUNK {
            producer.commit_transaction(Timeout::After(TIMEOUT * 4))?;
            producer.begin_transaction()?;
            in_transaction = 0;
            progress.update(from, copied, total.saturating_sub(copied), false);
        }
    }
    if !assignment.elements().is_empty() {
        producer.commit_transaction(Timeout::After(TIMEOUT * 4))?;
    }
    progress.update(from, copied, 0, true);
    let mut entry = log::Entry::new(
        "copy",
        copied,
        json!({"from": from, "to": to, "since": since, "until": until}),
    );
    entry.id = entry_id.clone();
    log::append(cluster, &entry)?;
    Ok(Copied {
        id: entry_id,
        records: copied,
    })
}
