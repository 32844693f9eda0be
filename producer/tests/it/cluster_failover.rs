//! Two `oda-producer run` with one transactional id on the three-broker
//! cluster: one writes, the other stands by and takes over when the
//! writer is killed (`kill -9`) or paused (SIGSTOP), within
//! max(2 × `poll.interval`, 30 s); a paused writer that wakes up is
//! fenced and stands by, and nothing it wrote after the takeover reaches
//! a `read_committed` reader (the entity topics agree with oda-sim's
//! ground truth, with no duplicate).
//!
//! Broker-free in principle, but it measures takeover times, so it runs in
//! the cluster phase of `scripts/test`, alone.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use oda_cdc_testkit::{KillOnDrop, cluster, unique};
use serde_json::json;

use crate::harness::{Sim, assert_no_problems, converge, free_port, keep_mutating, wait_streaming};

const ENTITIES: &[&str] = &["Sag", "Stemme"];
const KILLS: usize = 10;
const PAUSES: usize = 3;
/// max(2 × poll.interval, 30 s) with the 300 ms interval of these tests.
const TAKEOVER_BOUND: Duration = Duration::from_secs(30);

/// One instance and its admin port.
struct Instance {
    child: KillOnDrop,
    port: u16,
}

/// Instance `name` (`--instance`: each its own static member of the lease
/// group).
fn spawn(sim: &Sim, prefix: &str, transactional_id: &str, name: &str, port: u16) -> Instance {
    let child = crate::harness::producer_command_args(
        &["run", "--from", "beginning", "--instance", name],
        &sim.sim.base_url(),
        prefix,
        ENTITIES,
        transactional_id,
        port,
    )
    .env("ODA_CDC_RECONCILE__INTERVAL", "5s")
    .spawn()
    .expect("oda-producer starts");
    Instance {
        child: KillOnDrop(child),
        port,
    }
}

/// What one instance's `/metrics` says: (active, committed transactions);
/// `None` while it does not answer (stopped, starting).
async fn state(http: &reqwest::Client, port: u16) -> Option<(bool, f64)> {
    let text = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let value = |series: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
    };
    Some((
        value("oda_cdc_producer_active ")? == 1.0,
        value("oda_cdc_transactions_total{outcome=\"committed\"} ").unwrap_or(0.0),
    ))
}

