//! A processor and `oda-replay` on the secured listeners of the cluster
//! (`scripts/stack up --brokers 3 --secure`), over SASL_SSL and over mutual
//! TLS, each with only the ACLs `scripts/stack grant` gives its kind; no
//! log line at any level shows a password; a missing ACL is named.
//!
//! Run in `scripts/test`'s cluster phase.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use oda_cdc_testkit::cluster::{self, Auth, Secure};
use oda_cdc_testkit::{KillOnDrop, create_topic, free_port, read_topic, unique};
use oda_model::topics::Topics;

use crate::harness::{Fixture, assert_each_once, event, outputs_for_keys, processor, produce, sag};

const RECORDS: i64 = 300;

/// Points `command` at the secured listener `auth` names, as `user`, with
/// every log level on and written to `log`.
fn secured(command: &mut Command, secure: &Secure, auth: Auth, user: &str, log: &Path) {
    secure.configure(command, auth, user);
    command
        .env("ODA_CDC_KAFKA__PROPERTIES__DEBUG", "security,conf")
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log).expect("a log file")));
}

fn assert_no_password(secure: &Secure, user: &str, log: &Path) {
    let password = secure.password(user);
    let text = std::fs::read_to_string(log).expect("the log");
    assert!(
        text.lines().count() > 50,
        "{}: the trace log was written",
        log.display()
    );
    assert!(
        !text.contains(&password),
        "{}: a log line shows the password",
        log.display()
    );
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// An input topic under a fresh prefix with `RECORDS` change events.
async fn input(prefix: &str) -> String {
    let input = Topics::new(prefix, None).entity("Sag");
    create_topic(&input, 3).await.expect("input topic");
    let fixtures: Vec<Fixture> = (1..=RECORDS)
        .map(|id| Fixture::event(&event("Sag", id, sag(id))))
        .collect();
    produce(&input, fixtures).await;
    input
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the secured three-broker cluster: scripts/test runs it in its cluster phase"]
async fn a_processor_and_oda_replay_work_over_sasl_ssl_and_mtls() {
    let secure = cluster::secure();
    let logs = tempdir("secure-consumers");
    for auth in [Auth::Sasl, Auth::Mtls] {
        let prefix = unique("it-secure");
        let group = unique("it-secure-group");
        let input = input(&prefix).await;
        let output = format!("{input}-processed");
        cluster::grant("processor", "oda-processor", &prefix, &group);
        cluster::grant("replay", "oda-replay", &prefix, "oda-replay");

        let log = logs.join(format!("{auth:?}-processor.log"));
        let mut command = processor(
            env!("CARGO_BIN_EXE_oda-passthrough"),
            &prefix,
            &group,
            "it-secure",
            free_port(),
        );
        command.env("ODA_CDC_ENTITIES", "Sag");
        secured(&mut command, &secure, auth, "oda-processor", &log);
        let mut child = KillOnDrop(command.spawn().expect("oda-passthrough starts"));
        let outputs = outputs_for_keys(&output, RECORDS as usize, Duration::from_secs(90)).await;
        let status = oda_cdc_testkit::terminate(&mut child, Duration::from_secs(10)).await;
        assert!(status.success(), "{auth:?}: SIGTERM exits 0: {status:?}");
        assert_each_once(&outputs, RECORDS);
        assert_no_password(&secure, "oda-processor", &log);

        let log = logs.join(format!("{auth:?}-replay.log"));
        let copy = format!("{prefix}-copy");
        let mut command = Command::new(env!("CARGO_BIN_EXE_oda-replay"));
        command
            .args(["copy", "--from-topic", &input, "--to-topic", &copy])
            .args(["--since", "2000-01-01T00:00:00Z"])
            .env("ODA_CDC_KAFKA__TOPIC_PREFIX", &prefix);
        secured(&mut command, &secure, auth, "oda-replay", &log);
        let status = tokio::task::spawn_blocking(move || command.status())
            .await
            .expect("join")
            .expect("oda-replay runs");
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(3).collect();
        assert!(status.success(), "{auth:?}: oda-replay copy: {tail:?}");
        let copied = tokio::task::spawn_blocking(move || read_topic(&copy))
            .await
            .expect("join")
            .expect("the copy");
        assert_eq!(
            copied.len(),
            RECORDS as usize,
            "{auth:?}: every record copied once"
        );
        assert_no_password(&secure, "oda-replay", &log);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the secured three-broker cluster: scripts/test runs it in its cluster phase"]
async fn a_processor_whose_acl_lacks_its_group_says_which_and_waits_for_it() {
    let secure = cluster::secure();
    let logs = tempdir("secure-acl");
    let prefix = unique("it-secure-acl");
    let granted = unique("it-secure-granted");
    let used = unique("it-secure-used");
    input(&prefix).await;
    cluster::grant("processor", "oda-processor", &prefix, &granted);
    let log = logs.join("processor.log");
    let port = free_port();
    let mut command = processor(
        env!("CARGO_BIN_EXE_oda-passthrough"),
        &prefix,
        &used,
        "it",
        port,
    );
    command.env("ODA_CDC_ENTITIES", "Sag");
    secured(&mut command, &secure, Auth::Sasl, "oda-processor", &log);
    command.env("RUST_LOG", "info");
    let mut child = KillOnDrop(command.spawn().expect("oda-passthrough starts"));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut said = None;
    while tokio::time::Instant::now() < deadline && said.is_none() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (_, readiness) = crate::harness::get(&format!("http://127.0.0.1:{port}/readyz")).await;
        let exited = child.try_wait().expect("wait");
        if readiness.to_lowercase().contains("authorization failed") || exited.is_some() {
            said = Some((readiness, exited));
        }
    }
    let (readiness, exited) = said.expect("the refusal was reported within 60 s");
    // Its transactional ids start with the group, so the transaction
    // coordinator refuses first; either way the resource is named, in
    // /readyz where an operator looks, and the service waits for the ACL
    // (retrying with a growing pause) instead of exiting into a crash loop.
    let readiness_lower = readiness.to_lowercase();
    assert!(
        readiness_lower.contains("authorization failed")
            && (readiness.contains("Transactional Id") || readiness.contains("Group")),
        "/readyz names the missing permission: {readiness}"
    );
    assert!(exited.is_none(), "it waits for the permission: {exited:?}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("authorization failed"), "and the log says it");
}
