//! The runner: everything around [`Processor::process`].
//!
//! One loop per instance reads a batch (up to [`MAX_BATCH`] records or
//! [`LINGER`] after the first), decodes and processes it record by record
//! in partition order, and writes outputs, dead letters and the input
//! offsets together:
//!
//! - exactly-once: one Kafka transaction per batch, the offsets sent to it
//!   (`send_offsets_to_transaction` with the group's metadata, so a zombie
//!   from an older generation is fenced);
//! - at-least-once: outputs acknowledged, then offsets committed.
//!
//! Any Kafka failure ends the session; the supervisor rebuilds consumer,
//! producer and processor, which start again from the committed offsets.
//! A rebalance while a batch is being read discards the batch: under the
//! eager protocol every partition's position goes back to its committed
//! offset, so the records are read again by whoever owns them now.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use oda_cdc_core::admin;
use oda_cdc_core::config::{Delivery, Settings};
use oda_cdc_core::event::headers as event_headers;
use oda_cdc_core::health::Health;
use oda_cdc_core::kafka::{
    LogContext, TopicSpec, ensure_topics, is_fenced, transactional_producer,
};
use oda_cdc_core::shutdown::CancellationToken;
use oda_cdc_core::topics;
use prometheus::{IntGaugeVec, Registry};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::dead_letter::{self, ErrorKind, Origin};
use crate::decode::{DecodeError, Decoder};
use crate::metrics::Metrics;
use crate::processor::{Context, Input, Output, ProcessError, Processor, Unusable};

/// Records per batch (one transaction each in exactly-once mode): each
/// batch waits for its acknowledgements and its commit, so batches must be
/// large for that wait to vanish in the work.
pub const MAX_BATCH: usize = 10_000;
/// The runner's producer tuning (the passthrough still wins): a batch waits
/// for its last acknowledgement, so a long linger only adds to every batch,
/// and lz4 costs a fraction of zstd's CPU on a path that is CPU-bound.
const PRODUCER_TUNING: &[(&str, &str)] = &[("linger.ms", "5"), ("compression.type", "lz4")];
/// How long a batch waits for more records after its first.
pub const LINGER: Duration = Duration::from_millis(50);
/// Retries of a retryable error when `consumer.max_retries` is not set.
pub const DEFAULT_MAX_RETRIES: u32 = 5;
/// Time one batch may spend waiting between retries; past it, retryable
/// failures are dead-lettered at once (kind `timeout`), so a batch never
/// outlasts the group's `max.poll.interval.ms` and loops on its replay.
const RETRY_BUDGET: Duration = Duration::from_secs(30);
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Options that are not configuration keys.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// This instance's name: with the group it makes the transactional id,
    /// so a restarted instance fences its predecessor at once. Two live
    /// instances need two names (a StatefulSet's pod names serve).
    pub instance: String,
}

/// Why one session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("opening the processor: {0:#}")]
    Open(anyhow::Error),
    #[error("{0:#}")]
    Unusable(anyhow::Error),
    #[error("handing the processor its partitions: {0:#}")]
    Assigned(anyhow::Error),
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("another instance with transactional id `{0}` took over")]
    Fenced(String),
    #[error(transparent)]
    Registry(#[from] DecodeError),
    #[error("the consumer has no group metadata for the transaction")]
    NoGroup,
}

