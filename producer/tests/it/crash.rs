//! `kill -9` at random instants, during the snapshot and during streaming,
//! with a restart each time: nothing lost, nothing duplicated (contract.md#durability-across-failures).

use std::process::Child;
use std::time::Duration;

use oda_cdc_testkit::{kafka, unique};
use rand::Rng;
use serde_json::json;

use crate::harness::{Sim, assert_no_problems, converge, free_port, metric, op_counts};

const ENTITIES: &[&str] = &["Sag", "Stemme", "Dokument"];
const KILLS: usize = 20;

fn spawn(base_url: &str, prefix: &str, transactional_id: &str, port: u16) -> Child {
    crate::harness::spawn_producer(base_url, prefix, ENTITIES, transactional_id, port)
}

/// Whether Stemme's committed checkpoint shows a snapshot in progress
/// (`None` before the first checkpoint).
async fn snapshot_running(prefix: &str) -> Option<bool> {
    let topic = oda_model::topics::Topics::new(prefix, None);
    let checkpoints =
        tokio::task::spawn_blocking(move || oda_producer::read_checkpoints(&kafka(), &topic))
            .await
            .expect("join")
            .ok()?;
    checkpoints.get("Stemme").map(|c| c.snapshot.is_some())
}

/// Waits (up to 20 s) until this life has read Stemme rows, by its metrics.
async fn stemme_read_started(sim: &Sim, port: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if let Some(text) = sim.scrape(port).await
            && metric(&text, "oda_cdc_records_published_total{entity=\"Stemme\"") > 0.0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_snapshot_and_streaming_loses_and_duplicates_nothing() {
    // Arrange: enough rows and latency that the first kills land mid-snapshot.
    let sim = Sim::start(|c| {
        c.scale = 20_000;
        c.faults.latency = Duration::from_millis(60);
    })
    .await;
    let initial = sim.initial(ENTITIES);
    let prefix = unique("it-crash");
    let transactional_id = unique("it-crash-producer");
    let base_url = sim.sim.base_url();

    // Act: run, kill -9 at a random instant, change the source, restart.
    // Until two kills have hit the snapshot, a life is aimed at it: killed
    // soon after it starts reading Stemme (the snapshot is over in a few
    // lives, so kills at any instant would mostly miss it).
    let mut rng = rand::rng();
    let (mut mid_snapshot, mut mid_stream) = (0, 0);
    let mut round = 0;
    while round < KILLS || ((mid_snapshot < 2 || mid_stream < 5) && round < 3 * KILLS) {
        let port = free_port();
        let mut child = spawn(&base_url, &prefix, &transactional_id, port);
        if mid_snapshot < 2 && mid_stream == 0 {
            stemme_read_started(&sim, port).await;
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
        } else {
            tokio::time::sleep(Duration::from_millis(rng.random_range(300..2500))).await;
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        match snapshot_running(&prefix).await {
            Some(true) => mid_snapshot += 1,
            Some(false) => mid_stream += 1,
            None => {}
        }
        sim.mutate(json!({"entity": "Sag", "inserts": 2, "updates": 6, "restamps": 3}))
            .await;
        sim.mutate(json!({"entity": "Stemme", "updates": 110, "same_timestamp": true}))
            .await;
        if round % 4 == 0 {
            sim.mutate(json!({"entity": "Dokument", "updates": 5, "backdate": "3m"}))
                .await;
        }
        round += 1;
    }
    let mut last = spawn(&base_url, &prefix, &transactional_id, free_port());
    let problems = converge(&sim, &prefix, ENTITIES, &initial, Duration::from_secs(120)).await;
    // A graceful stop: SIGTERM, exit 0 within 10 s (contract.md#shutdown).
    let status = oda_cdc_testkit::terminate(&mut last, Duration::from_secs(10)).await;

    // Assert
    assert_no_problems(&problems);
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    assert!(
        mid_snapshot >= 2 && mid_stream >= 5,
        "kills must hit both phases: {mid_snapshot} mid-snapshot, {mid_stream} while streaming"
    );
    // Every Stemme id exactly once as `r` or `c` (no inserts on Stemme).
    let topic = oda_model::topics::Topics::new(&prefix, None).entity("Stemme");
    let events = crate::harness::events(&topic).await;
    let firsts = |id: &i64| {
        events.get(id).map_or(0, |list| {
            list.iter().filter(|e| e.op == "r" || e.op == "c").count()
        })
    };
    let wrong: Vec<(i64, usize)> = initial["Stemme"]
        .keys()
        .map(|id| (*id, firsts(id)))
        .filter(|(_, n)| *n != 1)
        .take(20)
        .collect();
    assert!(
        wrong.is_empty(),
        "Stemme ids not read exactly once (id, times): {wrong:?}; ops {:?}",
        op_counts(&prefix, "Stemme").await
    );
}
