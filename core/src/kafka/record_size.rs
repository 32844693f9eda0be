//! The largest record a topic takes, known before sending.
//!
//! A record over the limit is refused for good: by librdkafka at once
//! (`message.max.bytes` of the client), or by the broker inside a
//! transaction (`max.message.bytes` of the topic), which aborts it. Sent
//! anyway, the same record would fail the same way after every restart;
//! checked first, it can be dead-lettered and the stream goes on
//! (contract.md#dead-letters).

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::error::KafkaError;

use crate::config::KafkaSettings;

/// librdkafka's default `message.max.bytes`.
const CLIENT_DEFAULT: usize = 1_000_000;
/// What a record costs beyond its key, value and headers: the record's own
/// varints and, for a record alone in its batch, the batch header (61
/// bytes). Counted generously, so a record that passes fits.
const RECORD_OVERHEAD: usize = 128;
/// What each header costs beyond its name and value (two varint lengths).
const HEADER_OVERHEAD: usize = 10;

/// The size a record takes on the wire, counted as the limits count it.
pub fn record_size<'a>(
    key: usize,
    value: usize,
    headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> usize {
    let headers: usize = headers
        .into_iter()
        .map(|(name, value)| name.len() + value.len() + HEADER_OVERHEAD)
        .sum();
    key + value + headers + RECORD_OVERHEAD
}

/// A record larger than its topic takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "record of {size} bytes is larger than topic {topic} takes ({limit} bytes: the smaller of \
     the topic's max.message.bytes and the client's message.max.bytes)"
)]
pub struct TooLarge {
    pub topic: String,
    pub size: usize,
    pub limit: usize,
}

/// Per topic, the largest record it takes.
#[derive(Debug, Clone)]
pub struct RecordLimits {
    client: usize,
    topics: HashMap<String, usize>,
}

impl RecordLimits {
    /// The client's limit alone (`message.max.bytes` from
    /// `kafka.properties`, else librdkafka's default).
    pub fn client(kafka: &KafkaSettings) -> Self {
        let client = kafka
            .properties
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(CLIENT_DEFAULT);
        Self {
            client,
            topics: HashMap::new(),
        }
    }

    /// The client's limit and each topic's `max.message.bytes`. A topic
    /// whose configuration cannot be read (it does not exist yet, or the
    /// ACL does not allow `DescribeConfigs`) is held to the client's limit
    /// alone; the broker still refuses what is too large for it.
    pub async fn fetch<C: ClientContext + 'static>(
        admin: &AdminClient<C>,
        kafka: &KafkaSettings,
        topics: &[String],
    ) -> Self {
        let mut limits = Self::client(kafka);
        match describe(admin, topics).await {
            Ok(found) => limits.topics = found,
            Err(error) => tracing::warn!(
                %error,
                "Cannot read the topics' max.message.bytes; records are checked against the \
                 client's message.max.bytes only."
            ),
        }
        limits
    }

    /// [`Self::fetch`] with an admin client of its own, for a service that
    /// reads the limits at each start of a session.
    pub async fn read(kafka: &KafkaSettings, topics: &[String]) -> Self {
        match kafka
            .client_config()
            .create::<AdminClient<DefaultClientContext>>()
        {
            Ok(admin) => Self::fetch(&admin, kafka, topics).await,
            Err(_) => Self::client(kafka),
        }
    }

    /// The largest record `topic` takes.
    pub fn limit(&self, topic: &str) -> usize {
        self.topics
            .get(topic)
            .map_or(self.client, |t| (*t).min(self.client))
    }

    /// `Err` when a record of `size` bytes (see [`record_size`]) is more
    /// than `topic` takes.
    pub fn check(&self, topic: &str, size: usize) -> Result<(), TooLarge> {
        let limit = self.limit(topic);
        if size > limit {
            Err(TooLarge {
                topic: topic.to_owned(),
                size,
                limit,
            })
        } else {
            Ok(())
        }
    }
}

async fn describe<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    topics: &[String],
) -> Result<HashMap<String, usize>, KafkaError> {
    let specifiers: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let results = admin.describe_configs(&specifiers, &options).await?;
    let mut found = HashMap::new();
    for (topic, result) in topics.iter().zip(results) {
        match result {
            Ok(resource) => {
                if let Some(limit) = resource
                    .get("max.message.bytes")
                    .and_then(|e| e.value.as_deref())
                    .and_then(|v| v.parse().ok())
                {
                    found.insert(topic.clone(), limit);
                }
            }
            Err(code) => tracing::debug!(topic, %code, "No configuration for this topic."),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smaller_limit_holds_and_unknown_topics_get_the_clients() {
        let mut kafka = KafkaSettings::default();
        kafka
            .properties
            .insert("message.max.bytes".into(), "8000000".into());
        let mut limits = RecordLimits::client(&kafka);
        limits.topics.insert("small".into(), 1_048_576);
        limits.topics.insert("large".into(), 20_000_000);
        assert_eq!(limits.limit("small"), 1_048_576);
        assert_eq!(limits.limit("large"), 8_000_000);
        assert_eq!(limits.limit("unknown"), 8_000_000);
        assert_eq!(
            RecordLimits::client(&KafkaSettings::default()).limit("t"),
            CLIENT_DEFAULT
        );
    }

    #[test]
    fn a_record_over_the_limit_is_named_with_its_size() {
        let limits = RecordLimits::client(&KafkaSettings::default());
        let size = record_size(10, 2 << 20, [(&b"oda.entity"[..], &b"Sag"[..])]);
        let error = limits.check("parliament-sag", size).expect_err("too large");
        assert_eq!(error.size, size);
        assert!(error.to_string().contains("parliament-sag"), "{error}");
        assert!(error.to_string().contains("max.message.bytes"), "{error}");
        assert!(
            limits
                .check("parliament-sag", record_size(10, 1000, []))
                .is_ok()
        );
    }

    #[test]
    fn sizes_count_keys_values_and_headers_with_their_overhead() {
        assert_eq!(record_size(0, 0, []), RECORD_OVERHEAD);
        assert_eq!(
            record_size(3, 5, [(&b"ab"[..], &b"cde"[..])]),
            3 + 5 + 5 + HEADER_OVERHEAD + RECORD_OVERHEAD
        );
    }
}
