//! Typed configuration shared by every binary (contract.md#configuration).
//!
//! Values come from three layers, each overriding the one before: a TOML
//! file (`--config`), the environment (`ODA_CDC_<KEY>` with dots as `__`,
//! plus a few short aliases), and command-line flags (`--set key=value`,
//! `--kafka-property key=value`, and the binary's own flags). Unknown keys
//! are rejected in every layer, so a typo never silently falls back to a
//! default; every error names the key and where it came from, and the
//! binaries exit with status 2 on it.

mod durability;
mod duration;
mod kafka_properties;
mod keys;
mod layers;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use oda_model::topics::Topics;
use serde::Deserialize;

pub use self::durability::{
    ClassDurability, PRODUCTION_FACTOR, Profile, Replication, TopicClass, TopicsSettings,
    Unsatisfiable,
};
pub use self::duration::HumanDuration;
pub use self::keys::{KEYS, Key, KeyKind};
pub use self::layers::{ENV_PREFIX, Layers, Origin};
use crate::secret::{Secret, redact_url, redacted_properties};

/// What went wrong while reading the configuration. Every variant names the
/// key (or file) so an operator can fix it from the one line printed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("unknown configuration key `{key}` (from {origin})")]
    UnknownKey { key: String, origin: Origin },
    #[error("invalid value for `{key}` (from {origin}): {message}")]
    InvalidValue {
        key: String,
        origin: Origin,
        message: String,
    },
    #[error("malformed setting `{text}` (from {origin}): expected key=value")]
    Malformed { text: String, origin: Origin },
}

impl ConfigError {
    /// The exit status contract.md#exit-codes gives to bad configuration.
    pub const EXIT_CODE: u8 = 2;
}

/// Wire format of the change events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Avro in the Confluent wire format, schemas in the registry.
    Avro,
    /// JSON envelopes, for setups without a registry.
    #[default]
    Json,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Delivery guarantee of a consumer processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Consume-transform-produce in Kafka transactions.
    #[default]
    ExactlyOnce,
    /// Outputs acknowledged before offsets are committed; replays may duplicate.
    AtLeastOnce,
}

/// The whole configuration. One file can serve every binary: each reads
/// the sections it needs and ignores the rest.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub kafka: KafkaSettings,
    #[serde(default)]
    pub schema_registry: RegistrySettings,
    #[serde(default)]
    pub source: SourceSettings,
    /// `avro` or `json`.
    #[serde(default)]
    pub format: Format,
    /// Entity sets to capture; `None` means every real entity set.
    #[serde(default)]
    pub entities: Option<Vec<String>>,
    /// Per-entity overrides, keyed by entity set name.
    #[serde(default)]
    pub entity: BTreeMap<String, EntityOverrides>,
    #[serde(default)]
    pub poll: PollSettings,
    #[serde(default)]
    pub reconcile: ReconcileSettings,
    #[serde(default)]
    pub http: HttpSettings,
    #[serde(default)]
    pub producer: ProducerSettings,
    #[serde(default)]
    pub consumer: ConsumerSettings,
    /// The database of `oda-pg-sink`.
    #[serde(default)]
    pub postgres: PostgresSettings,
    #[serde(default)]
    pub metrics: MetricsSettings,
    #[serde(default)]
    pub log: LogSettings,
    /// Replication of the topics the services create, per class.
    #[serde(default)]
    pub topics: TopicsSettings,
    /// `development` or `production`: how loudly too few copies are reported.
    #[serde(default)]
    pub profile: Profile,
}

/// Kafka connection and topic naming.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap servers, comma-separated.
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// Prefix of every topic name (`<prefix>-sag`, `<prefix>-dlq`, …).
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// librdkafka settings passed through as they are (SASL, TLS, tuning).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: default_brokers(),
            topic_prefix: default_topic_prefix(),
            properties: BTreeMap::new(),
        }
    }
}

