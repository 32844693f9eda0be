//! The one writer: groups batches from every entity into Kafka
//! transactions, each holding the records, the per-id state and the
//! checkpoints they advance — so a checkpoint is never visible without the
//! records it passes, and a crash loses nothing the cursor claims.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use oda_cdc_core::config::KafkaSettings;
use oda_cdc_core::health::Health;
use oda_cdc_core::kafka::refusal::Refused;
use oda_cdc_core::kafka::writer::{Failure, explain_failure};
use oda_cdc_core::kafka::{StallWatch, WriterContext, delivered, hand_over, is_fenced};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::util::Timeout;
use tokio::sync::{mpsc, oneshot};

use crate::checkpoint::{Checkpoint, Update};
use crate::metrics::Metrics;
use crate::state::IdState;

/// One record to write.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    /// Shared: a worker writes every record to the same few topics.
    pub(crate) topic: Arc<str>,
    pub(crate) key: String,
    /// `None` writes a tombstone.
    pub(crate) payload: Option<Vec<u8>>,
    /// Values borrowed where they are constants (the op, the content type).
    pub(crate) headers: Vec<(&'static str, Cow<'static, str>)>,
}

impl Outgoing {
    /// The record's size as the limits count it (`record_size`), with or
    /// without its payload.
    pub(crate) fn size(&self, with_payload: bool) -> usize {
        let payload = match (&self.payload, with_payload) {
            (Some(p), true) => p.len(),
            _ => 0,
        };
        oda_cdc_core::kafka::record_size(
            self.key.len(),
            payload,
            self.headers
                .iter()
                .map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        )
    }
}

/// What a worker hands over: records, state changes and checkpoint
/// updates that must become visible together.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) entity: String,
    pub(crate) records: Vec<Outgoing>,
    /// id → new hash (`None`: the id is gone).
    pub(crate) state: Vec<(i64, Option<String>)>,
    pub(crate) checkpoint: Vec<Update>,
    pub(crate) done: oneshot::Sender<Result<(), CommitError>>,
}

/// Why a transaction did not commit.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum CommitError {
    #[error("another producer with transactional id {0} took over (fenced)")]
    Fenced(String),
    #[error("Kafka transaction failed: {0}")]
    Kafka(String),
    #[error("Kafka transaction failed: {0}")]
    Refused(Refused),
    #[error("the committer stopped")]
    Stopped,
}

/// Topic names the committer writes besides the records' own.
#[derive(Debug, Clone)]
pub(crate) struct StateTopics {
    pub(crate) checkpoints: String,
    pub(crate) state: String,
}

/// Limits of one transaction.
const MAX_RECORDS: usize = 20_000;
const LINGER: Duration = Duration::from_millis(20);
const TXN_TIMEOUT: Duration = Duration::from_secs(60);

/// The committer's producer: failed deliveries are read from its context
/// when a transaction fails, not awaited per record.
pub(crate) type TxProducer = ThreadedProducer<WriterContext>;

/// Creates the transactional producer and fences any earlier instance
/// with the same id (aborting its open transaction).
pub(crate) async fn transactional_producer(
    kafka: &KafkaSettings,
    transactional_id: &str,
) -> Result<TxProducer, CommitError> {
    oda_cdc_core::kafka::transactional_writer(
        kafka,
        transactional_id,
        TXN_TIMEOUT,
        &[],
        WriterContext::default(),
    )
    .await
    .map_err(|e| classify(&e, transactional_id))
}

fn classify(error: &KafkaError, transactional_id: &str) -> CommitError {
    if is_fenced(error) {
        CommitError::Fenced(transactional_id.to_owned())
    } else {
        CommitError::Kafka(error.to_string())
    }
}

/// Owns the producer and the authoritative checkpoints.
pub(crate) struct Committer {
    producer: TxProducer,
    transactional_id: String,
    topics: StateTopics,
    checkpoints: HashMap<String, Checkpoint>,
    metrics: Metrics,
    stall: StallWatch,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer")
            .field("transactional_id", &self.transactional_id)
            .finish_non_exhaustive()
    }
}

impl Committer {
    pub(crate) fn new(
        producer: TxProducer,
        transactional_id: &str,
        topics: StateTopics,
        checkpoints: HashMap<String, Checkpoint>,
        metrics: Metrics,
        health: Health,
    ) -> Self {
        Self {
            stall: StallWatch::new(health, metrics.transaction_stalled.clone()),
            producer,
            transactional_id: transactional_id.to_owned(),
            topics,
            checkpoints,
            metrics,
        }
    }

