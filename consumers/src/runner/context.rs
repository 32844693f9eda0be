//! The consumer's librdkafka context: rebalances counted (a batch read
//! across one is discarded) and statistics turned into the lag gauge.

use std::sync::atomic::{AtomicU64, Ordering};

use oda_cdc_core::kafka::LogContext;
use prometheus::IntGaugeVec;
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;

/// Counts rebalances (a batch read across one is discarded) and turns
/// librdkafka's statistics into the lag gauge.
pub(super) struct RunnerContext {
    pub(super) rebalances: AtomicU64,
    pub(super) lag: IntGaugeVec,
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
