//! The three-broker cluster that `scripts/test` starts for its cluster
//! phase (`scripts/stack up --brokers 3` on ports and a data directory of
//! its own), and the broker kills its tests need.
//!
//! In that phase `KAFKA_BROKERS` names the cluster, so every other helper
//! of this crate talks to it; `ODA_CLUSTER_*` tell `scripts/stack` which
//! stack to act on.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

/// The variables `scripts/test` sets for the cluster phase, and the ones of
/// `scripts/stack` they stand for.
const STACK_ENV: &[(&str, &str)] = &[
    ("ODA_CLUSTER_STACK_DIR", "ODA_STACK_DIR"),
    ("ODA_CLUSTER_KAFKA_PORT", "KAFKA_PORT"),
    ("ODA_CLUSTER_CONTROLLER_PORT", "KAFKA_CONTROLLER_PORT"),
    ("ODA_CLUSTER_REGISTRY_PORT", "REGISTRY_PORT"),
    (
        "ODA_CLUSTER_REGISTRY_MANAGEMENT_PORT",
        "REGISTRY_MANAGEMENT_PORT",
    ),
];

/// Brokers a cluster test needs.
pub const BROKERS: i32 = 3;

/// Fails the test unless `KAFKA_BROKERS` is a cluster of three live
/// brokers that `ODA_CLUSTER_*` let this process stop and start: a cluster
/// test on a single broker would prove nothing. A broker an earlier
/// (failed) test left down is started first.
pub fn require() {
    for (name, _) in STACK_ENV {
        assert!(
            std::env::var_os(name).is_some(),
            "{name} is not set: cluster tests run in scripts/test's cluster phase \
             (or by hand: scripts/stack up --brokers 3 with the ODA_CLUSTER_* settings)"
        );
    }
    for n in 1..=BROKERS {
        start_broker(n);
    }
    let live = live_brokers().expect("cluster metadata");
    assert_eq!(
        live.len(),
        BROKERS as usize,
        "KAFKA_BROKERS must be a cluster of {BROKERS} live brokers, found {live:?}"
    );
}

/// The ids of the brokers that answer in the cluster's metadata.
pub fn live_brokers() -> anyhow::Result<Vec<i32>> {
    let admin = crate::admin()?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .context("cluster metadata")?;
    let mut ids: Vec<i32> = metadata.brokers().iter().map(|b| b.id()).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// The broker that leads `partition` of `topic`.
pub fn leader(topic: &str, partition: i32) -> anyhow::Result<i32> {
    let admin = crate::admin()?;
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("topic metadata")?;
    let Some(found) = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .and_then(|t| t.partitions().iter().find(|p| p.id() == partition))
    else {
        bail!("{topic}/{partition} is not in the metadata");
    };
    Ok(found.leader())
}

/// The replicas and in-sync replicas of every partition of `topic`.
pub fn replication(topic: &str) -> anyhow::Result<Vec<(usize, usize)>> {
    let admin = crate::admin()?;
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("topic metadata")?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        bail!("{topic} is not in the metadata");
    };
    Ok(found
        .partitions()
        .iter()
        .map(|p| (p.replicas().len(), p.isr().len()))
        .collect())
}

/// `kill -9` of broker `n` (node id `n`), as `scripts/stack kill-broker` does.
pub fn kill_broker(n: i32) {
    stack(&["kill-broker", &n.to_string()]);
}

/// Starts broker `n` again and returns once it answers.
pub fn start_broker(n: i32) {
    stack(&["start-broker", &n.to_string()]);
}

/// Waits until every partition of `topics` has all its replicas in sync
/// again (after a restart the returning broker has to catch up before the
/// next kill may take a leader away).
pub async fn wait_in_sync(topics: &[String], within: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let mut lagging = Vec::new();
        for topic in topics {
            let partitions = replication(topic)?;
            if partitions.iter().any(|(replicas, isr)| isr < replicas) {
                lagging.push(topic.clone());
            }
        }
        if lagging.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("replicas still out of sync after {within:?}: {lagging:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn stack(args: &[&str]) {
    let script: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "scripts", "stack"]
        .iter()
        .collect();
    let mut command = Command::new("bash");
    command.arg(script).args(args).stdout(Stdio::null());
    for (ours, theirs) in STACK_ENV {
        if let Some(value) = std::env::var_os(ours) {
            command.env(theirs, value);
        }
    }
    let status = command.status().expect("scripts/stack runs");
    assert!(status.success(), "scripts/stack {args:?}: {status:?}");
}

/// Stops broker `n` the way an operator's rolling restart does (SIGTERM,
/// a controlled shutdown that moves its leaders away first).
pub fn stop_broker(n: i32) {
    stack(&["stop-broker", &n.to_string()]);
}

/// The partition of `topic` holding the most records, and its leader.
pub fn busiest_partition(topic: &str) -> anyhow::Result<(i32, i32)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = crate::kafka()
        .consumer_config(&crate::unique("it-cluster-watermarks"))
        .create()
        .context("creating a consumer")?;
    let partitions = oda_cdc_core::kafka::partitions(&consumer, topic, Duration::from_secs(10))?;
    let mut busiest = None;
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        if busiest.is_none_or(|(_, most)| high - low > most) {
            busiest = Some((partition, high - low));
        }
    }
    let Some((partition, _)) = busiest else {
        bail!("{topic} has no partitions");
    };
    Ok((partition, leader(topic, partition)?))
}

