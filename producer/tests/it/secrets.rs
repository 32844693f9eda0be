//! Secrets given to the services never reach their output: a SASL password
//! (with librdkafka's own debug logging on), a registry password, and
//! credentials inside the source URL, with every log level on (`trace`).

use std::process::{Command, Stdio};
use std::time::Duration;

use oda_cdc_testkit::{kafka, unique};

use crate::harness::Sim;

const SASL: &str = "sasl-Pw-8c1f";
const REGISTRY: &str = "registry-Pw-51d0";
const URL: &str = "url-Pw-77e2";

/// Runs a binary for a few seconds with every secret set, then stops it,
/// and returns everything it wrote.
async fn output_of(binary: &str, args: &[&str], base_url: &str) -> String {
    let mut command = Command::new(binary);
    // Flags of the configuration come before the subcommand.
    command
        .args([
            "--kafka-property",
            "security.protocol=SASL_PLAINTEXT",
            "--kafka-property",
            "sasl.mechanism=PLAIN",
            "--kafka-property",
            "sasl.username=svc",
            "--kafka-property",
            &format!("sasl.password={SASL}"),
            "--kafka-property",
            "debug=all",
        ])
        .args(args)
        .env("KAFKA_BROKERS", kafka().brokers)
        .env("ODA_CDC_KAFKA__TOPIC_PREFIX", unique("it-secrets"))
        .env(
            "ODA_CDC_PRODUCER__TRANSACTIONAL_ID",
            unique("it-secrets-producer"),
        )
        .env("ODA_CDC_ENTITIES", "Sag")
        .env("ODA_CDC_FORMAT", "avro")
        .env("ODA_CDC_SCHEMA_REGISTRY__USERNAME", "svc")
        .env("ODA_CDC_SCHEMA_REGISTRY__PASSWORD", REGISTRY)
        .env("ODA_BASE_URL", base_url)
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().expect("starts");
    let pid = child.id().to_string();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("output");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_appears_in_any_output_at_trace_level() {
    let sim = Sim::start(|_| {}).await;
    let base_url = format!("http://oda:{URL}@{}/api", sim.sim.addr);
    let producer = output_of(env!("CARGO_BIN_EXE_oda-producer"), &["run"], &base_url).await;
    let status = output_of(env!("CARGO_BIN_EXE_oda-producer"), &["status"], &base_url).await;
    for (name, text) in [
        ("oda-producer run", &producer),
        ("oda-producer status", &status),
    ] {
        assert!(
            text.contains("TRACE"),
            "{name} logged at trace level: {text}"
        );
        for secret in [SASL, REGISTRY, URL] {
            assert!(
                !text.contains(secret),
                "{name} wrote {secret}: …{}…",
                text.find(secret)
                    .map(|at| &text[at.saturating_sub(200)..(at + 50).min(text.len())])
                    .unwrap_or_default()
            );
        }
    }
}
