//! `oda-producer snapshot` and `rewind`: ask the running service through
//! the signals topic, or — with no service running — do the work here,
//! under the same transactional identity, and exit.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::NaiveDateTime;
use oda_cdc_core::config::Settings;
use oda_cdc_core::health::Health;
use oda_cdc_core::kafka::LogContext;
use oda_cdc_core::oda::{ClientMetrics, ClientTuning, OdaClient};
use oda_cdc_core::progress::Progress;
use oda_cdc_core::service::Service;
use oda_cdc_core::shutdown::CancellationToken;
use oda_model::odatime::format_literal;
use oda_model::topics::Topics;
use prometheus::Registry;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::app::{Assembled, JOIN_GRACE, assemble, entity_plans};
use crate::lease::{Lease, Role};
use crate::metrics::Metrics;
use crate::signals::{self, Command, Signal};
use crate::worker::{EntityPlan, StartFrom, run_entity};

fn request_id(kind: &str) -> String {
    format!("{kind}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"))
}

fn plans_for(
    settings: &Settings,
    topics: &Topics,
    entities: &[String],
) -> anyhow::Result<Vec<EntityPlan>> {
    let all = entity_plans(
        &Settings {
            entities: None,
            ..settings.clone()
        },
        topics,
    )?;
    entities
        .iter()
        .map(|name| {
            all.iter()
                .find(|p| {
                    p.entity.eq_ignore_ascii_case(name)
                        || p.entity.to_lowercase() == name.to_lowercase()
                })
                .cloned()
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--entities: `{name}` is not an entity set the producer captures"
                    )
                })
        })
        .collect()
}

/// Writes one request to the signals topic; returns its offset.
async fn send_signal(settings: &Settings, topics: &Topics, signal: &Signal) -> anyhow::Result<i64> {
    let producer: FutureProducer<LogContext> = settings
        .kafka
        .producer_config(None)
        .create_with_context(LogContext)
        .context("creating a Kafka producer")?;
    let topic = topics.signals();
    let payload = signal.to_json();
    let delivery = producer
        .send(
            FutureRecord::to(&topic).key("request").payload(&payload),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .with_context(|| format!("writing the request to {topic}"))?;
    Ok(delivery.offset)
}

/// `oda-producer snapshot --entities … [--since …]`.
pub(crate) async fn snapshot(
    settings: Settings,
    topics: &Topics,
    entities: Vec<String>,
    since: Option<NaiveDateTime>,
) -> anyhow::Result<()> {
    let plans = plans_for(&settings, topics, &entities)?;
    let names: Vec<String> = plans.iter().map(|p| p.entity.clone()).collect();
    let id = request_id("backfill");
    let since_text = since.map(format_literal);
    let progress = Progress::new(&names, "rows");
    let Route::Here(lease) = route(&settings, topics).await? else {
        let signal = Signal::Backfill {
            id: id.clone(),
            entities: names.clone(),
            since: since_text,
        };
        let offset = send_signal(&settings, topics, &signal).await?;
        eprintln!("Backfill {id} requested from the running service; following its progress.");
        return follow(&settings, topics, &id, offset, &names, &progress).await;
    };
    eprintln!(
        "No service is running: backfilling here as {}.",
        settings.producer.transactional_id
    );
    let commands: Vec<(EntityPlan, Command)> = plans
        .into_iter()
        .map(|p| {
            let command = Command::Backfill {
                id: id.clone(),
                since: since_text.clone(),
            };
            (p, command)
        })
        .collect();
    let done = run_here(&settings, topics, commands, &id, Some(&progress)).await;
    lease.leave().await;
    done
}

/// `oda-producer rewind --entity E --to <time>`.
pub(crate) async fn rewind(
    settings: Settings,
    topics: &Topics,
    entity: String,
    to: NaiveDateTime,
) -> anyhow::Result<()> {
    let plan = plans_for(&settings, topics, std::slice::from_ref(&entity))?.remove(0);
    let id = request_id("rewind");
    let target = format_literal(to);
    let names = vec![plan.entity.clone()];
    let route = route(&settings, topics).await?;
    if let Route::Service = route {
        let signal = Signal::Rewind {
            id: id.clone(),
            entity: plan.entity.clone(),
            to: target.clone(),
        };
        let offset = send_signal(&settings, topics, &signal).await?;
        // The service acknowledges in the transaction that moves the cursor.
        follow(&settings, topics, &id, offset, &names, &Progress::silent()).await?;
    } else if let Route::Here(lease) = route {
        let command = Command::Rewind {
            id: id.clone(),
            to: target.clone(),
        };
        let done = run_here(&settings, topics, vec![(plan.clone(), command)], &id, None).await;
        lease.leave().await;
        done?;
    }
    eprintln!(
        "{}: cursor rewound to {target}; the next cycle re-reads from there.",
        plan.entity
    );
    Ok(())
}

/// Where a request is worked on.
enum Route {
    /// A service runs: ask it through the signals topic.
    Service,
    /// No service runs and this process holds the lease, so none starts
    /// writing (and fences this one) before the work here is done: a
    /// service starting meanwhile stands by until the lease is left.
    Here(Lease),
}

async fn route(settings: &Settings, topics: &Topics) -> anyhow::Result<Route> {
    // A cluster the service never ran on has no topics yet: create them as
    // the service would (the lease needs the signals topic), so what is
    // missing is said plainly later.
    let service = Service::command(settings)?;
    let configured = entity_plans(settings, topics)?;
    service
        .ensure_topics(&crate::app::topic_specs(topics, &configured))
        .await?;
    let kafka = settings.kafka.clone();
    let txid = settings.producer.transactional_id.clone();
    let running =
        tokio::task::spawn_blocking(move || signals::service_running(&kafka, &txid)).await??;
    if running {
        return Ok(Route::Service);
    }
    let lease = Lease::join(
        &settings.kafka,
        &topics.signals(),
        &settings.producer.transactional_id,
        settings.producer.failover_timeout.get(),
        Role::Request,
        None,
    )
    .context("joining the producer's lease group")?;
    // A member that holds the lease and is gone (killed a moment ago)
    // loses it within the failover timeout; one that keeps it is a
    // service that started meanwhile.
    if lease
        .acquire_within(settings.producer.failover_timeout.get() + JOIN_GRACE)
        .await
    {
        Ok(Route::Here(lease))
    } else {
        lease.leave().await;
        Ok(Route::Service)
    }
}

/// Reads the signals topic from `offset` until every entity reports done.
async fn follow(
    settings: &Settings,
    topics: &Topics,
    id: &str,
    offset: i64,
    entities: &[String],
    progress: &Progress,
) -> anyhow::Result<()> {
    let topic = topics.signals();
    let mut config = settings.kafka.consumer_config(&format!("{id}-follower"));
    config.set("enable.partition.eof", "false");
    let consumer: BaseConsumer<LogContext> = config.create_with_context(LogContext)?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&topic, 0, Offset::Offset(offset))?;
    consumer.assign(&assignment)?;
    let mut done: BTreeMap<String, bool> = entities.iter().map(|e| (e.clone(), false)).collect();
    let mut silent = Duration::ZERO;
    while done.values().any(|d| !d) {
        let polled = tokio::task::block_in_place(|| consumer.poll(Duration::from_secs(1)));
        match polled {
            None => {
                silent += Duration::from_secs(1);
                if silent > Duration::from_secs(600) {
                    bail!("no progress from the service for 10 minutes");
                }
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(message)) => {
                silent = Duration::ZERO;
                let Some(Ok(Signal::Progress {
                    id: of,
                    entity,
                    read,
                    remaining,
                    done: finished,
                })) = message.payload().map(serde_json::from_slice::<Signal>)
                else {
                    continue;
                };
                if of == id {
                    progress.update(&entity, read, remaining, finished);
                    if finished {
                        done.insert(entity, true);
                    }
                }
            }
        }
    }
    eprintln!("{id} complete.");
    Ok(())
}

