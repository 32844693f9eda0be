//! Snapshot, then streaming while the source changes in every awkward way
//! it does in production, in SQL Server `datetime` mode.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use oda_producer::worker::StartFrom;
use serde_json::json;

use crate::harness::{Producer, Sim, converge, op_counts, settings};

const ENTITIES: &[&str] = &["Sag", "Aktør", "Stemme", "Afstemning"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_agree_with_the_ground_truth_after_snapshot_and_changes() {
    // Arrange: a source in SQL Server datetime mode and a producer from the beginning.
    let sim = Sim::start(|_| {}).await;
    let initial: HashMap<String, BTreeMap<i64, String>> = ENTITIES
        .iter()
        .map(|e| ((*e).to_owned(), sim.hashes(e)))
        .collect();
    let settings = settings(&sim.sim.base_url(), ENTITIES);
    let prefix = settings.kafka.topic_prefix.clone();
    let producer = Producer::start(settings, StartFrom::Beginning);

    // Act: changes while the snapshot and the polls run.
    for round in 0..8 {
        sim.mutate(json!({"entity": "Sag", "inserts": 3, "updates": 10, "restamps": 5}))
            .await;
        sim.mutate(json!({"entity": "Aktør", "updates": 4, "backdate": "2m"}))
            .await;
        // More rows on one timestamp than a page holds.
        sim.mutate(json!({"entity": "Stemme", "updates": 130, "same_timestamp": true}))
            .await;
        if round % 3 == 0 {
            // A bulk re-stamp: new timestamps, same content.
            sim.mutate(json!({"entity": "Afstemning", "restamps": 40, "same_timestamp": true}))
                .await;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }

    // Assert: SPEC §5 rules 1–3 for every id.
    let problems = converge(&sim, &prefix, ENTITIES, &initial, Duration::from_secs(90)).await;
    producer.stop().await;
    assert!(
        problems.is_empty(),
        "{} problems, first: {:#?}",
        problems.len(),
        &problems[..problems.len().min(10)]
    );
    // And the run really exercised what it claims to.
    let sag = op_counts(&prefix, "Sag").await;
    // Every id once as `r` (held when the snapshot began) or `c` (inserted later).
    let first_seen = sag.get("r").copied().unwrap_or(0) + sag.get("c").copied().unwrap_or(0);
    assert_eq!(first_seen, initial["Sag"].len() + 8 * 3, "{sag:?}");
    assert!(sag.get("u").is_some_and(|n| *n > 10), "{sag:?}");
    let stemme = op_counts(&prefix, "Stemme").await;
    assert!(
        stemme.get("u").is_some_and(|n| *n > 500),
        "bursts wider than a page: {stemme:?}"
    );
    let afstemning = op_counts(&prefix, "Afstemning").await;
    assert_eq!(
        afstemning.get("u"),
        None,
        "re-stamps that change nothing are not republished: {afstemning:?}"
    );
}
