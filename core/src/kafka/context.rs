//! A client context that sends librdkafka's log lines and errors to
//! `tracing` (target `librdkafka`) instead of the `log` crate.

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// The context every client of this workspace uses.
#[derive(Debug, Clone, Default)]
pub struct LogContext;

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if !matches!(
            level,
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info | RDKafkaLogLevel::Debug
        ) {
            super::diagnosis::note(log_message);
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{log_message}");
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility = fac, "{log_message}");
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility = fac, "{log_message}");
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", facility = fac, "{log_message}");
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // End of a partition is news only to readers that asked for it
        // (and they get it from `poll`), not a fault worth a warning.
        if matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            tracing::debug!(target: "librdkafka", reason, "End of partition.");
            return;
        }
        // A subscribed topic that does not exist yet: the processor runner
        // watches its inputs and says so once per change.
        if matches!(
            error,
            KafkaError::Global(
                RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic
            )
        ) {
            tracing::debug!(target: "librdkafka", %error, reason, "Topic not available.");
            return;
        }
        super::diagnosis::note(reason);
        tracing::warn!(target: "librdkafka", %error, reason, "Kafka client error.");
    }
}

impl ConsumerContext for LogContext {}

/// Lets plain (non-future) producers use the context too; a failed
/// delivery is logged (transactional writers also see it at commit).
impl rdkafka::producer::ProducerContext for LogContext {
    type DeliveryOpaque = ();

    fn delivery(
        &self,
        result: &rdkafka::message::DeliveryResult<'_>,
        _opaque: Self::DeliveryOpaque,
    ) {
        if let Err((error, message)) = result {
            use rdkafka::message::Message;
            tracing::warn!(
                target: "librdkafka",
                %error,
                topic = message.topic(),
                "A record was not delivered."
            );
        }
    }
}
