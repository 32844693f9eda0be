//! Two instances of a processor share the partitions: one starts, a
//! second joins mid-stream (a rebalance), then the first stops (another):
//! every input has exactly one output.

use std::process::Child;
use std::time::Duration;

use oda_cdc_testkit::{create_topic, free_port, terminate, unique};
use oda_model::topics::Topics;

use crate::harness::{
    Fixture, assert_each_once, event, outputs_for_keys, processor, produce, read_at_least, sag,
};

const RECORDS: i64 = 40_000;

fn spawn(prefix: &str, group: &str, instance: &str, port: u16) -> Child {
    processor(
        env!("CARGO_BIN_EXE_oda-passthrough"),
        prefix,
        group,
        instance,
        port,
    )
    // A stopped static member leaves at its session's end: keep it short.
    .args(["--kafka-property", "session.timeout.ms=6000"])
    .env("ODA_CDC_ENTITIES", "Sag")
    .spawn()
    .expect("oda-passthrough starts")
}

fn fixtures(ids: std::ops::Range<i64>) -> Vec<Fixture> {
    ids.map(|id| Fixture::event(&event("Sag", id, sag(id))))
        .collect()
}

/// Records an instance has processed, from its `/metrics`.
async fn processed(port: u16) -> f64 {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| l.starts_with("oda_cdc_consumer_records_total") && l.contains("processed"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_partitions_through_rebalances() {
    let prefix = unique("it-rebal");
    let group = unique("it-rebal-group");
    let input = Topics::new(&prefix, None).entity("Sag");
    let output = format!("{input}-processed");
    create_topic(&input, 6).await.expect("input topic");
    let quarter = RECORDS / 4;

    let (port_a, port_b) = (free_port(), free_port());
    let mut a = spawn(&prefix, &group, "a", port_a);
    produce(&input, fixtures(1..quarter + 1)).await;
    read_at_least(&output, quarter as usize / 2, Duration::from_secs(60)).await;
    // B joins: the partitions are split between the two.
    let mut b = spawn(&prefix, &group, "b", port_b);
    produce(&input, fixtures(quarter + 1..2 * quarter + 1)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    produce(&input, fixtures(2 * quarter + 1..3 * quarter + 1)).await;
    // A stops: B takes everything once A's session ends.
    let by_a = processed(port_a).await;
    let status = terminate(&mut a, Duration::from_secs(10)).await;
    assert!(status.success(), "A exits 0 on SIGTERM: {status:?}");
    produce(&input, fixtures(3 * quarter + 1..RECORDS + 1)).await;

    let outputs = outputs_for_keys(&output, RECORDS as usize, Duration::from_secs(120)).await;
    let by_b = processed(port_b).await;
    let status = terminate(&mut b, Duration::from_secs(10)).await;
    assert!(status.success(), "B exits 0 on SIGTERM: {status:?}");

    assert_each_once(&outputs, RECORDS);
    assert!(
        by_a > 0.0 && by_b > 0.0,
        "both instances worked: A {by_a}, B {by_b}"
    );
}
