//! oda-normalize on what the real producer writes (Avro through the
//! registry): every Sag becomes one document, lookup ids resolved to the
//! names the source's lookup sets hold.

use std::collections::HashMap;
use std::time::Duration;

use oda_cdc_core::config::{Delivery, Format};
use oda_cdc_core::shutdown::CancellationToken;
use oda_cdc_testkit::{registry, unique};
use oda_consumers::processors::normalize::Normalize;
use oda_consumers::runner::{self, RunOptions};
use oda_model::topics::Topics;
use oda_producer::RunOptions as ProducerOptions;
use oda_producer::StartFrom;
use serde_json::Value;

use crate::harness::{logs, producer_settings, read_at_least, settings, start_sim};

/// `id → label` of a small lookup set, straight from the simulator.
async fn lookup(
    http: &reqwest::Client,
    base: &str,
    set: &str,
    label: &str,
) -> HashMap<i64, String> {
    let body: Value = http
        .get(format!("{base}/{set}?$top=1000"))
        .send()
        .await
        .expect("lookup set")
        .json()
        .await
        .expect("json");
    body["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|r| Some((r["id"].as_i64()?, r[label].as_str()?.to_owned())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normalize_resolves_lookups_in_what_the_producer_writes() {
    logs();
    let sim = start_sim(1_000, 5).await;
    let base = sim.base_url();
    let http = reqwest::Client::new();
    let status = lookup(&http, &base, "Sagsstatus", "status").await;
    let types = lookup(&http, &base, "Sagstype", "type").await;
    assert!(!status.is_empty() && !types.is_empty());
    let count: Value = http
        .get(format!("{base}/Sag?$inlinecount=allpages&$top=1"))
        .send()
        .await
        .expect("count")
        .json()
        .await
        .expect("json");
    let rows: usize = count["odata.count"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .expect("odata.count");

    // The producer, Avro, captures Sag and its two lookup sets.
    let prefix = unique("it-norm");
    let produce = producer_settings(
        &prefix,
        &base,
        &["Sagsstatus", "Sagstype", "Sag"],
        Format::Avro,
    );
    let stop_producer = CancellationToken::new();
    let producer_task = tokio::spawn(oda_producer::run(
        produce,
        ProducerOptions::from(StartFrom::Beginning),
        stop_producer.clone(),
    ));
    let sag_topic = Topics::new(&prefix, None).entity("Sag");
    let snapshot = read_at_least(&sag_topic, rows, Duration::from_secs(90)).await;
    assert_eq!(snapshot.len(), rows, "the producer snapshotted Sag");

    // The normalizer, once the lookups are on their topics.
    let mut normalize = settings(&prefix, &["Sag"], Delivery::ExactlyOnce);
    normalize.schema_registry = registry();
    let stop = CancellationToken::new();
    let task = tokio::spawn(runner::run::<Normalize>(
        normalize,
        RunOptions {
            instance: unique("it"),
        },
        stop.clone(),
    ));
    let documents = read_at_least(
        &format!("{sag_topic}-processed"),
        rows,
        Duration::from_secs(90),
    )
    .await;
    stop.cancel();
    stop_producer.cancel();
    task.await.expect("join").expect("normalize ran");
    producer_task.await.expect("join").expect("producer ran");

    assert_eq!(documents.len(), rows, "one document per Sag");
    for record in &documents {
        assert_eq!(record.header("content-type"), Some("application/json"));
        let doc: Value =
            serde_json::from_slice(record.value.as_deref().expect("value")).expect("JSON document");
        let fields = &doc["record"];
        let id = doc["id"].as_i64().expect("id");
        assert_eq!(record.key.as_deref(), Some(id.to_string().as_str()));
        assert_eq!(doc["unresolved"], serde_json::json!([]), "Sag({id})");
        if let Some(status_id) = fields["statusid"].as_i64() {
            assert_eq!(
                fields["status"].as_str(),
                status.get(&status_id).map(String::as_str)
            );
        }
        if let Some(type_id) = fields["typeid"].as_i64() {
            assert_eq!(
                fields["type"].as_str(),
                types.get(&type_id).map(String::as_str)
            );
        }
        let updated = fields["opdateringsdato"].as_str().expect("opdateringsdato");
        assert!(
            chrono::DateTime::parse_from_rfc3339(updated).is_ok() && updated.ends_with('Z'),
            "UTC: {updated}"
        );
        for (name, value) in fields.as_object().expect("object") {
            assert_ne!(
                value,
                &Value::String(String::new()),
                "Sag({id}).{name}: empty string"
            );
        }
    }
}
