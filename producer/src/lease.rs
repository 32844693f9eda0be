//! Which of several `oda-producer` processes with one transactional id
//! writes: the member of the consumer group `<transactional id>-signals`
//! that the group coordinator assigns the signals topic's one partition.
//!
//! Kafka itself keeps the lease, as Kafka Connect keeps its workers: a
//! member that stops heartbeating for `producer.failover_timeout` (killed,
//! paused, cut off) loses the partition and another member gets it. The
//! lease only says who should write; the transactional id is the fence.
//! A new holder's `init_transactions` aborts whatever the old one left
//! open, and an old holder that wakes up (SIGCONT) is refused at its next
//! send or commit, so nothing it writes after the takeover commits.
//!
//! The assignor is cooperative-sticky: a standby joining (a pod starting,
//! a restart of the other instance) never moves the partition away from a
//! live holder, so starting a second instance costs the active nothing.
//! The holder also reads the signals topic, so requests reach the writer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use oda_cdc_core::config::KafkaSettings;
use oda_cdc_core::health::Health;
use oda_cdc_core::kafka::LogContext;
use oda_cdc_core::shutdown::CancellationToken;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::sync::{Mutex, mpsc, watch};

use crate::signals::{Signal, group};

/// How long a stopping member keeps polling so its leave reaches the
/// group coordinator.
const LEAVE_GRACE: Duration = Duration::from_millis(1500);

/// One holding of the lease; `generation` counts the assignments this
/// process received, so an old term is told from a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Term {
    pub(crate) held: bool,
    pub(crate) generation: u64,
    /// The membership ended for good ([`LeaseError`]).
    pub(crate) ended: bool,
}

/// Why this process can hold the lease no more.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum LeaseError {
    #[error(
        "Kafka ended this instance's membership of the lease group `{group}` ({reason}): another \
         `oda-producer run` joined with the same instance name `{instance}` (--instance, by default \
         the host name); give each instance its own"
    )]
    Replaced {
        group: String,
        instance: String,
        reason: String,
    },
    #[error("Kafka ended this instance's membership of the lease group `{group}`: {reason}")]
    Fatal { group: String, reason: String },
}

/// What a member does with the signals it reads while it holds the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// `oda-producer run --instance <name>`: hands requests to the pipeline.
    Service { instance: String },
    /// `oda-producer snapshot`/`rewind` working without a service: holds
    /// the lease so no service starts writing meanwhile, and leaves
    /// requests (uncommitted) to the service that comes next.
    Request,
}

/// A request read from the signals topic under one term.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) generation: u64,
    pub(crate) offset: i64,
    pub(crate) signal: Signal,
}

/// Membership of the lease group, kept alive by a task that polls it.
pub(crate) struct Lease {
    term: watch::Receiver<Term>,
    ended: Arc<std::sync::OnceLock<LeaseError>>,
    requests: Arc<Mutex<mpsc::Receiver<Request>>>,
    acknowledgements: mpsc::UnboundedSender<i64>,
    task: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
    pub(crate) timeout: Duration,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("term", &*self.term.borrow())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Tells the lease task of assignments and revocations as librdkafka
/// makes them.
struct LeaseContext {
    term: watch::Sender<Term>,
    health: Option<Health>,
    group: String,
    role: Role,
    ended: Arc<std::sync::OnceLock<LeaseError>>,
    /// Whether the `kafka` check failed because of the lease group: a
    /// join clears only that failure, never one the transactions own (a
    /// commit stalled by brokers away goes on failing it).
    failed_joining: AtomicBool,
}

impl LeaseContext {
    /// Kafka ended the membership (a fatal error: this consumer can never
    /// rejoin): the term ends and the reason is kept for the service.
    fn end(&self, code: Option<RDKafkaErrorCode>, reason: String) {
        let group = self.group.clone();
        let ended = match (&self.role, code) {
            (Role::Service { instance }, Some(RDKafkaErrorCode::FencedInstanceId)) => {
                LeaseError::Replaced {
                    group,
                    instance: instance.clone(),
                    reason,
                }
            }
            (Role::Service { instance }, _) if reason.contains("group.instance.id") => {
                LeaseError::Replaced {
                    group,
                    instance: instance.clone(),
                    reason,
                }
            }
            _ => LeaseError::Fatal { group, reason },
        };
        let _ = self.ended.set(ended);
        self.term.send_modify(|term| {
            term.held = false;
            term.ended = true;
        });
    }
}

impl ClientContext for LeaseContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        LogContext.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            self.end(None, reason.to_owned());
        }
        LogContext.error(error, reason);
    }
}

