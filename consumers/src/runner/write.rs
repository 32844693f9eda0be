//! Writing a batch: outputs, dead letters and the input offsets, in one
//! transaction (exactly-once) or acknowledged then committed
//! (at-least-once).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use oda_cdc_core::kafka::LogContext;
use oda_cdc_core::kafka::refusal::{self, Refused};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use super::context::RunnerContext;
use super::processor::Processor;
use super::session::fenced_or;
use super::{SessionError, Shared, TRANSACTION_TIMEOUT};

/// The writer of a session, by delivery mode.
pub(super) enum Writer {
    Transactional(FutureProducer<LogContext>),
    Acknowledged(FutureProducer<LogContext>),
}

impl Writer {
    pub(super) fn producer(&self) -> &FutureProducer<LogContext> {
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
pub(super) type Written = HashMap<(String, i32), i64>;

/// Writes a batch's records and moves the group's offsets past it.
pub(super) async fn write(
    shared: &Shared,
    writer: &Writer,
    consumer: &Arc<StreamConsumer<RunnerContext>>,
    outgoing: Vec<Outgoing>,
    offsets: &HashMap<(String, i32), i64>,
) -> Result<Written, SessionError> {
    let mut positions = TopicPartitionList::new();
    for ((topic, partition), offset) in offsets {
        positions.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    let producer = writer.producer().clone();
    match writer {
        Writer::Transactional(_) => {
            let id = shared.transactional_id.as_str();
            let metadata = consumer.group_metadata().ok_or(SessionError::NoGroup)?;
            producer.begin_transaction().map_err(|e| fenced_or(e, id))?;
            let sent = async {
                let written = send_all(&producer, outgoing)
                    .await
                    .map_err(SessionError::Refused)?;
                let tx = producer.clone();
                tokio::task::spawn_blocking(move || {
                    // A tick's batch moves no offsets.
                    if positions.count() > 0 {
                        tx.send_offsets_to_transaction(
                            &positions,
                            &metadata,
                            Timeout::After(TRANSACTION_TIMEOUT),
                        )?;
                    }
                    tx.commit_transaction(Timeout::After(TRANSACTION_TIMEOUT))
                })
                .await
                .map_err(|_| KafkaError::Canceled)?
                .map_err(|e| fenced_or(e, id))?;
                Ok::<_, SessionError>(written)
            }
            .await;
            match sent {
                Ok(written) => Ok(written),
                Err(error) => {
                    let tx = producer.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        tx.abort_transaction(Timeout::After(TRANSACTION_TIMEOUT))
                    })
                    .await;
                    Err(error)
                }
            }
        }
        Writer::Acknowledged(_) => {
            let written = send_all(&producer, outgoing)
                .await
                .map_err(SessionError::Refused)?;
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
    let written = send_all(writer.producer(), outgoing)
        .await
        .map_err(SessionError::Refused)?;
    processor
        .store(offsets)
        .await
        .map_err(SessionError::Store)?;
    let mut positions = TopicPartitionList::new();
    for ((topic, partition), offset) in offsets {
        positions.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    if positions.count() > 0
        && let Err(error) = consumer.commit(&positions, CommitMode::Async)
    {
        tracing::debug!(%error, "Committing the group's offsets (for lag tools) failed.");
    }
    Ok(written)
}

/// Sends every record and waits for every acknowledgement; a failure
/// names its topic (the worst of several, [`refusal::worst`]).
async fn send_all(
    producer: &FutureProducer<LogContext>,
    outgoing: Vec<Outgoing>,
) -> Result<Written, Refused> {
    let mut deliveries = Vec::with_capacity(outgoing.len());
    for record in &outgoing {
        loop {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (name, value) in &record.headers {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value.as_slice()),
                });
            }
            let mut future = FutureRecord::to(&record.topic).headers(headers);
            if let Some(key) = &record.key {
                future = future.key(key.as_slice());
            }
            if let Some(value) = &record.value {
                future = future.payload(value.as_slice());
            }
            if let Some(partition) = record.partition {
                future = future.partition(partition);
            }
            match producer.send_result(future) {
                Ok(delivery) => {
                    deliveries.push((record.topic.as_str(), delivery));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, _)) => {
                    return Err(Refused {
                        topic: record.topic.clone(),
                        error,
                    });
                }
            }
        }
    }
    // Keyed by borrowed names while counting: no allocation per record.
    let mut last: HashMap<(&str, i32), i64> = HashMap::new();
    let mut failed = Vec::new();
    for (topic, delivery) in deliveries {
        let error = match delivery.await {
            Ok(Ok(delivered)) => {
                let at = last.entry((topic, delivered.partition)).or_insert(-1);
                *at = (*at).max(delivered.offset);
                continue;
            }
            Ok(Err((error, _))) => error,
            Err(_) => KafkaError::Canceled,
        };
        failed.push(Refused {
            topic: topic.to_owned(),
            error,
        });
    }
    if let Some(refused) = refusal::worst(failed) {
        return Err(refused);
    }
    Ok(last
        .into_iter()
        .map(|((topic, partition), at)| ((topic.to_owned(), partition), at))
        .collect())
}
