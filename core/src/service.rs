//! What every service does before its own work, and how it keeps going.
//!
//! The producer, each processor and `oda-replay` start the same way: a
//! metrics registry and health checks served on the admin port
//! (contract.md#http-endpoints), a Kafka admin client, the topics they
//! write created when missing. Long-running services then run sessions
//! under [`supervise`], which starts a failed session again from what
//! Kafka committed, with a growing pause.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use oda_model::topics::Topics;
use prometheus::{IntGaugeVec, Registry};
use rdkafka::admin::AdminClient;
use rdkafka::error::KafkaError;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminError, AdminServer};
use crate::config::{KafkaSettings, PRODUCTION_FACTOR, Profile, Settings, TopicsSettings};
use crate::health::Health;
use crate::kafka::{EnsuredTopic, LogContext, TopicError, TopicSpec, diagnosis, ensure_topics};
use crate::metrics;

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("creating the Kafka admin client (kafka.brokers, kafka.properties): {0}")]
    AdminClient(#[source] KafkaError),
    #[error(transparent)]
    Topics(#[from] TopicError),
    #[error("registering metrics: {0}")]
    Metrics(#[source] prometheus::Error),
}

/// A started service's shared parts.
pub struct Service {
    /// Every topic name, built once from the settings.
    pub topics: Topics,
    pub registry: Registry,
    pub health: Health,
    pub kafka_admin: AdminClient<LogContext>,
    admin_server: Option<AdminServer>,
    durability: TopicsSettings,
    profile: Profile,
    /// For [`diagnose`].
    kafka: KafkaSettings,
    /// `oda_cdc_topic_replication_factor{topic}` of the topics ensured.
    replication: IntGaugeVec,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("topics", &self.topics)
            .field("admin", &self.admin_addr())
            .finish_non_exhaustive()
    }
}

impl Service {
    /// A long-running service: its admin server listens on `metrics.addr`
    /// (or 127.0.0.1 and `default_port`) before this returns, so a taken
    /// port is a start-up error; `checks` are its readiness checks.
    pub async fn start(
        settings: &Settings,
        default_port: u16,
        checks: &[&str],
        shutdown: &CancellationToken,
    ) -> Result<Self, StartError> {
        let mut service = Self::command(settings)?;
        for check in checks {
            service.health.register(check);
        }
        let addr = admin::address(settings.metrics.addr, default_port);
        service.admin_server = Some(
            admin::serve(
                addr,
                service.registry.clone(),
                service.health.clone(),
                shutdown.clone(),
            )
            .await?,
        );
        Ok(service)
    }

    /// A command that runs and exits (`oda-replay`, `oda-producer status`):
    /// no admin server.
    pub fn command(settings: &Settings) -> Result<Self, StartError> {
        let kafka_admin = settings
            .kafka
            .client_config()
            .create_with_context(LogContext)
            .map_err(StartError::AdminClient)?;
        let registry = Registry::new();
        let replication = metrics::int_gauge_vec(
            &registry,
            "oda_cdc_topic_replication_factor",
            "Copies kept of each topic this service uses, as the cluster reported at start.",
            &["topic"],
        )
        .map_err(StartError::Metrics)?;
        Ok(Self {
            topics: settings.topics(),
            registry,
            health: Health::new(),
            kafka_admin,
            admin_server: None,
            durability: settings.topics.clone(),
            kafka: settings.kafka.clone(),
            profile: settings.profile,
            replication,
        })
    }

    /// Creates the topics that are missing, with their policies; existing
    /// topics are left as they are. Returns the names created.
    ///
    /// The production profile warns about every topic with fewer than three
    /// copies, created or found, at every start: a single-broker cluster in
    /// production loses data with its disk, and nothing else would say so.
    pub async fn ensure_topics(
        &self,
        specs: &[TopicSpec],
    ) -> Result<Vec<EnsuredTopic>, StartError> {
        let ensured = match ensure_topics(&self.kafka_admin, specs, &self.durability).await {
            Err(TopicError::Metadata(error)) => {
                let kafka = self.kafka.clone();
                let why = tokio::task::spawn_blocking(move || diagnose(&kafka))
                    .await
                    .ok()
                    .flatten();
                return Err(TopicError::Metadata(match why {
                    Some(why) => format!("{error} ({why})"),
                    None => error,
                })
                .into());
            }
            other => other?,
        };
        for topic in &ensured {
            self.replication
                .with_label_values(&[topic.name.as_str()])
                .set(topic.replication_factor.into());
            if self.profile == Profile::Production && topic.replication_factor < PRODUCTION_FACTOR {
                tracing::warn!(
                    topic = %topic.name,
                    replication_factor = topic.replication_factor,
                    key = %topic.class.replication_key(),
                    "PRODUCTION PROFILE: topic keeps fewer than {PRODUCTION_FACTOR} copies; \
                     one lost broker or disk can lose its data. Run three or more brokers \
                     (and raise the topic's replication), or set profile = \"development\"."
                );
            }
        }
        Ok(ensured)
    }

    /// Where `/metrics` is served (useful when asked for port 0).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_server.as_ref().map(|s| s.addr)
    }
}