/// Waits until exactly one instance is active and has committed since it
/// became so; returns its index.
async fn one_active(http: &reqwest::Client, instances: &[Instance; 2], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let a = state(http, instances[0].port).await;
        let b = state(http, instances[1].port).await;
        match (a, b) {
            (Some((true, _)), Some((false, _))) => return 0,
            (Some((false, _)), Some((true, _))) => return 1,
            (Some((true, _)), Some((true, _))) => {
                // A moment of two actives is a fenced one that has not yet
                // heard: allowed, it cannot write; it must end.
            }
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "no single active instance within {within:?}: {a:?} {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the instance at `port` is active and has committed a
/// transaction; the time from `since`.
async fn took_over(http: &reqwest::Client, port: u16, since: Instant) -> Duration {
    let mut before = None;
    loop {
        if let Some((active, committed)) = state(http, port).await {
            let base = *before.get_or_insert(committed);
            if active && committed > base {
                return since.elapsed();
            }
        }
        assert!(
            since.elapsed() < TAKEOVER_BOUND * 3,
            "the standby on port {port} did not take over within {:?}",
            TAKEOVER_BOUND * 3
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name}");
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measures takeover times: scripts/test runs it alone in its cluster phase"]
async fn a_standby_takes_over_from_a_killed_or_paused_writer_and_nothing_fenced_commits() {
    cluster::require();
    let sim = Sim::start(|c| c.scale = 3_000).await;
    let initial = sim.initial(ENTITIES);
    let prefix = unique("it-failover");
    let transactional_id = unique("it-failover-producer");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("client");
    const NAMES: [&str; 2] = ["a", "b"];
    let mut instances = [
        spawn(&sim, &prefix, &transactional_id, NAMES[0], free_port()),
        spawn(&sim, &prefix, &transactional_id, NAMES[1], free_port()),
    ];
    for entity in ENTITIES {
        wait_streaming(&prefix, entity, Duration::from_secs(90)).await;
    }
    one_active(&http, &instances, Duration::from_secs(30)).await;

    let changing = oda_cdc_core::shutdown::CancellationToken::new();
    let mutator = keep_mutating(
        &sim,
        &changing,
        vec![
            json!({"entity": "Sag", "inserts": 1, "updates": 3, "deletes": 1, "restamps": 2}),
            json!({"entity": "Stemme", "updates": 40, "same_timestamp": true}),
        ],
    );
    let mut kills = Vec::new();
    for round in 1..=KILLS {
        let active = one_active(&http, &instances, Duration::from_secs(60)).await;
        let standby = 1 - active;
        // Let the writer get into its stride (a transaction open).
        tokio::time::sleep(Duration::from_millis(700)).await;
        let killed = Instant::now();
        instances[active].child.kill().expect("kill -9");
        let _ = instances[active].child.wait();
        let took = took_over(&http, instances[standby].port, killed).await;
        eprintln!("failover: kill -9 {round}: the standby wrote after {took:?}");
        kills.push(took);
        let port = instances[active].port;
        instances[active] = spawn(&sim, &prefix, &transactional_id, NAMES[active], port);
    }
    let mut pauses = Vec::new();
    for round in 1..=PAUSES {
        let active = one_active(&http, &instances, Duration::from_secs(60)).await;
        let standby = 1 - active;
        tokio::time::sleep(Duration::from_millis(700)).await;
        let paused = Instant::now();
        signal(&instances[active].child, "STOP");
        let took = took_over(&http, instances[standby].port, paused).await;
        // The old writer wakes up after the takeover with whatever it had
        // open: its next commit is refused and it stands by.
        tokio::time::sleep(Duration::from_secs(2)).await;
        signal(&instances[active].child, "CONT");
        eprintln!("failover: SIGSTOP {round}: the standby wrote after {took:?}");
        pauses.push(took);
        let woken = Instant::now();
        loop {
            if let Some((false, _)) = state(&http, instances[active].port).await {
                break;
            }
            assert!(
                woken.elapsed() < TAKEOVER_BOUND,
                "the woken writer did not stand by"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            instances[active].child.try_wait().expect("wait").is_none(),
            "the woken writer keeps running as a standby"
        );
        assert_eq!(
            one_active(&http, &instances, Duration::from_secs(30)).await,
            standby,
            "the lease stays with the instance that took over"
        );
    }
    // A graceful stop (a rolling update, a drain) hands the lease over at
    // once: the stopping instance leaves the group.
    let active = one_active(&http, &instances, Duration::from_secs(60)).await;
    let stopped = Instant::now();
    let status =
        oda_cdc_testkit::terminate(&mut instances[active].child, Duration::from_secs(10)).await;
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    let handed_over = took_over(&http, instances[1 - active].port, stopped).await;
    eprintln!("failover: SIGTERM: the standby wrote after {handed_over:?}");
    let port = instances[active].port;
    instances[active] = spawn(&sim, &prefix, &transactional_id, NAMES[active], port);
    tokio::time::sleep(Duration::from_secs(2)).await;
    changing.cancel();
    let rounds = mutator.await.expect("the mutator");

    let problems = converge(&sim, &prefix, ENTITIES, &initial, Duration::from_secs(180)).await;
    let all: Vec<Duration> = kills.iter().chain(&pauses).copied().collect();
    eprintln!(
        "failover: takeover after kill -9: median {:?}, max {:?}; after SIGSTOP: median {:?}, max {:?}; after SIGTERM: {handed_over:?} ({rounds} rounds of changes)",
        median(kills.clone()),
        kills.iter().max().expect("kills"),
        median(pauses.clone()),
        pauses.iter().max().expect("pauses"),
    );
    let mut statuses = Vec::new();
    for instance in &mut instances {
        statuses
            .push(oda_cdc_testkit::terminate(&mut instance.child, Duration::from_secs(10)).await);
    }
    assert_no_problems(&problems);
    for took in &all {
        assert!(
            *took <= TAKEOVER_BOUND,
            "every takeover within {TAKEOVER_BOUND:?}: {all:?}"
        );
    }
    assert!(
        handed_over < Duration::from_secs(6),
        "a graceful stop hands over without waiting out the failover timeout: {handed_over:?}"
    );
    for status in statuses {
        assert!(status.success(), "SIGTERM exits 0: {status:?}");
    }
    assert!(rounds > 30, "changes kept coming: {rounds} rounds");
}
