//! Client configurations for producers, consumers and admin clients.
//!
//! Typed settings go first and the `kafka.properties` passthrough last, so
//! SASL, TLS and tuning reach librdkafka unchanged; the few properties that
//! carry our guarantees (`bootstrap.servers`, `transactional.id`,
//! `group.id`) are rejected in the passthrough by config validation.

use rdkafka::ClientConfig;

use crate::config::KafkaSettings;
use crate::secret::is_secret_property;

/// A config for `brokers` whose client logs at least warnings to its
/// context whatever the log filter says: the context reads them to explain
/// a refused password or certificate (`diagnosis`), and `tracing` still
/// decides what is shown.
fn new_config(brokers: &str) -> ClientConfig {
    use rdkafka::config::RDKafkaLogLevel;
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    if matches!(
        config.log_level,
        RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
    ) {
        config.set_log_level(RDKafkaLogLevel::Warning);
    }
    config
}

impl KafkaSettings {
    /// Settings every client shares: the brokers and the passthrough.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = new_config(&self.brokers);
        for (name, value) in &self.properties {
            config.set(name, value);
        }
        config
    }

    /// An idempotent producer (acks=all); transactional when an id is given.
    pub fn producer_config(&self, transactional_id: Option<&str>) -> ClientConfig {
        self.producer_config_with(transactional_id, &[])
    }

    /// [`Self::producer_config`] with other tuning defaults, still below
    /// the passthrough: a processor waits for every acknowledgement of a
    /// batch, so it lingers less and compresses faster than the producer.
    pub fn producer_config_with(
        &self,
        transactional_id: Option<&str>,
        defaults: &[(&str, &str)],
    ) -> ClientConfig {
        let mut config = new_config(&self.brokers);
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "zstd")
            .set("linger.ms", "20");
        for (name, value) in defaults {
            config.set(*name, *value);
        }
        if let Some(id) = transactional_id {
            config.set("transactional.id", id);
        }
        for (name, value) in &self.properties {
            config.set(name, value);
        }
        config
    }

    /// A consumer that reads only committed data and commits explicitly.
    pub fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut config = new_config(&self.brokers);
        config
            .set("group.id", group)
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // librdkafka pauses fetching for this long once its local queue
            // is full (1 s by default); a reader that drains the queue in
            // milliseconds then idles for most of that second.
            .set("fetch.queue.backoff.ms", "20");
        for (name, value) in &self.properties {
            config.set(name, value);
        }
        config
    }
}

/// A config as `key=value` pairs, sorted, secrets shown as `***`: what may
/// be logged.
pub fn redacted(config: &ClientConfig) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = config
        .config_map()
        .into_iter()
        .map(|(k, v)| {
            let shown = if is_secret_property(k) { "***" } else { v };
            (k.to_owned(), shown.to_owned())
        })
        .collect();
    pairs.sort();
    pairs
}

/// One line describing a config, safe to log.
pub fn describe_config(config: &ClientConfig) -> String {
    redacted(config)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> KafkaSettings {
        let mut s = KafkaSettings::default();
        s.properties
            .insert("security.protocol".into(), "SASL_SSL".into());
        s.properties
            .insert("sasl.mechanism".into(), "SCRAM-SHA-512".into());
        s.properties.insert("sasl.username".into(), "svc".into());
        s.properties
            .insert("sasl.password".into(), "hunter2".into());
        s.properties.insert("linger.ms".into(), "5".into());
        s
    }

    #[test]
    fn passthrough_reaches_the_client_and_wins_over_tuning_defaults() {
        let config = settings().producer_config(Some("tx-1"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("linger.ms"), Some("5"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("transactional.id"), Some("tx-1"));
    }

    #[test]
    fn consumers_read_committed() {
        let config = settings().consumer_config("g");
        assert_eq!(config.get("isolation.level"), Some("read_committed"));
        assert_eq!(config.get("group.id"), Some("g"));
    }

    #[test]
    fn secrets_never_appear_in_the_description() {
        let line = describe_config(&settings().client_config());
        assert!(line.contains("sasl.password=***"), "{line}");
        assert!(!line.contains("hunter2"), "{line}");
        assert!(line.contains("sasl.username=svc"), "{line}");
    }
}
