//! Creating topics with the policies of contract.md#durability when they are missing.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::{TopicClass, TopicsSettings, Unsatisfiable};
use crate::kafka::LogContext;

/// The partition ids of `topic`, in order; empty when it does not exist
/// (or the broker reports an error for it).
pub fn partitions<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut ids: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// What a topic should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    /// Says which `topics.<class>` settings give its replication.
    pub class: TopicClass,
    pub partitions: i32,
    /// Topic configs such as `cleanup.policy`; `min.insync.replicas` comes
    /// from the class's settings unless set here.
    pub configs: BTreeMap<String, String>,
}

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

impl TopicSpec {
    fn new(class: TopicClass, name: impl Into<String>, configs: &[(&str, String)]) -> Self {
        Self {
            name: name.into(),
            class,
            partitions: 6,
            configs: configs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        }
    }

    /// A compacted topic (entities, state, changelogs): tombstones kept 7
    /// days for late readers.
    pub fn compacted(class: TopicClass, name: impl Into<String>) -> Self {
        Self::new(
            class,
            name,
            &[
                ("cleanup.policy", "compact".to_owned()),
                ("delete.retention.ms", (7 * DAY_MS).to_string()),
            ],
        )
    }

    /// A log of events kept for `retention_days` (dead letters, replay log).
    pub fn retained(class: TopicClass, name: impl Into<String>, retention_days: u64) -> Self {
        Self::new(
            class,
            name,
            &[
                ("cleanup.policy", "delete".to_owned()),
                ("retention.ms", (retention_days * DAY_MS).to_string()),
            ],
        )
    }

    /// A log kept for good (a history): deleted by nobody, compacted never.
    pub fn kept(class: TopicClass, name: impl Into<String>) -> Self {
        Self::new(
            class,
            name,
            &[
                ("cleanup.policy", "delete".to_owned()),
                ("retention.ms", "-1".to_owned()),
            ],
        )
    }

    pub fn with_partitions(mut self, partitions: i32) -> Self {
        self.partitions = partitions;
        self
    }
}

/// Why topics could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The message carries librdkafka's reason when one was logged (a
    /// refused password, an untrusted certificate).
    #[error("cannot reach Kafka to create topics: {0}")]
    Metadata(String),
    #[error("the broker refused to create topic {topic}: {code}")]
    Refused {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("topic creation failed: {0}")]
    Admin(#[source] KafkaError),
    /// A configured replication the cluster cannot give; names the key.
    #[error(transparent)]
    Durability(#[from] Unsatisfiable),
}

/// A topic the service uses and the copies it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsuredTopic {
    pub name: String,
    pub class: TopicClass,
    /// Replicas of its first partition, as the cluster reports them.
    pub replication_factor: i32,
    /// Whether this call created it.
    pub created: bool,
}

/// Creates the topics that do not exist yet, with the replication that
/// `durability` gives their class on this cluster; existing ones are left
/// as they are (an operator may have tuned them). A configured replication
/// the cluster cannot give is refused even when every topic exists, so a
/// misconfiguration shows on the first start, not on the first new topic.
pub async fn ensure_topics(
    admin: &AdminClient<LogContext>,
    specs: &[TopicSpec],
    durability: &TopicsSettings,
) -> Result<Vec<EnsuredTopic>, TopicError> {
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|e| TopicError::Metadata(e.to_string()))?;
    let brokers = i32::try_from(metadata.brokers().len()).unwrap_or(i32::MAX);
    let mut replication = BTreeMap::new();
    for spec in specs {
        if let std::collections::btree_map::Entry::Vacant(entry) = replication.entry(spec.class) {
            entry.insert(durability.resolve(spec.class, brokers)?);
        }
    }
    let existing: BTreeMap<&str, i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| {
            let copies = t.partitions().first().map_or(0, |p| p.replicas().len());
            (t.name(), i32::try_from(copies).unwrap_or(i32::MAX))
        })
        .collect();
    let mut ensured: Vec<EnsuredTopic> = specs
        .iter()
        .map(|spec| EnsuredTopic {
            name: spec.name.clone(),
            class: spec.class,
            replication_factor: existing
                .get(spec.name.as_str())
                .copied()
                .unwrap_or_else(|| replication[&spec.class].factor),
            created: false,
        })
        .collect();
    let missing: Vec<&TopicSpec> = specs
        .iter()
        .filter(|s| !existing.contains_key(s.name.as_str()))
        .collect();
    if missing.is_empty() {
        return Ok(ensured);
    }
    let owned_configs: Vec<BTreeMap<String, String>> = missing
        .iter()
        .map(|spec| {
            let mut configs = spec.configs.clone();
            configs
                .entry("min.insync.replicas".to_owned())
                .or_insert_with(|| replication[&spec.class].min_insync.to_string());
            configs
                .entry("unclean.leader.election.enable".to_owned())
                .or_insert_with(|| "false".to_owned());
            configs
        })
        .collect();
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .zip(&owned_configs)
        .map(|(spec, configs)| {
            let mut topic = NewTopic::new(
                &spec.name,
                spec.partitions,
                TopicReplication::Fixed(replication[&spec.class].factor),
            );
            for (k, v) in configs {
                topic = topic.set(k, v);
            }
            topic
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(TopicError::Admin)?;
    let mut created = Vec::new();
    for result in results {
        match result {
            Ok(name) => created.push(name),
            // Another instance won the race: the topic exists, which is all we want.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(TopicError::Refused { topic, code }),
        }
    }
    if !created.is_empty() {
        tracing::info!(topics = ?created, "Created topics.");
        wait_for_leaders(admin, &created).await?;
    }
    for topic in &mut ensured {
        topic.created = created.contains(&topic.name);
    }
    Ok(ensured)
}

/// New topics answer requests only once every partition has a leader;
/// waiting here keeps the first reads from failing with NotLeaderForPartition.
async fn wait_for_leaders(
    admin: &AdminClient<LogContext>,
    topics: &[String],
) -> Result<(), TopicError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let metadata = admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(10))
            .map_err(|e| TopicError::Metadata(e.to_string()))?;
        let ready = topics.iter().all(|name| {
            metadata.topics().iter().any(|t| {
                t.name() == name
                    && t.error().is_none()
                    && !t.partitions().is_empty()
                    && t.partitions().iter().all(|p| p.leader() >= 0)
            })
        });
        if ready || tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
