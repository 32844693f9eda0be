//! An operator stops a processor and starts it again under the same group
//! and instance name, seconds later, on another set of inputs (another
//! topic prefix; a changed entity list does the same). The new instance
//! must process its own inputs at once, not sit on the partitions the old
//! one held.

use std::process::Child;
use std::time::{Duration, Instant};

use oda_cdc_testkit::{create_topic, free_port, terminate, unique};
use oda_model::topics::Topics;

use crate::harness::{Fixture, assert_each_once, event, outputs_for_keys, processor, produce, sag};

const RECORDS: i64 = 533;

fn spawn(prefix: &str, group: &str, port: u16) -> Child {
    // Same instance name both times, and the default session timeout: what
    // an operator gets without tuning anything.
    processor(
        env!("CARGO_BIN_EXE_oda-passthrough"),
        prefix,
        group,
        "0",
        port,
    )
    .env("ODA_CDC_ENTITIES", "Sag")
    .spawn()
    .expect("oda-passthrough starts")
}

async fn run_on(prefix: &str, group: &str) -> (Child, String) {
    let input = Topics::new(prefix, None).entity("Sag");
    create_topic(&input, 6).await.expect("input topic");
    produce(
        &input,
        (1..=RECORDS)
            .map(|id| Fixture::event(&event("Sag", id, sag(id))))
            .collect(),
    )
    .await;
    (
        spawn(prefix, group, free_port()),
        format!("{input}-processed"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_other_inputs_processes_them_within_30_s() {
    let group = unique("it-restart-group");

    let (mut first, output) = run_on(&unique("it-restart-a"), &group).await;
    let outputs = outputs_for_keys(&output, RECORDS as usize, Duration::from_secs(60)).await;
    assert_each_once(&outputs, RECORDS);
    let status = terminate(&mut first, Duration::from_secs(10)).await;
    assert!(status.success(), "the first run exits 0: {status:?}");

    // Seconds later, well inside the stopped member's session.
    let started = Instant::now();
    let (mut second, output) = run_on(&unique("it-restart-b"), &group).await;
    let outputs = outputs_for_keys(&output, RECORDS as usize, Duration::from_secs(30)).await;
    let took = started.elapsed();
    let status = terminate(&mut second, Duration::from_secs(10)).await;
    assert!(status.success(), "the second run exits 0: {status:?}");
    assert_each_once(&outputs, RECORDS);
    eprintln!("the restarted instance processed its new inputs after {took:?}");
}