/// Runs processor `P` until `shutdown`: the admin server, topics, then
/// sessions, rebuilt after failures with a growing pause.
pub async fn run<P: Processor>(
    settings: Settings,
    options: RunOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let registry = Registry::new();
    let metrics = Metrics::register(&registry).context("registering metrics")?;
    metrics.prime(P::NAME);
    let health = Health::new();
    health.register("kafka");
    health.register("batch");
    let addr = admin::address(settings.metrics.addr, P::METRICS_PORT);
    let admin_server =
        admin::serve(addr, registry.clone(), health.clone(), shutdown.clone()).await?;

    let dlq_topic = settings
        .consumer
        .dlq_topic
        .clone()
        .unwrap_or_else(|| topics::dlq_topic(&settings.kafka.topic_prefix));
    let mut specs = P::output_topics(&settings);
    specs.push(TopicSpec::retained(&dlq_topic, 14));
    let kafka_admin: rdkafka::admin::AdminClient<DefaultClientContext> = settings
        .kafka
        .client_config()
        .create()
        .context("creating the Kafka admin client")?;
    ensure_topics(&kafka_admin, &specs)
        .await
        .context("creating output topics")?;

    let decoder = Decoder::new(&settings.schema_registry).context("schema_registry")?;
    let group = settings
        .consumer
        .group
        .clone()
        .unwrap_or_else(|| P::NAME.to_owned());
    let shared = Shared {
        transactional_id: format!("{group}-{}", options.instance),
        group,
        dlq_topic,
        inputs: P::inputs(&settings),
        max_retries: settings.consumer.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
        delivery: settings.consumer.delivery,
        context: Context {
            settings,
            registry,
            health: health.clone(),
            shutdown: shutdown.clone(),
        },
        metrics,
        decoder,
    };
    tracing::info!(
        processor = P::NAME,
        group = %shared.group,
        inputs = ?shared.inputs,
        delivery = ?shared.delivery,
        "Processor starts."
    );
    let mut backoff = Duration::from_secs(1);
    let result = loop {
        match session::<P>(&shared).await {
            Ok(()) => break Ok(()),
            Err(SessionError::Unusable(error)) => break Err(error),
            Err(SessionError::Fenced(id)) => {
                break Err(anyhow::anyhow!(
                    "another {} instance with transactional id `{id}` took over; this one stops \
                     (give each instance its own --instance)",
                    P::NAME
                ));
            }
            Err(error) => {
                health.set_failed("kafka", error.to_string());
                tracing::warn!(%error, retry_in = ?backoff, "Session failed; restarting from the committed offsets.");
                tokio::select! {
                    _ = shutdown.cancelled() => break Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    };
    admin_server.task.abort();
    result
}

/// What every session shares.
struct Shared {
    group: String,
    transactional_id: String,
    dlq_topic: String,
    inputs: Vec<String>,
    max_retries: u32,
    delivery: Delivery,
    context: Context,
    metrics: Metrics,
    decoder: Decoder,
}

/// Counts rebalances (a batch read across one is discarded) and turns
/// librdkafka's statistics into the lag gauge.
struct RunnerContext {
    rebalances: AtomicU64,
    lag: IntGaugeVec,
}

impl ClientContext for RunnerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        LogContext.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        LogContext.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                // librdkafka's own `consumer_lag` counts from the committed
                // offset, which it does not learn of when offsets go through
                // transactions; the position against the last stable offset
                // works in both modes.
                let lag = if p.app_offset >= 0 && p.ls_offset >= 0 {
                    (p.ls_offset - p.app_offset).max(0)
                } else {
                    p.consumer_lag
                };
                if *partition >= 0 && lag >= 0 {
                    self.lag
                        .with_label_values(&[topic.as_str(), &partition.to_string()])
                        .set(lag);
                }
            }
        }
    }
}

impl ConsumerContext for RunnerContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::SeqCst);
        if let Rebalance::Revoke(partitions) = rebalance {
            tracing::info!(partitions = partitions.count(), "Partitions revoked.");
            self.lag.reset();
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::SeqCst);
        match rebalance {
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = partitions.count(), "Partitions assigned.");
            }
            Rebalance::Error(error) => tracing::warn!(%error, "Rebalance failed."),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// The writer of a session, by delivery mode.
enum Writer {
    Transactional(FutureProducer<LogContext>),
    Acknowledged(FutureProducer<LogContext>),
}

impl Writer {
    fn producer(&self) -> &FutureProducer<LogContext> {
        match self {
            Writer::Transactional(p) | Writer::Acknowledged(p) => p,
        }
    }
}

/// One record to write.
struct Outgoing {
    topic: String,
    partition: Option<i32>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
}

