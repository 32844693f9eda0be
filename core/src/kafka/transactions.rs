//! What every transactional writer of the workspace needs: a producer
//! whose earlier incarnations are fenced before it writes, and the test
//! for "someone else took over".

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::util::Timeout;

use crate::config::KafkaSettings;
use crate::kafka::WriterContext;

/// Creates a transactional writer and runs `init_transactions`, which
/// fences any earlier instance with the same id and aborts its open
/// transaction (so what is read back next is exactly what committed).
/// Deliveries are learnt from `context` ([`WriterContext`]), not from a
/// future per record.
pub async fn transactional_writer(
    kafka: &KafkaSettings,
    transactional_id: &str,
    transaction_timeout: Duration,
    defaults: &[(&str, &str)],
    context: WriterContext,
) -> Result<ThreadedProducer<WriterContext>, KafkaError> {
    let producer: ThreadedProducer<WriterContext> =
        transactional_config(kafka, transactional_id, transaction_timeout, defaults)
            .create_with_context(context)?;
    let init = producer.clone();
    fence(move || init.init_transactions(Timeout::After(transaction_timeout))).await?;
    Ok(producer)
}

fn transactional_config(
    kafka: &KafkaSettings,
    transactional_id: &str,
    transaction_timeout: Duration,
    defaults: &[(&str, &str)],
) -> rdkafka::ClientConfig {
    let mut config = kafka.producer_config_with(Some(transactional_id), defaults);
    config.set(
        "transaction.timeout.ms",
        transaction_timeout.as_millis().to_string(),
    );
    config
}

/// Runs the blocking `init_transactions` off the runtime's threads.
async fn fence(
    init: impl FnOnce() -> Result<(), KafkaError> + Send + 'static,
) -> Result<(), KafkaError> {
    tokio::task::spawn_blocking(init)
        .await
        .map_err(|_| KafkaError::Canceled)?
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

/// How long a transaction may wait for Kafka before the service says so:
/// a healthy commit takes milliseconds, librdkafka retries a write that
/// lacks in-sync replicas for minutes without a word.
pub const STALL_PATIENCE: Duration = Duration::from_secs(10);

/// Reports a transaction that waits too long on the `kafka` readiness check
/// and `oda_cdc_transaction_stalled`: with fewer live replicas than
/// `min.insync.replicas`, nothing fails for minutes, nothing commits, and
/// without this the service would look healthy all along.
#[derive(Clone)]
pub struct StallWatch {
    health: crate::health::Health,
    stalled: prometheus::IntGauge,
}

impl std::fmt::Debug for StallWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StallWatch").finish_non_exhaustive()
    }
}

impl StallWatch {
    /// `stalled` is [`crate::metrics::transaction_stalled`].
    pub fn new(health: crate::health::Health, stalled: prometheus::IntGauge) -> Self {
        Self { health, stalled }
    }

    /// Awaits `transaction`; past [`STALL_PATIENCE`] the `kafka` check fails
    /// and the gauge is 1 until it ends. A transaction that then commits
    /// makes the check ok again; one that fails leaves the failure to its
    /// caller's report.
    pub async fn watch<T, E>(
        &self,
        transaction: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        tokio::pin!(transaction);
        let result = tokio::select! {
            result = &mut transaction => return result,
            () = tokio::time::sleep(STALL_PATIENCE) => {
                self.stalled.set(1);
                self.health.set_failed(
                    "kafka",
                    format!(
                        "a transaction has waited over {}s for Kafka to acknowledge it \
                         (brokers away, or fewer in-sync replicas than min.insync.replicas)",
                        STALL_PATIENCE.as_secs()
                    ),
                );
                tracing::warn!(
                    waited = ?STALL_PATIENCE,
                    "A transaction waits for Kafka: are brokers away, or fewer in-sync replicas \
                     than min.insync.replicas? Nothing commits until it is acknowledged."
                );
                transaction.await
            }
        };
        self.stalled.set(0);
        if result.is_ok() {
            self.health.set_ok("kafka");
            tracing::info!("Kafka acknowledges transactions again.");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_slow_transaction_fails_the_check_until_it_commits() {
        let registry = prometheus::Registry::new();
        let health = crate::health::Health::new();
        health.register("kafka");
        health.set_ok("kafka");
        let stalled = crate::metrics::transaction_stalled(&registry).expect("register");
        let watch = StallWatch::new(health.clone(), stalled);

        let quick: Result<(), ()> = watch.watch(async { Ok(()) }).await;
        assert!(quick.is_ok());
        assert!(health.readiness().ready, "a quick commit changes nothing");

        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let slow = tokio::spawn({
            let watch = watch.clone();
            async move {
                watch
                    .watch(async {
                        let _ = released.await;
                        Ok::<(), ()>(())
                    })
                    .await
            }
        });
        tokio::time::sleep(STALL_PATIENCE + Duration::from_secs(1)).await;
        assert!(!health.readiness().ready, "a stalled commit is reported");
        assert_eq!(watch.stalled.get(), 1);
        let _ = release.send(());
        assert!(slow.await.expect("join").is_ok());
        assert!(health.readiness().ready, "ready again once it commits");
        assert_eq!(watch.stalled.get(), 0);
    }
}
