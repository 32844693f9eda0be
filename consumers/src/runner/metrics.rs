//! The runner's metrics (names as contract.md#metrics fixes them), labelled by processor.

use oda_cdc_core::metrics::{
    counter_vec, dead_letters, histogram_vec, int_gauge_vec, transactions,
};
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Registry};

#[derive(Debug, Clone)]
pub struct Metrics {
    /// `outcome`: processed, dead_lettered, retried.
    pub records: IntCounterVec,
    pub duration: HistogramVec,
    pub lag: IntGaugeVec,
    pub dlq: IntCounterVec,
    pub transactions: IntCounterVec,
    /// `kind`: unavailable, unauthorized.
    pub registry_errors: IntCounterVec,
    pub missing_inputs: IntGaugeVec,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            records: counter_vec(
                registry,
                "oda_cdc_consumer_records_total",
                "Input records by outcome (processed, dead_lettered, retried).",
                &["processor", "outcome"],
            )?,
            duration: histogram_vec(
                registry,
                "oda_cdc_consumer_process_duration_seconds",
                "Time a processor spent on one record, retries included.",
                vec![
                    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0,
                    5.0,
                ],
                &["processor"],
            )?,
            lag: int_gauge_vec(
                registry,
                "oda_cdc_consumer_lag",
                "Records between the group's position and the end of the partition.",
                &["topic", "partition"],
            )?,
            dlq: dead_letters(registry)?,
            transactions: transactions(registry)?,
            registry_errors: counter_vec(
                registry,
                "oda_cdc_registry_errors_total",
                "Batches read again because the schema registry was unavailable or refused us.",
                &["processor", "kind"],
            )?,
            missing_inputs: int_gauge_vec(
                registry,
                "oda_cdc_consumer_missing_inputs",
                "Input topics that do not exist (yet); the processor waits for them.",
                &["processor"],
            )?,
        })
    }

    /// The series of `processor` that every record touches.
    pub fn per_record(&self, processor: &str) -> PerRecord {
        PerRecord {
            processed: self.records.with_label_values(&[processor, "processed"]),
            duration: self.duration.with_label_values(&[processor]),
        }
    }

    /// Creates the series alerts watch at zero, so `increase()` sees the
    /// first dead letter or abort.
    pub fn prime(&self, processor: &str) {
        for outcome in ["processed", "dead_lettered", "retried"] {
            self.records.with_label_values(&[processor, outcome]);
        }
        self.dlq.with_label_values(&[processor]);
        self.missing_inputs.with_label_values(&[processor]);
        for kind in ["unavailable", "unauthorized"] {
            self.registry_errors.with_label_values(&[processor, kind]);
        }
        for outcome in ["committed", "aborted"] {
            self.transactions.with_label_values(&[outcome]);
        }
    }
}

/// A processor's per-record series, looked up once: a labelled lookup
/// hashes its labels and takes a lock, which showed per record.
#[derive(Debug, Clone)]
pub struct PerRecord {
    pub processed: IntCounter,
    pub duration: Histogram,
}
