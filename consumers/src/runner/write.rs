//! Writing a batch: outputs, dead letters and the input offsets, in one
//! transaction (exactly-once) or acknowledged then committed
//! (at-least-once).
//!
//! Records are handed to a [`ThreadedProducer`] whose context keeps the
//! worst refusal and where the records landed ([`WriterContext`]): no
//! future per record. The batch is then settled as a whole, by the commit
//! (which flushes, and fails if any record failed) or by a flush.

use std::collections::HashMap;
use std::sync::Arc;

use oda_cdc_core::kafka::writer::{Failure, explain_failure};
use oda_cdc_core::kafka::{Refused, WriterContext, delivered, hand_over};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use super::context::RunnerContext;
use super::processor::Processor;
use super::session::fenced_or;
use super::{SessionError, Shared, TRANSACTION_TIMEOUT};

/// The session's producer.
pub(super) type RunnerProducer = ThreadedProducer<WriterContext>;

/// The writer of a session, by delivery mode.
pub(super) enum Writer {
    Transactional(RunnerProducer),
    Acknowledged(RunnerProducer),
}

impl Writer {
    pub(super) fn producer(&self) -> &RunnerProducer {
        match self {
            Writer::Transactional(p) | Writer::Acknowledged(p) => p,
        }
    }
}

/// One record to write.
pub(super) struct Outgoing {
    pub(super) topic: String,
    pub(super) partition: Option<i32>,
    pub(super) key: Option<Vec<u8>>,
    pub(super) value: Option<Vec<u8>>,
    pub(super) headers: Vec<(String, Vec<u8>)>,
}

/// Where a batch's records landed: the last offset per topic and partition.
pub(super) type Written = oda_cdc_core::kafka::Landed;

/// Writes a batch's records and moves the group's offsets past it.
pub(super) async fn write(
    shared: &Shared,
    writer: &Writer,
    consumer: &Arc<StreamConsumer<RunnerContext>>,
    outgoing: Vec<Outgoing>,
    offsets: &HashMap<(String, i32), i64>,
) -> Result<Written, SessionError> {
    let positions = positions(offsets)?;
    let producer = writer.producer().clone();
    match writer {
        Writer::Transactional(_) => {
            let id = shared.transactional_id.clone();
            let metadata = consumer.group_metadata().ok_or(SessionError::NoGroup)?;
            producer
                .begin_transaction()
                .map_err(|e| fenced_or(e, &id))?;
            // Failures of earlier, aborted transactions are not this one's.
            let _ = producer.context().take_refusal();
            let _ = producer.context().take_landed();
            let sent = async {
                send_all(&producer, &outgoing, Some(&id)).await?;
                drop(outgoing);
                // The commit then flushes nothing (and so waits for nothing).
                delivered(&producer, TRANSACTION_TIMEOUT).await;
                let tx = producer.clone();
                let id = id.clone();
                tokio::task::spawn_blocking(move || {
                    let done = (|| {
                        // A tick's batch moves no offsets.
                        if positions.count() > 0 {
                            tx.send_offsets_to_transaction(
                                &positions,
                                &metadata,
                                Timeout::After(TRANSACTION_TIMEOUT),
                            )?;
                        }
                        tx.commit_transaction(Timeout::After(TRANSACTION_TIMEOUT))
                    })();
                    match done {
                        Ok(()) => settle(&tx),
                        // Explained before the abort, whose purge fails
                        // every record still queued too.
                        Err(error) => Err(explained(&tx, error, &id)),
                    }
                })
                .await
                .map_err(|_| KafkaError::Canceled)?
            }
            .await;
            if sent.is_err() {
                let tx = producer.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    tx.abort_transaction(Timeout::After(TRANSACTION_TIMEOUT))
                })
                .await;
            }
            sent
        }
        Writer::Acknowledged(_) => {
            let written = acknowledged(&producer, outgoing).await?;
            if positions.count() > 0 {
                let consumer = Arc::clone(consumer);
                tokio::task::spawn_blocking(move || consumer.commit(&positions, CommitMode::Sync))
                    .await
                    .map_err(|_| KafkaError::Canceled)??;
            }
            Ok(written)
        }
    }
}

