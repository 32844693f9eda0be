//! The service: topics, the admin server, and a supervised pipeline that
//! restarts from what Kafka holds whenever a transaction fails.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use oda_cdc_core::config::TopicClass;
use oda_cdc_core::config::{Format, Settings};
use oda_cdc_core::health::Health;
use oda_cdc_core::kafka::refusal::MAX_REFUSALS;
use oda_cdc_core::kafka::{RecordLimits, Refusals, TopicSpec};
use oda_cdc_core::oda::{ClientMetrics, ClientTuning, OdaClient};
use oda_cdc_core::service::{Service, SessionEnd, supervise};
use oda_cdc_core::shutdown::CancellationToken;
use oda_model::entity::{entity_set_ci, entity_sets};
use oda_model::topics::Topics;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::encode::Encoder;
use crate::lease::{Lease, LeaseError, Role, Term};

use crate::checkpoint::Checkpoint;
use crate::committer::{CommitError, Committer, StateTopics, transactional_producer};
use crate::metrics::Metrics;
use crate::restore;
use crate::worker::{EntityPlan, Shared, StartFrom, Unserved, WorkerError, run_entity};

/// The producer's default admin port (contract.md#defaults-and-ports).
pub(crate) const METRICS_PORT: u16 = 9464;

/// Everything `run` needs besides the settings.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub from: StartFrom,
    /// This instance's name among those sharing the transactional id
    /// (`--instance`): its static membership of the lease group.
    pub instance: String,
    /// HTTP timeouts, retries, limits and breaker; `None`: from the
    /// `http.*` settings (a test that injects hangs may want them shorter).
    pub http: Option<ClientTuning>,
}

impl RunOptions {
    /// Named by the host, as `--instance` is by default.
    pub fn from(from: StartFrom) -> Self {
        Self {
            from,
            instance: std::env::var("HOSTNAME").unwrap_or_else(|_| "0".to_owned()),
            http: None,
        }
    }
}

/// The entity sets to capture, checked against the model.
pub(crate) fn entity_plans(
    settings: &Settings,
    topics: &Topics,
) -> anyhow::Result<Vec<EntityPlan>> {
    let names: Vec<String> = match &settings.entities {
        Some(list) => list.clone(),
        None => entity_sets()
            .iter()
            .filter(|s| s.is_captured_by_default())
            .map(|s| s.name.clone())
            .collect(),
    };
    let mut plans = Vec::new();
    for name in names {
        let set = entity_set_ci(&name)
            .ok_or_else(|| anyhow::anyhow!("entities: `{name}` is not an ODA entity set"))?;
        let overrides = settings.entity.get(&set.name);
        plans.push(EntityPlan {
            entity: set.name.clone(),
            topic: topics.entity(&set.name).into(),
            poll_interval: overrides
                .and_then(|o| o.poll_interval)
                .unwrap_or(settings.poll.interval)
                .get(),
            lookback: settings.poll.lookback.get(),
            reconcile_interval: overrides
                .and_then(|o| o.reconcile_interval)
                .unwrap_or(settings.reconcile.interval)
                .get(),
            phase: Duration::ZERO,
            sweep: set.has_nullable_timestamp(),
            one_shot: false,
            exclude_fields: overrides
                .map(|o| o.exclude_fields.clone())
                .unwrap_or_default(),
        });
    }
    let count = u32::try_from(plans.len()).unwrap_or(u32::MAX).max(1);
    for (index, plan) in (0_u32..).zip(plans.iter_mut()) {
        plan.phase = plan.poll_interval / count * index;
    }
    Ok(plans)
}

/// The topics the producer writes, with the policies of
/// contract.md#topics.
pub(crate) fn topic_specs(topics: &Topics, plans: &[EntityPlan]) -> Vec<TopicSpec> {
    let mut specs: Vec<TopicSpec> = plans
        .iter()
        .map(|p| TopicSpec::compacted(TopicClass::Entity, &*p.topic))
        .collect();
    specs.push(TopicSpec::compacted(TopicClass::State, topics.checkpoints()).with_partitions(1));
    specs.push(TopicSpec::compacted(TopicClass::State, topics.state()));
    specs.push(TopicSpec::retained(TopicClass::Dlq, topics.dlq(), 14));
    specs.push(TopicSpec::retained(TopicClass::Internal, topics.signals(), 7).with_partitions(1));
    specs
}

/// Batches (pages) waiting for the committer while it commits the last
/// transaction. 64 pages are 6,400 records, about 0.1 s of a snapshot at
/// full speed, enough to cover a commit; every page queued beyond that is
/// memory held at a snapshot's peak (256 held up to 25 MB more).
const COMMIT_QUEUE: usize = 64;