/// Why Kafka cannot be reached, when librdkafka said so in a log line: the
/// admin client never serves its log queue, so a plain consumer connects
/// once more and its queue is read for the reason (a refused password, an
/// untrusted certificate).
fn diagnose(kafka: &KafkaSettings) -> Option<&'static str> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    if let Some(why) = diagnosis::explain() {
        return Some(why);
    }
    let consumer: BaseConsumer<LogContext> =
        kafka.client_config().create_with_context(LogContext).ok()?;
    let _ = consumer.fetch_metadata(None, Duration::from_secs(3));
    for _ in 0..10 {
        let _ = consumer.poll(Duration::from_millis(50));
    }
    diagnosis::explain()
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(server) = &self.admin_server {
            server.task.abort();
        }
    }
}

/// How a session ended, as its service must take it.
#[derive(Debug)]
pub enum SessionEnd {
    /// Something a fresh session may not meet again (a failed
    /// transaction, a broker away): start over from what Kafka committed.
    /// `check` is the readiness check that reports the reason.
    Restart { check: &'static str, reason: String },
    /// Nothing a restart fixes (fenced by a newer instance, unusable
    /// inputs): the service stops with this error (exit 1).
    Stop(anyhow::Error),
}

/// The first and the longest pause between two sessions.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_secs(30);

/// Runs `session` until it ends well or for good, or `shutdown` comes;
/// after a [`SessionEnd::Restart`] the `kafka` check is failed with the
/// reason and the next session starts after a pause doubling from 1 s to
/// 30 s.
pub async fn supervise<F, Fut>(
    health: &Health,
    shutdown: &CancellationToken,
    mut session: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), SessionEnd>>,
{
    let mut pauses = ExponentialBuilder::new()
        .with_min_delay(FIRST_PAUSE)
        .with_max_delay(LONGEST_PAUSE)
        .with_factor(2.0)
        .without_max_times()
        .build();
    loop {
        match session().await {
            Ok(()) => return Ok(()),
            Err(SessionEnd::Stop(error)) => return Err(error),
            Err(SessionEnd::Restart { check, reason }) => {
                let pause = pauses.next().unwrap_or(LONGEST_PAUSE);
                health.set_failed(check, reason.clone());
                tracing::warn!(error = %reason, retry_in = ?pause, "Session failed; starting again from what Kafka committed.");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn restarts_with_growing_pauses_until_a_session_ends_well() {
        let health = Health::new();
        health.register("kafka");
        let runs = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let result = supervise(&health, &CancellationToken::new(), || async {
            match runs.fetch_add(1, Ordering::SeqCst) {
                0..3 => Err(SessionEnd::Restart {
                    check: "kafka",
                    reason: "broker away".into(),
                }),
                _ => Ok(()),
            }
        })
        .await;
        assert!(result.is_ok());
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        // 1 s + 2 s + 4 s of pauses.
        assert_eq!(started.elapsed(), Duration::from_secs(7));
        assert!(!health.readiness().ready, "the last failure is reported");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_at_once_and_shutdown_ends_a_pause() {
        let health = Health::new();
        let stopped = supervise(&health, &CancellationToken::new(), || async {
            Err(SessionEnd::Stop(anyhow::anyhow!("fenced")))
        })
        .await;
        assert_eq!(
            stopped.map_err(|e| e.to_string()).err().as_deref(),
            Some("fenced")
        );

        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let ended = supervise(&health, &shutdown, || async {
            Err(SessionEnd::Restart {
                check: "kafka",
                reason: "again".into(),
            })
        })
        .await;
        assert!(ended.is_ok());
    }
}
