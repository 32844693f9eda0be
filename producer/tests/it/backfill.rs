//! `oda-producer snapshot` (a backfill) and `rewind`, through a running
//! service and without one.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use oda_cdc_core::config::Settings;
use oda_producer::StartFrom;
use serde_json::json;

use crate::harness::{
    Producer, Sim, assert_no_problems, converge, events, settings, wait_streaming,
};

const BIN: &str = env!("CARGO_BIN_EXE_oda-producer");

/// Runs the binary with the same identity and topics as `settings`.
async fn cli(settings: &Settings, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env("RUST_LOG", "warn")
        .env("KAFKA_BROKERS", &settings.kafka.brokers)
        .env("ODA_BASE_URL", &settings.source.base_url)
        .env("ODA_CDC_KAFKA__TOPIC_PREFIX", &settings.kafka.topic_prefix)
        .env(
            "ODA_CDC_PRODUCER__TRANSACTIONAL_ID",
            &settings.producer.transactional_id,
        )
        .env("ODA_CDC_HTTP__RATE_LIMIT", "0");
    tokio::task::spawn_blocking(move || command.output().expect("runs"))
        .await
        .expect("join")
}

/// Ids that got a backfill `r`, and how often.
async fn backfilled(prefix: &str, entity: &str) -> BTreeMap<i64, usize> {
    let topic = oda_model::topics::Topics::new(prefix, None).entity(entity);
    let mut counts = BTreeMap::new();
    for (id, list) in events(&topic).await {
        let n = list
            .iter()
            .filter(|e| e.op == "r" && e.backfill.is_some())
            .count();
        if n > 0 {
            counts.insert(id, n);
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_through_the_running_service_while_it_streams() {
    let sim = Sim::start(|c| c.scale = 8_000).await;
    let entities = ["Sag", "Aktør"];
    let initial = sim.initial(&entities);
    let settings = settings(&sim.sim.base_url(), &entities);
    let prefix = settings.kafka.topic_prefix.clone();
    let producer = Producer::start(settings.clone(), StartFrom::Beginning);
    wait_streaming(&prefix, "Sag", Duration::from_secs(60)).await;
    let before: BTreeSet<i64> = sim.hashes("Sag").keys().copied().collect();

    // Changes keep coming while the backfill runs.
    let request = cli(&settings, &["snapshot", "--entities", "Sag"]);
    let changes = async {
        for _ in 0..12 {
            sim.mutate(json!({"entity": "Sag", "inserts": 2, "updates": 8}))
                .await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let (output, ()) = tokio::join!(request, changes);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "snapshot failed: {stderr}");
    assert!(
        stderr.contains("requested from the running service"),
        "{stderr}"
    );

    // A rewind through the service is acknowledged once it commits.
    let output = cli(
        &settings,
        &["rewind", "--entity", "Aktør", "--to", "2014-06-01T00:00:00"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "rewind failed: {stderr}");
    assert!(
        stderr.contains("cursor rewound to 2014-06-01T00:00:00.000"),
        "{stderr}"
    );

    let problems = converge(&sim, &prefix, &entities, &initial, Duration::from_secs(60)).await;
    producer.stop().await;
    assert_no_problems(&problems);
    let counts = backfilled(&prefix, "Sag").await;
    let missing: Vec<_> = before
        .iter()
        .filter(|id| !counts.contains_key(id))
        .collect();
    assert!(missing.is_empty(), "ids not re-emitted: {missing:?}");
    assert!(counts.values().all(|n| *n == 1), "every id re-emitted once");
    assert!(
        backfilled(&prefix, "Aktør").await.is_empty(),
        "only the requested entity"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_and_rewind_without_a_service() {
    let sim = Sim::start(|c| c.scale = 3_000).await;
    let settings = settings(&sim.sim.base_url(), &["Aktør"]);
    let prefix = settings.kafka.topic_prefix.clone();
    // A service snapshots the entity, then stops.
    let producer = Producer::start(settings.clone(), StartFrom::Beginning);
    wait_streaming(&prefix, "Aktør", Duration::from_secs(60)).await;
    producer.stop().await;

    let output = cli(&settings, &["snapshot", "--entities", "aktør"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("No service is running"), "{stderr}");
    let counts = backfilled(&prefix, "Aktør").await;
    assert_eq!(
        counts.len(),
        sim.hashes("Aktør").len(),
        "every row re-emitted"
    );
    assert!(counts.values().all(|n| *n == 1));

    let output = cli(
        &settings,
        &["rewind", "--entity", "Aktør", "--to", "2015-01-01T00:00:00"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let topic = oda_model::topics::Topics::new(&prefix, None);
    let kafka = settings.kafka.clone();
    let checkpoints =
        tokio::task::spawn_blocking(move || oda_producer::read_checkpoints(&kafka, &topic))
            .await
            .expect("join")
            .expect("checkpoints");
    let cursor = checkpoints["Aktør"].cursor.clone().expect("cursor");
    assert_eq!(cursor.opdateringsdato, "2015-01-01T00:00:00.000");
}