/// Runs the service until `shutdown`.
pub async fn run(
    settings: Settings,
    options: RunOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let service = Service::start(&settings, METRICS_PORT, &["kafka", "poll"], &shutdown).await?;
    let metrics = Metrics::register(&service.registry).context("registering metrics")?;
    let client_metrics =
        ClientMetrics::register(&service.registry).context("registering metrics")?;

    let plans = entity_plans(&settings, &service.topics)?;
    let entities: Vec<String> = plans.iter().map(|p| p.entity.clone()).collect();
    metrics.prime(&entities);
    let client = OdaClient::new(
        &settings.source.base_url,
        settings.http.max_in_flight,
        settings.http.rate_limit,
        options
            .http
            .unwrap_or_else(|| ClientTuning::from(&settings.http)),
        client_metrics,
    )
    .map_err(|e| anyhow::anyhow!("building the HTTP client: {e}"))?;

    check_metadata(&client, &plans).await?;
    let encoder = encoder_for(&settings, &plans).await?;
    service
        .ensure_topics(&topic_specs(&service.topics, &plans))
        .await?;

    let lease = Lease::join(
        &settings.kafka,
        &service.topics.signals(),
        &settings.producer.transactional_id,
        settings.producer.failover_timeout.get(),
        Role::Service {
            instance: options.instance.clone(),
        },
        Some(service.health.clone()),
    )
    .context("joining the producer's lease group")?;
    let pipeline = Pipeline {
        settings: &settings,
        topics: &service.topics,
        from: &options.from,
        plans: &plans,
        client: &client,
        encoder: &encoder,
        metrics: &metrics,
        health: &service.health,
        shutdown: &shutdown,
        lease: &lease,
    };
    let refusals = Refusals::default();
    let committed = || metrics.transactions.with_label_values(&["committed"]).get();
    let supervised = supervise(&service.health, &shutdown, || async {
        let mut settle = JOIN_GRACE;
        loop {
            let Some(term) = take_lease(&lease, &shutdown, settle, || {
                metrics.stand_by();
                // A standby has nothing to poll, and the group coordinator
                // answers it: it is ready to take over.
                service.health.set_ok("poll");
                service.health.set_ok("kafka");
                tracing::info!(
                    transactional_id = %settings.producer.transactional_id,
                    "Standing by: another instance holds the lease."
                );
            })
            .await
            .map_err(|ended| SessionEnd::Stop(ended.into()))?
            else {
                return Ok(());
            };
            settle = Duration::ZERO;
            metrics.active.set(1);
            metrics.takeovers.inc();
            tracing::info!(
                generation = term.generation,
                "Holding the lease: this instance writes."
            );
            let before = committed();
            let ended = pipeline.run(term).await;
            if committed() > before {
                refusals.succeeded();
            }
            match ended {
                Ok(()) if shutdown.is_cancelled() => return Ok(()),
                Ok(()) => {
                    tracing::warn!(
                        "The lease was revoked (another instance took it, or the group \
                         coordinator lost this instance's session, as when its broker goes \
                         away); this one stops writing until it holds the lease again."
                    );
                }
                Err(PipelineError::Commit(CommitError::Refused(refused)))
                    if refusals.failed(&refused) =>
                {
                    return Err(SessionEnd::Stop(anyhow::anyhow!(
                        "{refused}; refused {MAX_REFUSALS} times in a row, oda-producer stops \
                         rather than retrying the same records forever"
                    )));
                }
                Err(PipelineError::Fatal(error)) => return Err(SessionEnd::Stop(error.into())),
                Err(PipelineError::Commit(CommitError::Fenced(id))) => {
                    // Fenced by the next holder: its assignment reaches us
                    // within a heartbeat or two. Still holding the lease
                    // after the failover timeout means nobody else writes
                    // (the coordinator ended a transaction it timed out).
                    if tokio::time::timeout(lease.timeout, lease.lost(term))
                        .await
                        .is_err()
                    {
                        return Err(SessionEnd::Restart {
                            check: "kafka",
                            reason: format!(
                                "transactional id `{id}` was fenced while this instance holds \
                                 the lease (a transaction timed out at its coordinator)"
                            ),
                        });
                    }
                    tracing::warn!(
                        transactional_id = %id,
                        "Fenced: another instance took over; this one stands by."
                    );
                }
                Err(error) => {
                    return Err(SessionEnd::Restart {
                        check: "kafka",
                        reason: error.to_string(),
                    });
                }
            }
        }
    })
    .await;
    metrics.active.set(0);
    lease.leave().await;
    supervised
}

