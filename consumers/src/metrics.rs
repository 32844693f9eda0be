//! The runner's metrics (SPEC §7 names), labelled by processor.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Debug, Clone)]
pub struct Metrics {
    /// `outcome`: processed, dead_lettered, retried.
    pub records: IntCounterVec,
    pub duration: HistogramVec,
    pub lag: IntGaugeVec,
    pub dlq: IntCounterVec,
    pub transactions: IntCounterVec,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let records = IntCounterVec::new(
            Opts::new(
                "oda_cdc_consumer_records_total",
                "Input records by outcome (processed, dead_lettered, retried).",
            ),
            &["processor", "outcome"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "oda_cdc_consumer_process_duration_seconds",
                "Time a processor spent on one record, retries included.",
            )
            .buckets(vec![
                0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
            ]),
            &["processor"],
        )?;
        let lag = IntGaugeVec::new(
            Opts::new(
                "oda_cdc_consumer_lag",
                "Records between the group's position and the end of the partition.",
            ),
            &["topic", "partition"],
        )?;
        let dlq = IntCounterVec::new(
            Opts::new(
                "oda_cdc_dlq_records_total",
                "Records written to the dead-letter topic.",
            ),
            &["processor"],
        )?;
        let transactions = IntCounterVec::new(
            Opts::new(
                "oda_cdc_transactions_total",
                "Kafka transactions by outcome (committed, aborted).",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(records.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(lag.clone()))?;
        registry.register(Box::new(dlq.clone()))?;
        registry.register(Box::new(transactions.clone()))?;
        Ok(Self {
            records,
            duration,
            lag,
            dlq,
            transactions,
        })
    }
}
