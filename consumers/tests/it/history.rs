//! oda-history across a `kill -9`: the versions it knew come back from
//! its changelog, so the changes after the restart still say what each
//! field was before, re-reads of known versions say nothing, and every
//! change is recorded once.

use std::collections::BTreeMap;
use std::process::Child;
use std::time::Duration;

use oda_cdc_testkit::{create_topic, free_port, unique};
use oda_model::event::Op;
use oda_model::topics::Topics;
use serde_json::{Value, json};

use crate::harness::{Fixture, event, processor, produce, read_at_least, sag};

const SAGER: i64 = 300;

fn spawn(prefix: &str, group: &str, port: u16) -> Child {
    processor(env!("CARGO_BIN_EXE_oda-history"), prefix, group, "h", port)
        .env("ODA_CDC_ENTITIES", "Sag")
        .spawn()
        .expect("oda-history starts")
}

fn version(id: i64, op: Op, statusid: i64, titel: &str) -> Fixture {
    let mut record = sag(id);
    record["statusid"] = json!(statusid);
    record["titel"] = json!(titel);
    let mut e = event("Sag", id, record);
    e.op = op;
    Fixture::event(&e)
}

fn kill_9(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// History records per key, in order, once `n` are there.
async fn history(topic: &str, n: usize) -> BTreeMap<String, Vec<Value>> {
    let records = read_at_least(topic, n, Duration::from_secs(90)).await;
    let mut by_key: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for record in records {
        let document = record
            .value
            .as_deref()
            .and_then(|v| serde_json::from_slice(v).ok())
            .expect("a JSON history record");
        by_key
            .entry(record.key.unwrap_or_default())
            .or_default()
            .push(document);
    }
    by_key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_after_a_kill_still_know_the_version_before() {
    let prefix = unique("it-hist");
    let group = unique("it-hist-group");
    let statuses = Topics::new(&prefix, None).entity("Sagsstatus");
    create_topic(&statuses, 1).await.expect("lookup topic");
    produce(
        &statuses,
        [(11, "Fremsat"), (12, "Vedtaget")]
            .iter()
            .map(|(id, s)| {
                Fixture::event(&event("Sagsstatus", *id, json!({"id": id, "status": s})))
            })
            .collect(),
    )
    .await;
    let input = Topics::new(&prefix, None).entity("Sag");
    create_topic(&input, 6).await.expect("input topic");
    let output = Topics::new(&prefix, None).processor_output("history");

    // First life: every Sag appears.
    let port = free_port();
    let mut first = spawn(&prefix, &group, port);
    produce(
        &input,
        (1..=SAGER)
            .map(|id| version(id, Op::Create, 11, "Forslag"))
            .collect(),
    )
    .await;
    history(&output, SAGER as usize).await;
    kill_9(&mut first);

    // Meanwhile: every status moves, a third are re-read unchanged, one
    // title changes twice, one Sag is deleted.
    let mut changes: Vec<Fixture> = (1..=SAGER)
        .map(|id| version(id, Op::Update, 12, "Forslag"))
        .collect();
    changes.extend((1..=SAGER / 3).map(|id| version(id, Op::Read, 12, "Forslag")));
    changes.push(version(7, Op::Update, 12, "Forslag, ændret"));
    changes.push(version(7, Op::Update, 12, "Forslag, ændret igen"));
    let mut gone = event("Sag", 9, Value::Null);
    gone.op = Op::Delete;
    gone.after = None;
    changes.push(Fixture::event(&gone));
    produce(&input, changes).await;

    // Second life: state from the changelog only.
    let mut second = spawn(&prefix, &group, free_port());
    let expected = 2 * SAGER as usize + 3;
    let by_key = history(&output, expected).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let by_key_later = history(&output, expected).await;
    kill_9(&mut second);

    let total: usize = by_key_later.values().map(Vec::len).sum();
    assert_eq!(total, expected, "one record per change, no more");
    assert_eq!(by_key, by_key_later);
    for id in 1..=SAGER {
        let records = &by_key[&format!("Sag:{id}")];
        assert_eq!(records[0]["first_seen"], true, "Sag {id}");
        let status = &records[1];
        assert_eq!(
            status["first_seen"], false,
            "Sag {id}: known from the changelog"
        );
        assert_eq!(
            status["changes"],
            json!([{"field": "statusid", "from": 11, "to": 12,
                    "from_label": "Fremsat", "to_label": "Vedtaget"}]),
            "Sag {id}"
        );
    }
    let titles: Vec<&Value> = by_key["Sag:7"][2..]
        .iter()
        .map(|r| &r["changes"][0]["to"])
        .collect();
    assert_eq!(
        titles,
        [&json!("Forslag, ændret"), &json!("Forslag, ændret igen")]
    );
    assert_eq!(by_key["Sag:7"][3]["changes"][0]["from"], "Forslag, ændret");
    let deleted = by_key["Sag:9"].last().expect("Sag 9");
    assert_eq!(deleted["deleted"], true);
}