/// A binary of this workspace, built beside the running test (nextest
/// builds them all): for a test that runs another package's binary.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join(name))
        .expect("the target directory");
    assert!(
        path.exists(),
        "{} is not built: run the tests with cargo nextest run --workspace",
        path.display()
    );
    path
}

/// The secured listeners of the cluster (`up --brokers 3 --secure`) and
/// what a client needs to use them.
#[derive(Debug, Clone)]
pub struct Secure {
    /// SASL_SSL (SCRAM-SHA-512) bootstrap list.
    pub sasl: String,
    /// Mutual-TLS bootstrap list.
    pub mtls: String,
    /// The stack's CA, client certificates and keys.
    pub tls: PathBuf,
    /// One password file per user.
    pub secrets: PathBuf,
    /// The registry's Confluent-compatible API over HTTPS.
    pub registry_url: String,
}

/// The secured side of the cluster; fails the test when the cluster phase
/// did not make it secure.
pub fn secure() -> Secure {
    require();
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let dir = PathBuf::from(var("ODA_CLUSTER_STACK_DIR"));
    let port: i32 = var("ODA_CLUSTER_KAFKA_PORT").parse().expect("a port");
    let list = |offset: i32| {
        (0..BROKERS)
            .map(|n| format!("127.0.0.1:{}", port + 10 * n + offset))
            .collect::<Vec<_>>()
            .join(",")
    };
    let secure = Secure {
        sasl: list(2),
        mtls: list(3),
        tls: dir.join("tls"),
        secrets: dir.join("secrets"),
        registry_url: format!(
            "https://127.0.0.1:{}/apis/ccompat/v7",
            var("ODA_CLUSTER_REGISTRY_PORT")
        ),
    };
    assert!(
        secure.tls.join("ca.crt").exists(),
        "the cluster is not secure: scripts/test starts it with `up --brokers 3 --secure`"
    );
    secure
}

/// `scripts/stack grant`: allows `user` what a `role` needs on topics
/// starting with `prefix` (`name`: transactional id or group).
pub fn grant(role: &str, user: &str, prefix: &str, name: &str) {
    stack(&["grant", role, user, prefix, name]);
}

/// How a client authenticates on the secured listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// SASL_SSL with SCRAM-SHA-512, the password from the user's file.
    Sasl,
    /// Mutual TLS with the user's client certificate.
    Mtls,
}

impl Secure {
    /// Points a service's `command` at the listener `auth` names, as
    /// `user`, with settings from the environment alone.
    pub fn configure(&self, command: &mut Command, auth: Auth, user: &str) {
        command.env(
            "ODA_CDC_KAFKA__PROPERTIES__SSL_CA_LOCATION",
            self.tls.join("ca.crt"),
        );
        match auth {
            Auth::Sasl => command
                .env("KAFKA_BROKERS", &self.sasl)
                .env("ODA_CDC_KAFKA__PROPERTIES__SECURITY_PROTOCOL", "SASL_SSL")
                .env("ODA_CDC_KAFKA__PROPERTIES__SASL_MECHANISM", "SCRAM-SHA-512")
                .env("ODA_CDC_KAFKA__PROPERTIES__SASL_USERNAME", user)
                .env(
                    "ODA_CDC_KAFKA__PROPERTIES__SASL_PASSWORD_FILE",
                    self.secrets.join(format!("{user}.password")),
                ),
            Auth::Mtls => command
                .env("KAFKA_BROKERS", &self.mtls)
                .env("ODA_CDC_KAFKA__PROPERTIES__SECURITY_PROTOCOL", "SSL")
                .env(
                    "ODA_CDC_KAFKA__PROPERTIES__SSL_CERTIFICATE_LOCATION",
                    self.tls.join(format!("{user}.crt")),
                )
                .env(
                    "ODA_CDC_KAFKA__PROPERTIES__SSL_KEY_LOCATION",
                    self.tls.join(format!("{user}.key")),
                ),
        };
    }

    /// `user`'s password, for tests that look for it where it must not be.
    pub fn password(&self, user: &str) -> String {
        std::fs::read_to_string(self.secrets.join(format!("{user}.password")))
            .expect("the user's password file")
            .trim()
            .to_owned()
    }
}

/// One config of `topic` as the cluster reports it (`min.insync.replicas`, …).
pub async fn topic_config(topic: &str, name: &str) -> anyhow::Result<Option<String>> {
    use rdkafka::admin::{AdminOptions, ResourceSpecifier};
    let admin = crate::admin()?;
    let results = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .context("describing the topic's configs")?;
    for result in results {
        let resource = result.map_err(|code| anyhow::anyhow!("{topic}: {code}"))?;
        if let Some(entry) = resource.get(name) {
            return Ok(entry.value.clone());
        }
    }
    Ok(None)
}
