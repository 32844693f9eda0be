//! Helpers for tests that run against the real local stack that
//! `scripts/stack up` starts (or any Kafka and registry named by
//! `KAFKA_BROKERS` and `SCHEMA_REGISTRY_URL`).
//!
//! Every test works on its own random topics and groups, so tests can run
//! in parallel against one shared broker.

pub mod cluster;
pub mod properties;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use oda_cdc_core::config::{KafkaSettings, RegistrySettings};
use oda_cdc_core::config::{TopicClass, TopicsSettings};
use oda_cdc_core::kafka::{TopicSpec, ensure_topics};
use rand::Rng;
use rand::distr::Alphanumeric;
use rdkafka::admin::AdminClient;

/// Kafka settings pointing at the test broker.
pub fn kafka() -> KafkaSettings {
    KafkaSettings {
        brokers: std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned()),
        ..KafkaSettings::default()
    }
}

/// Registry settings pointing at the test registry.
pub fn registry() -> RegistrySettings {
    RegistrySettings {
        url: std::env::var("SCHEMA_REGISTRY_URL")
            .unwrap_or_else(|_| RegistrySettings::default().url),
        ..RegistrySettings::default()
    }
}

/// A name no other test run uses: `<prefix>-<10 random chars>`.
pub fn unique(prefix: &str) -> String {
    let suffix: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(10)
        .map(char::from)
        .collect();
    format!("{prefix}-{}", suffix.to_lowercase())
}

/// An admin client for the test broker.
pub fn admin() -> anyhow::Result<AdminClient<oda_cdc_core::kafka::LogContext>> {
    kafka()
        .client_config()
        .create_with_context(oda_cdc_core::kafka::LogContext)
        .context("creating the Kafka admin client")
}

/// Creates a fresh topic with `partitions` partitions and waits until its
/// leaders are known.
pub async fn create_topic(name: &str, partitions: i32) -> anyhow::Result<()> {
    create_topic_with(
        TopicSpec::retained(TopicClass::Internal, name, 1).with_partitions(partitions),
    )
    .await
}

/// Creates a topic as `spec` says (a test that needs its own
/// `max.message.bytes`, say) and waits until its leaders are known.
pub async fn create_topic_with(spec: TopicSpec) -> anyhow::Result<()> {
    let (name, partitions) = (spec.name.clone(), spec.partitions);
    let name = name.as_str();
    let admin = admin()?;
    ensure_topics(&admin, &[spec], &TopicsSettings::default()).await?;
    for _ in 0..50 {
        let metadata = admin
            .inner()
            .fetch_metadata(Some(name), Duration::from_secs(5))
            .context("fetching metadata")?;
        let ready = metadata.topics().iter().any(|t| {
            t.name() == name
                && t.error().is_none()
                && t.partitions().len() == partitions as usize
                && t.partitions().iter().all(|p| p.leader() >= 0)
        });
        if ready {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("topic {name} did not get leaders in time")
}

/// The Python interpreter of the test venv (kafka-python, fastavro).
/// `scripts/test` sets `TEST_PYTHON`; without it, `python3` on the PATH.
pub fn python() -> PathBuf {
    std::env::var_os("TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// A file under the repository's `tests/` folder.
pub fn tests_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A record as a test reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

impl ReadRecord {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every committed record of `topic` (read_committed), partition by
/// partition in offset order. Blocking: call from `spawn_blocking` or a
/// plain test.
pub fn read_topic(topic: &str) -> anyhow::Result<Vec<ReadRecord>> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    use rdkafka::message::Headers;

    let mut config = kafka().consumer_config(&unique("reader"));
    config.set("enable.partition.eof", "true");
    let consumer: BaseConsumer = config.create().context("consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("metadata")?;
    let mut assignment = rdkafka::TopicPartitionList::new();
    let mut pending = std::collections::HashSet::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            assignment.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)?;
            pending.insert(p.id());
        }
    }
    if pending.is_empty() {
        bail!("topic {topic} does not exist");
    }
    consumer.assign(&assignment)?;
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !pending.is_empty() {
        if std::time::Instant::now() > deadline {
            bail!("reading {topic} did not reach the end in 60 s");
        }
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                pending.remove(&p);
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                let value = h
                                    .value
                                    .map(|v| String::from_utf8_lossy(v).into_owned())
                                    .unwrap_or_default();
                                (h.key.to_owned(), value)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                records.push(ReadRecord {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
            }
        }
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    Ok(records)
}

/// Sends SIGTERM to `child` and waits for its exit, failing the test when
/// it takes longer than `within` (contract.md#shutdown: 10 s).
pub async fn terminate(
    child: &mut std::process::Child,
    within: Duration,
) -> std::process::ExitStatus {
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(term.is_ok_and(|s| s.success()), "kill -TERM");
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            started.elapsed() < within,
            "no exit within {within:?} of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A TCP port free on 127.0.0.1 right now (for a child's `/metrics`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A child process that is killed when the test lets go of it, so a test
/// that fails halfway leaves no service running into the next one.
#[derive(Debug)]
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