// Debug by hand for the settings that can carry credentials: secret
// properties and passwords inside URLs print as `***`.
impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("topic_prefix", &self.topic_prefix)
            .field("properties", &redacted_properties(&self.properties))
            .finish()
    }
}

impl std::fmt::Debug for RegistrySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrySettings")
            .field("url", &redact_url(&self.url))
            .field("username", &self.username)
            .field("password", &self.password)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl std::fmt::Debug for SourceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceSettings")
            .field("base_url", &redact_url(&self.base_url))
            .finish()
    }
}

fn default_brokers() -> String {
    "127.0.0.1:9092".to_owned()
}

fn default_topic_prefix() -> String {
    "parliament".to_owned()
}

/// The Confluent-compatible schema registry.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    /// Base URL of the Confluent-compatible API.
    #[serde(default = "default_registry_url")]
    pub url: String,
    /// Basic-auth user, if the registry wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic-auth password; never logged.
    #[serde(default)]
    pub password: Option<Secret>,
    /// PEM file of an extra CA to trust for the registry's TLS.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            url: default_registry_url(),
            username: None,
            password: None,
            ca_file: None,
        }
    }
}

fn default_registry_url() -> String {
    "http://127.0.0.1:8081/apis/ccompat/v7".to_owned()
}

/// Where the ODA API lives.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    /// Base URL, `https://oda.ft.dk/api` unless pointed at `oda-sim`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

impl Default for SourceSettings {
    fn default() -> Self {
        Self {
            base_url: default_base_url(),
        }
    }
}

fn default_base_url() -> String {
    oda_model::DEFAULT_ODA_BASE_URL.to_owned()
}

/// Per-entity overrides of the global intervals and the fields to keep out.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityOverrides {
    pub poll_interval: Option<HumanDuration>,
    pub reconcile_interval: Option<HumanDuration>,
    /// Fields never published (personal data such as `Aktør.biografi`).
    #[serde(default)]
    pub exclude_fields: Vec<String>,
}

/// Change polling.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollSettings {
    /// How often every entity set is polled.
    #[serde(default = "default_poll_interval")]
    pub interval: HumanDuration,
    /// How far behind the cursor each poll re-reads, for late commits.
    #[serde(default = "default_lookback")]
    pub lookback: HumanDuration,
}

impl Default for PollSettings {
    fn default() -> Self {
        Self {
            interval: default_poll_interval(),
            lookback: default_lookback(),
        }
    }
}

fn default_poll_interval() -> HumanDuration {
    HumanDuration::from_secs(5 * 60)
}

fn default_lookback() -> HumanDuration {
    HumanDuration::from_secs(10 * 60)
}

/// Delete detection by id reconciliation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileSettings {
    #[serde(default = "default_reconcile_interval")]
    pub interval: HumanDuration,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            interval: default_reconcile_interval(),
        }
    }
}

fn default_reconcile_interval() -> HumanDuration {
    HumanDuration::from_secs(24 * 60 * 60)
}

/// Politeness towards the source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Requests in flight at once, across all entity sets.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Requests per second; 0 turns the limit off.
    #[serde(default = "default_rate_limit")]
    pub rate_limit: f64,
    /// Time to establish a connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// Time for a whole request, body included.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: HumanDuration,
    /// Tries of one request, the first included.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// The first pause before a retry; it doubles up to `backoff_max`.
    #[serde(default = "default_backoff")]
    pub backoff: HumanDuration,
    #[serde(default = "default_backoff_max")]
    pub backoff_max: HumanDuration,
    /// The longest `Retry-After` honoured; a longer one waits this long.
    #[serde(default = "default_retry_after_max")]
    pub retry_after_max: HumanDuration,
    /// The largest response body read, after decompression: a bigger page
    /// (or a gzip bomb) is an error for its entity, not an out-of-memory kill.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Allow plain HTTP to a host that is not loopback (off: HTTPS only).
    #[serde(default)]
    pub allow_insecure: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_in_flight: default_max_in_flight(),
            rate_limit: default_rate_limit(),
            connect_timeout: default_connect_timeout(),
            request_timeout: default_request_timeout(),
            attempts: default_attempts(),
            backoff: default_backoff(),
            backoff_max: default_backoff_max(),
            retry_after_max: default_retry_after_max(),
            max_body_bytes: default_max_body_bytes(),
            allow_insecure: false,
        }
    }
}

