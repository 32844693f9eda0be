//! A processor started before its input topic exists waits for it and says
//! so once — in the log, in `/readyz` and in a metric — not twice per poll;
//! once the topic appears it reads it and is ready.

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use oda_cdc_testkit::{create_topic, free_port, terminate, unique};
use oda_model::topics::Topics;

use crate::harness::{Fixture, event, get, outputs_for_keys, processor, produce, sag};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_input_is_reported_once_and_read_once_it_exists() {
    let prefix = unique("it-missing");
    let input = Topics::new(&prefix, None).entity("Sag");
    let port = free_port();
    let mut child = processor(
        env!("CARGO_BIN_EXE_oda-passthrough"),
        &prefix,
        &unique("it-missing-group"),
        "0",
        port,
    )
    .env("ODA_CDC_ENTITIES", "Sag")
    .env("RUST_LOG", "info")
    .stderr(Stdio::piped())
    .spawn()
    .expect("oda-passthrough starts");
    let admin = format!("http://127.0.0.1:{port}");

    // Long enough for dozens of polls of the missing topic.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (status, report) = get(&format!("{admin}/readyz")).await;
    assert_eq!(status, 503, "{report}");
    assert!(
        report.contains(&format!("inputs: failed: waiting for topics: {input}")),
        "{report}"
    );
    let (_, metrics) = get(&format!("{admin}/metrics")).await;
    assert!(
        metrics.contains("oda_cdc_consumer_missing_inputs{processor=\"oda-passthrough\"} 1"),
        "{metrics}"
    );

    create_topic(&input, 3).await.expect("input topic");
    produce(
        &input,
        (1..=20)
            .map(|id| Fixture::event(&event("Sag", id, sag(id))))
            .collect(),
    )
    .await;
    let outputs =
        outputs_for_keys(&format!("{input}-processed"), 20, Duration::from_secs(60)).await;
    assert_eq!(outputs.len(), 20, "the input is read once it exists");
    let mut ready = (0, String::new());
    for _ in 0..30 {
        ready = get(&format!("{admin}/readyz")).await;
        if ready.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(ready.0, 200, "ready once the topic exists: {}", ready.1);

    let status = terminate(&mut child, Duration::from_secs(10)).await;
    assert!(status.success(), "exits 0: {status:?}");
    let mut log = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut log);
    }
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains(&input))
        .count();
    assert_eq!(
        warnings, 1,
        "one warning about the missing topic, not one per poll:\n{log}"
    );
}
