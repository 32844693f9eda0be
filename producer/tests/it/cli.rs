//! Exit codes and messages of the binary (contract.md#exit-codes).

use std::process::Command;
use std::time::Duration;

use oda_cdc_testkit::{kafka, unique};

use crate::harness::Sim;

const BIN: &str = env!("CARGO_BIN_EXE_oda-producer");

fn producer(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(BIN);
    command.args(args).env("RUST_LOG", "warn");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("runs")
}

#[test]
fn bad_configuration_exits_2_naming_the_key() {
    for (env, named) in [
        (vec![("ODA_CDC_POLL__INTERVAL", "soon")], "poll.interval"),
        (vec![("ODA_CDC_POLL__INTERVALL", "5m")], "poll.intervall"),
        (
            vec![("ODA_CDC_HTTP__MAX_IN_FLIGHT", "0")],
            "http.max_in_flight",
        ),
        (vec![("ODA_CDC_FORMAT", "xml")], "format"),
        (vec![("ODA_CDC_ENTITIES", "Sag,Nope")], "entities"),
        (vec![("ODA_BASE_URL", "not a url")], "source.base_url"),
        (
            vec![("ODA_BASE_URL", "http://oda.example.org/api")],
            "source.base_url",
        ),
        (
            vec![("ODA_CDC_KAFKA__PROPERTIES__ACKS", "1")],
            "kafka.properties.acks",
        ),
        (
            vec![(
                "ODA_CDC_KAFKA__PROPERTIES__SSL_CA_LOCATION",
                "/nonexistent/ca.pem",
            )],
            "kafka.properties.ssl.ca.location",
        ),
    ] {
        let output = producer(&["run"], &env);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{env:?}: {stderr}");
        assert!(
            stderr.contains(named),
            "{env:?} should name {named}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
    let output = producer(&["run", "--from", "yesterday"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--from"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_set_that_answers_404_exits_1_with_a_clear_message() {
    let sim = Sim::start(|c| c.scale = 1_000).await;
    let base = sim.sim.base_url();
    let prefix = unique("it-cli");
    let txid = unique("it-cli-producer");
    let brokers = kafka().brokers;
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(BIN)
            .args(["run"])
            .env("RUST_LOG", "warn")
            .env("KAFKA_BROKERS", brokers)
            .env("ODA_BASE_URL", base)
            .env("ODA_CDC_KAFKA__TOPIC_PREFIX", prefix)
            .env("ODA_CDC_ENTITIES", "Sambehandlinger")
            .env("ODA_CDC_PRODUCER__TRANSACTIONAL_ID", txid)
            .env("METRICS_ADDR", "127.0.0.1:0")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let started = std::time::Instant::now();
        while child.try_wait().expect("wait").is_none() {
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("oda-producer kept running on a set that answers 404");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        child.wait_with_output().expect("output")
    })
    .await
    .expect("join");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Sambehandlinger") && stderr.contains("404"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_checkpoints_and_the_running_service() {
    let sim = Sim::start(|c| c.scale = 2_000).await;
    let mut settings = crate::harness::settings(&sim.sim.base_url(), &["Sag", "Aktør"]);
    settings.reconcile.interval = oda_cdc_core::config::HumanDuration::from(Duration::from_secs(1));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    settings.metrics.addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    let service =
        crate::harness::Producer::start(settings.clone(), oda_producer::StartFrom::Beginning);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let env = [
        ("KAFKA_BROKERS", settings.kafka.brokers.clone()),
        (
            "ODA_CDC_KAFKA__TOPIC_PREFIX",
            settings.kafka.topic_prefix.clone(),
        ),
        ("ODA_CDC_ENTITIES", "Sag,Aktør".to_owned()),
        ("METRICS_ADDR", format!("127.0.0.1:{port}")),
    ];
    let output = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        producer(&["status"], &env)
    })
    .await
    .expect("join");
    service.stop().await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sag = stdout
        .lines()
        .find(|l| l.starts_with("Sag "))
        .expect("a line for Sag");
    assert!(sag.contains("streaming"), "{stdout}");
    assert!(
        sag.contains("100.0%"),
        "completeness after a reconcile: {stdout}"
    );
    assert!(sag.contains(" ago"), "last good poll: {stdout}");
}

#[test]
fn a_snapshot_on_a_fresh_cluster_creates_the_topics_and_says_what_is_missing() {
    let prefix = unique("it-fresh");
    let txid = unique("it-fresh-producer");
    let brokers = kafka().brokers;
    let output = producer(
        &["snapshot", "--entities", "Sag"],
        &[
            ("KAFKA_BROKERS", brokers.as_str()),
            ("ODA_CDC_KAFKA__TOPIC_PREFIX", prefix.as_str()),
            ("ODA_CDC_ENTITIES", "Sag"),
            ("ODA_CDC_PRODUCER__TRANSACTIONAL_ID", txid.as_str()),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Sag has no checkpoint yet") && stderr.contains("oda-producer run"),
        "says what is missing: {stderr}"
    );
    assert!(!stderr.contains("UnknownPartition"), "{stderr}");
    let topics = oda_model::topics::Topics::new(&prefix, None);
    for topic in [topics.checkpoints(), topics.signals(), topics.entity("Sag")] {
        let exists = oda_cdc_testkit::read_topic(&topic);
        assert!(exists.is_ok(), "{topic} was created: {exists:?}");
    }
}

/// A set that answers 404 beside one that is served: the served one
/// flows, the other is marked failed (readiness, metric) and tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_that_answers_404_beside_others_is_marked_failed_and_they_go_on() {
    const ENTITIES: &[&str] = &["Sag", "Sambehandlinger"];
    let sim = Sim::start(|c| c.scale = 1_000).await;
    let initial = sim.initial(&["Sag"]);
    let mut settings = crate::harness::settings(&sim.sim.base_url(), ENTITIES);
    let port = crate::harness::free_port();
    settings.metrics.addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    let prefix = settings.kafka.topic_prefix.clone();
    let producer = crate::harness::Producer::start(settings, oda_producer::StartFrom::Beginning);
    crate::harness::wait_streaming(&prefix, "Sag", Duration::from_secs(60)).await;
    sim.mutate(serde_json::json!({"entity": "Sag", "updates": 5}))
        .await;
    let problems =
        crate::harness::converge(&sim, &prefix, &["Sag"], &initial, Duration::from_secs(30)).await;
    let metrics = sim.scrape(port).await.expect("metrics");
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .expect("readyz");
    let (status, report) = (
        ready.status().as_u16(),
        ready.text().await.unwrap_or_default(),
    );
    producer.stop().await;
    crate::harness::assert_no_problems(&problems);
    assert_eq!(status, 503, "{report}");
    assert!(
        report.contains("served Sambehandlinger: failed: the source answers 404"),
        "{report}"
    );
    assert_eq!(
        crate::harness::metric(
            &metrics,
            "oda_cdc_entity_unserved{entity=\"Sambehandlinger\"}"
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        crate::harness::metric(&metrics, "oda_cdc_entity_unserved{entity=\"Sag\"}"),
        0.0
    );
}

/// A replication the cluster cannot give is found at start, before any
/// topic is made, and named like any other bad configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_factor_the_cluster_cannot_give_exits_2_naming_the_key() {
    let sim = Sim::start(|c| c.scale = 1_000).await;
    let base = sim.sim.base_url();
    let prefix = unique("it-cli-rf");
    let brokers = kafka().brokers;
    let env = [
        ("KAFKA_BROKERS", brokers),
        ("ODA_BASE_URL", base),
        ("ODA_CDC_KAFKA__TOPIC_PREFIX", prefix.clone()),
        ("ODA_CDC_ENTITIES", "Sag".to_owned()),
        ("ODA_CDC_PRODUCER__TRANSACTIONAL_ID", unique("it-cli-rf")),
        ("METRICS_ADDR", "127.0.0.1:0".to_owned()),
        // The test stack has one broker.
        ("ODA_CDC_TOPICS__ENTITY__REPLICATION_FACTOR", "3".to_owned()),
    ];
    let output = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        producer(&["run"], &env)
    })
    .await
    .expect("join");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("topics.entity.replication_factor") && last.contains("1 broker"),
        "{stderr}"
    );
    let topics = oda_cdc_testkit::admin()
        .expect("admin")
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata")
        .topics()
        .iter()
        .filter(|t| t.name().starts_with(&prefix))
        .count();
    assert_eq!(topics, 0, "nothing was created before the check");
}