async fn session<P: Processor>(shared: &Shared) -> Result<(), SessionError> {
    let settings = &shared.context.settings;
    let shutdown = &shared.context.shutdown;
    let mut processor = P::open(&shared.context).await.map_err(|error| {
        if error.downcast_ref::<Unusable>().is_some() {
            SessionError::Unusable(error)
        } else {
            SessionError::Open(error)
        }
    })?;
    let writer = match shared.delivery {
        Delivery::ExactlyOnce => Writer::Transactional(
            transactional_producer(
                &settings.kafka,
                &shared.transactional_id,
                TRANSACTION_TIMEOUT,
                PRODUCER_TUNING,
            )
            .await
            .map_err(|e| fenced_or(e, &shared.transactional_id))?,
        ),
        Delivery::AtLeastOnce => Writer::Acknowledged(
            settings
                .kafka
                .producer_config_with(None, PRODUCER_TUNING)
                .create_with_context(LogContext)?,
        ),
    };
    let mut config = settings.kafka.consumer_config(&shared.group);
    // Static membership: a restarted instance takes its partitions back at
    // once instead of waiting out its predecessor's session.
    config
        .set("group.instance.id", &shared.transactional_id)
        .set("statistics.interval.ms", "5000")
        // Eager and range, whatever `kafka.properties` says: a rebalance
        // must move every position back to the committed offset (batches
        // read across one are dropped), and partition p of every input
        // must go to one member (partitioned state follows it).
        .set("partition.assignment.strategy", "range");
    let consumer: Arc<StreamConsumer<RunnerContext>> =
        Arc::new(config.create_with_context(RunnerContext {
            rebalances: AtomicU64::new(0),
            lag: shared.metrics.lag.clone(),
        })?);
    let inputs: Vec<&str> = shared.inputs.iter().map(String::as_str).collect();
    consumer.subscribe(&inputs)?;
    shared.context.health.set_ok("kafka");
    shared.context.health.set_ok("batch");
    let mut output_topics: HashMap<String, String> = HashMap::new();
    let flush_topic = P::output_topics(settings)
        .into_iter()
        .next()
        .map(|spec| spec.name)
        .unwrap_or_default();
    // The rebalance count the processor last heard about.
    let mut told = None;

    loop {
        let Some(batch) = read_batch(&consumer, shutdown, P::TICK).await else {
            break;
        };
        // Every record of the batch came after the last rebalance, and no
        // callback runs outside `recv`: the assignment is current.
        let rebalances = consumer.context().rebalances.load(Ordering::SeqCst);
        if told != Some(rebalances) {
            let assignment: Vec<(String, i32)> = consumer
                .assignment()?
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            processor
                .assigned(&assignment)
                .await
                .map_err(SessionError::Assigned)?;
            told = Some(rebalances);
        }
        let mut outgoing = Vec::with_capacity(batch.len());
        let mut offsets: HashMap<(String, i32), i64> = HashMap::new();
        let mut retry_budget = RETRY_BUDGET;
        for message in &batch {
            handle::<P>(
                shared,
                &mut processor,
                message,
                &mut output_topics,
                &mut retry_budget,
                &mut outgoing,
            )
            .await?;
            offsets.insert(
                (message.topic().to_owned(), message.partition()),
                message.offset() + 1,
            );
        }
        if batch.is_empty() {
            // A tick: its transaction re-sends the positions it holds (the
            // committed offsets), so the broker checks the group's
            // generation and fences an instance that lost its partitions
            // without noticing yet. Without a position, no tick output.
            offsets = current_positions(&consumer)?;
            if offsets.is_empty() {
                continue;
            }
        }
        outgoing.extend(processor.flush().into_iter().map(|output| Outgoing {
            topic: output.topic.unwrap_or_else(|| flush_topic.clone()),
            partition: output.partition,
            key: output.key.map(String::into_bytes),
            value: output.value,
            headers: output.headers,
        }));
        if outgoing.is_empty() && offsets.is_empty() {
            continue;
        }
        let written = write(shared, &writer, &consumer, outgoing, &offsets).await;
        match written {
            Ok(written) => {
                processor.committed(&written);
                if let Writer::Transactional(_) = writer {
                    shared
                        .metrics
                        .transactions
                        .with_label_values(&["committed"])
                        .inc();
                }
                shared.context.health.set_ok("batch");
            }
            Err(error) => {
                if let Writer::Transactional(_) = writer {
                    shared
                        .metrics
                        .transactions
                        .with_label_values(&["aborted"])
                        .inc();
                }
                shared.context.health.set_failed("batch", error.to_string());
                return Err(error);
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
    }
    consumer.unsubscribe();
    tracing::info!("Processor stopped; offsets committed.");
    Ok(())
}

fn fenced_or(error: KafkaError, transactional_id: &str) -> SessionError {
    if is_fenced(&error) {
        SessionError::Fenced(transactional_id.to_owned())
    } else {
        SessionError::Kafka(error)
    }
}

/// Up to [`MAX_BATCH`] records; `None` once shutdown is asked for and
/// nothing is pending.
///
/// Rebalance callbacks run inside `recv`. When one ran, the records read
/// before it belong to the old assignment, whose positions went back to
/// the committed offsets: they are dropped (whoever owns them now reads
/// them again) and the batch goes on with what came after.
async fn read_batch(
    consumer: &StreamConsumer<RunnerContext>,
    shutdown: &CancellationToken,
    tick: Option<Duration>,
) -> Option<Vec<OwnedMessage>> {
    let rebalances = || consumer.context().rebalances.load(Ordering::SeqCst);
    let mut batch = Vec::new();
    let mut seen = rebalances();
    let mut deadline: Option<tokio::time::Instant> = None;
    let idle_until = tick.map(|t| tokio::time::Instant::now() + t);
    loop {
        let received = match deadline {
            None => tokio::select! {
                _ = shutdown.cancelled() => return None,
                // An empty batch: the processor's tick.
                _ = sleep_until(idle_until) => return Some(batch),
                received = consumer.recv() => Some(received),
            },
            Some(deadline) => tokio::time::timeout_at(deadline, consumer.recv())
                .await
                .ok(),
        };
        let now = rebalances();
        if now != seen {
            if !batch.is_empty() {
                tracing::debug!(
                    records = batch.len(),
                    "Rebalanced while reading; those records are read again."
                );
            }
            batch.clear();
            deadline = None;
            seen = now;
        }
        match received {
            Some(Ok(message)) => {
                batch.push(message.detach());
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + LINGER);
            }
            Some(Err(error)) => note_consumer_error(&error),
            None => {}
        }
        let lingered = deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
        if !batch.is_empty() && (batch.len() >= MAX_BATCH || lingered || shutdown.is_cancelled()) {
            return Some(batch);
        }
    }
}

/// The application position of every assigned partition that has one.
fn current_positions(
    consumer: &StreamConsumer<RunnerContext>,
) -> Result<HashMap<(String, i32), i64>, KafkaError> {
    Ok(consumer
        .position()?
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(at) if at >= 0 => Some(((e.topic().to_owned(), e.partition()), at)),
            _ => None,
        })
        .collect())
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn note_consumer_error(error: &KafkaError) {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            tracing::warn!(%error, "An input topic does not exist (yet); waiting for it.");
        }
        _ => tracing::warn!(%error, "Consumer error."),
    }
}

