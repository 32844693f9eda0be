//! The change log is the ground truth: it equals the applied changes, and
//! its hashes are the shared contract.md#content-hash hash of what the API serves.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::helpers::Sim;

#[tokio::test]
async fn change_log_matches_what_the_api_serves_and_the_shared_hash() {
    let sim = Sim::start(|_| {}).await;
    let first = sim
        .mutate(json!({"entity": "Sag", "inserts": 5, "updates": 20, "deletes": 3, "restamps": 10}))
        .await;
    let second = sim
        .mutate(json!({"entity": "Aktør", "inserts": 2, "updates": 5, "same_timestamp": true}))
        .await;
    assert_eq!(first, json!({"from_seq": 1, "to_seq": 38}));
    assert_eq!(second, json!({"from_seq": 39, "to_seq": 45}));

    let log = sim.changes(0).await;
    assert_eq!(log.len(), 45);
    let seqs: Vec<u64> = log
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=45).collect::<Vec<_>>(),
        "seq starts at 1 and has no gaps"
    );
    let ops: BTreeMap<String, usize> = log.iter().fold(BTreeMap::new(), |mut m, e| {
        *m.entry(e["op"].as_str().expect("op").to_owned())
            .or_default() += 1;
        m
    });
    assert_eq!(
        ops,
        BTreeMap::from([("c".into(), 7), ("d".into(), 3), ("u".into(), 35)])
    );
    assert_eq!(sim.changes(40).await.len(), 5, "after= skips what was read");

    // The newest entry per key describes what the API serves now.
    let mut newest: BTreeMap<(String, i64), &Value> = BTreeMap::new();
    for entry in &log {
        let key = (
            entry["entity"].as_str().expect("entity").to_owned(),
            entry["id"].as_i64().expect("id"),
        );
        newest.insert(key, entry);
    }
    for ((entity, id), entry) in newest {
        let url = sim.api(&format!("{entity}({id})"));
        if entry["op"] == "d" {
            assert_eq!(sim.status(&url).await, 404, "{entity}({id}) was deleted");
            assert!(entry["hash"].is_null());
            continue;
        }
        let served = sim.json(&url).await;
        let mut record = served.as_object().expect("object").clone();
        record.remove("odata.metadata");
        assert_eq!(
            entry["hash"],
            oda_model::hash::content_hash(&record),
            "{entity}({id})"
        );
        assert_eq!(
            entry["opdateringsdato"], record["opdateringsdato"],
            "{entity}({id})"
        );
    }

    // A batch with same_timestamp shares one opdateringsdato.
    let stamps: std::collections::BTreeSet<&str> = log[38..]
        .iter()
        .map(|e| e["opdateringsdato"].as_str().expect("ts"))
        .collect();
    assert_eq!(stamps.len(), 1);
}

#[tokio::test]
async fn restamps_keep_their_hash_and_backdated_batches_are_stamped_earlier() {
    let sim = Sim::start(|_| {}).await;
    sim.mutate(json!({"entity": "Dokument", "restamps": 30}))
        .await;
    let log = sim.changes(0).await;
    for entry in &log {
        let id = entry["id"].as_i64().expect("id");
        let world = sim.sim.state.world.read().expect("lock");
        let table = world.store.table("Dokument").expect("table");
        let row = table.get(i32::try_from(id).expect("i32")).expect("row");
        assert_eq!(entry["hash"], table.hash(row));
    }
    // A re-stamp changes only the timestamp: the hash equals the hash before it.
    let before: Vec<String> = {
        let world = sim.sim.state.world.read().expect("lock");
        let table = world.store.table("Sag").expect("table");
        table.iter().map(|(_, r)| table.hash(r)).collect()
    };
    sim.mutate(json!({"entity": "Sag", "restamps": 50})).await;
    let after: Vec<String> = {
        let world = sim.sim.state.world.read().expect("lock");
        let table = world.store.table("Sag").expect("table");
        table.iter().map(|(_, r)| table.hash(r)).collect()
    };
    assert_eq!(before, after);

    let now = sim.mutate(json!({"entity": "Sag", "updates": 1})).await;
    let late = sim
        .mutate(json!({"entity": "Sag", "updates": 1, "backdate": "1h"}))
        .await;
    let log = sim.changes(0).await;
    let stamp = |seq: &Value| {
        let i = usize::try_from(seq.as_u64().expect("seq") - 1).expect("index");
        log[i]["opdateringsdato"].as_str().expect("ts").to_owned()
    };
    let now_ts = stamp(&now["from_seq"]);
    let late_ts = stamp(&late["from_seq"]);
    assert!(late_ts < now_ts, "backdated {late_ts} before {now_ts}");
}

