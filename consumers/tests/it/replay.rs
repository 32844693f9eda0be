//! oda-replay against a real broker: a reset to a time makes the next run
//! reprocess exactly what came after it; a redrive brings dead letters
//! back once, never over a newer record, and they are processed once.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use oda_cdc_core::config::{Delivery, Settings};
use oda_cdc_core::shutdown::CancellationToken;
use oda_cdc_testkit::{create_topic, kafka, read_topic, unique};
use oda_consumers::processors::passthrough::{Passthrough, entity_inputs};
use oda_consumers::replay::Cluster;
use oda_consumers::runner::{self, RunOptions};
use oda_consumers::{Context, Input, Output, ProcessError, Processor};
use oda_model::topics::Topics;
use tokio::task::JoinHandle;

use crate::harness::{Fixture, by_key, event, produce, read_at_least, sag, settings};

/// Runs `oda-replay` with `args`; returns (success, stdout + stderr).
fn replay(prefix: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_oda-replay"))
        .args(args)
        .env("KAFKA_BROKERS", kafka().brokers)
        .env("ODA_CDC_KAFKA__TOPIC_PREFIX", prefix)
        .env("RUST_LOG", "warn")
        .output()
        .expect("oda-replay runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn start<P: Processor>(settings: &Settings) -> (CancellationToken, JoinHandle<anyhow::Result<()>>) {
    let stop = CancellationToken::new();
    let task = tokio::spawn(runner::run::<P>(
        settings.clone(),
        RunOptions {
            instance: "it".into(),
        },
        stop.clone(),
    ));
    (stop, task)
}

async fn stop(runner: (CancellationToken, JoinHandle<anyhow::Result<()>>)) {
    runner.0.cancel();
    runner.1.await.expect("join").expect("the processor ran");
}

/// Settings whose static members leave the group list soon after a stop.
fn short_sessions(prefix: &str) -> Settings {
    let mut settings = settings(prefix, &["Sag"], Delivery::ExactlyOnce);
    settings
        .kafka
        .properties
        .insert("session.timeout.ms".into(), "6000".into());
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_to_a_time_reprocesses_exactly_what_came_after() {
    let prefix = unique("it-reset");
    let input = Topics::new(&prefix, None).entity("Sag");
    let output = format!("{input}-processed");
    create_topic(&input, 3).await.expect("input topic");
    let fixtures = |ids: std::ops::RangeInclusive<i64>| {
        ids.map(|id| Fixture::event(&event("Sag", id, sag(id))))
            .collect::<Vec<_>>()
    };
    produce(&input, fixtures(1..=300)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cut = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    produce(&input, fixtures(301..=600)).await;

    let settings = short_sessions(&prefix);
    let group = settings.consumer.group.clone().expect("group");
    let running = start::<Passthrough>(&settings);
    assert_eq!(
        read_at_least(&output, 600, Duration::from_secs(60))
            .await
            .len(),
        600
    );
    let args = ["reset", "--group", &group, "--topic", &input, "--to", &cut];
    let (ok, text) = replay(&prefix, &[&args[..], &["--execute"]].concat());
    assert!(
        !ok && text.contains("active member"),
        "refused while running: {text}"
    );
    stop(running).await;

    // A dry run changes nothing; the static member leaves the list when
    // its session ends.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (ok, text) = loop {
        let (ok, text) = replay(&prefix, &args);
        if ok || tokio::time::Instant::now() > deadline {
            break (ok, text);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(ok && text.contains("Dry run: +300"), "{text}");
    let (ok, text) = replay(&prefix, &[&args[..], &["--execute"]].concat());
    assert!(
        ok && text.contains("+300 records to process again"),
        "{text}"
    );

    let running = start::<Passthrough>(&settings);
    let outputs = read_at_least(&output, 900, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // nothing more comes
    let outputs_after = read_topic(&output).expect("output");
    stop(running).await;
    assert_eq!(outputs.len(), 900);
    assert_eq!(
        outputs_after.len(),
        900,
        "exactly the records after the cut"
    );
    let counts = by_key(&outputs_after);
    for id in 1..=600 {
        let expected = if id > 300 { 2 } else { 1 };
        assert_eq!(counts.get(&id.to_string()), Some(&expected), "Sag({id})");
    }
    let cluster = Cluster {
        kafka: &settings.kafka,
        topics: &settings.topics(),
    };
    let log = oda_consumers::replay::log::read(cluster).expect("replay log");
    let resets: Vec<_> = log.iter().filter(|e| e.command == "reset").collect();
    assert_eq!(resets.len(), 1, "{log:?}");
    assert_eq!(resets[0].records, 300);
    assert_eq!(resets[0].details["group"], group.as_str());
}

/// Refuses every tenth id while `BROKEN` is set.
static BROKEN: AtomicBool = AtomicBool::new(true);

struct Healing;

impl Processor for Healing {
    const NAME: &'static str = "it-healing";
    const METRICS_PORT: u16 = 0;

    fn inputs(settings: &Settings, topics: &Topics) -> Vec<String> {
        entity_inputs(settings, topics)
    }

    async fn open(_context: &Context) -> anyhow::Result<Self> {
        Ok(Self)
    }

    fn process(&mut self, input: &Input<'_>) -> Result<Vec<Output>, ProcessError> {
        let event = input
            .event
            .ok_or_else(|| ProcessError::Permanent("tombstone".into()))?;
        if event.id % 10 == 0 && BROKEN.load(Ordering::SeqCst) {
            return Err(ProcessError::Permanent("not yet".into()));
        }
        let document = serde_json::json!({"id": event.id, "titel": event.after.as_ref().and_then(|a| a.get("titel"))});
        Output::json(event.id.to_string(), &document).map(|o| vec![o])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_brings_letters_back_once_and_never_over_a_newer_record() {
    let prefix = unique("it-redrive");
    let input = Topics::new(&prefix, None).entity("Sag");
    let output = format!("{input}-processed");
    let dlq = Topics::new(&prefix, None).dlq().to_owned();
    create_topic(&input, 3).await.expect("input topic");
    produce(
        &input,
        (1..=100)
            .map(|id| Fixture::event(&event("Sag", id, sag(id))))
            .collect(),
    )
    .await;
    let settings = short_sessions(&prefix);
    let running = start::<Healing>(&settings);
    read_at_least(&output, 90, Duration::from_secs(60)).await;
    assert_eq!(
        read_at_least(&dlq, 10, Duration::from_secs(30)).await.len(),
        10
    );
    stop(running).await;

    // Sag 20 changes meanwhile: its letter is superseded.
    let mut newer = sag(20);
    newer["titel"] = "Ændret titel".into();
    produce(&input, vec![Fixture::event(&event("Sag", 20, newer))]).await;
    BROKEN.store(false, Ordering::SeqCst);

    let (ok, text) = replay(&prefix, &["dlq", "redrive", "--processor", "it-healing"]);
    assert!(ok && text.contains("would redrive 9"), "{text}");
    let (ok, text) = replay(
        &prefix,
        &["dlq", "redrive", "--processor", "it-healing", "--execute"],
    );
    assert!(
        ok && text.contains("Redriven: 9") && text.contains("1 superseded"),
        "{text}"
    );
    let (ok, text) = replay(&prefix, &["dlq", "redrive", "--execute"]);
    assert!(
        ok && text.contains("Redriven: 0") && text.contains("10 redriven before"),
        "{text}"
    );

    let running = start::<Healing>(&settings);
    read_at_least(&output, 100, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // nothing more comes
    let outputs = read_topic(&output).expect("output");
    stop(running).await;
    let counts = by_key(&outputs);
    assert_eq!(outputs.len(), 100, "{counts:?}");
    for id in 1..=100 {
        assert_eq!(counts.get(&id.to_string()), Some(&1), "Sag({id}) once");
    }
    let twenty = outputs
        .iter()
        .find(|r| r.key.as_deref() == Some("20"))
        .and_then(|r| r.value.as_deref())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    assert!(
        twenty.contains("Ændret titel"),
        "the newer Sag 20, not the old one: {twenty}"
    );
    assert_eq!(read_topic(&dlq).expect("dlq").len(), 10, "no new letters");
    let redriven: Vec<_> = read_topic(&input)
        .expect("input")
        .into_iter()
        .filter(|r| r.header("oda.replay").is_some())
        .collect();
    assert_eq!(redriven.len(), 9);
    for record in &redriven {
        assert_eq!(
            record.header("dlq.attempts"),
            Some("1"),
            "attempts travel along"
        );
        assert!(
            record.header("dlq.error.kind").is_none(),
            "other dlq headers do not"
        );
        assert_eq!(
            record.header("oda.entity"),
            Some("Sag"),
            "original headers restored"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_takes_exactly_the_time_range() {
    let prefix = unique("it-copy");
    let input = Topics::new(&prefix, None).entity("Sag");
    let target = format!("{input}-copy");
    create_topic(&input, 3).await.expect("input topic");
    let mut cuts = Vec::new();
    for batch in 0..3i64 {
        let ids = batch * 200 + 1..=batch * 200 + 200;
        produce(
            &input,
            ids.map(|id| Fixture::event(&event("Sag", id, sag(id))))
                .collect(),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        cuts.push(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let args = [
        "copy",
        "--from-topic",
        &input,
        "--to-topic",
        &target,
        "--since",
        &cuts[0],
        "--until",
        &cuts[1],
    ];
    let (ok, text) = replay(&prefix, &args);
    assert!(ok && text.contains("Copied 200 records"), "{text}");

    let copied = read_topic(&target).expect("target");
    let originals = read_topic(&input).expect("input");
    let mut keys: Vec<i64> = copied
        .iter()
        .filter_map(|r| r.key.as_deref()?.parse().ok())
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, (201..=400).collect::<Vec<_>>());
    for record in &copied {
        let original = originals
            .iter()
            .find(|o| o.key == record.key)
            .expect("an original");
        assert_eq!(record.value, original.value);
        assert_eq!(record.header("oda.entity"), Some("Sag"));
        assert!(
            record
                .header("oda.replay")
                .is_some_and(|id| id.starts_with("copy-"))
        );
    }
    let cluster = Cluster {
        kafka: &kafka(),
        topics: &Topics::new(&prefix, None),
    };
    let log = oda_consumers::replay::log::read(cluster).expect("replay log");
    assert!(
        log.iter().any(|e| e.command == "copy" && e.records == 200),
        "{log:?}"
    );
}
