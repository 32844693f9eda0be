//! Reading topics outside any group to their end: the producer's
//! checkpoints and state at start, a processor's tables (read to the end
//! before the first record, then followed) and its changelog (read to the
//! end when it takes a partition).
//!
//! All need a reader of assigned partitions that knows when it has caught
//! up with the end each partition had when it started. Positions step over
//! transaction markers and aborted records, which a `read_committed`
//! reader never receives, so "caught up" compares positions with the high
//! watermarks seen at the start: a writer that keeps a transaction open
//! all the time (a producer polling every few hundred milliseconds) never
//! lets the reader see an end-of-partition, but each of its transactions
//! ends, and the position then passes the old watermark.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaSettings;
use crate::kafka::LogContext;
use crate::shutdown::CancellationToken;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a follower looks for table topics created since it started.
const NEW_TOPICS_EVERY: Duration = Duration::from_secs(30);

/// Why a reader stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("not caught up with {0} after {1:?} (an open transaction that does not end?)")]
    Stalled(String, Duration),
    #[error("stopped before catching up")]
    Cancelled,
}

/// A reader of assigned partitions (no group, nothing committed).
pub struct TopicReader {
    consumer: BaseConsumer<LogContext>,
    /// Partitions not caught up yet, with the end to reach.
    ends: HashMap<(String, i32), i64>,
    /// Whole topics wanted: while following, ones created later (a
    /// processor started before the producer made its topics) are added.
    wanted: Vec<String>,
    /// Every partition assigned so far.
    assigned: Vec<(String, i32)>,
    /// Where each assigned partition's reading began (a real offset): the
    /// position of one the reader never received anything from.
    starts: HashMap<(String, i32), i64>,
}

impl std::fmt::Debug for TopicReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicReader")
            .field("behind", &self.ends.len())
            .finish()
    }
}

impl TopicReader {
    /// Reads `partitions` from the given offsets; each one's end is its
    /// high watermark now. `client` names the reader in the broker's logs.
    pub fn assign(
        kafka: &KafkaSettings,
        client: &str,
        partitions: &[(String, i32, Offset)],
    ) -> Result<Self, KafkaError> {
        let consumer: BaseConsumer<LogContext> = kafka
            .consumer_config(client)
            .create_with_context(LogContext)?;
        let mut assignment = TopicPartitionList::new();
        let mut ends = HashMap::new();
        let mut starts = HashMap::new();
        for (topic, partition, start) in partitions {
            let (low, high) = consumer.fetch_watermarks(topic, *partition, METADATA_TIMEOUT)?;
            assignment.add_partition_offset(topic, *partition, *start)?;
            let from = match start {
                Offset::Offset(at) => (*at).max(low),
                _ => low,
            };
            if high > from {
                ends.insert((topic.clone(), *partition), high);
            }
            starts.insert((topic.clone(), *partition), from.min(high));
        }
        consumer.assign(&assignment)?;
        Ok(Self {
            consumer,
            ends,
            starts,
            wanted: Vec::new(),
            assigned: partitions.iter().map(|(t, p, _)| (t.clone(), *p)).collect(),
        })
    }

    /// Every partition of those `topics` that exist, from the beginning.
    pub fn whole_topics(
        kafka: &KafkaSettings,
        client: &str,
        topics: &[String],
    ) -> Result<Self, KafkaError> {
        let probe: BaseConsumer<LogContext> = kafka
            .consumer_config(client)
            .create_with_context(LogContext)?;
        let partitions: Vec<(String, i32, Offset)> = existing_partitions(&probe, topics)?
            .into_iter()
            .map(|(topic, partition)| (topic, partition, Offset::Beginning))
            .collect();
        let mut reader = Self::assign(kafka, client, &partitions)?;
        reader.wanted = topics.to_vec();
        Ok(reader)
    }

    /// Adds, from their beginning, partitions of wanted topics that did
    /// not exist when the reader started.
    fn add_new_partitions(&mut self) -> Result<usize, KafkaError> {
        if self.wanted.is_empty() {
            return Ok(0);
        }
        let fresh: Vec<(String, i32)> = existing_partitions(&self.consumer, &self.wanted)?
            .into_iter()
            .filter(|tp| !self.assigned.contains(tp))
            .collect();
        if fresh.is_empty() {
            return Ok(0);
        }
        // Re-assigning keeps the others where they are: at their position.
        let positions = self.consumer.position()?;
        let mut assignment = TopicPartitionList::new();
        for (topic, partition) in &self.assigned {
            let at = positions
                .find_partition(topic, *partition)
                .map_or(Offset::Beginning, |p| match p.offset() {
                    Offset::Offset(at) => Offset::Offset(at),
                    _ => Offset::Beginning,
                });
            assignment.add_partition_offset(topic, *partition, at)?;
        }
        for (topic, partition) in &fresh {
            assignment.add_partition_offset(topic, *partition, Offset::Beginning)?;
        }
        self.consumer.assign(&assignment)?;
        self.starts.extend(fresh.iter().map(|tp| (tp.clone(), 0)));
        self.assigned.extend(fresh.iter().cloned());
        Ok(fresh.len())
    }

