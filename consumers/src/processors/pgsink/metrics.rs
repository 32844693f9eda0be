//! The sink's own metrics (contract.md#metrics); lag is the runner's
//! `oda_cdc_consumer_lag`.

use std::sync::OnceLock;

use oda_cdc_core::metrics::{counter_vec, histogram_vec};
use prometheus::{Histogram, HistogramVec, IntCounterVec, Registry};

use super::store::Applied;

#[derive(Debug)]
pub(crate) struct PgMetrics {
    /// `table`, `op` (upsert, delete).
    rows: IntCounterVec,
    columns: IntCounterVec,
    pub(crate) batch_duration: Histogram,
}

static METRICS: OnceLock<PgMetrics> = OnceLock::new();

impl PgMetrics {
    /// The runner opens a new sink after every failure: the metrics are
    /// registered once and shared by all of them.
    pub(crate) fn get(registry: &Registry) -> prometheus::Result<&'static PgMetrics> {
        if let Some(metrics) = METRICS.get() {
            return Ok(metrics);
        }
        let durations: HistogramVec = histogram_vec(
            registry,
            "oda_cdc_pg_batch_duration_seconds",
            "Time one batch's database transaction took (rows and offsets together).",
            vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
            &[],
        )?;
        let metrics = PgMetrics {
            rows: counter_vec(
                registry,
                "oda_cdc_pg_rows_total",
                "Rows written to the mirror, by table and op (upsert, delete).",
                &["table", "op"],
            )?,
            columns: counter_vec(
                registry,
                "oda_cdc_pg_columns_added_total",
                "Columns the sink added for fields that appeared in the stream.",
                &["table"],
            )?,
            batch_duration: durations.with_label_values(&[] as &[&str]),
        };
        Ok(METRICS.get_or_init(|| metrics))
    }

    /// Creates each table's series at zero, so alerts and `increase()`
    /// see the first row.
    pub(crate) fn prime<'a>(&self, tables: impl Iterator<Item = &'a str>) {
        for table in tables {
            for op in ["upsert", "delete"] {
                self.rows.with_label_values(&[table, op]);
            }
            self.columns.with_label_values(&[table]);
        }
    }

    pub(crate) fn count(&self, applied: &Applied) {
        for (table, upserted, deleted) in &applied.rows {
            self.rows
                .with_label_values(&[table.as_str(), "upsert"])
                .inc_by(*upserted as u64);
            self.rows
                .with_label_values(&[table.as_str(), "delete"])
                .inc_by(*deleted as u64);
        }
        for (table, _) in &applied.columns {
            self.columns.with_label_values(&[table.as_str()]).inc();
        }
    }
}
