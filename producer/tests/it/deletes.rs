//! Hard deletes become `d` plus a tombstone within `reconcile.interval`;
//! inserts racing a reconcile never do; rows with a null timestamp are
//! found by the sweep.

use std::time::Duration;

use oda_cdc_core::config::HumanDuration;
use oda_producer::StartFrom;
use serde_json::json;

use crate::harness::{
    Producer, Sim, assert_no_problems, converge, events, free_port, metric, op_counts, settings,
    wait_streaming,
};

const ENTITIES: &[&str] = &["Sag", "Dagsordenspunkt"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_are_published_and_racing_inserts_are_not() {
    let sim = Sim::start(|c| c.scale = 8_000).await;
    let initial = sim.initial(ENTITIES);
    let mut settings = settings(&sim.sim.base_url(), ENTITIES);
    settings.reconcile.interval = HumanDuration::from(Duration::from_secs(2));
    let port = free_port();
    settings.metrics.addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    let prefix = settings.kafka.topic_prefix.clone();
    let started = chrono::Utc::now().timestamp() as f64;
    let producer = Producer::start(settings, StartFrom::Beginning);
    wait_streaming(&prefix, "Sag", Duration::from_secs(60)).await;

    // Deletes and inserts keep coming while reconciles run every 2 s.
    for _ in 0..10 {
        sim.mutate(json!({"entity": "Sag", "inserts": 4, "deletes": 2, "updates": 2}))
            .await;
        sim.mutate(json!({"entity": "Dagsordenspunkt", "updates": 6, "deletes": 1}))
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let null_stamped_updates = sim
        .log()
        .iter()
        .filter(|e| e.entity == "Dagsordenspunkt" && e.op == "u" && e.opdateringsdato.is_none())
        .count();

    let problems = converge(&sim, &prefix, ENTITIES, &initial, Duration::from_secs(60)).await;
    // The reconcile metrics, once the last delete's reconcile completed.
    let deletes_metric = "oda_cdc_reconcile_deletes_total{entity=\"Sag\"}";
    let expected_deletes = sim
        .log()
        .iter()
        .filter(|e| e.entity == "Sag" && e.op == "d")
        .count() as f64;
    let mut text = String::new();
    for _ in 0..20 {
        text = sim.scrape(port).await.unwrap_or_default();
        if metric(&text, deletes_metric) > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    producer.stop().await;
    assert_no_problems(&problems);
    assert!(
        metric(&text, deletes_metric) > 0.0 && metric(&text, deletes_metric) <= expected_deletes,
        "confirmed deletes counted:\n{text}"
    );
    assert!(
        metric(
            &text,
            "oda_cdc_last_reconcile_timestamp_seconds{entity=\"Sag\"}"
        ) >= started,
        "last reconcile time:\n{text}"
    );
    assert!(
        metric(&text, "oda_cdc_reconcile_ids_checked{entity=\"Sag\"}") > 100.0,
        "ids checked:\n{text}"
    );
    // Every deleted id that had been published gets a `d` event plus a
    // tombstone (both carry oda.op = d); ids deleted before anyone saw
    // them need none.
    let sag = op_counts(&prefix, "Sag").await;
    let published = events(&oda_model::topics::Topics::new(&prefix, None).entity("Sag")).await;
    let deleted_and_seen = sim
        .log()
        .iter()
        .filter(|e| e.entity == "Sag" && e.op == "d")
        .filter(|e| published.contains_key(&i64::from(e.id)))
        .count();
    assert!(
        deleted_and_seen >= 10,
        "most of the 20 deletes hit published rows: {deleted_and_seen}"
    );
    assert_eq!(sag.get("d"), Some(&(2 * deleted_and_seen)), "{sag:?}");
    assert!(
        null_stamped_updates > 0,
        "the run must change rows whose opdateringsdato is null, or the sweep went untested"
    );
}
