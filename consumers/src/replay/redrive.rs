//! `oda-replay dlq redrive`: consumer dead letters back on their original
//! topics, where their processor reads them again (contract.md#dead-letters).
//!
//! - Only consumer letters: the producer's own (`dlq.processor =
//!   oda-producer`) hold raw source JSON; a backfill republishes those.
//! - Each letter once: the replay log keeps, per processor, how far the
//!   dead-letter topic has been redriven.
//! - Never an old state over a new one: a letter whose key has a later
//!   record on its original partition is superseded (the later record was
//!   processed in its place) and is not redriven.
//! - Only letters that hold their record: one whose value was too large
//!   for the dead-letter topic (`dlq.value.omitted`) is counted, not
//!   redriven.
//! - Headers do not grow: the original headers go back, the `dlq.*` ones
//!   do not, except `dlq.attempts`, so a record that fails again is
//!   dead-lettered with its attempts counted on.
//!
//! The redriven records and the replay-log entry are written in one
//! transaction.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use anyhow::Context as _;
use oda_cdc_core::config::KafkaSettings;
use oda_cdc_core::kafka::{LogContext, partitions};
use oda_cdc_core::progress::Progress;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use super::{Cluster, TIMEOUT, log};
use oda_cdc_core::dead_letter::headers as dlq;

/// The producer's name in `dlq.processor`: its letters are not redriven.
const PRODUCER: &str = "oda-producer";

/// One dead letter as read.
#[derive(Debug, Clone)]
struct Letter {
    dlq_partition: i32,
    dlq_offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
}

impl Letter {
    fn header(&self, name: &str) -> Option<&str> {
        oda_cdc_core::dead_letter::header_text(&self.headers, name)
    }
}

/// What a redrive found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Letters put back (or, in a dry run, that would be), per original topic.
    pub redriven: BTreeMap<String, u64>,
    /// Letters whose key has a later record on its topic.
    pub superseded: u64,
    /// The producer's letters, never redriven.
    pub producer_letters: u64,
    /// Letters of this processor redriven before.
    pub already: u64,
    /// Letters that do not hold their record (`dlq.value.omitted`: it was
    /// larger than the dead-letter topic takes); never redriven.
    pub without_value: u64,
    pub executed: bool,
}

impl Report {
    pub fn total(&self) -> u64 {
        self.redriven.values().sum()
    }

    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (topic, n) in &self.redriven {
            out.push_str(&format!("{topic:<40} {n:>8}\n"));
        }
        out.push_str(&format!(
            "{} {} letter(s); {} superseded by a later record, {} redriven before, {} from oda-producer (backfill those instead).\n",
            if self.executed { "Redriven:" } else { "Dry run: would redrive" },
            self.total(),
            self.superseded,
            self.already,
            self.producer_letters
        ));
        if self.without_value > 0 {
            out.push_str(&format!(
                "{} letter(s) without their record (dlq.value.omitted): read each at its dlq.original.* position.\n",
                self.without_value
            ));
        }
        if !self.executed && self.total() > 0 {
            out.push_str("Add --execute to put them back.\n");
        }
        out
    }
}