/// Decodes and processes one record, appending what it yields (outputs,
/// or a dead letter) to `outgoing`.
async fn handle<P: Processor>(
    shared: &Shared,
    processor: &mut P,
    message: &OwnedMessage,
    output_topics: &mut HashMap<String, String>,
    retry_budget: &mut Duration,
    outgoing: &mut Vec<Outgoing>,
) -> Result<(), SessionError> {
    let started = Instant::now();
    let headers = dead_letter::owned_headers(message);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    };
    let earlier = dead_letter::earlier_attempts(&headers);
    let decoded = if processor.decodes(message.topic()) {
        shared
            .decoder
            .decode(
                message.payload(),
                header(event_headers::CONTENT_TYPE),
                header(event_headers::ENTITY),
            )
            .await
    } else {
        Ok(None)
    };
    let event = match decoded {
        Ok(event) => event,
        Err(DecodeError::Invalid(reason)) => {
            outgoing.push(letter::<P>(
                shared,
                message,
                &headers,
                ErrorKind::Decode,
                &reason,
                earlier + 1,
            ));
            return Ok(());
        }
        Err(unavailable) => return Err(unavailable.into()),
    };
    let key = message.key().and_then(|k| std::str::from_utf8(k).ok());
    let input = Input {
        topic: message.topic(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp: message.timestamp().to_millis(),
        key,
        value: message.payload(),
        headers: &headers,
        event: event.as_ref(),
    };
    let mut attempts = 0;
    let outcome = loop {
        attempts += 1;
        match processor.process(&input) {
            Ok(outputs) => break Ok(outputs),
            Err(ProcessError::Permanent(reason)) => break Err((ErrorKind::Processing, reason)),
            Err(ProcessError::Retryable(reason)) => {
                let pause = backoff(attempts);
                if attempts > shared.max_retries || pause > *retry_budget {
                    break Err((ErrorKind::Timeout, reason));
                }
                shared
                    .metrics
                    .records
                    .with_label_values(&[P::NAME, "retried"])
                    .inc();
                *retry_budget -= pause;
                tokio::time::sleep(pause).await;
            }
        }
    };
    shared
        .metrics
        .duration
        .with_label_values(&[P::NAME])
        .observe(started.elapsed().as_secs_f64());
    match outcome {
        Ok(outputs) => {
            let default_topic = output_topics
                .entry(message.topic().to_owned())
                .or_insert_with(|| P::output_topic(&shared.context.settings, message.topic()))
                .clone();
            for Output {
                topic,
                partition,
                key,
                value,
                headers,
            } in outputs
            {
                outgoing.push(Outgoing {
                    topic: topic.unwrap_or_else(|| default_topic.clone()),
                    partition,
                    key: key
                        .map(String::into_bytes)
                        .or_else(|| message.key().map(<[u8]>::to_vec)),
                    value,
                    headers,
                });
            }
            shared
                .metrics
                .records
                .with_label_values(&[P::NAME, "processed"])
                .inc();
        }
        Err((kind, reason)) => {
            tracing::warn!(
                topic = message.topic(),
                partition = message.partition(),
                offset = message.offset(),
                kind = kind.as_str(),
                %reason,
                "Record dead-lettered."
            );
            outgoing.push(letter::<P>(
                shared,
                message,
                &headers,
                kind,
                &reason,
                earlier + attempts,
            ));
        }
    }
    Ok(())
}