impl ConsumerContext for LeaseContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // Before the partition goes: the pipeline stops at once, and a
        // commit it still attempts is fenced by the next holder anyway.
        if let Rebalance::Revoke(partitions) = rebalance
            && partitions.count() > 0
        {
            self.term.send_modify(|term| term.held = false);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                if let Some(health) = &self.health
                    && self.failed_joining.swap(false, Ordering::SeqCst)
                {
                    health.set_ok("kafka");
                }
                if partitions.count() > 0 {
                    self.term.send_modify(|term| {
                        term.held = true;
                        term.generation += 1;
                    });
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                tracing::warn!(%error, "Joining the producer's lease group failed.");
                if let Some(health) = &self.health {
                    self.failed_joining.store(true, Ordering::SeqCst);
                    health.set_failed("kafka", format!("lease group: {error}"));
                }
            }
        }
    }
}

impl Lease {
    /// Joins the lease group `<transactional id>-signals` on `topic`.
    ///
    /// A service joins as a static member named by its instance
    /// (`<transactional id>-<instance>`): restarted after a crash, it takes
    /// its lease back at once instead of waiting out its predecessor's
    /// session, as a single instance did before there was a lease. The
    /// price: a static member does not leave on a graceful stop, so a
    /// standby takes over after `producer.failover_timeout`. A request
    /// joins as a dynamic member, which leaves as soon as it is done.
    pub(crate) fn join(
        kafka: &KafkaSettings,
        topic: &str,
        transactional_id: &str,
        timeout: Duration,
        role: Role,
        health: Option<Health>,
    ) -> Result<Self, KafkaError> {
        let group = group(transactional_id);
        let mut config = kafka.consumer_config(&group);
        if let Role::Service { instance } = &role {
            config.set(
                "group.instance.id",
                format!("{transactional_id}-{instance}"),
            );
        }
        let session = timeout.as_millis();
        config
            .set("auto.offset.reset", "latest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", session.to_string())
            .set("heartbeat.interval.ms", (session / 4).max(500).to_string())
            // The task below polls without pause; a runtime that stops
            // polling for this long has hung, and gives the lease up.
            .set(
                "max.poll.interval.ms",
                (session * 3).max(30_000).to_string(),
            );
        let (term_tx, term) = watch::channel(Term::default());
        let ended = Arc::new(std::sync::OnceLock::new());
        let context = LeaseContext {
            term: term_tx,
            health,
            group,
            role: role.clone(),
            ended: Arc::clone(&ended),
            failed_joining: AtomicBool::new(false),
        };
        let consumer: StreamConsumer<LeaseContext> = config.create_with_context(context)?;
        consumer.subscribe(&[topic])?;
        let consumer = Arc::new(consumer);
        let (requests_tx, requests) = mpsc::channel(64);
        let (acknowledgements, acks) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let task = tokio::spawn(keep(
            consumer,
            topic.to_owned(),
            role,
            term.clone(),
            requests_tx,
            acks,
            stop.clone(),
        ));
        Ok(Self {
            term,
            ended,
            requests: Arc::new(Mutex::new(requests)),
            acknowledgements,
            task,
            stop,
            timeout,
        })
    }

    /// Waits until this process holds the lease (`Ok(None)`: `shutdown`).
    pub(crate) async fn acquire(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<Term>, LeaseError> {
        let mut term = self.term.clone();
        let now = tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            now = term.wait_for(|t| t.held || t.ended) => now.ok().map(|t| *t),
        };
        match now {
            Some(term) if !term.ended => Ok(Some(term)),
            _ => Err(self.ended()),
        }
    }

    /// Waits up to `within` for the lease; whether it came.
    pub(crate) async fn acquire_within(&self, within: Duration) -> bool {
        let mut term = self.term.clone();
        tokio::time::timeout(within, term.wait_for(|t| t.held || t.ended))
            .await
            .is_ok_and(|now| now.is_ok_and(|t| !t.ended))
    }

    fn ended(&self) -> LeaseError {
        self.ended
            .get()
            .cloned()
            .unwrap_or_else(|| LeaseError::Fatal {
                group: String::new(),
                reason: "the lease task stopped".into(),
            })
    }

