//! State a processor keeps per partition, backed by a compacted changelog
//! topic with the same partition numbers (as Kafka Streams keeps its
//! stores). Every change goes to the changelog in the transaction of the
//! batch that made it, so the changelog and the group's offsets always
//! agree; a partition's next owner rebuilds its state from the changelog,
//! never from the inputs.
//!
//! The runner hands over the assignment before the first record of it
//! ([`crate::Processor::assigned`]): partitions gone are dropped, new ones
//! are read from the start of their changelog partition, and ones kept are
//! read on from the offset after this instance's own last write (reported
//! by [`crate::Processor::committed`]), which picks up whatever another
//! owner wrote meanwhile.
//!
//! Exactly-once delivery is what makes this sound: there an instance that
//! lost its partitions without noticing is fenced when it commits. Under
//! at-least-once, such a zombie's late changelog writes can land after the
//! new owner's and win the next restore (a lost update, not a duplicate).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use oda_cdc_core::config::KafkaSettings;
use oda_cdc_core::kafka::{LogContext, partitions};
use oda_cdc_core::shutdown::CancellationToken;
use rdkafka::Offset;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;

use crate::runner::processor::Output;
use oda_cdc_core::kafka::TopicReader;
use oda_cdc_core::kafka::reader::key_text;

/// How long a restore may wait for a changelog's end: longer than the
/// transaction timeout, within which a dead writer's transaction ends.
const RESTORE_PATIENCE: Duration = Duration::from_secs(120);

/// Why a changelog record could not be applied.
#[derive(Debug, thiserror::Error)]
#[error("changelog record `{key}`: {reason}")]
pub struct BadChange {
    pub key: String,
    pub reason: String,
}

/// The state of one partition, rebuilt record by record from its changelog.
pub trait PartitionState: Default + Send + 'static {
    /// Applies one changelog record (`value` `None`: a tombstone).
    fn restore(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), BadChange>;
}

/// The partitions this instance owns and their state.
#[derive(Debug)]
pub struct ChangelogStore<S> {
    topic: String,
    kafka: KafkaSettings,
    shutdown: CancellationToken,
    owned: HashMap<i32, S>,
    /// Per owned partition, the changelog offset up to which `owned`
    /// holds everything.
    next: HashMap<i32, i64>,
}

impl<S: PartitionState> ChangelogStore<S> {
    pub fn new(
        kafka: &KafkaSettings,
        topic: impl Into<String>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            topic: topic.into(),
            kafka: kafka.clone(),
            shutdown,
            owned: HashMap::new(),
            next: HashMap::new(),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn get(&self, partition: i32) -> Option<&S> {
        self.owned.get(&partition)
    }

    pub fn get_mut(&mut self, partition: i32) -> Option<&mut S> {
        self.owned.get_mut(&partition)
    }

    pub fn states(&self) -> impl Iterator<Item = &S> {
        self.owned.values()
    }

    /// Owned partitions and their state.
    pub fn iter(&self) -> impl Iterator<Item = (i32, &S)> {
        self.owned.iter().map(|(p, s)| (*p, s))
    }

    /// A changelog record for partition `partition`.
    pub fn record(&self, partition: i32, key: String, value: Option<Vec<u8>>) -> Output {
        Output {
            topic: Some(self.topic.clone()),
            partition: Some(partition),
            key: Some(key),
            value,
            headers: Vec::new(),
        }
    }

    /// Owns exactly `partitions` from now on: drops the others, rebuilds
    /// new ones from the start and brings kept ones up to date.
    pub async fn assign(&mut self, partitions: BTreeSet<i32>) -> anyhow::Result<()> {
        self.owned.retain(|p, _| partitions.contains(p));
        self.next.retain(|p, _| partitions.contains(p));
        let plan: Vec<(String, i32, Offset)> = partitions
            .iter()
            .map(|&p| {
                let from = self
                    .next
                    .get(&p)
                    .map_or(Offset::Beginning, |&at| Offset::Offset(at));
                (self.topic.clone(), p, from)
            })
            .collect();
        let mut states: HashMap<i32, S> = partitions
            .iter()
            .map(|&p| (p, self.owned.remove(&p).unwrap_or_default()))
            .collect();
        let kafka = self.kafka.clone();
        let cancel = self.shutdown.clone();
        let client = format!("{}-restore", self.topic);
        let started = Instant::now();
        let (states, positions, records) = tokio::task::spawn_blocking(move || {
            let mut reader = TopicReader::assign(&kafka, &client, &plan)?;
            let mut records = 0u64;
            let mut bad = None;
            reader.read_to_end(RESTORE_PATIENCE, &cancel, |message| {
                records += 1;
                let (Some(state), Some(key)) =
                    (states.get_mut(&message.partition()), key_text(message))
                else {
                    return;
                };
                if let Err(error) = state.restore(key, message.payload()) {
                    bad.get_or_insert(error);
                }
            })?;
            if let Some(error) = bad {
                anyhow::bail!(error);
            }
            let positions = reader.positions()?;
            anyhow::Ok((states, positions, records))
        })
        .await
        .context("the restore thread")??;
        self.owned.extend(states);
        self.next
            .extend(positions.into_iter().map(|((_, p), at)| (p, at)));
        tracing::info!(
            changelog = %self.topic,
            partitions = ?partitions,
            records,
            elapsed = ?started.elapsed(),
            "State restored from the changelog."
        );
        Ok(())
    }

    /// Notes where this instance's committed writes ended.
    pub fn committed(&mut self, written: &HashMap<(String, i32), i64>) {
        for ((topic, partition), last) in written {
            if *topic == self.topic {
                self.next.insert(*partition, last + 1);
            }
        }
    }
}

/// The partition count of `topic` (which must exist).
pub fn partition_count(kafka: &KafkaSettings, topic: &str) -> anyhow::Result<i32> {
    let probe: BaseConsumer<LogContext> = kafka
        .consumer_config("oda-cdc-metadata")
        .create_with_context(LogContext)?;
    let count = partitions(&probe, topic, Duration::from_secs(10))?.len();
    anyhow::ensure!(count > 0, "topic {topic} has no partitions");
    Ok(i32::try_from(count)?)
}