#[tokio::test]
async fn background_mutator_follows_the_rate_set_at_run_time() {
    let sim = Sim::start(|_| {}).await;
    let response = sim
        .http
        .put(sim.url("/_sim/mutation-rate"))
        .json(&json!({"per_second": 200}))
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    sim.http
        .put(sim.url("/_sim/mutation-rate"))
        .json(&json!({"per_second": 0}))
        .send()
        .await
        .expect("put");
    let applied = sim.changes(0).await.len();
    // Bursts add up to 150 rows at once; the floor is what the rate guarantees.
    assert!(
        applied >= 120,
        "about 200 changes in a second, got {applied}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let settled = sim.changes(0).await.len();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        sim.changes(0).await.len(),
        settled,
        "rate 0 stops the mutator"
    );
}

#[tokio::test]
async fn the_autumn_hour_repeats_in_opdateringsdato() {
    // 01:59:00 CEST on the night of the change, at 60x: an hour in a minute.
    let start = chrono::DateTime::parse_from_rfc3339("2026-10-25T02:59:58+02:00")
        .expect("time")
        .with_timezone(&chrono::Utc);
    let sim = Sim::start(|c| {
        c.clock_start = Some(start);
        c.clock_speed = 2.0;
    })
    .await;
    sim.mutate(json!({"entity": "Sag", "updates": 1})).await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    sim.mutate(json!({"entity": "Sag", "updates": 1})).await;
    let log = sim.changes(0).await;
    let before = log[0]["opdateringsdato"].as_str().expect("ts").to_owned();
    let after = log[1]["opdateringsdato"].as_str().expect("ts").to_owned();
    assert!(before.starts_with("2026-10-25T02:59:5"), "{before}");
    assert!(
        after.starts_with("2026-10-25T02:00:0"),
        "the clock fell back: {after}"
    );
    assert!(after < before, "later change, earlier local stamp");
    assert!(
        log[0]["at"].as_str() < log[1]["at"].as_str(),
        "the UTC instants still advance"
    );
}

#[tokio::test]
async fn a_burst_wider_than_a_page_shares_one_timestamp() {
    let sim = Sim::start(|_| {}).await;
    sim.mutate(json!({"entity": "Stemme", "updates": 150, "same_timestamp": true}))
        .await;
    let log = sim.changes(0).await;
    let stamp = log[0]["opdateringsdato"].as_str().expect("ts").to_owned();
    assert!(log.iter().all(|e| e["opdateringsdato"] == stamp.as_str()));
    // Updates may hit an id twice; count distinct rows on the stamp.
    let distinct: std::collections::BTreeSet<i64> =
        log.iter().map(|e| e["id"].as_i64().expect("id")).collect();
    assert!(
        distinct.len() > 100,
        "more rows than a page: {}",
        distinct.len()
    );
    let page = sim
        .json(&sim.api(&format!(
            "Stemme?$filter=opdateringsdato eq datetime'{stamp}'&$inlinecount=allpages"
        )))
        .await;
    assert_eq!(page["odata.count"], distinct.len().to_string());
    assert_eq!(page["value"].as_array().expect("value").len(), 100);
    assert!(page["odata.nextLink"].is_string(), "the tie spans pages");
}
