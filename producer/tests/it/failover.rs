//! The lease around a restart: `oda-producer snapshot` never fences a
//! service that is coming back, and two instances that share a name (a
//! misconfiguration) do not take turns fencing each other.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oda_cdc_testkit::{KillOnDrop, unique};

use crate::harness::{
    Sim, assert_no_problems, converge, free_port, producer_command_args, wait_streaming,
};

const ENTITIES: &[&str] = &["Sag", "Stemme"];

/// A run of the producer binary with its stderr kept in `log`.
fn producer(
    sim: &Sim,
    args: &[&str],
    prefix: &str,
    transactional_id: &str,
    port: u16,
    log: &Path,
) -> Command {
    let mut command = producer_command_args(
        args,
        &sim.sim.base_url(),
        prefix,
        ENTITIES,
        transactional_id,
        port,
    );
    command
        .env("ODA_CDC_PRODUCER__FAILOVER_TIMEOUT", "6s")
        .env("RUST_LOG", "info")
        .stderr(File::create(log).expect("log file"));
    command
}

fn service(sim: &Sim, prefix: &str, txid: &str, name: &str, port: u16, log: &Path) -> KillOnDrop {
    KillOnDrop(
        producer(sim, &["run", "--instance", name], prefix, txid, port, log)
            .spawn()
            .expect("oda-producer run starts"),
    )
}

/// A backfill of every row of Stemme, slowed to a few pages a second so
/// that it is still working when the test restarts the service.
fn snapshot(sim: &Sim, prefix: &str, txid: &str, log: &Path) -> KillOnDrop {
    KillOnDrop(
        producer(
            sim,
            &["snapshot", "--entities", "Stemme"],
            prefix,
            txid,
            free_port(),
            log,
        )
        .env("ODA_CDC_HTTP__RATE_LIMIT", "2")
        .stdout(Stdio::null())
        .spawn()
        .expect("oda-producer snapshot starts"),
    )
}

async fn active(port: u16) -> Option<bool> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("oda_cdc_producer_active "))
        .map(|v| v.trim() == "1")
}

async fn wait_exit(child: &mut KillOnDrop, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "did not exit within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A directory for this test's logs.
fn scratch(prefix: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(prefix);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

fn fenced(log: &str) -> bool {
    log.contains("Fenced") || log.contains("fenced by a newer instance")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_never_fences_a_restarting_service() {
    let sim = Sim::start(|c| c.scale = 3_000).await;
    let initial = sim.initial(ENTITIES);
    let prefix = unique("it-lease-snapshot");
    let txid = unique("it-lease-snapshot-producer");
    let dir = scratch(&prefix);
    let log = |name: &str| dir.join(name);
    let port = free_port();
    let mut first = service(&sim, &prefix, &txid, "a", port, &log("first.log"));
    for entity in ENTITIES {
        wait_streaming(&prefix, entity, Duration::from_secs(90)).await;
    }

    // 1. The service crashes and is restarted while a snapshot is asked
    // for: the dead instance is still a member, so the request goes to the
    // signals topic and the restarted instance (same name: it takes its
    // lease back at once) works on it.
    first.kill().expect("kill -9");
    let _ = first.wait();
    let mut asked = snapshot(&sim, &prefix, &txid, &log("snapshot-1.log"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut restarted = service(&sim, &prefix, &txid, "a", port, &log("restarted.log"));
    let status = wait_exit(&mut asked, Duration::from_secs(120)).await;
    let snapshot_log = read(&log("snapshot-1.log"));
    assert!(status.success(), "the snapshot completes: {snapshot_log}");
    assert!(
        snapshot_log.contains("requested from the running service"),
        "{snapshot_log}"
    );
    assert_eq!(
        active(port).await,
        Some(true),
        "the restarted service writes"
    );

    // 2. The service is stopped, the snapshot works here holding the lease,
    // and the service comes back meanwhile: it stands by until the
    // snapshot is done, then takes over; nobody is fenced.
    let status = oda_cdc_testkit::terminate(&mut restarted, Duration::from_secs(10)).await;
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    let mut here = snapshot(&sim, &prefix, &txid, &log("snapshot-2.log"));
    let started = Instant::now();
    while !read(&log("snapshot-2.log")).contains("No service is running") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the snapshot did not start working here: {}",
            read(&log("snapshot-2.log"))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut back = service(&sim, &prefix, &txid, "a", port, &log("back.log"));
    let mut stood_by = false;
    // Until the snapshot is done (and leaves the group right after).
    while !read(&log("snapshot-2.log")).contains("complete.") {
        let now = active(port).await;
        assert_ne!(
            now,
            Some(true),
            "the service wrote while the snapshot held the lease"
        );
        stood_by |= now == Some(false);
        assert!(
            here.try_wait().expect("wait").is_none(),
            "the snapshot ended early: {}",
            read(&log("snapshot-2.log"))
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = wait_exit(&mut here, Duration::from_secs(30)).await;
    let here_log = read(&log("snapshot-2.log"));
    assert!(status.success(), "the snapshot completes: {here_log}");
    assert!(stood_by, "the service stood by while the snapshot ran");
    let takeover = Instant::now();
    while active(port).await != Some(true) {
        assert!(
            takeover.elapsed() < Duration::from_secs(20),
            "the service takes over once the snapshot leaves"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let problems = converge(&sim, &prefix, ENTITIES, &initial, Duration::from_secs(120)).await;
    let status = oda_cdc_testkit::terminate(&mut back, Duration::from_secs(10)).await;
    assert_no_problems(&problems);
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    for name in [
        "restarted.log",
        "back.log",
        "snapshot-1.log",
        "snapshot-2.log",
    ] {
        let text = read(&log(name));
        assert!(!fenced(&text), "{name}: nothing was fenced:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_with_the_same_name_replaces_the_first_which_says_why() {
    let sim = Sim::start(|c| c.scale = 1_000).await;
    let prefix = unique("it-lease-twin");
    let txid = unique("it-lease-twin-producer");
    let dir = scratch(&prefix);
    let (first_log, second_log) = (dir.join("first.log"), dir.join("second.log"));
    let mut first = service(&sim, &prefix, &txid, "twin", free_port(), &first_log);
    wait_streaming(&prefix, "Sag", Duration::from_secs(90)).await;
    let port = free_port();
    let mut second = service(&sim, &prefix, &txid, "twin", port, &second_log);

    let status = wait_exit(&mut first, Duration::from_secs(60)).await;
    let said = read(&first_log);
    assert_eq!(
        status.code(),
        Some(1),
        "the replaced instance exits 1: {said}"
    );
    assert!(
        said.contains("same instance name `twin`") && said.contains("--instance"),
        "it names the setting: {said}"
    );
    let started = Instant::now();
    while active(port).await != Some(true) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the newer instance writes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        second.try_wait().expect("wait").is_none(),
        "the newer instance keeps running: {}",
        read(&second_log)
    );
    let status = oda_cdc_testkit::terminate(&mut second, Duration::from_secs(10)).await;
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
}
