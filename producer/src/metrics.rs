//! The producer's metrics (SPEC §7 names), registered once into the
//! registry the admin server exposes.

use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

#[derive(Debug, Clone)]
pub struct Metrics {
    pub published: IntCounterVec,
    pub skipped: IntCounterVec,
    pub polls: IntCounterVec,
    pub poll_duration: HistogramVec,
    pub source_lag: GaugeVec,
    pub last_success: GaugeVec,
    pub completeness: GaugeVec,
    pub transactions: IntCounterVec,
    pub dlq: IntCounterVec,
    pub unknown_fields: IntCounterVec,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let published = IntCounterVec::new(
            Opts::new(
                "oda_cdc_records_published_total",
                "Change events committed to entity topics.",
            ),
            &["entity", "op"],
        )?;
        let skipped = IntCounterVec::new(
            Opts::new(
                "oda_cdc_records_skipped_total",
                "Source records not published (content unchanged since last published).",
            ),
            &["entity", "reason"],
        )?;
        let polls = IntCounterVec::new(
            Opts::new(
                "oda_cdc_polls_total",
                "Poll cycles by outcome (ok, error, invalid_page).",
            ),
            &["entity", "outcome"],
        )?;
        let poll_duration = HistogramVec::new(
            HistogramOpts::new("oda_cdc_poll_duration_seconds", "Duration of a poll cycle.")
                .buckets(vec![
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                ]),
            &["entity"],
        )?;
        let source_lag = GaugeVec::new(
            Opts::new(
                "oda_cdc_source_lag_seconds",
                "Now minus the newest opdateringsdato (UTC) the cursor has passed.",
            ),
            &["entity"],
        )?;
        let last_success = GaugeVec::new(
            Opts::new(
                "oda_cdc_last_successful_poll_timestamp_seconds",
                "Unix time of the last poll cycle that completed and committed.",
            ),
            &["entity"],
        )?;
        let completeness = GaugeVec::new(
            Opts::new(
                "oda_cdc_completeness_ratio",
                "Ids published and alive divided by the source's $inlinecount.",
            ),
            &["entity"],
        )?;
        let transactions = IntCounterVec::new(
            Opts::new(
                "oda_cdc_transactions_total",
                "Kafka transactions by outcome (committed, aborted).",
            ),
            &["outcome"],
        )?;
        let dlq = IntCounterVec::new(
            Opts::new(
                "oda_cdc_dlq_records_total",
                "Records sent to the dead-letter topic.",
            ),
            &["processor"],
        )?;
        let unknown_fields = IntCounterVec::new(
            Opts::new(
                "oda_cdc_unknown_fields_total",
                "Source fields the Avro schema does not know (carried in `extra`).",
            ),
            &["entity"],
        )?;
        registry.register(Box::new(unknown_fields.clone()))?;
        registry.register(Box::new(published.clone()))?;
        registry.register(Box::new(skipped.clone()))?;
        registry.register(Box::new(polls.clone()))?;
        registry.register(Box::new(poll_duration.clone()))?;
        registry.register(Box::new(source_lag.clone()))?;
        registry.register(Box::new(last_success.clone()))?;
        registry.register(Box::new(completeness.clone()))?;
        registry.register(Box::new(transactions.clone()))?;
        registry.register(Box::new(dlq.clone()))?;
        Ok(Self {
            published,
            skipped,
            polls,
            poll_duration,
            source_lag,
            last_success,
            completeness,
            transactions,
            dlq,
            unknown_fields,
        })
    }
}
