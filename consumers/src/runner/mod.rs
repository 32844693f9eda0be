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

mod context;
mod handle;
mod inputs;
mod membership;
mod received;
mod registry_watch;
mod session;
mod write;

pub mod changelog;
pub mod decode;
pub mod follow;
pub mod metrics;
pub mod processor;

use std::time::Duration;

use anyhow::Context as _;
use oda_cdc_core::config::TopicClass;
use oda_cdc_core::config::{Delivery, Settings};
use oda_cdc_core::kafka::refusal::MAX_REFUSALS;
use oda_cdc_core::kafka::{Refusals, Refused, TopicSpec};
use oda_cdc_core::service::{Service, SessionEnd, supervise};
use oda_cdc_core::shutdown::CancellationToken;
use rdkafka::error::KafkaError;

use self::decode::{DecodeError, Decoder};
use self::membership::Membership;
use self::metrics::{Metrics, PerRecord};
use self::processor::{Context, Processor};
use self::registry_watch::{RegistryWatch, Verdict};
use self::session::session;

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
    #[error(
        "the group assigned topics this instance does not read ({0}): a stale assignment of an \
         earlier member; joining again as a new member"
    )]
    StaleAssignment(String),
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("Kafka: {0}")]
    Refused(Refused),
    #[error("another instance with transactional id `{0}` took over")]
    Fenced(String),
    #[error(transparent)]
    Registry(#[from] DecodeError),
    #[error("the consumer has no group metadata for the transaction")]
    NoGroup,
    #[error(
        "the group took this member's partitions (its session timed out, or it was fenced); \
         a new consumer joins"
    )]
    AssignmentLost,
    #[error("{0}; a new consumer joins")]
    FetchStuck(String),
    #[error("the processor's store: {0:#}")]
    Store(anyhow::Error),
}

/// Runs processor `P` until `shutdown`: the admin server, topics, then
/// sessions, started again after failures with a growing pause.
/// A second fencing this soon after the first is another instance, not a
/// broker failover: the two would otherwise take the identity from each
/// other forever.
const FENCED_AGAIN_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// When this process was last fenced. Under Kafka 4 a transaction the
/// coordinator times out (a broker killed mid-commit) ends the producer's
/// epoch exactly as a newer instance does; librdkafka reports both as
/// fenced, so the first fencing restarts the session and only a second one
/// soon after stops the processor.
#[derive(Debug, Default)]
struct FencedRecently(std::sync::Mutex<Option<std::time::Instant>>);

impl FencedRecently {
    /// Notes a fencing; true when the previous one was recent.
    fn again(&self) -> bool {
        let Ok(mut last) = self.0.lock() else {
            return true;
        };
        let recent = last.is_some_and(|at| at.elapsed() < FENCED_AGAIN_WITHIN);
        *last = Some(std::time::Instant::now());
        recent
    }
}

pub async fn run<P: Processor>(
    settings: Settings,
    options: RunOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let service = Service::start(
        &settings,
        P::METRICS_PORT,
        &["kafka", "batch", inputs::CHECK],
        &shutdown,
    )
    .await?;
    let metrics = Metrics::register(&service.registry).context("registering metrics")?;
    metrics.prime(P::NAME);
    let topics = service.topics.clone();
    let mut specs = P::output_topics(&settings, &topics);
    specs.push(TopicSpec::retained(TopicClass::Dlq, topics.dlq(), 14));
    service.ensure_topics(&specs).await?;

    let decoder = Decoder::new(&settings.schema_registry).context("schema_registry")?;
    let group = settings
        .consumer
        .group
        .clone()
        .unwrap_or_else(|| P::NAME.to_owned());
    let transactional_id = format!("{group}-{}", options.instance);
    let inputs = P::inputs(&settings, &topics);
    let shared = Shared {
        membership: Membership::new(&transactional_id, &inputs),
        registry: RegistryWatch::default(),
        refusals: Refusals::default(),
        transactional_id,
        group,
        inputs,
        max_retries: settings.consumer.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
        delivery: settings.consumer.delivery,
        context: Context {
            settings,
            topics,
            registry: service.registry.clone(),
            health: service.health.clone(),
            shutdown: shutdown.clone(),
        },
        per_record: metrics.per_record(P::NAME),
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
    let fenced = FencedRecently::default();
    supervise(&service.health, &shutdown, || async {
        match session::<P>(&shared).await {
            Ok(()) => Ok(()),
            Err(SessionError::Unusable(error)) => Err(SessionEnd::Stop(error)),
            Err(SessionError::Fenced(id)) if fenced.again() => Err(SessionEnd::Stop(anyhow::anyhow!(
                "another {} instance with transactional id `{id}` took over (fenced twice within \
                 {}s); this one stops (give each instance its own --instance)",
                P::NAME,
                FENCED_AGAIN_WITHIN.as_secs()
            ))),
            Err(SessionError::Fenced(id)) => {
                tracing::warn!(
                    transactional_id = %id,
                    "Fenced: the transaction coordinator ended this producer's epoch (a broker \
                     failover or a transaction that timed out) or another instance took over; \
                     starting again, and stopping if fenced again soon."
                );
                Err(SessionEnd::Restart {
                    check: "kafka",
                    reason: format!("fenced (transactional id `{id}`); starting again"),
                })
            }
            Err(SessionError::Refused(refused)) => {
                if shared.refusals.failed(&refused) {
                    Err(SessionEnd::Stop(anyhow::anyhow!(
                        "{refused}; refused {MAX_REFUSALS} times in a row, {} stops rather than \
                         retrying the same records forever",
                        P::NAME
                    )))
                } else {
                    Err(SessionEnd::Restart {
                        check: "kafka",
                        reason: refused.to_string(),
                    })
                }
            }
            Err(SessionError::Registry(error)) => {
                shared
                    .metrics
                    .registry_errors
                    .with_label_values(&[P::NAME, registry_watch::kind(&error)])
                    .inc();
                match shared.registry.failed(&error, &shared.context.health) {
                    Verdict::Retry => Err(SessionEnd::Restart {
                        check: "registry",
                        reason: error.to_string(),
                    }),
                    Verdict::Stop => Err(SessionEnd::Stop(anyhow::anyhow!(
                        "{error} for {} s; {} stops",
                        registry_watch::AUTH_GRACE.as_secs(),
                        P::NAME
                    ))),
                }
            }
            Err(error @ SessionError::Store(_)) => Err(SessionEnd::Restart {
                check: "batch",
                reason: error.to_string(),
            }),
            Err(error) => Err(SessionEnd::Restart {
                check: "kafka",
                reason: error.to_string(),
            }),
        }
    })
    .await
}

/// What every session shares.
struct Shared {
    group: String,
    transactional_id: String,
    membership: Membership,
    registry: RegistryWatch,
    /// Writes refused for good in a row (a dead letter too large for its
    /// topic, an ACL): bounded, not a restart loop.
    refusals: Refusals,
    inputs: Vec<String>,
    max_retries: u32,
    delivery: Delivery,
    context: Context,
    metrics: Metrics,
    /// The series every record touches, resolved once.
    per_record: PerRecord,
    decoder: Decoder,
}

#[cfg(test)]
mod fenced_tests {
    use super::FencedRecently;

    #[test]
    fn a_first_fencing_restarts_and_a_second_soon_after_stops() {
        let fenced = FencedRecently::default();
        assert!(!fenced.again(), "the first fencing is taken for a failover");
        assert!(
            fenced.again(),
            "a second within a minute is another instance"
        );
    }
}