/// Runs requests without a service, holding the lease: the pipeline
/// pieces of `run` under the same transactional identity, then exits.
async fn run_here(
    settings: &Settings,
    topics: &Topics,
    commands: Vec<(EntityPlan, Command)>,
    id: &str,
    progress: Option<&Progress>,
) -> anyhow::Result<()> {
    let registry = Registry::new();
    let metrics = Metrics::register(&registry)?;
    let client = OdaClient::new(
        &settings.source.base_url,
        settings.http.max_in_flight,
        settings.http.rate_limit,
        ClientTuning::from(&settings.http),
        ClientMetrics::register(&registry)?,
    )
    .map_err(|e| anyhow::anyhow!("building the HTTP client: {e}"))?;
    // Progress records land after the current end of the signals topic.
    let follow_from = {
        let kafka = settings.kafka.clone();
        let topic = topics.signals();
        tokio::task::spawn_blocking(move || -> anyhow::Result<i64> {
            let consumer: BaseConsumer<LogContext> =
                kafka.client_config().create_with_context(LogContext)?;
            // A topic created a moment ago may not answer offset requests
            // yet (its leader is still taking over).
            let mut tries = 0;
            loop {
                match consumer.fetch_watermarks(&topic, 0, Duration::from_secs(10)) {
                    Ok((_, high)) => return Ok(high),
                    Err(error) if tries < 20 => {
                        tracing::debug!(%error, topic, "Signals topic not ready yet.");
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    Err(error) => return Err(error.into()),
                }
            }
        })
        .await??
    };
    let plans: Vec<EntityPlan> = commands.iter().map(|(p, _)| p.clone()).collect();
    let encoder = crate::app::encoder_for(settings, &plans).await?;
    let Assembled {
        shared,
        checkpoints,
        committer,
    } = assemble(
        settings,
        topics,
        &client,
        &encoder,
        &metrics,
        &Health::new(),
        &plans,
    )
    .await?;
    let mut names = Vec::new();
    let mut tasks = Vec::new();
    for (mut plan, command) in commands {
        let Some(checkpoint) = checkpoints.get(&plan.entity).cloned() else {
            bail!(
                "{} has no checkpoint yet: start the service (`oda-producer run`) to snapshot it first",
                plan.entity
            );
        };
        names.push(plan.entity.clone());
        plan.one_shot = true;
        let (mailbox, inbox) = mpsc::channel(1);
        mailbox.send(command).await?;
        tasks.push(tokio::spawn(run_entity(
            shared.clone(),
            plan,
            Some(checkpoint),
            StartFrom::Now,
            inbox,
            CancellationToken::new(),
        )));
    }
    drop(shared);
    let following = async {
        match progress {
            Some(progress) => follow(settings, topics, id, follow_from, &names, progress).await,
            None => Ok(()),
        }
    };
    let working = async {
        for task in tasks {
            task.await.context("worker")??;
        }
        anyhow::Ok(())
    };
    let (followed, worked) = tokio::join!(following, working);
    worked?;
    followed?;
    committer.await.context("committer")??;
    Ok(())
}