fn default_connect_timeout() -> HumanDuration {
    Duration::from_secs(5).into()
}

fn default_request_timeout() -> HumanDuration {
    Duration::from_secs(30).into()
}

fn default_attempts() -> u32 {
    5
}

fn default_backoff() -> HumanDuration {
    Duration::from_millis(250).into()
}

fn default_backoff_max() -> HumanDuration {
    Duration::from_secs(30).into()
}

fn default_retry_after_max() -> HumanDuration {
    Duration::from_secs(60).into()
}

/// 16 MiB: a page of 100 ODA records is well under 1 MiB, and four in
/// flight stay far below the producer's memory limit.
fn default_max_body_bytes() -> u64 {
    16 * 1024 * 1024
}

fn default_max_in_flight() -> usize {
    4
}

fn default_rate_limit() -> f64 {
    5.0
}

/// The producer's identity and failover.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerSettings {
    /// Kafka `transactional.id`: the fence. Instances sharing it share one
    /// lease; only the holder writes.
    #[serde(default = "default_transactional_id")]
    pub transactional_id: String,
    /// How long the active instance may be silent before a standby takes
    /// over: the lease group's `session.timeout.ms`.
    #[serde(default = "default_failover_timeout")]
    pub failover_timeout: HumanDuration,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        Self {
            transactional_id: default_transactional_id(),
            failover_timeout: default_failover_timeout(),
        }
    }
}

/// Bounds of `producer.failover_timeout`: Kafka's default
/// `group.min.session.timeout.ms` below, five minutes above (a standby
/// that waits longer is no failover).
pub const FAILOVER_TIMEOUT_MIN: Duration = Duration::from_secs(6);
pub const FAILOVER_TIMEOUT_MAX: Duration = Duration::from_secs(300);

fn default_failover_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}

fn default_transactional_id() -> String {
    "oda-producer".to_owned()
}

/// Consumer processors.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSettings {
    /// Consumer group; defaults to the processor's name.
    pub group: Option<String>,
    #[serde(default)]
    pub delivery: Delivery,
    /// Dead-letter topic; defaults to `<prefix>-dlq`.
    pub dlq_topic: Option<String>,
    /// Attempts for a retryable error before the record is dead-lettered.
    pub max_retries: Option<u32>,
}

/// Where `oda-pg-sink` mirrors the topics.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSettings {
    /// A libpq connection string (`postgres://user@host/db` or
    /// `host=… dbname=…`); it may hold a password, so it is a secret.
    #[serde(default)]
    pub url: Option<Secret>,
    /// The schema that holds the mirrored tables.
    #[serde(default = "default_postgres_schema")]
    pub schema: String,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        Self {
            url: None,
            schema: default_postgres_schema(),
        }
    }
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("url", &self.url.as_ref().map(|_| "***"))
            .field("schema", &self.schema)
            .finish()
    }
}

fn default_postgres_schema() -> String {
    "oda".to_owned()
}

/// Whether `text` has the shape of a libpq connection string: a
/// `postgres://` or `postgresql://` URL, or `key=value` pairs.
fn is_conninfo(text: &str) -> bool {
    let text = text.trim();
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        return reqwest::Url::parse(text).is_ok();
    }
    !text.is_empty()
        && text.split_whitespace().all(|pair| {
            pair.split_once('=').is_some_and(|(key, _)| {
                !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            })
        })
}

/// A schema name used unquoted in SQL: lowercase, a letter or `_` first.
fn is_plain_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && name.len() <= 63
}

/// The admin HTTP server (`/metrics`, `/healthz`, `/readyz`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Listen address; each binary has its own default port.
    pub addr: Option<SocketAddr>,
}