/// Writes a batch of a processor that stores its own positions: dead
/// letters and outputs acknowledged first, then the processor's store
/// takes the batch with `offsets` in one transaction of its own; the
/// group's offsets follow, only for lag tools (the store's positions are
/// the ones read back).
pub(super) async fn write_then_store<P: Processor>(
    writer: &Writer,
    consumer: &Arc<StreamConsumer<RunnerContext>>,
    processor: &mut P,
    outgoing: Vec<Outgoing>,
    offsets: &HashMap<(String, i32), i64>,
) -> Result<Written, SessionError> {
    let written = acknowledged(writer.producer(), outgoing).await?;
    processor
        .store(offsets)
        .await
        .map_err(SessionError::Store)?;
    let positions = positions(offsets)?;
    if positions.count() > 0
        && let Err(error) = consumer.commit(&positions, CommitMode::Async)
    {
        tracing::debug!(%error, "Committing the group's offsets (for lag tools) failed.");
    }
    Ok(written)
}

/// Sends a batch and waits until every record is acknowledged: where
/// they landed, or the worst refusal.
async fn acknowledged(
    producer: &RunnerProducer,
    outgoing: Vec<Outgoing>,
) -> Result<Written, SessionError> {
    let _ = producer.context().take_landed();
    send_all(producer, &outgoing, None).await?;
    drop(outgoing);
    delivered(producer, DELIVERY_PATIENCE).await;
    let flushed = producer.clone();
    tokio::task::spawn_blocking(move || {
        // Each record ends delivered or failed within `message.timeout.ms`:
        // the flush needs no deadline of its own.
        flushed.flush(Timeout::Never)?;
        Ok::<_, KafkaError>(settle(&flushed))
    })
    .await
    .map_err(|_| KafkaError::Canceled)??
}

fn positions(offsets: &HashMap<(String, i32), i64>) -> Result<TopicPartitionList, KafkaError> {
    let mut positions = TopicPartitionList::new();
    for ((topic, partition), offset) in offsets {
        positions.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    Ok(positions)
}

/// Once a flush or a commit returned: where the batch landed, or the
/// worst of its refused records (blocking, briefly, until the last
/// delivery report has run).
fn settle(producer: &RunnerProducer) -> Result<Written, SessionError> {
    let context = producer.context();
    if !context.wait_reported(REPORT_PATIENCE) {
        return Err(SessionError::Kafka(KafkaError::Canceled));
    }
    match context.take_refusal() {
        Some(refused) => Err(SessionError::Refused(refused)),
        None => Ok(context.take_landed()),
    }
}

/// How long an acknowledged batch is awaited without blocking a thread;
/// past it the flush waits (each record ends within `message.timeout.ms`).
const DELIVERY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(300);

/// How long the reports of a flushed batch may take to run: their queue
/// is empty by then, so anything near this is a stuck polling thread.
const REPORT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// A failed transactional write as the session reports it
/// ([`explain_failure`]: fencing first, then the refused record).
fn explained(producer: &RunnerProducer, error: KafkaError, transactional_id: &str) -> SessionError {
    match explain_failure(producer, error, REPORT_PATIENCE) {
        Failure::Fenced => SessionError::Fenced(transactional_id.to_owned()),
        Failure::Refused(refused) => SessionError::Refused(refused),
        Failure::Other(error) => SessionError::Kafka(error),
    }
}

/// Hands every record to librdkafka. A record refused at hand-over names
/// its topic; in a transaction (`transactional_id`), a send refused
/// because an earlier record failed is explained by that record.
async fn send_all(
    producer: &RunnerProducer,
    outgoing: &[Outgoing],
    transactional_id: Option<&str>,
) -> Result<(), SessionError> {
    for record in outgoing {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (name, value) in &record.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_slice()),
            });
        }
        let mut base: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&record.topic).headers(headers);
        if let Some(key) = &record.key {
            base = base.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            base = base.payload(value.as_slice());
        }
        if let Some(partition) = record.partition {
            base = base.partition(partition);
        }
        if let Err(error) = hand_over(producer, base).await {
            return Err(match transactional_id {
                Some(id) => {
                    let tx = producer.clone();
                    let failure = tokio::task::spawn_blocking(move || {
                        explain_failure(&tx, error, REPORT_PATIENCE)
                    })
                    .await
                    .map_err(|_| KafkaError::Canceled)?;
                    match failure {
                        Failure::Fenced => SessionError::Fenced(id.to_owned()),
                        Failure::Refused(refused) => SessionError::Refused(refused),
                        // Nothing earlier failed: the record itself is refused.
                        Failure::Other(error) => SessionError::Refused(Refused {
                            topic: record.topic.clone(),
                            error,
                        }),
                    }
                }
                None => SessionError::Refused(Refused {
                    topic: record.topic.clone(),
                    error,
                }),
            });
        }
    }
    Ok(())
}
