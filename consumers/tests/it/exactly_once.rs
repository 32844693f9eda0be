//! `kill -9` of a processor at random instants while it works through
//! 100k records: the `-processed` topic, read with read_committed, holds
//! exactly one output per input.

use std::process::Child;
use std::time::Duration;

use oda_cdc_testkit::{create_topic, free_port, read_topic, unique};
use oda_model::topics::Topics;
use rand::Rng;

use crate::harness::{
    Fixture, assert_each_once, event, outputs_for_keys, processed, processor, produce, sag,
};

const RECORDS: i64 = 100_000;
const KILLS: usize = 20;

fn spawn(prefix: &str, group: &str, port: u16) -> Child {
    processor(
        env!("CARGO_BIN_EXE_oda-passthrough"),
        prefix,
        group,
        "it-a",
        port,
    )
    .env("ODA_CDC_ENTITIES", "Sag")
    .spawn()
    .expect("oda-passthrough starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_processing_100k_records_outputs_each_exactly_once() {
    let prefix = unique("it-eos");
    let group = unique("it-eos-group");
    let input = Topics::new(&prefix, None).entity("Sag");
    let output = format!("{input}-processed");
    create_topic(&input, 6).await.expect("input topic");

    // All input first; then each life is killed at a random instant after
    // it has processed a random number of records, so kills land
    // mid-batch, mid-transaction, mid-commit or between batches, and the
    // backlog lasts through all of them.
    let fixtures: Vec<Fixture> = (1..=RECORDS)
        .map(|id| Fixture::event(&event("Sag", id, sag(id))))
        .collect();
    produce(&input, fixtures).await;
    let mut rng = rand::rng();
    let mut port = free_port();
    let mut child = spawn(&prefix, &group, port);
    for _ in 0..KILLS {
        processed(port, rng.random_range(1..6_000)).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..80))).await;
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        port = free_port();
        child = spawn(&prefix, &group, port);
    }

    let outputs = outputs_for_keys(&output, RECORDS as usize, Duration::from_secs(180)).await;
    let status = oda_cdc_testkit::terminate(&mut child, Duration::from_secs(10)).await;
    assert!(status.success(), "SIGTERM exits 0: {status:?}");

    assert_each_once(&outputs, RECORDS);
    // Pass-through: each output is its input, byte for byte.
    let inputs = tokio::task::spawn_blocking(move || read_topic(&input))
        .await
        .expect("join")
        .expect("input");
    let mut expected: Vec<(Option<String>, Option<Vec<u8>>)> =
        inputs.into_iter().map(|r| (r.key, r.value)).collect();
    let mut got: Vec<(Option<String>, Option<Vec<u8>>)> =
        outputs.into_iter().map(|r| (r.key, r.value)).collect();
    expected.sort();
    got.sort();
    assert!(expected == got, "outputs equal inputs");
}