/// Logging.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    #[serde(default)]
    pub format: LogFormat,
}

impl Settings {
    /// Every topic name these settings imply. A service builds this once at
    /// start and passes it on; nothing else derives names from the prefix.
    pub fn topics(&self) -> Topics {
        Topics::new(&self.kafka.topic_prefix, self.consumer.dlq_topic.as_deref())
    }

    /// Reads the layers and checks the values that serde cannot.
    pub fn load(layers: &Layers) -> Result<Self, ConfigError> {
        let settings: Settings = layers.deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::InvalidValue {
            key: key.to_owned(),
            origin: Origin::Merged,
            message: message.to_owned(),
        };
        if self.kafka.brokers.trim().is_empty() {
            return Err(invalid("kafka.brokers", "must not be empty"));
        }
        if self.kafka.topic_prefix.trim().is_empty() {
            return Err(invalid("kafka.topic_prefix", "must not be empty"));
        }
        if let Err(refused) = kafka_properties::check(&self.kafka.properties) {
            return Err(invalid(
                &format!("kafka.properties.{}", refused.property),
                &refused.message,
            ));
        }
        if let Some(path) = &self.schema_registry.ca_file {
            kafka_properties::readable(path)
                .map_err(|message| invalid("schema_registry.ca_file", &message))?;
        }
        if self.poll.interval.is_zero() {
            return Err(invalid("poll.interval", "must be longer than zero"));
        }
        if self.http.max_in_flight == 0 {
            return Err(invalid("http.max_in_flight", "must be at least 1"));
        }
        if !(self.http.rate_limit.is_finite() && self.http.rate_limit >= 0.0) {
            return Err(invalid(
                "http.rate_limit",
                "must be a number of requests per second, 0 or more",
            ));
        }
        let Ok(source) = reqwest::Url::parse(&self.source.base_url) else {
            return Err(invalid("source.base_url", "is not a URL"));
        };
        if source.scheme() != "https" && !self.http.allow_insecure && !is_loopback(&source) {
            return Err(invalid(
                "source.base_url",
                "plain HTTP to a host that is not loopback: use https://, or set \
                 http.allow_insecure = true",
            ));
        }
        if self.http.attempts == 0 {
            return Err(invalid("http.attempts", "must be at least 1"));
        }
        if self.http.max_body_bytes < 64 * 1024 {
            return Err(invalid(
                "http.max_body_bytes",
                "must be at least 65536 (one ODA page is up to several hundred KiB)",
            ));
        }
        if reqwest::Url::parse(&self.schema_registry.url).is_err() {
            return Err(invalid("schema_registry.url", "is not a URL"));
        }
        if self.producer.transactional_id.trim().is_empty() {
            return Err(invalid("producer.transactional_id", "must not be empty"));
        }
        if !(FAILOVER_TIMEOUT_MIN..=FAILOVER_TIMEOUT_MAX)
            .contains(&self.producer.failover_timeout.get())
        {
            return Err(invalid(
                "producer.failover_timeout",
                "must be between 6s (Kafka's group.min.session.timeout.ms) and 5m",
            ));
        }
        if let Some(url) = &self.postgres.url
            && !is_conninfo(url.expose())
        {
            return Err(invalid(
                "postgres.url",
                "is not a libpq connection string (postgres://user@host:port/db, or key=value \
                 pairs)",
            ));
        }
        if !is_plain_identifier(&self.postgres.schema) {
            return Err(invalid(
                "postgres.schema",
                "must be a plain SQL identifier: lowercase letters, digits and `_`, a letter or \
                 `_` first, at most 63 bytes",
            ));
        }
        self.topics
            .validate()
            .map_err(|refused| invalid(&refused.key, &refused.message))?;
        Ok(())
    }
}

/// A URL whose host is this machine (`localhost`, 127.0.0.0/8, `::1`).
fn is_loopback(url: &reqwest::Url) -> bool {
    url.host_str().is_some_and(|host| {
        host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

#[cfg(test)]
mod tests;