/// `profile = "production"` on a single broker: every start warns about
/// each topic kept in fewer than three copies, and the metric shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_production_profile_warns_about_topics_with_fewer_than_three_copies() {
    let sim = Sim::start(|c| c.scale = 200).await;
    let prefix = unique("it-cli-profile");
    let port = oda_cdc_testkit::free_port();
    let log = std::env::temp_dir().join(format!("{prefix}.log"));
    let mut child = oda_cdc_testkit::KillOnDrop(
        crate::harness::producer_command(
            &sim.sim.base_url(),
            &prefix,
            &["Sag"],
            &unique("it-cli-profile"),
            port,
        )
        .env("ODA_CDC_PROFILE", "production")
        .stderr(std::fs::File::create(&log).expect("a log file"))
        .spawn()
        .expect("oda-producer starts"),
    );
    let entity = format!("{prefix}-sag");
    let series = format!("oda_cdc_topic_replication_factor{{topic=\"{entity}\"}} 1");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut metrics = String::new();
    while tokio::time::Instant::now() < deadline && !metrics.contains(&series) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok(answer) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
            metrics = answer.text().await.unwrap_or_default();
        }
    }
    let status = oda_cdc_testkit::terminate(&mut child, Duration::from_secs(10)).await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(metrics.contains(&series), "{series} in /metrics");
    let warned: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("PRODUCTION PROFILE") && l.contains("WARN"))
        .collect();
    assert!(
        warned.iter().any(|l| l.contains(&entity)),
        "a warning names {entity}: {warned:?}"
    );
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
}
