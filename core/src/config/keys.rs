//! The configuration keys contract.md#configuration fixes, with the kind of value each takes.
//!
//! The environment and `--set` flags deliver text; this table says how to
//! read it (a number, a comma-separated list, …) and lets every layer
//! reject a key nobody knows.

/// How a key's text from the environment or a flag becomes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Kept as text (durations and enums included; serde checks them).
    Text,
    /// A whole number.
    Integer,
    /// A number that may have a fraction.
    Float,
    /// A comma-separated list of names.
    List,
    /// `true` or `false`.
    Boolean,
}

/// One known key. `*` in a path stands for an entity set name.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub path: &'static str,
    pub kind: KeyKind,
}

const fn key(path: &'static str, kind: KeyKind) -> Key {
    Key { path, kind }
}

/// Every key; `kafka.properties.<name>` is open-ended and handled apart.
pub const KEYS: &[Key] = &[
    key("kafka.brokers", KeyKind::Text),
    key("kafka.topic_prefix", KeyKind::Text),
    key("schema_registry.url", KeyKind::Text),
    key("schema_registry.username", KeyKind::Text),
    key("schema_registry.password", KeyKind::Text),
    key("schema_registry.ca_file", KeyKind::Text),
    key("source.base_url", KeyKind::Text),
    key("format", KeyKind::Text),
    key("entities", KeyKind::List),
    key("entity.*.poll_interval", KeyKind::Text),
    key("entity.*.reconcile_interval", KeyKind::Text),
    key("entity.*.exclude_fields", KeyKind::List),
    key("poll.interval", KeyKind::Text),
    key("poll.lookback", KeyKind::Text),
    key("reconcile.interval", KeyKind::Text),
    key("http.max_in_flight", KeyKind::Integer),
    key("http.rate_limit", KeyKind::Float),
    key("http.connect_timeout", KeyKind::Text),
    key("http.request_timeout", KeyKind::Text),
    key("http.attempts", KeyKind::Integer),
    key("http.backoff", KeyKind::Text),
    key("http.backoff_max", KeyKind::Text),
    key("http.retry_after_max", KeyKind::Text),
    key("http.max_body_bytes", KeyKind::Integer),
    key("http.allow_insecure", KeyKind::Boolean),
    key("producer.transactional_id", KeyKind::Text),
    key("producer.failover_timeout", KeyKind::Text),
    key("consumer.group", KeyKind::Text),
    key("consumer.delivery", KeyKind::Text),
    key("consumer.dlq_topic", KeyKind::Text),
    key("consumer.max_retries", KeyKind::Integer),
    key("postgres.url", KeyKind::Text),
    key("postgres.schema", KeyKind::Text),
    key("metrics.addr", KeyKind::Text),
    key("log.format", KeyKind::Text),
    key("topics.entity.replication_factor", KeyKind::Integer),
    key("topics.entity.min_insync_replicas", KeyKind::Integer),
    key("topics.state.replication_factor", KeyKind::Integer),
    key("topics.state.min_insync_replicas", KeyKind::Integer),
    key("topics.processed.replication_factor", KeyKind::Integer),
    key("topics.processed.min_insync_replicas", KeyKind::Integer),
    key("topics.dlq.replication_factor", KeyKind::Integer),
    key("topics.dlq.min_insync_replicas", KeyKind::Integer),
    key("topics.internal.replication_factor", KeyKind::Integer),
    key("topics.internal.min_insync_replicas", KeyKind::Integer),
    key("profile", KeyKind::Text),
];

/// The passthrough table whose sub-keys are librdkafka property names.
pub(crate) const KAFKA_PROPERTIES: &str = "kafka.properties";

/// Short environment aliases, read before the `ODA_CDC_` names (which win).
pub(crate) const ENV_ALIASES: &[(&str, &str)] = &[
    ("KAFKA_BROKERS", "kafka.brokers"),
    ("SCHEMA_REGISTRY_URL", "schema_registry.url"),
    ("DATABASE_URL", "postgres.url"),
    ("ODA_BASE_URL", "source.base_url"),
    ("POLL_INTERVAL", "poll.interval"),
    ("METRICS_ADDR", "metrics.addr"),
    ("LOG_FORMAT", "log.format"),
];

/// Looks a dotted path up; entity names match `*`.
pub(crate) fn lookup(path: &str) -> Option<Key> {
    let parts: Vec<&str> = path.split('.').collect();
    KEYS.iter().copied().find(|k| {
        let pattern: Vec<&str> = k.path.split('.').collect();
        pattern.len() == parts.len() && pattern.iter().zip(&parts).all(|(p, s)| *p == "*" || p == s)
    })
}