/// The configured wire format; with Avro, every entity's schema is
/// registered first (an incompatible change stops the start, exit 1).
pub(crate) async fn encoder_for(
    settings: &Settings,
    plans: &[EntityPlan],
) -> anyhow::Result<Encoder> {
    match settings.format {
        Format::Json => Ok(Encoder::Json),
        Format::Avro => {
            let client = settings.schema_registry.client()?;
            let entities: Vec<(String, String)> = plans
                .iter()
                .map(|p| (p.entity.clone(), p.topic.to_string()))
                .collect();
            Ok(crate::encode::register(&client, &entities).await?)
        }
    }
}

/// Compares the configured entities with the source's `$metadata`: a set
/// the source does not declare stops the service (exit 1); field
/// differences are logged, one line each.
async fn check_metadata(client: &OdaClient, plans: &[EntityPlan]) -> anyhow::Result<()> {
    let entities: Vec<String> = plans.iter().map(|p| p.entity.clone()).collect();
    let compared = match client.metadata().await {
        Ok(xml) => oda_model::csdl::differences(&xml, &entities).map_err(anyhow::Error::from),
        Err(error) => Err(error.into()),
    };
    let found = match compared {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(%error, "Cannot read $metadata; field names are not checked this start.");
            return Ok(());
        }
    };
    for line in &found.fields {
        tracing::warn!(difference = %line, "The source's $metadata differs from the entity model.");
    }
    let missing = found.missing;
    if !missing.is_empty() {
        anyhow::bail!(
            "the source does not declare these configured entity sets: {} (check `entities`)",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Why one run of the pipeline ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PipelineError {
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error(transparent)]
    Restore(#[from] restore::RestoreError),
    #[error("{0}")]
    Task(String),
    #[error(transparent)]
    Fatal(WorkerError),
}

/// A started pipeline: the committer running, the workers' shared parts,
/// and the checkpoints it restored.
pub(crate) struct Assembled {
    pub(crate) shared: Shared,
    pub(crate) checkpoints: HashMap<String, Checkpoint>,
    pub(crate) committer: tokio::task::JoinHandle<Result<(), CommitError>>,
}

/// Fences any earlier instance (its open transaction is aborted, so what
/// is read back next is exactly what committed), restores checkpoints and
/// per-id state from Kafka, and starts the committer. `run` and the
/// standalone `snapshot`/`rewind` both start this way.
pub(crate) async fn assemble(
    settings: &Settings,
    topics: &Topics,
    client: &OdaClient,
    encoder: &Encoder,
    metrics: &Metrics,
    health: &Health,
    plans: &[EntityPlan],
) -> Result<Assembled, PipelineError> {
    let state_topics = StateTopics {
        checkpoints: topics.checkpoints(),
        state: topics.state(),
    };
    let producer =
        transactional_producer(&settings.kafka, &settings.producer.transactional_id).await?;
    let kafka = settings.kafka.clone();
    let (checkpoints, state) = tokio::task::spawn_blocking({
        let topics = state_topics.clone();
        move || -> Result<_, restore::RestoreError> {
            Ok((
                restore::checkpoints(&kafka, &topics.checkpoints)?,
                restore::id_state(&kafka, &topics.state)?,
            ))
        }
    })
    .await
    .map_err(|e| PipelineError::Task(e.to_string()))??;
    health.set_ok("kafka");
    let limits = record_limits(settings, topics, plans).await;
    let (tx, rx) = mpsc::channel(COMMIT_QUEUE);
    let committer = Committer::new(
        producer,
        &settings.producer.transactional_id,
        state_topics,
        checkpoints.clone(),
        metrics.clone(),
        health.clone(),
    );
    let committer = tokio::spawn(committer.run(rx));
    let shared = Shared {
        client: client.clone(),
        tx,
        state: Arc::new(Mutex::new(state)),
        metrics: metrics.clone(),
        health: health.clone(),
        snapshot_ranges: settings.http.max_in_flight.max(1),
        topics: topics.clone(),
        encoder: encoder.clone(),
        unknown_logged: Arc::new(Mutex::new(std::collections::HashSet::new())),
        unserved: Arc::new(Unserved::new(plans.len())),
        limits,
        origin: tokio::time::Instant::now(),
    };
    Ok(Assembled {
        shared,
        checkpoints,
        committer,
    })
}

/// The largest record each topic the producer writes takes, read at each
/// start of the pipeline (a topic reconfigured since is seen after the
/// next restart).
async fn record_limits(settings: &Settings, topics: &Topics, plans: &[EntityPlan]) -> RecordLimits {
    let mut names: Vec<String> = plans.iter().map(|p| p.topic.to_string()).collect();
    names.push(topics.dlq().to_owned());
    RecordLimits::read(&settings.kafka, &names).await
}

/// One life of the pipeline: restored from Kafka, a worker per entity,
/// the signals listener and the committer, until shutdown or a failure.
struct Pipeline<'a> {
    settings: &'a Settings,
    topics: &'a Topics,
    from: &'a StartFrom,
    plans: &'a [EntityPlan],
    client: &'a OdaClient,
    encoder: &'a Encoder,
    metrics: &'a Metrics,
    health: &'a Health,
    shutdown: &'a CancellationToken,
    lease: &'a Lease,
}

impl Pipeline<'_> {
    /// Runs while `term` holds; `Ok` on shutdown or when the lease moves.
    async fn run(&self, term: Term) -> Result<(), PipelineError> {
        let Pipeline {
            settings,
            topics,
            from,
            plans,
            client,
            encoder,
            metrics,
            health,
            shutdown,
            lease,
        } = *self;
        let Assembled {
            shared,
            checkpoints,
            committer: mut committer_task,
        } = assemble(settings, topics, client, encoder, metrics, health, plans).await?;
        let stop_workers = shutdown.child_token();
        let mut workers = JoinSet::new();
        let mut mailboxes = HashMap::new();
        for plan in plans {
            let checkpoint = checkpoints.get(&plan.entity).cloned();
            let (commands, mailbox) = mpsc::channel(16);
            mailboxes.insert(plan.entity.clone(), commands);
            workers.spawn(run_entity(
                shared.clone(),
                plan.clone(),
                checkpoint,
                from.clone(),
                mailbox,
                stop_workers.clone(),
            ));
        }
        drop(shared);
        let listener = dispatch_requests(lease, term, mailboxes);
        let lost = lease.lost(term);
        tokio::pin!(listener, lost);
        let result = loop {
            tokio::select! {
                () = &mut lost => {
                    stop_workers.cancel();
                    break Ok(());
                }
                () = &mut listener => {}
                committed = &mut committer_task => {
                    // The committer only ends early on a failed transaction.
                    stop_workers.cancel();
                    break match committed {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(PipelineError::Commit(e)),
                        Err(e) => Err(PipelineError::Task(e.to_string())),
                    };
                }
                joined = workers.join_next() => match joined {
                    None => break Ok(()),
                    Some(Ok(Ok(()))) => {}
                    Some(Ok(Err(WorkerError::Commit(e)))) => {
                        stop_workers.cancel();
                        break Err(PipelineError::Commit(e));
                    }
                    Some(Ok(Err(e))) => {
                        stop_workers.cancel();
                        break Err(PipelineError::Fatal(e));
                    }
                    Some(Err(e)) => {
                        stop_workers.cancel();
                        break Err(PipelineError::Task(e.to_string()));
                    }
                }
            }
        };
        // Let workers finish their current page and the committer its queue.
        stop_workers.cancel();
        while workers.join_next().await.is_some() {}
        // The next term fences this one's producer, but a committer left
        // running could still be between transactions when the next term
        // restores state: end it here, so one term's writes never overlap
        // the next one's restore.
        if !committer_task.is_finished()
            && tokio::time::timeout(Duration::from_secs(8), &mut committer_task)
                .await
                .is_err()
        {
            committer_task.abort();
            let _ = committer_task.await;
        }
        result
    }
}