    /// Whether every partition reached the end it had at the start.
    pub fn caught_up(&mut self) -> bool {
        if self.ends.is_empty() {
            return true;
        }
        if let Ok(positions) = self.consumer.position() {
            self.ends.retain(|(topic, partition), end| {
                positions
                    .find_partition(topic, *partition)
                    .and_then(|p| p.offset().to_raw())
                    .is_none_or(|at| at < *end)
            });
        }
        self.ends.is_empty()
    }

    /// One poll; a message goes to `on_message`.
    pub fn poll(&self, timeout: Duration, on_message: &mut impl FnMut(&BorrowedMessage<'_>)) {
        match self.consumer.poll(timeout) {
            None => {}
            Some(Err(error)) => tracing::warn!(%error, "Reading a table topic."),
            Some(Ok(message)) => on_message(&message),
        }
    }

    /// Blocks until caught up; fails after `patience` without a record
    /// (a transaction left open by a dead writer ends within the
    /// transaction timeout, so a patience above it only fails on real
    /// trouble; a long read that makes progress never does).
    pub fn read_to_end(
        &mut self,
        patience: Duration,
        cancel: &CancellationToken,
        mut on_message: impl FnMut(&BorrowedMessage<'_>),
    ) -> Result<(), ReadError> {
        let mut progressed = Instant::now();
        let mut polls = 0u32;
        loop {
            if cancel.is_cancelled() {
                return Err(ReadError::Cancelled);
            }
            // Asking for positions costs a lock round; every 1,000 records
            // or on an idle poll is often enough.
            if polls.is_multiple_of(1_000) && self.caught_up() {
                return Ok(());
            }
            if progressed.elapsed() > patience {
                let behind = self
                    .ends
                    .keys()
                    .map(|(t, p)| format!("{t}[{p}]"))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(ReadError::Stalled(behind, patience));
            }
            let mut got = false;
            self.poll(Duration::from_millis(100), &mut |m| {
                got = true;
                on_message(m);
            });
            if got {
                progressed = Instant::now();
            }
            polls = if got { polls + 1 } else { 0 };
        }
    }

    /// Where the reader stands in each assigned partition: a real offset
    /// always (a partition it never received anything from stands where
    /// its reading began).
    pub fn positions(&self) -> Result<HashMap<(String, i32), i64>, KafkaError> {
        let mut positions = self.starts.clone();
        for e in self.consumer.position()?.elements() {
            if let Offset::Offset(at) = e.offset()
                && at >= 0
            {
                positions.insert((e.topic().to_owned(), e.partition()), at);
            }
        }
        Ok(positions)
    }

    /// Reads to the end, then keeps reading on a thread of its own until
    /// `stop`; returns once caught up (or when the thread ends early).
    pub async fn follow(
        mut self,
        name: &str,
        stop: CancellationToken,
        mut on_message: impl FnMut(&BorrowedMessage<'_>) + Send + 'static,
    ) -> Result<(), KafkaError> {
        let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut loaded = Some(loaded_tx);
                let mut polls = 0u32;
                let mut looked = Instant::now();
                while !stop.is_cancelled() {
                    if looked.elapsed() >= NEW_TOPICS_EVERY {
                        looked = Instant::now();
                        match self.add_new_partitions() {
                            Ok(0) => {}
                            Ok(added) => tracing::info!(added, "Following new table partitions."),
                            Err(error) => tracing::warn!(%error, "Looking for new table topics."),
                        }
                    }
                    let mut got = false;
                    self.poll(Duration::from_millis(200), &mut |m| {
                        got = true;
                        on_message(m);
                    });
                    polls = if got { polls + 1 } else { 0 };
                    if loaded.is_some()
                        && polls.is_multiple_of(1_000)
                        && self.caught_up()
                        && let Some(tx) = loaded.take()
                    {
                        let _ = tx.send(());
                    }
                }
            })
            .map_err(|_| KafkaError::Canceled)?;
        let _ = loaded_rx.await;
        Ok(())
    }
}

/// The partitions of those `topics` that exist.
fn existing_partitions(
    consumer: &BaseConsumer<LogContext>,
    topics: &[String],
) -> Result<Vec<(String, i32)>, KafkaError> {
    let metadata = consumer.fetch_metadata(None, METADATA_TIMEOUT)?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| topics.iter().any(|name| name == t.name()))
        .flat_map(|t| t.partitions().iter().map(|p| (t.name().to_owned(), p.id())))
        .collect())
}

/// The message key as text.
pub fn key_text<'a>(message: &'a BorrowedMessage<'_>) -> Option<&'a str> {
    message.key().and_then(|k| std::str::from_utf8(k).ok())
}
