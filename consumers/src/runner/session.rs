//! One session: a consumer and a producer built from the committed
//! offsets, batches read, handled and written until shutdown or a failure
//! that needs fresh clients.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use oda_cdc_core::config::Delivery;
use oda_cdc_core::kafka::{RecordLimits, WriterContext, is_fenced, transactional_writer};
use oda_cdc_core::shutdown::CancellationToken;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use super::context::RunnerContext;
use super::handle::{Targets, handle};
use super::membership::SESSION_TIMEOUT_MS;
use super::processor::{Processor, Unusable};
use super::received::Received;
use super::write::{Outgoing, Writer, write, write_then_store};
use super::{
    LINGER, MAX_BATCH, PRODUCER_TUNING, RETRY_BUDGET, SessionError, Shared, TRANSACTION_TIMEOUT,
};

pub(super) async fn session<P: Processor>(shared: &Shared) -> Result<(), SessionError> {
    let settings = &shared.context.settings;
    let shutdown = &shared.context.shutdown;
    let mut processor = P::open(&shared.context).await.map_err(|error| {
        if error.downcast_ref::<Unusable>().is_some() {
            SessionError::Unusable(error)
        } else {
            SessionError::Open(error)
        }
    })?;
    // A processor that stores its positions is exactly-once through its
    // own store; its dead letters are only acknowledged (at least once).
    let delivery = if P::STORES_POSITIONS {
        Delivery::AtLeastOnce
    } else {
        shared.delivery
    };
    let writer = match delivery {
        Delivery::ExactlyOnce => Writer::Transactional(
            transactional_writer(
                &settings.kafka,
                &shared.transactional_id,
                TRANSACTION_TIMEOUT,
                PRODUCER_TUNING,
                WriterContext::tracking_offsets(),
            )
            .await
            .map_err(|e| fenced_or(e, &shared.transactional_id))?,
        ),
        Delivery::AtLeastOnce => Writer::Acknowledged(
            settings
                .kafka
                .producer_config_with(None, PRODUCER_TUNING)
                .create_with_context(WriterContext::tracking_offsets())?,
        ),
    };
    let mut config = settings.kafka.consumer_config(&shared.group);
    if !settings.kafka.properties.contains_key("session.timeout.ms") {
        config.set("session.timeout.ms", SESSION_TIMEOUT_MS);
    }
    // Static membership: a restarted instance takes its partitions back at
    // once instead of waiting out its predecessor's session (membership.rs).
    config
        .set("group.instance.id", shared.membership.instance_id())
        .set("statistics.interval.ms", "5000")
        // Eager and range, whatever `kafka.properties` says: a rebalance
        // must move every position back to the committed offset (batches
        // read across one are dropped), and partition p of every input
        // must go to one member (partitioned state follows it).
        .set("partition.assignment.strategy", "range");
    let consumer: Arc<StreamConsumer<RunnerContext>> =
        Arc::new(config.create_with_context(RunnerContext::new(shared.metrics.lag.clone()))?);
    let inputs: Vec<&str> = shared.inputs.iter().map(String::as_str).collect();
    consumer.subscribe(&inputs)?;
    // Ends with the session (the handle aborts the task when dropped).
    let _watching = AbortOnDrop(tokio::spawn(super::inputs::watch(
        Arc::clone(&consumer),
        shared.inputs.clone(),
        shared.context.health.clone(),
        shared.metrics.missing_inputs.clone(),
        P::NAME,
    )));
    shared.context.health.set_ok("kafka");
    shared.context.health.set_ok("batch");
    let mut targets = Targets::new(record_limits::<P>(shared).await);
    let flush_topic = P::output_topics(settings, &shared.context.topics)
        .into_iter()
        .next()
        .map(|spec| spec.name)
        .unwrap_or_default();
    // The rebalance count the processor last heard about.
    let mut told = None;

    loop {
        let Some(batch) = read_batch(&consumer, shutdown, P::TICK).await? else {
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
            let foreign = shared
                .membership
                .foreign(assignment.iter().map(|(topic, _)| topic.as_str()));
            if !foreign.is_empty() {
                shared.membership.renew();
                return Err(SessionError::StaleAssignment(foreign.join(", ")));
            }
            processor
                .assigned(&assignment)
                .await
                .map_err(SessionError::Assigned)?;
            told = Some(rebalances);
            if P::STORES_POSITIONS {
                let stored = processor
                    .stored_positions(&assignment)
                    .await
                    .map_err(SessionError::Store)?;
                seek_to_stored(&consumer, &assignment, &stored).await?;
                // The batch in hand was read from the group's offsets.
                continue;
            }
        }
        let mut outgoing = Vec::with_capacity(batch.len());
        // Borrowing the batch's topic names: one copy per partition below,
        // not one per record.
        let mut ends: HashMap<(&str, i32), i64> = HashMap::new();
        let mut retry_budget = RETRY_BUDGET;
        for message in &batch {
            handle::<P>(
                shared,
                &mut processor,
                message,
                &mut targets,
                &mut retry_budget,
                &mut outgoing,
            )
            .await?;
            ends.insert(
                (message.topic.as_str(), message.partition),
                message.offset + 1,
            );
        }
        let mut offsets: HashMap<(String, i32), i64> = ends
            .into_iter()
            .map(|((topic, partition), next)| ((topic.to_owned(), partition), next))
            .collect();
        if P::STORES_POSITIONS {
            // Past the transaction markers that follow the batch: the
            // stored position then equals the partition's end once the
            // input is quiet (the records themselves end one short of it).
            for (key, at) in current_positions(&consumer)? {
                if let Some(next) = offsets.get_mut(&key) {
                    *next = (*next).max(at);
                } else if batch.is_empty() {
                    offsets.insert(key, at);
                }
            }
            if offsets.is_empty() {
                continue;
            }
        } else if batch.is_empty() {
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
        let written = if P::STORES_POSITIONS {
            write_then_store(&writer, &consumer, &mut processor, outgoing, &offsets).await
        } else {
            write(shared, &writer, &consumer, outgoing, &offsets).await
        };
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
                shared.refusals.succeeded();
                shared.registry.answered(&shared.context.health);
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

/// How long a seek may wait for a partition just assigned to be ready.
const SEEK_PATIENCE: Duration = Duration::from_secs(30);

/// Moves every assigned partition to the position the processor stored
/// (the beginning when it stored none), instead of the group's offset.
async fn seek_to_stored(
    consumer: &Arc<StreamConsumer<RunnerContext>>,
    assignment: &[(String, i32)],
    stored: &HashMap<(String, i32), i64>,
) -> Result<(), SessionError> {
    let started = tokio::time::Instant::now();
    let mut pending: Vec<&(String, i32)> = assignment.iter().collect();
    while !pending.is_empty() {
        let mut list = TopicPartitionList::new();
        for (topic, partition) in &pending {
            let offset = stored
                .get(&(topic.clone(), *partition))
                .map_or(Offset::Beginning, |at| Offset::Offset(*at));
            list.add_partition_offset(topic, *partition, offset)?;
        }
        let seeker = Arc::clone(consumer);
        let sought = tokio::task::spawn_blocking(move || {
            seeker.seek_partitions(list, Timeout::After(Duration::from_secs(10)))
        })
        .await
        .map_err(|_| KafkaError::Canceled)??;
        let mut again = Vec::new();
        for element in sought.elements() {
            match element.error() {
                Ok(()) => {}
                // Assigned, but its fetcher is not started yet.
                Err(KafkaError::OffsetFetch(RDKafkaErrorCode::State))
                    if started.elapsed() < SEEK_PATIENCE =>
                {
                    if let Some(key) = pending
                        .iter()
                        .find(|(t, p)| t == element.topic() && *p == element.partition())
                    {
                        again.push(*key);
                    }
                }
                Err(error) => return Err(SessionError::Kafka(error)),
            }
        }
        pending = again;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tracing::debug!(
        partitions = assignment.len(),
        "Positions restored from the store."
    );
    Ok(())
}

/// The largest record each topic this processor writes takes.
async fn record_limits<P: Processor>(shared: &Shared) -> RecordLimits {
    let settings = &shared.context.settings;
    let mut topics: Vec<String> = P::output_topics(settings, &shared.context.topics)
        .into_iter()
        .map(|spec| spec.name)
        .collect();
    topics.push(shared.context.topics.dlq().to_owned());
    RecordLimits::read(&settings.kafka, &topics).await
}

pub(super) fn fenced_or(error: KafkaError, transactional_id: &str) -> SessionError {
    if is_fenced(&error) {
        SessionError::Fenced(transactional_id.to_owned())
    } else {
        SessionError::Kafka(error)
    }
}

/// How often an idle reader looks whether a rebalance happened.
const ASSIGNMENT_CHECK: Duration = Duration::from_secs(1);

/// Up to [`MAX_BATCH`] records; `None` once shutdown is asked for and
/// nothing is pending; a fatal consumer error (a static member fenced
/// while its group coordinator moved, say) ends the session, since the
/// consumer never reads again after one.
///
/// Rebalance callbacks run inside `recv`. When one ran, the records read
/// before it belong to the old assignment, whose positions went back to
/// the committed offsets: they are dropped (whoever owns them now reads
/// them again) and the batch goes on with what came after.
async fn read_batch(
    consumer: &StreamConsumer<RunnerContext>,
    shutdown: &CancellationToken,
    tick: Option<Duration>,
) -> Result<Option<Vec<Received>>, SessionError> {
    let rebalances = || consumer.context().rebalances.load(Ordering::SeqCst);
    let mut batch = Vec::new();
    let mut seen = rebalances();
    let mut deadline: Option<tokio::time::Instant> = None;
    let idle_until = tick.map(|t| tokio::time::Instant::now() + t);
    loop {
        let received = match deadline {
            None => tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                // An empty batch: the processor's tick.
                _ = sleep_until(idle_until) => return Ok(Some(batch)),
                received = consumer.recv() => Some(received),
                // Rebalance callbacks run inside `recv`; look up now and
                // then whether one did, also with nothing to read.
                _ = tokio::time::sleep(ASSIGNMENT_CHECK) => None,
            },
            Some(deadline) => tokio::time::timeout_at(deadline, consumer.recv())
                .await
                .ok(),
        };
        if consumer.context().lost.load(Ordering::SeqCst) {
            return Err(SessionError::AssignmentLost);
        }
        if let Some(stuck) = consumer.context().stuck() {
            return Err(SessionError::FetchStuck(stuck));
        }
        let now = rebalances();
        let rebalanced = now != seen;
        if rebalanced {
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
                batch.push(Received::copy_of(&message));
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + LINGER);
            }
            Some(Err(error @ KafkaError::MessageConsumptionFatal(_))) => {
                tracing::warn!(%error, "The consumer failed for good; starting a new session.");
                return Err(error.into());
            }
            Some(Err(error)) => note_consumer_error(&error),
            None => {}
        }
        // A new assignment and nothing to read from it yet: hand it over
        // now, so the session checks it (a stale one is found without
        // waiting for a record that may never come).
        if rebalanced && batch.is_empty() && deadline.is_none() {
            return Ok(Some(batch));
        }
        let lingered = deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
        if !batch.is_empty() && (batch.len() >= MAX_BATCH || lingered || shutdown.is_cancelled()) {
            return Ok(Some(batch));
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

/// A task aborted when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn note_consumer_error(error: &KafkaError) {
    match error.rdkafka_error_code() {
        // Reported once per change by the inputs watch (inputs.rs).
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            tracing::debug!(%error, "An input topic does not exist (yet).");
        }
        _ => tracing::warn!(%error, "Consumer error."),
    }
}