/// How long a joining instance waits for the lease before it says it
/// stands by (an empty group assigns within the broker's
/// `group.initial.rebalance.delay.ms`, 3 s by default).
pub(crate) const JOIN_GRACE: Duration = Duration::from_secs(5);

/// Waits for the lease; `standing_by` runs once if it has not come
/// within `settle`.
async fn take_lease(
    lease: &Lease,
    shutdown: &CancellationToken,
    settle: Duration,
    standing_by: impl FnOnce(),
) -> Result<Option<Term>, LeaseError> {
    let acquiring = lease.acquire(shutdown);
    tokio::pin!(acquiring);
    tokio::select! {
        biased;
        acquired = &mut acquiring => return acquired,
        () = tokio::time::sleep(settle) => {}
    }
    standing_by();
    acquiring.await
}

/// Hands the requests read under `term` to the workers, acknowledging
/// each once handed over; never ends by itself.
async fn dispatch_requests(
    lease: &Lease,
    term: Term,
    workers: HashMap<String, mpsc::Sender<crate::signals::Command>>,
) {
    let requests = lease.requests();
    let mut requests = requests.lock().await;
    while let Some(request) = requests.recv().await {
        // Read under an earlier term: the holder re-reads it from the
        // committed offset.
        if request.generation != term.generation {
            continue;
        }
        crate::signals::dispatch(request.signal, &workers).await;
        lease.acknowledge(request.offset);
    }
    std::future::pending::<()>().await;
}
