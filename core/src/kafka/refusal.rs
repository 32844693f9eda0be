//! Writes the cluster refuses for good, and how many times in a row.
//!
//! A session that fails is started again from what Kafka committed, so it
//! meets the same records again. When the broker refuses one of them for
//! good (a dead letter larger than its topic takes, a topic the ACL does
//! not let this service write), every new session fails the same way: the
//! service would restart on the same record forever. [`Refusals`] counts
//! such failures in a row; after [`MAX_REFUSALS`] the service stops with
//! the topic and the reason (exit 1), so a person looks.

use std::sync::atomic::{AtomicU32, Ordering};

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// Sessions in a row that may fail on a refused write before the service
/// stops: with the supervisor's pauses (1, 2, 4, 8 s) about 15 s, time for
/// a topic configuration or an ACL being changed to take effect.
pub const MAX_REFUSALS: u32 = 5;

/// A failed delivery, with the topic it was for.
#[derive(Debug, Clone, thiserror::Error)]
#[error("writing to topic {topic}: {error}")]
pub struct Refused {
    pub topic: String,
    pub error: KafkaError,
}

impl Refused {
    /// Whether retrying cannot help: the record, the topic or the
    /// permissions are wrong, not the moment.
    pub fn is_permanent(&self) -> bool {
        is_permanent(&self.error)
    }
}

/// Whether a failed delivery fails again however often it is retried.
pub fn is_permanent(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
                | RDKafkaErrorCode::PolicyViolation
                | RDKafkaErrorCode::InvalidTopic
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::UnknownTopicOrPartition
        )
    )
}

/// Of several failed deliveries, the one to report: a permanent one if
/// any (the others are often the transaction's collateral), else the first.
pub fn worst(failures: impl IntoIterator<Item = Refused>) -> Option<Refused> {
    let mut first = None;
    for failure in failures {
        if failure.is_permanent() {
            return Some(failure);
        }
        first.get_or_insert(failure);
    }
    first
}

/// Permanent refusals in a row, across sessions.
#[derive(Debug, Default)]
pub struct Refusals(AtomicU32);

impl Refusals {
    /// Counts a failed session; `true` once the service should stop.
    pub fn failed(&self, refused: &Refused) -> bool {
        if !refused.is_permanent() {
            return false;
        }
        self.0.fetch_add(1, Ordering::SeqCst) + 1 >= MAX_REFUSALS
    }

    /// A write went through: the count starts again.
    pub fn succeeded(&self) {
        self.0.store(0, Ordering::SeqCst);
    }

    pub fn count(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: RDKafkaErrorCode) -> Refused {
        Refused {
            topic: "parliament-dlq".into(),
            error: KafkaError::MessageProduction(code),
        }
    }

    #[test]
    fn only_permanent_refusals_count_and_a_success_resets() {
        let refusals = Refusals::default();
        for _ in 0..20 {
            assert!(!refusals.failed(&refused(RDKafkaErrorCode::MessageTimedOut)));
        }
        assert_eq!(refusals.count(), 0);
        for _ in 1..MAX_REFUSALS {
            assert!(!refusals.failed(&refused(RDKafkaErrorCode::MessageSizeTooLarge)));
        }
        refusals.succeeded();
        for _ in 1..MAX_REFUSALS {
            assert!(!refusals.failed(&refused(RDKafkaErrorCode::TopicAuthorizationFailed)));
        }
        assert!(refusals.failed(&refused(RDKafkaErrorCode::TopicAuthorizationFailed)));
    }

    #[test]
    fn the_permanent_failure_is_reported_over_its_collateral() {
        let found = worst([
            refused(RDKafkaErrorCode::PurgeQueue),
            refused(RDKafkaErrorCode::MessageSizeTooLarge),
        ])
        .expect("a failure");
        assert!(found.is_permanent());
        assert!(worst([]).is_none());
        let first = worst([
            refused(RDKafkaErrorCode::PurgeQueue),
            refused(RDKafkaErrorCode::MessageTimedOut),
        ])
        .expect("a failure");
        assert_eq!(
            first.error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::PurgeQueue)
        );
    }
}