    /// Completes when `term` ends (revoked, a newer assignment, or the
    /// membership ended).
    pub(crate) fn lost(&self, term: Term) -> impl Future<Output = ()> + Send + 'static {
        let mut watching = self.term.clone();
        async move {
            let _ = watching
                .wait_for(|now| !now.held || now.ended || now.generation != term.generation)
                .await;
        }
    }

    /// The requests read while holding the lease; one reader at a time.
    pub(crate) fn requests(&self) -> Arc<Mutex<mpsc::Receiver<Request>>> {
        Arc::clone(&self.requests)
    }

    /// Marks a request handed over: the next holder starts after it.
    pub(crate) fn acknowledge(&self, offset: i64) {
        let _ = self.acknowledgements.send(offset);
    }

    /// Leaves the group, so a standby takes over now rather than after
    /// `producer.failover_timeout`.
    pub(crate) async fn leave(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Polls the membership (heartbeats, rebalances) and reads requests
/// until stopped, or until Kafka ends the membership; then leaves the
/// group.
async fn keep(
    consumer: Arc<StreamConsumer<LeaseContext>>,
    topic: String,
    role: Role,
    term: watch::Receiver<Term>,
    requests: mpsc::Sender<Request>,
    mut acks: mpsc::UnboundedReceiver<i64>,
    stop: CancellationToken,
) {
    let mut watching = term.clone();
    let mut marked = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = watching.changed() => {
                let now = *watching.borrow_and_update();
                if changed.is_err() || now.ended {
                    break;
                }
                if now.held && now.generation != marked && matches!(role, Role::Service { .. }) {
                    marked = now.generation;
                    let (consumer, topic) = (Arc::clone(&consumer), topic.clone());
                    tokio::task::spawn_blocking(move || mark_start(&consumer, &topic));
                }
            }
            Some(offset) = acks.recv() => {
                let mut next = TopicPartitionList::new();
                if next.add_partition_offset(&topic, 0, Offset::Offset(offset + 1)).is_ok()
                    && let Err(error) = consumer.commit(&next, CommitMode::Async)
                {
                    tracing::warn!(%error, "Committing the signals offset failed.");
                }
            }
            received = consumer.recv() => match received {
                Err(error) => {
                    if let Some((code, reason)) = consumer.client().fatal_error() {
                        consumer.context().end(Some(code), reason);
                        break;
                    }
                    tracing::warn!(%error, "Reading the signals topic failed.");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Ok(message) if matches!(role, Role::Service { .. }) => {
                    let parsed = message.payload().map(serde_json::from_slice::<Signal>);
                    let signal = match parsed {
                        Some(Ok(signal @ (Signal::Backfill { .. } | Signal::Rewind { .. }))) => signal,
                        Some(Ok(Signal::Progress { .. })) | None => continue,
                        Some(Err(error)) => {
                            tracing::warn!(%error, offset = message.offset(), "Unreadable signal; skipped.");
                            continue;
                        }
                    };
                    let request = Request {
                        generation: term.borrow().generation,
                        offset: message.offset(),
                        signal,
                    };
                    if requests.send(request).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
            },
        }
    }
    if !term.borrow().ended {
        leave_now(&consumer).await;
    }
    // Closing waits for the group to confirm; off the runtime.
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
}

/// Gives the group a committed offset the first time a service holds the
/// lease (the end of the topic, as `auto.offset.reset=latest` reads), so
/// a request written while the service restarts is read by the next
/// holder instead of being skipped as "before latest".
fn mark_start(consumer: &StreamConsumer<LeaseContext>, topic: &str) {
    let mut partition = TopicPartitionList::new();
    partition.add_partition(topic, 0);
    let committed = consumer
        .committed_offsets(partition, Duration::from_secs(10))
        .ok()
        .and_then(|list| list.find_partition(topic, 0).map(|p| p.offset()));
    if !matches!(committed, Some(Offset::Invalid)) {
        return;
    }
    let marked = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .and_then(|(_, high)| {
            let mut start = TopicPartitionList::new();
            start.add_partition_offset(topic, 0, Offset::Offset(high))?;
            consumer.commit(&start, CommitMode::Sync)
        });
    if let Err(error) = marked {
        tracing::warn!(%error, topic, "Marking where the signals topic is read from failed.");
    }
}

/// A static member does not leave its group when it closes (KIP-345), so
/// a standby would wait out the failover timeout after a graceful stop;
/// unsubscribing first does send the leave, once the partition is given
/// back, which needs the consumer polled a little longer.
async fn leave_now(consumer: &Arc<StreamConsumer<LeaseContext>>) {
    consumer.unsubscribe();
    let _ = tokio::time::timeout(LEAVE_GRACE, async {
        loop {
            let _ = consumer.recv().await;
        }
    })
    .await;
}