/// The pause before retry `attempt` (1-based): 100 ms doubling, at most 5 s.
fn backoff(attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(6);
    (Duration::from_millis(100) * factor).min(Duration::from_secs(5))
}

fn letter<P: Processor>(
    shared: &Shared,
    message: &OwnedMessage,
    headers: &[(String, Vec<u8>)],
    kind: ErrorKind,
    reason: &str,
    attempts: u32,
) -> Outgoing {
    shared.metrics.dlq.with_label_values(&[P::NAME]).inc();
    shared
        .metrics
        .records
        .with_label_values(&[P::NAME, "dead_lettered"])
        .inc();
    let origin = Origin {
        topic: message.topic(),
        partition: message.partition(),
        offset: message.offset(),
        group: &shared.group,
        processor: P::NAME,
    };
    Outgoing {
        topic: shared.dlq_topic.clone(),
        partition: None,
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers: dead_letter::letter_headers(headers, origin, kind, reason, attempts),
    }
}

/// Where a batch's records landed: the last offset per topic and partition.
type Written = HashMap<(String, i32), i64>;

/// Writes a batch's records and moves the group's offsets past it.
async fn write(
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
                let written = send_all(&producer, outgoing).await?;
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
                .map_err(|_| KafkaError::Canceled)??;
                Ok(written)
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
                    Err(fenced_or(error, id))
                }
            }
        }
        Writer::Acknowledged(_) => {
            let written = send_all(&producer, outgoing).await?;
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

/// Sends every record and waits for every acknowledgement.
async fn send_all(
    producer: &FutureProducer<LogContext>,
    outgoing: Vec<Outgoing>,
) -> Result<Written, KafkaError> {
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
                Err((error, _)) => return Err(error),
            }
        }
    }
    // Keyed by borrowed names while counting: no allocation per record.
    let mut last: HashMap<(&str, i32), i64> = HashMap::new();
    for (topic, delivery) in deliveries {
        match delivery.await {
            Ok(Ok(delivered)) => {
                let at = last.entry((topic, delivered.partition)).or_insert(-1);
                *at = (*at).max(delivered.offset);
            }
            Ok(Err((error, _))) => return Err(error),
            Err(_) => return Err(KafkaError::Canceled),
        }
    }
    Ok(last
        .into_iter()
        .map(|((topic, partition), at)| ((topic.to_owned(), partition), at))
        .collect())
}
