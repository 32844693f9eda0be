//! The consumer's librdkafka context: rebalances counted (a batch read
//! across one is discarded), a lost assignment noted, and statistics
//! turned into the lag gauge and a watch on partitions that stop fetching.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oda_cdc_core::kafka::LogContext;
use prometheus::IntGaugeVec;
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;

/// Counts rebalances (a batch read across one is discarded), notes a lost
/// assignment and turns librdkafka's statistics into the lag gauge.
pub(super) struct RunnerContext {
    pub(super) rebalances: AtomicU64,
    /// The group took this member's partitions without it leaving: its
    /// session timed out (the coordinator's broker went away) or another
    /// member fenced it. A static member that then rejoins with the same
    /// consumer can hold its partitions again and never fetch from them
    /// (seen under broker kills), so the session ends instead and the next
    /// one joins with a new consumer.
    pub(super) lost: AtomicBool,
    pub(super) lag: IntGaugeVec,
    /// Assigned partitions not fetching (librdkafka's `fetch_state` other
    /// than `active`) and since when, from the statistics.
    waiting: Mutex<HashMap<(String, i32), (String, Instant)>>,
    /// Set once a partition waited longer than [`FETCH_PATIENCE`].
    stuck: Mutex<Option<String>>,
}

/// How long an assigned partition may wait to fetch (for its committed
/// offset, or for its new leader to confirm the position) before the
/// session starts again with a new consumer. Each takes milliseconds when
/// brokers answer; librdkafka has been seen to stay in `validate-epoch-wait`
/// for good after a leader moved, the partition silently unread.
pub(super) const FETCH_PATIENCE: Duration = Duration::from_secs(30);

/// The `fetch_state`s of an assigned partition that is not fetching yet.
const WAITING_STATES: &[&str] = &["offset-query", "offset-wait", "validate-epoch-wait"];

impl RunnerContext {
    pub(super) fn new(lag: IntGaugeVec) -> Self {
        Self {
            rebalances: AtomicU64::new(0),
            lost: AtomicBool::new(false),
            lag,
            waiting: Mutex::default(),
            stuck: Mutex::default(),
        }
    }

    /// A partition that waited to fetch longer than [`FETCH_PATIENCE`],
    /// described for the log.
    pub(super) fn stuck(&self) -> Option<String> {
        self.stuck
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn watch_fetching(&self, statistics: &Statistics) {
        let now = Instant::now();
        let mut waiting = self
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut still = HashMap::new();
        for (topic, stats) in &statistics.topics {
            for (&partition, p) in &stats.partitions {
                if partition < 0 || !WAITING_STATES.contains(&p.fetch_state.as_str()) {
                    continue;
                }
                let key = (topic.clone(), partition);
                let since = match waiting.remove(&key) {
                    Some((state, since)) if state == p.fetch_state => since,
                    _ => now,
                };
                if now.duration_since(since) > FETCH_PATIENCE {
                    let mut stuck = self
                        .stuck
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    stuck.get_or_insert_with(|| {
                        format!(
                            "{topic} [{partition}] has waited in fetch state {} for over {} s",
                            p.fetch_state,
                            FETCH_PATIENCE.as_secs()
                        )
                    });
                }
                still.insert(key, (p.fetch_state.clone(), since));
            }
        }
        *waiting = still;
    }
}

impl ClientContext for RunnerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        LogContext.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        LogContext.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        self.watch_fetching(&statistics);
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
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::SeqCst);
        if let Rebalance::Revoke(partitions) = rebalance {
            if consumer.assignment_lost() {
                self.lost.store(true, Ordering::SeqCst);
                tracing::warn!(
                    partitions = partitions.count(),
                    "The group took this member's partitions (its session timed out, or it was \
                     fenced); starting a new session with a new consumer."
                );
            } else {
                tracing::info!(partitions = partitions.count(), "Partitions revoked.");
            }
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
