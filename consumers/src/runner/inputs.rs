//! Watching that the inputs exist. A processor started before its input
//! topics (a fresh cluster, a new entity) waits for them; it says so once
//! per change — in the log, in `/readyz` (check `inputs`) and in
//! `oda_cdc_consumer_missing_inputs` — instead of a warning per poll.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use oda_cdc_core::health::Health;
use oda_cdc_core::kafka::partitions;
use prometheus::IntGaugeVec;
use rdkafka::consumer::StreamConsumer;

use super::context::RunnerContext;

/// How often the inputs are looked up.
const EVERY: Duration = Duration::from_secs(10);

/// The readiness check this module owns.
pub(super) const CHECK: &str = "inputs";

/// Looks the inputs up now and every [`EVERY`] until the task is dropped.
pub(super) async fn watch(
    consumer: Arc<StreamConsumer<RunnerContext>>,
    inputs: Vec<String>,
    health: Health,
    missing_gauge: IntGaugeVec,
    processor: &'static str,
) {
    let mut reported: Option<BTreeSet<String>> = None;
    loop {
        let lookup = {
            let consumer = Arc::clone(&consumer);
            let inputs = inputs.clone();
            tokio::task::spawn_blocking(move || missing(&consumer, &inputs)).await
        };
        if let Ok(Some(missing)) = lookup
            && reported.as_ref() != Some(&missing)
        {
            report(&missing, &health, &missing_gauge, processor);
            reported = Some(missing);
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// The inputs the cluster does not have; `None` when it cannot be asked
/// (the session's own errors say why).
fn missing(
    consumer: &StreamConsumer<RunnerContext>,
    inputs: &[String],
) -> Option<BTreeSet<String>> {
    let mut missing = BTreeSet::new();
    for topic in inputs {
        if partitions(consumer, topic, Duration::from_secs(5))
            .ok()?
            .is_empty()
        {
            missing.insert(topic.clone());
        }
    }
    Some(missing)
}

fn report(missing: &BTreeSet<String>, health: &Health, gauge: &IntGaugeVec, processor: &str) {
    gauge
        .with_label_values(&[processor])
        .set(i64::try_from(missing.len()).unwrap_or(i64::MAX));
    if missing.is_empty() {
        tracing::info!("Every input topic exists.");
        health.set_ok(CHECK);
    } else {
        let list = missing.iter().cloned().collect::<Vec<_>>().join(", ");
        tracing::warn!(topics = %list, "Input topics do not exist (yet); waiting for them.");
        health.set_failed(CHECK, format!("waiting for topics: {list}"));
    }
}
