//! Snapshot, then streaming while the source changes in every awkward way
//! it does in production, in SQL Server `datetime` mode.

use std::collections::BTreeMap;
use std::time::Duration;

use oda_producer::StartFrom;
use serde_json::json;

use crate::harness::{
    Producer, Sim, assert_no_problems, converge, converge_where, events, op_counts, settings,
};

const ENTITIES: &[&str] = &["Sag", "Aktør", "Stemme", "Afstemning"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_agree_with_the_ground_truth_after_snapshot_and_changes() {
    // Arrange: a source in SQL Server datetime mode and a producer from the beginning.
    let sim = Sim::start(|_| {}).await;
    let initial = sim.initial(ENTITIES);
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

    // Assert: contract.md#delivery-guarantees rules 1–3 for every id.
    let problems = converge(&sim, &prefix, ENTITIES, &initial, Duration::from_secs(90)).await;
    producer.stop().await;
    assert_no_problems(&problems);
    // And the run really exercised what it claims to.
    let sag = op_counts(&prefix, "Sag").await;
    // Every id once as `r` (held when the snapshot began) or `c` (inserted later).
    let first_seen = sag.get("r").copied().unwrap_or(0) + sag.get("c").copied().unwrap_or(0);
    assert_eq!(first_seen, initial["Sag"].len() + 8 * 3, "{sag:?}");
    assert!(sag.get("u").is_some_and(|n| *n > 10), "{sag:?}");
    // A tie wider than a page was published whole.
    let stemme = events(&oda_model::topics::Topics::new(&prefix, None).entity("Stemme")).await;
    let mut per_stamp: BTreeMap<String, usize> = BTreeMap::new();
    for event in stemme.values().flatten().filter(|e| e.op == "u") {
        *per_stamp
            .entry(event.opdateringsdato.clone().unwrap_or_default())
            .or_default() += 1;
    }
    let widest = per_stamp.values().max().copied().unwrap_or(0);
    assert!(
        widest > 100,
        "updates sharing one opdateringsdato: at most {widest}"
    );
    let afstemning = op_counts(&prefix, "Afstemning").await;
    assert_eq!(
        afstemning.get("u"),
        None,
        "re-stamps that change nothing are not republished: {afstemning:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repeated_autumn_hour_loses_nothing() {
    // The source's clock runs from 02:45 CEST on the night of the change at
    // 60x: an hour of source time per real minute, through both passes of
    // 02:00–02:59.
    let start = chrono::DateTime::parse_from_rfc3339("2026-10-25T02:45:00+02:00")
        .expect("time")
        .with_timezone(&chrono::Utc);
    let sim = Sim::start(|c| {
        c.clock_start = Some(start);
        c.clock_speed = 60.0;
    })
    .await;
    let entities = ["Sag"];
    let initial = sim.initial(&entities);
    let settings = settings(&sim.sim.base_url(), &entities);
    let prefix = settings.kafka.topic_prefix.clone();
    let producer = Producer::start(settings, StartFrom::Now);

    // 80 real seconds: 80 source minutes, every half second a change.
    for _ in 0..160 {
        sim.mutate(json!({"entity": "Sag", "inserts": 1, "updates": 1}))
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let log = sim.log();
    let second_pass = log.windows(2).any(|w| {
        w[1].opdateringsdato < w[0].opdateringsdato
            && w[1]
                .opdateringsdato
                .as_deref()
                .is_some_and(|t| t.contains("T02:"))
    });
    assert!(
        second_pass,
        "the source's stamps must fall back to 02:xx during the run"
    );

    // Only changes matter here (the run started from now): judge the ids
    // the log touched.
    let touched: std::collections::BTreeSet<i64> = log.iter().map(|e| i64::from(e.id)).collect();
    let problems = converge_where(
        &sim,
        &prefix,
        &entities,
        &initial,
        Duration::from_secs(60),
        |id| touched.contains(&id),
    )
    .await;
    producer.stop().await;
    assert_no_problems(&problems);
}