    /// Commits batches until the channel closes. The first failure ends the
    /// run (every waiting worker hears of it); the caller restarts the
    /// pipeline from what Kafka holds.
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Batch>) -> Result<(), CommitError> {
        while let Some(first) = rx.recv().await {
            let mut group = vec![first];
            let mut records = group[0].records.len();
            let deadline = tokio::time::Instant::now() + LINGER;
            while records < MAX_RECORDS {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(batch)) => {
                        records += batch.records.len();
                        group.push(batch);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            let stall = self.stall.clone();
            match stall.watch(self.commit(&mut group)).await {
                Ok(()) => {
                    self.metrics
                        .transactions
                        .with_label_values(&["committed"])
                        .inc();
                    for batch in group {
                        let _ = batch.done.send(Ok(()));
                    }
                }
                Err(error) => {
                    self.metrics
                        .transactions
                        .with_label_values(&["aborted"])
                        .inc();
                    tracing::warn!(%error, batches = group.len(), "Transaction failed.");
                    for batch in group {
                        let _ = batch.done.send(Err(error.clone()));
                    }
                    // Whatever else is queued was built on state that is now
                    // uncertain: refuse it too.
                    rx.close();
                    while let Some(batch) = rx.recv().await {
                        let _ = batch.done.send(Err(CommitError::Stopped));
                    }
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    async fn commit(&mut self, group: &mut [Batch]) -> Result<(), CommitError> {
        let id = self.transactional_id.clone();
        self.producer
            .begin_transaction()
            .map_err(|e| classify(&e, &id))?;
        // Failures of earlier, aborted transactions are not this one's.
        let _ = self.producer.context().take_refusal();
        let failed = match self.write(group).await {
            Ok(updated) => {
                // The commit then flushes nothing (and so waits for nothing).
                delivered(&self.producer, TXN_TIMEOUT).await;
                let producer = self.producer.clone();
                // Commit flushes first, and fails if any record failed: the
                // delivery reports have all been seen when it returns.
                let committed = tokio::task::spawn_blocking(move || {
                    producer.commit_transaction(Timeout::After(TXN_TIMEOUT))
                })
                .await
                .map_err(|e| CommitError::Kafka(e.to_string()))?;
                match committed {
                    Ok(()) => {
                        self.checkpoints.extend(updated);
                        return Ok(());
                    }
                    // A refused record says more than the transaction's
                    // own error (which topic, and whether retrying can
                    // help). Explained before the abort, whose purge
                    // reports every record still queued as failed too.
                    Err(e) => match self.explain(e).await {
                        Failure::Fenced => CommitError::Fenced(id),
                        Failure::Refused(refused) => CommitError::Refused(refused),
                        Failure::Other(e) => classify(&e, &id),
                    },
                }
            }
            // A record refused at hand-over: its own error is the reason.
            Err(e) => e,
        };
        self.abort().await;
        let _ = self.producer.context().take_refusal();
        Err(failed)
    }

    async fn abort(&self) {
        let producer = self.producer.clone();
        let aborted = tokio::task::spawn_blocking(move || {
            producer.abort_transaction(Timeout::After(TXN_TIMEOUT))
        })
        .await;
        if let Ok(Err(error)) = aborted {
            tracing::warn!(%error, "Aborting the transaction failed.");
        }
    }

    /// Sends every record of the group; returns the checkpoints to adopt
    /// once the transaction commits. Each batch's records and state are
    /// dropped once librdkafka holds its copy, not kept through the commit:
    /// a group is up to [`MAX_RECORDS`] records, a snapshot's memory peak.
    async fn write(&self, group: &mut [Batch]) -> Result<HashMap<String, Checkpoint>, CommitError> {
        let mut updated: HashMap<String, Checkpoint> = HashMap::new();
        let mut key = String::new();
        for batch in group.iter_mut() {
            for record in std::mem::take(&mut batch.records) {
                self.send(
                    &record.topic,
                    &record.key,
                    record.payload.as_deref(),
                    &record.headers,
                )
                .await?;
            }
            for (record_id, hash) in std::mem::take(&mut batch.state) {
                IdState::write_key(&mut key, &batch.entity, record_id);
                self.send(
                    &self.topics.state,
                    &key,
                    hash.as_deref().map(str::as_bytes),
                    &[],
                )
                .await?;
            }
            if !batch.checkpoint.is_empty() {
                let checkpoint = updated.entry(batch.entity.clone()).or_insert_with(|| {
                    self.checkpoints
                        .get(&batch.entity)
                        .cloned()
                        .unwrap_or_else(|| Checkpoint::new(&batch.entity))
                });
                for update in &batch.checkpoint {
                    checkpoint.apply(update);
                }
            }
        }
        for (entity, checkpoint) in &updated {
            let payload = checkpoint.to_json();
            self.send(&self.topics.checkpoints, entity, Some(&payload), &[])
                .await?;
        }
        Ok(updated)
    }

    /// Hands one record to librdkafka, waiting while its queue is full.
    async fn send(
        &self,
        topic: &str,
        key: &str,
        payload: Option<&[u8]>,
        headers: &[(&'static str, Cow<'static, str>)],
    ) -> Result<(), CommitError> {
        let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).key(key);
        if !headers.is_empty() {
            let mut owned = OwnedHeaders::new_with_capacity(headers.len());
            for (name, value) in headers {
                owned = owned.insert(Header {
                    key: name,
                    value: Some(value.as_bytes()),
                });
            }
            record = record.headers(owned);
        }
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        let Err(error) = hand_over(&self.producer, record).await else {
            return Ok(());
        };
        // Once a record failed, later sends are refused with a state error
        // that hides it: the explanation names the first.
        Err(match self.explain(error).await {
            Failure::Fenced => CommitError::Fenced(self.transactional_id.clone()),
            Failure::Refused(refused) => CommitError::Refused(refused),
            Failure::Other(error) => CommitError::Refused(Refused {
                topic: topic.to_owned(),
                error,
            }),
        })
    }

    /// [`explain_failure`], off the async threads.
    async fn explain(&self, error: KafkaError) -> Failure {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            explain_failure(&producer, error, Duration::from_secs(10))
        })
        .await
        .unwrap_or_else(|_| Failure::Other(KafkaError::Canceled))
    }
}
