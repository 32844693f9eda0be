//! The producer on the secured listeners of the cluster (`scripts/stack up
//! --brokers 3 --secure`): SASL_SSL with SCRAM-SHA-512 and mutual TLS,
//! Avro with the registry over HTTPS, settings from the environment and
//! the password from a file. Bad credentials fail fast naming the setting,
//! a missing ACL is named, and no log line at any level shows a password.
//!
//! Run in `scripts/test`'s cluster phase, like `cluster`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use oda_cdc_testkit::cluster::{self, Auth, Secure};
use oda_cdc_testkit::{KillOnDrop, unique};
use serde_json::json;

use crate::harness::{Sim, assert_no_problems, converge, free_port, wait_streaming};

/// The service, as the tests run it.
const RUN: &[&str] = &["run", "--from", "beginning"];

/// `oda-producer <args>` under `prefix`, secured as `auth` says, logging
/// at every level into `log_file`.
fn producer_with_args(
    args: &[&str],
    sim: &Sim,
    secure: &Secure,
    auth: Auth,
    prefix: &str,
    transactional_id: &str,
    log_file: &Path,
) -> Command {
    let mut command = crate::harness::producer_command_args(
        args,
        &sim.sim.base_url(),
        prefix,
        &["Sag"],
        transactional_id,
        free_port(),
    );
    secure.configure(&mut command, auth, "oda-producer");
    command
        .env("SCHEMA_REGISTRY_URL", &secure.registry_url)
        .env(
            "ODA_CDC_SCHEMA_REGISTRY__CA_FILE",
            secure.tls.join("ca.crt"),
        )
        // Every level, librdkafka's security and configuration debugging included.
        .env("RUST_LOG", "trace")
        .env("ODA_CDC_KAFKA__PROPERTIES__DEBUG", "security,conf")
        .stderr(Stdio::from(
            std::fs::File::create(log_file).expect("a log file"),
        ));
    command
}

/// Runs `command` to its end (at most `within`) and returns its exit code
/// and its log.
async fn run_to_end(
    mut command: Command,
    log_file: &Path,
    within: Duration,
) -> (Option<i32>, String) {
    let mut child = KillOnDrop(command.spawn().expect("oda-producer starts"));
    let started = tokio::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        assert!(started.elapsed() < within, "still running after {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let code = child.try_wait().expect("wait").and_then(|s| s.code());
    (code, std::fs::read_to_string(log_file).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the secured three-broker cluster: scripts/test runs it in its cluster phase"]
async fn the_producer_streams_over_sasl_ssl_and_mtls_with_the_registry_over_https() {
    let secure = cluster::secure();
    let logs = tempdir("secure-logs");
    for auth in [Auth::Sasl, Auth::Mtls] {
        let sim = Sim::start(|c| c.scale = 1_000).await;
        let initial = sim.initial(&["Sag"]);
        let prefix = unique("it-secure");
        let txid = unique("it-secure-producer");
        cluster::grant("producer", "oda-producer", &prefix, &txid);
        let log_file = logs.join(format!("{auth:?}.log"));
        let mut child = KillOnDrop(
            producer_with_args(RUN, &sim, &secure, auth, &prefix, &txid, &log_file)
                .spawn()
                .expect("oda-producer starts"),
        );
        wait_streaming(&prefix, "Sag", Duration::from_secs(90)).await;
        let mutate = format!("http://{}/_sim/mutate", sim.sim.addr);
        let body = json!({"entity": "Sag", "inserts": 3, "updates": 5, "restamps": 2});
        sim.http
            .post(&mutate)
            .json(&body)
            .send()
            .await
            .expect("mutate");
        let problems = converge(&sim, &prefix, &["Sag"], &initial, Duration::from_secs(60)).await;
        let status = oda_cdc_testkit::terminate(&mut child, Duration::from_secs(10)).await;
        assert_no_problems(&problems);
        assert!(status.success(), "{auth:?}: SIGTERM exits 0: {status:?}");
        let log = std::fs::read_to_string(&log_file).expect("the log");
        assert!(
            log.lines().count() > 100,
            "{auth:?}: the trace log was written"
        );
        assert!(
            !log.contains(&secure.password("oda-producer")),
            "{auth:?}: a log line shows the password"
        );

        // The registry path: every Avro schema registered over HTTPS, trusting
        // the stack's CA from configuration alone.
        let log_file = logs.join(format!("{auth:?}-schemas.log"));
        let mut command = producer_with_args(
            &["schemas", "register"],
            &sim,
            &secure,
            auth,
            &prefix,
            &txid,
            &log_file,
        );
        command.env("ODA_CDC_FORMAT", "avro");
        let (code, log) = run_to_end(command, &log_file, Duration::from_secs(120)).await;
        assert_eq!(
            code,
            Some(0),
            "{auth:?}: schemas register over HTTPS: {}",
            tail(&log)
        );
        assert!(
            !log.contains(&secure.password("oda-producer")),
            "{auth:?}: a log line shows the password"
        );
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the secured three-broker cluster: scripts/test runs it in its cluster phase"]
async fn a_wrong_password_or_a_stranger_certificate_fails_fast_naming_the_setting() {
    let secure = cluster::secure();
    let logs = tempdir("secure-refused");
    let sim = Sim::start(|c| c.scale = 200).await;
    let prefix = unique("it-secure-refused");
    let txid = unique("it-secure-refused");
    cluster::grant("producer", "oda-producer", &prefix, &txid);

    let wrong = logs.join("wrong.password");
    std::fs::write(&wrong, "not-the-password\n").expect("write");
    let log_file = logs.join("sasl.log");
    let mut command = producer_with_args(RUN, &sim, &secure, Auth::Sasl, &prefix, &txid, &log_file);
    command.env("ODA_CDC_KAFKA__PROPERTIES__SASL_PASSWORD_FILE", &wrong);
    let (code, log) = run_to_end(command, &log_file, Duration::from_secs(60)).await;
    let last = log.lines().last().unwrap_or_default().to_owned();
    assert_eq!(code, Some(1), "{last}");
    assert!(last.contains("kafka.properties.sasl.password"), "{last}");
    assert!(
        !log.contains("not-the-password"),
        "the wrong password is not shown either"
    );

    let log_file = logs.join("mtls.log");
    let mut command = producer_with_args(RUN, &sim, &secure, Auth::Mtls, &prefix, &txid, &log_file);
    command
        .env(
            "ODA_CDC_KAFKA__PROPERTIES__SSL_CERTIFICATE_LOCATION",
            secure.tls.join("stranger.crt"),
        )
        .env(
            "ODA_CDC_KAFKA__PROPERTIES__SSL_KEY_LOCATION",
            secure.tls.join("stranger.key"),
        );
    let (code, log) = run_to_end(command, &log_file, Duration::from_secs(60)).await;
    let last = log.lines().last().unwrap_or_default().to_owned();
    assert_eq!(code, Some(1), "{last}");
    assert!(
        last.contains("kafka.properties.ssl.certificate.location"),
        "{last}"
    );
}

/// A fresh directory for this test's logs.
fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}
