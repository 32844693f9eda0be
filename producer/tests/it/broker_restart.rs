//! The broker goes away and comes back while the producer streams under
//! mutations: contract.md#delivery-guarantees still holds (durability across broker
//! restarts), and the producer rides it out instead of exiting.
//!
//! It restarts the shared test broker, so no other test may run beside
//! it: `scripts/test` runs it on its own after the rest
//! (`--run-ignored only`); it is not skipped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use oda_cdc_testkit::unique;
use serde_json::json;

use crate::harness::{Sim, assert_no_problems, converge, free_port, keep_mutating, wait_streaming};

const ENTITIES: &[&str] = &["Sag", "Stemme"];

fn spawn(base_url: &str, prefix: &str, port: u16) -> Child {
    crate::harness::spawn_producer(base_url, prefix, ENTITIES, &unique("it-restart"), port)
}

/// `scripts/stack <command>` with this process's environment (the stack
/// the tests were started against).
fn stack(command: &str) {
    let script: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "scripts", "stack"]
        .iter()
        .collect();
    let status = Command::new("bash")
        .arg(script)
        .arg(command)
        .stdout(Stdio::null())
        .status()
        .expect("scripts/stack runs");
    assert!(status.success(), "scripts/stack {command}: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts the shared broker: scripts/test runs it alone, after the other tests"]
async fn a_broker_restart_while_streaming_loses_and_duplicates_nothing() {
    let sim = Sim::start(|c| c.scale = 6_000).await;
    let initial = sim.initial(ENTITIES);
    let prefix = unique("it-restart");
    let mut producer = spawn(&sim.sim.base_url(), &prefix, free_port());
    for entity in ENTITIES {
        wait_streaming(&prefix, entity, Duration::from_secs(60)).await;
    }

    // Changes keep coming before, during and after the outage.
    let changing = oda_cdc_core::shutdown::CancellationToken::new();
    let mutator = keep_mutating(
        &sim,
        &changing,
        vec![
            json!({"entity": "Sag", "inserts": 1, "updates": 3, "restamps": 2}),
            json!({"entity": "Stemme", "updates": 40, "same_timestamp": true}),
        ],
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!("broker_restart: stopping the stack");
    stack("down");
    tokio::time::sleep(Duration::from_secs(5)).await;
    eprintln!("broker_restart: starting the stack");
    stack("up");
    eprintln!("broker_restart: the stack is back");
    tokio::time::sleep(Duration::from_secs(3)).await;
    changing.cancel();
    let rounds = mutator.await.expect("the mutator");

    eprintln!("broker_restart: {rounds} rounds of changes; judging");
    let problems = converge(&sim, &prefix, ENTITIES, &initial, Duration::from_secs(180)).await;
    let alive = producer.try_wait().expect("wait").is_none();
    let status = oda_cdc_testkit::terminate(&mut producer, Duration::from_secs(10)).await;

    assert_no_problems(&problems);
    assert!(
        alive,
        "the producer rode out the restart instead of exiting"
    );
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    assert!(
        rounds > 20,
        "changes kept coming through the outage: {rounds} rounds"
    );
}