/// Redrives the letters of `processor` (every consumer processor if
/// `None`) found on the dead-letter topic `dlq_topic`.
pub fn redrive(
    cluster: Cluster<'_>,
    processor: Option<&str>,
    execute: bool,
) -> anyhow::Result<Report> {
    let (kafka, dlq_topic) = (cluster.kafka, cluster.topics.dlq());
    // How far each processor's letters were redriven, per DLQ partition.
    let mut done: HashMap<String, HashMap<i32, i64>> = HashMap::new();
    for entry in log::read(cluster)?
        .iter()
        .filter(|e| e.command == "dlq-redrive")
    {
        if let Some(map) = entry.details["next"].as_object() {
            for (name, partitions) in map {
                let slot = done.entry(name.clone()).or_default();
                for (p, next) in partitions.as_object().into_iter().flatten() {
                    if let (Ok(p), Some(next)) = (p.parse::<i32>(), next.as_i64()) {
                        let at = slot.entry(p).or_insert(next);
                        *at = (*at).max(next);
                    }
                }
            }
        }
    }

    let letters = read_all(kafka, dlq_topic)?;
    let mut report = Report {
        executed: execute,
        ..Report::default()
    };
    let mut chosen = Vec::new();
    let mut next: HashMap<String, HashMap<i32, i64>> = done.clone();
    for letter in letters {
        let Some(name) = letter.header(dlq::PROCESSOR).map(str::to_owned) else {
            continue;
        };
        if name == PRODUCER {
            report.producer_letters += 1;
            continue;
        }
        if processor.is_some_and(|p| p != name) {
            continue;
        }
        if letter.header(dlq::VALUE_OMITTED).is_some() {
            // Put back without its value, it would be a tombstone.
            report.without_value += 1;
            continue;
        }
        let redriven_to = done
            .get(&name)
            .and_then(|m| m.get(&letter.dlq_partition))
            .copied()
            .unwrap_or(0);
        if letter.dlq_offset < redriven_to {
            report.already += 1;
            continue;
        }
        let slot = next.entry(name).or_default();
        slot.insert(letter.dlq_partition, letter.dlq_offset + 1);
        chosen.push(letter);
    }

    // Drop letters superseded by a later record of the same key.
    let later = later_keys(kafka, &chosen)?;
    chosen.retain(|letter| {
        let superseded = match (
            letter.header(dlq::ORIGINAL_TOPIC),
            letter
                .header(dlq::ORIGINAL_PARTITION)
                .and_then(|p| p.parse::<i32>().ok()),
            letter
                .header(dlq::ORIGINAL_OFFSET)
                .and_then(|o| o.parse::<i64>().ok()),
        ) {
            (Some(topic), Some(partition), Some(offset)) => later
                .get(&(topic.to_owned(), partition))
                .and_then(|keys| keys.get(&letter.key))
                .is_some_and(|last| *last > offset),
            _ => false,
        };
        if superseded {
            report.superseded += 1;
        }
        !superseded
    });
    for letter in &chosen {
        let topic = letter
            .header(dlq::ORIGINAL_TOPIC)
            .unwrap_or_default()
            .to_owned();
        *report.redriven.entry(topic).or_default() += 1;
    }
    if !execute || (chosen.is_empty() && next == done) {
        return Ok(report);
    }

    let producer: ThreadedProducer<LogContext> = kafka
        .producer_config(Some(&format!("oda-replay-redrive-{dlq_topic}")))
        .create_with_context(LogContext)
        .context("creating the producer")?;
    producer.init_transactions(Timeout::After(TIMEOUT))?;
    producer.begin_transaction()?;
    let progress = Progress::new(&[dlq_topic.to_owned()], "letters");
    let log_topic = cluster.topics.replay_log();
    let entry = log::Entry::new(
        "dlq-redrive",
        chosen.len() as u64,
        json!({
            "dlq_topic": dlq_topic,
            "processor": processor,
            "topics": report.redriven,
            "superseded": report.superseded,
            "next": next
                .iter()
                .map(|(name, parts)| {
                    let parts: BTreeMap<String, i64> =
                        parts.iter().map(|(p, o)| (p.to_string(), *o)).collect();
                    (name.clone(), parts)
                })
                .collect::<BTreeMap<_, _>>(),
        }),
    );
    for (n, letter) in chosen.iter().enumerate() {
        let topic = letter.header(dlq::ORIGINAL_TOPIC).unwrap_or_default();
        let mut headers = OwnedHeaders::new();
        for (name, value) in &letter.headers {
            if name.starts_with(dlq::PREFIX) && name != dlq::ATTEMPTS {
                continue;
            }
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_slice()),
            });
        }
        headers = headers.insert(Header {
            key: super::copy::REPLAY_HEADER,
            value: Some(entry.id.as_bytes()),
        });
        let mut record = BaseRecord::to(topic).headers(headers);
        if let Some(key) = &letter.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &letter.value {
            record = record.payload(value.as_slice());
        }
        producer.send(record).map_err(|(e, _)| e)?;
        progress.update(
            dlq_topic,
            n as u64 + 1,
            (chosen.len() - n - 1) as u64,
            false,
        );
    }
    let payload = entry.to_json();
    producer
        .send(
            BaseRecord::to(&log_topic)
                .key("dlq-redrive")
                .payload(&payload),
        )
        .map_err(|(e, _)| e)?;
    producer.commit_transaction(Timeout::After(TIMEOUT * 4))?;
    progress.update(dlq_topic, chosen.len() as u64, 0, true);
    Ok(report)
}

