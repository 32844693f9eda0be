//! The producer's metrics (names as contract.md#metrics fixes them), registered once into the
//! registry the admin server exposes.

use oda_cdc_core::metrics::{
    counter_vec, dead_letters, gauge_vec, histogram_vec, transaction_stalled, transactions,
};
use prometheus::{GaugeVec, HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};

#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    pub(crate) published: IntCounterVec,
    pub(crate) skipped: IntCounterVec,
    pub(crate) polls: IntCounterVec,
    pub(crate) poll_duration: HistogramVec,
    pub(crate) source_lag: GaugeVec,
    /// How long the last complete re-read of the lookback window took:
    /// the longest a late commit waits to be found.
    pub(crate) window_pass: GaugeVec,
    pub(crate) last_success: GaugeVec,
    pub(crate) completeness: GaugeVec,
    pub(crate) transactions: IntCounterVec,
    pub(crate) transaction_stalled: IntGauge,
    pub(crate) dlq: IntCounterVec,
    pub(crate) unknown_fields: IntCounterVec,
    /// When each entity's last reconcile completed, so an operator can
    /// tell when the next delete will show.
    pub(crate) last_reconcile: GaugeVec,
    /// Ids the source listed in the last completed reconcile.
    pub(crate) reconcile_ids: GaugeVec,
    pub(crate) deletes_confirmed: IntCounterVec,
    pub(crate) unserved: GaugeVec,
    /// 1 while this instance holds the lease and writes (crate::lease).
    pub(crate) active: IntGauge,
    pub(crate) takeovers: IntCounter,
}

impl Metrics {
    pub(crate) fn register(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            published: counter_vec(
                registry,
                "oda_cdc_records_published_total",
                "Change events committed to entity topics.",
                &["entity", "op"],
            )?,
            skipped: counter_vec(
                registry,
                "oda_cdc_records_skipped_total",
                "Source records not published (content unchanged since last published).",
                &["entity", "reason"],
            )?,
            polls: counter_vec(
                registry,
                "oda_cdc_polls_total",
                "Poll cycles by outcome (ok, error, invalid_page).",
                &["entity", "outcome"],
            )?,
            poll_duration: histogram_vec(
                registry,
                "oda_cdc_poll_duration_seconds",
                "Duration of a poll cycle.",
                vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0],
                &["entity"],
            )?,
            window_pass: gauge_vec(
                registry,
                "oda_cdc_lookback_pass_seconds",
                "How long the last complete re-read of the poll.lookback window took (the longest a late commit waits to be found).",
                &["entity"],
            )?,
            source_lag: gauge_vec(
                registry,
                "oda_cdc_source_lag_seconds",
                "Now minus the newest opdateringsdato (UTC) the cursor has passed.",
                &["entity"],
            )?,
            last_success: gauge_vec(
                registry,
                "oda_cdc_last_successful_poll_timestamp_seconds",
                "Unix time of the last poll cycle that completed and committed.",
                &["entity"],
            )?,
            completeness: gauge_vec(
                registry,
                "oda_cdc_completeness_ratio",
                "Ids published and alive divided by the source's $inlinecount.",
                &["entity"],
            )?,
            transactions: transactions(registry)?,
            transaction_stalled: transaction_stalled(registry)?,
            dlq: dead_letters(registry)?,
            unknown_fields: counter_vec(
                registry,
                "oda_cdc_unknown_fields_total",
                "Source fields the Avro schema does not know (carried in `extra`).",
                &["entity"],
            )?,
            last_reconcile: gauge_vec(
                registry,
                "oda_cdc_last_reconcile_timestamp_seconds",
                "Unix time of the last id reconciliation that completed (deletes are found there).",
                &["entity"],
            )?,
            reconcile_ids: gauge_vec(
                registry,
                "oda_cdc_reconcile_ids_checked",
                "Ids the source listed in the last completed reconciliation.",
                &["entity"],
            )?,
            deletes_confirmed: counter_vec(
                registry,
                "oda_cdc_reconcile_deletes_total",
                "Ids found gone at a reconciliation and confirmed by key (published as d).",
                &["entity"],
            )?,
            unserved: gauge_vec(
                registry,
                "oda_cdc_entity_unserved",
                "1 while the source answers 404 for a configured entity set (the others go on).",
                &["entity"],
            )?,
            active: register(
                registry,
                IntGauge::new(
                    "oda_cdc_producer_active",
                    "1 while this instance holds the lease and writes; 0 while it stands by.",
                )?,
            )?,
            takeovers: register(
                registry,
                IntCounter::new(
                    "oda_cdc_producer_takeovers_total",
                    "Times this instance acquired the lease and started writing.",
                )?,
            )?,
        })
    }

    /// Forgets the per-entity gauges of the last term, so a standby shows
    /// no cursor or poll time that is no longer its own (alerts read the
    /// active instance's).
    pub(crate) fn stand_by(&self) {
        self.active.set(0);
        self.source_lag.reset();
        self.window_pass.reset();
        self.last_success.reset();
        self.completeness.reset();
    }

    /// Creates the series alerts watch at zero, so `increase()` and
    /// `absent()` see them before the first event.
    pub(crate) fn prime(&self, entities: &[String]) {
        for outcome in ["committed", "aborted"] {
            self.transactions.with_label_values(&[outcome]);
        }
        self.dlq.with_label_values(&["oda-producer"]);
        for entity in entities {
            self.unserved.with_label_values(&[entity.as_str()]);
            for outcome in ["ok", "error", "invalid_page", "not_served"] {
                self.polls.with_label_values(&[entity.as_str(), outcome]);
            }
            self.skipped
                .with_label_values(&[entity.as_str(), "unchanged"]);
            self.unknown_fields.with_label_values(&[entity.as_str()]);
            self.deletes_confirmed.with_label_values(&[entity.as_str()]);
        }
    }
}

fn register<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> prometheus::Result<M> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}
