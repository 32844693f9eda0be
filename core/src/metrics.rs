//! Metrics made and registered in one call, and the ones every Kafka
//! writer of the workspace shares, so each name and help text (contract.md#operations)
//! is written once.

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// A counter family, registered.
pub fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// A float gauge family, registered.
pub fn gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<GaugeVec> {
    let metric = GaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// An integer gauge family, registered.
pub fn int_gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// A histogram family with explicit buckets, registered.
pub fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: Vec<f64>,
    labels: &[&str],
) -> prometheus::Result<HistogramVec> {
    let metric = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// `oda_cdc_transactions_total{outcome}`: committed or aborted.
pub fn transactions(registry: &Registry) -> prometheus::Result<IntCounterVec> {
    counter_vec(
        registry,
        "oda_cdc_transactions_total",
        "Kafka transactions by outcome (committed, aborted).",
        &["outcome"],
    )
}

/// `oda_cdc_dlq_records_total{processor}`.
pub fn dead_letters(registry: &Registry) -> prometheus::Result<IntCounterVec> {
    counter_vec(
        registry,
        "oda_cdc_dlq_records_total",
        "Records written to the dead-letter topic.",
        &["processor"],
    )
}

/// `oda_cdc_transaction_stalled`: 1 while a transaction waits too long for
/// Kafka (see [`crate::kafka::StallWatch`]).
pub fn transaction_stalled(registry: &Registry) -> prometheus::Result<IntGauge> {
    let metric = IntGauge::new(
        "oda_cdc_transaction_stalled",
        "1 while a Kafka transaction has waited longer than 10 s to be acknowledged \
         (brokers away, or fewer in-sync replicas than min.insync.replicas).",
    )?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}
