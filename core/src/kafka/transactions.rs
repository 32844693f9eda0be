//! What every transactional writer of the workspace needs: a producer
//! whose earlier incarnations are fenced before it writes, and the test
//! for "someone else took over".

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::util::Timeout;

use crate::config::KafkaSettings;
use crate::kafka::LogContext;

/// Creates a transactional producer and runs `init_transactions`, which
/// fences any earlier instance with the same id and aborts its open
/// transaction (so what is read back next is exactly what committed).
pub async fn transactional_producer(
    kafka: &KafkaSettings,
    transactional_id: &str,
    transaction_timeout: Duration,
    defaults: &[(&str, &str)],
) -> Result<FutureProducer<LogContext>, KafkaError> {
    let mut config = kafka.producer_config_with(Some(transactional_id), defaults);
    config.set(
        "transaction.timeout.ms",
        transaction_timeout.as_millis().to_string(),
    );
    let producer: FutureProducer<LogContext> = config.create_with_context(LogContext)?;
    let init = producer.clone();
    tokio::task::spawn_blocking(move || {
        init.init_transactions(Timeout::After(transaction_timeout))
    })
    .await
    .map_err(|_| KafkaError::Canceled)??;
    Ok(producer)
}

/// Whether a transactional call failed because a newer instance with the
/// same transactional id (or a newer group generation) took over: the
/// caller must stop, not retry.
pub fn is_fenced(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch)
    ) || error.to_string().to_lowercase().contains("fenced")
}