/// Every record of the dead-letter topic, as of now.
fn read_all(kafka: &KafkaSettings, topic: &str) -> anyhow::Result<Vec<Letter>> {
    let mut letters = Vec::new();
    scan(kafka, topic, None, |partition, offset, message| {
        letters.push(Letter {
            dlq_partition: partition,
            dlq_offset: offset,
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers: oda_cdc_core::dead_letter::owned_headers(message),
        });
    })?;
    Ok(letters)
}

type LaterKeys = HashMap<(String, i32), HashMap<Option<Vec<u8>>, i64>>;

/// For each original partition of the letters: the last offset of every
/// key from the earliest letter's offset on.
fn later_keys(kafka: &KafkaSettings, letters: &[Letter]) -> anyhow::Result<LaterKeys> {
    let mut from: HashMap<(String, i32), i64> = HashMap::new();
    for letter in letters {
        if let (Some(topic), Some(partition), Some(offset)) = (
            letter.header(dlq::ORIGINAL_TOPIC),
            letter
                .header(dlq::ORIGINAL_PARTITION)
                .and_then(|p| p.parse().ok()),
            letter
                .header(dlq::ORIGINAL_OFFSET)
                .and_then(|o| o.parse::<i64>().ok()),
        ) {
            let at = from.entry((topic.to_owned(), partition)).or_insert(offset);
            *at = (*at).min(offset);
        }
    }
    let mut later: LaterKeys = HashMap::new();
    let topics: HashSet<String> = from.keys().map(|(t, _)| t.clone()).collect();
    for topic in topics {
        let starts: HashMap<i32, i64> = from
            .iter()
            .filter(|((t, _), _)| *t == topic)
            .map(|((_, p), o)| (*p, *o))
            .collect();
        scan(
            kafka,
            &topic,
            Some(&starts),
            |partition, offset, message| {
                later
                    .entry((topic.clone(), partition))
                    .or_default()
                    .insert(message.key().map(<[u8]>::to_vec), offset);
            },
        )?;
    }
    Ok(later)
}

/// Reads `topic` (only `starts`' partitions from those offsets, or all
/// from the beginning) to the end it has now, read_committed.
fn scan(
    kafka: &KafkaSettings,
    topic: &str,
    starts: Option<&HashMap<i32, i64>>,
    mut each: impl FnMut(i32, i64, &rdkafka::message::BorrowedMessage<'_>),
) -> anyhow::Result<()> {
    let consumer: BaseConsumer<LogContext> = kafka
        .consumer_config("oda-replay-scan")
        .create_with_context(LogContext)?;
    let partitions = partitions(&consumer, topic, TIMEOUT)?;
    let mut assignment = TopicPartitionList::new();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for partition in partitions {
        let start = match starts {
            Some(map) => match map.get(&partition) {
                Some(o) => Offset::Offset(*o),
                None => continue,
            },
            None => Offset::Beginning,
        };
        let (low, high) = consumer.fetch_watermarks(topic, partition, TIMEOUT)?;
        if high > low {
            assignment.add_partition_offset(topic, partition, start)?;
            ends.insert(partition, high);
        }
    }
    if ends.is_empty() {
        return Ok(());
    }
    consumer.assign(&assignment)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !ends.is_empty() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "reading {topic} did not reach its end in 120 s"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(message) => {
                let message = message?;
                each(message.partition(), message.offset(), &message);
            }
            None => {
                if let Ok(positions) = consumer.position() {
                    ends.retain(|p, end| {
                        positions
                            .find_partition(topic, *p)
                            .and_then(|e| e.offset().to_raw())
                            .is_none_or(|at| at < *end)
                    });
                }
            }
        }
    }
    Ok(())
}
