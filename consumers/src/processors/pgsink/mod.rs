//! `oda-pg-sink`: keeps a PostgreSQL schema in step with the entity
//! topics, one table per entity, exactly once.
//!
//! Exactly once because the database holds the positions: each batch's
//! rows and the next offset of every partition it read are written in one
//! database transaction, and on every assignment the runner seeks to the
//! stored offsets, not the group's. A batch that did not commit left
//! nothing; one that did is never read again. An offset only moves from
//! the value this instance read, so a stale instance that still holds a
//! partition after a rebalance fails its commit instead of writing twice.
//! (Edits made to the tables by hand are outside this: the next change of
//! that id overwrites them, and a deleted row comes back only when its id
//! changes again.)

mod batch;
mod column;
mod metrics;
pub mod rebuild;
mod store;
mod table;
mod views;

use std::collections::HashMap;
use std::time::Duration;

use oda_cdc_core::config::{ConfigError, Origin, Settings};
use oda_cdc_core::health::Health;
use oda_model::event::Op;
use oda_model::topics::{Topics, slug};

use self::batch::Pending;
use self::metrics::PgMetrics;
use self::store::Store;
use self::table::{Position, Table};
use crate::processors::passthrough::{entity_inputs, entity_topics};
use crate::runner::processor::{Context, Input, Output, ProcessError, Processor};

pub use self::store::OFFSETS_TABLE;

/// The health check that says whether the database takes batches.
const HEALTH_CHECK: &str = "postgres";

/// The sink.
#[derive(Debug)]
pub struct PgSink {
    store: Store,
    /// Input topic → table name.
    table_of: HashMap<String, String>,
    tables: HashMap<String, Table>,
    pending: Pending,
    /// The stored next offset of each assigned partition, as this
    /// instance found or left it (`None`: never stored).
    stored: HashMap<(String, i32), Option<i64>>,
    metrics: &'static PgMetrics,
    health: Health,
}

/// The tables of the configured entities: `(topic, table)` with the
/// model's columns.
fn planned_tables(settings: &Settings, topics: &Topics) -> Vec<(String, Table)> {
    entity_topics(settings, topics)
        .into_iter()
        .map(|(entity, topic)| {
            let name = slug(&entity);
            let table = match oda_model::entity::entity_set(&entity) {
                Some(set) => Table::of_model(&name, set),
                None => Table::new(&name),
            };
            (topic, table)
        })
        .collect()
}

/// The connection string: `postgres.url` (or `DATABASE_URL`).
fn database_url(settings: &Settings) -> Result<String, ConfigError> {
    settings
        .postgres
        .url
        .as_ref()
        .map(|url| url.expose().to_owned())
        .ok_or_else(|| ConfigError::InvalidValue {
            key: "postgres.url".into(),
            origin: Origin::Merged,
            message: "oda-pg-sink needs a database: set postgres.url or DATABASE_URL \
                      (postgres://user@host:5432/db)"
                .into(),
        })
}

/// Connects and makes the schema, the tables and the views.
async fn open_store(settings: &Settings, tables: &[Table]) -> anyhow::Result<Store> {
    let url = database_url(settings)?;
    let mut store = Store::connect(&url, &settings.postgres.schema).await?;
    store.prepare(tables).await?;
    Ok(store)
}

impl Processor for PgSink {
    const NAME: &'static str = "oda-pg-sink";
    const METRICS_PORT: u16 = 9469;
    const STORES_POSITIONS: bool = true;
    /// An idle sink still moves its stored offsets past the transaction
    /// markers that end the input, so they equal the partitions' ends.
    const TICK: Option<Duration> = Some(Duration::from_secs(1));

    fn inputs(settings: &Settings, topics: &Topics) -> Vec<String> {
        entity_inputs(settings, topics)
    }

    /// Writes no topic of its own (dead letters go to the DLQ).
    fn output_topics(
        _settings: &Settings,
        _topics: &Topics,
    ) -> Vec<oda_cdc_core::kafka::TopicSpec> {
        Vec::new()
    }

    fn check_settings(settings: &Settings) -> Result<(), ConfigError> {
        database_url(settings).map(|_| ())
    }

    async fn open(context: &Context) -> anyhow::Result<Self> {
        let settings = &context.settings;
        let metrics = PgMetrics::get(&context.registry)?;
        context.health.register(HEALTH_CHECK);
        let planned = planned_tables(settings, &context.topics);
        let definitions: Vec<Table> = planned.iter().map(|(_, t)| t.clone()).collect();
        let store = match open_store(settings, &definitions).await {
            Ok(store) => store,
            Err(error) => {
                context
                    .health
                    .set_failed(HEALTH_CHECK, format!("{error:#}"));
                return Err(error);
            }
        };
        let names: Vec<String> = definitions.iter().map(|t| t.name.clone()).collect();
        let tables = store.catalog(&names).await?;
        metrics.prime(names.iter().map(String::as_str));
        context.health.set_ok(HEALTH_CHECK);
        tracing::info!(
            tables = tables.len(),
            schema = %settings.postgres.schema,
            "Mirror tables ready."
        );
        Ok(Self {
            store,
            table_of: planned
                .into_iter()
                .map(|(topic, table)| (topic, table.name))
                .collect(),
            tables,
            pending: Pending::default(),
            stored: HashMap::new(),
            metrics,
            health: context.health.clone(),
        })
    }

    fn process(&mut self, input: &Input<'_>) -> Result<Vec<Output>, ProcessError> {
        let key = (input.topic.to_owned(), input.partition);
        if let Some(Some(next)) = self.stored.get(&key)
            && input.offset < *next
        {
            // Already in the database (a batch read before the seek).
            return Ok(Vec::new());
        }
        let name = self
            .table_of
            .get(input.topic)
            .ok_or_else(|| ProcessError::Permanent(format!("no table for {}", input.topic)))?;
        let event = match input.event {
            Some(event) if event.op != Op::Delete && event.after.is_some() => event,
            Some(event) => {
                self.pending.delete(name, event.id);
                return Ok(Vec::new());
            }
            None => {
                let id = input
                    .key
                    .and_then(|k| k.parse::<i64>().ok())
                    .ok_or_else(|| {
                        ProcessError::Permanent(format!(
                            "a tombstone whose key {:?} is not an id",
                            input.key
                        ))
                    })?;
                self.pending.delete(name, id);
                return Ok(Vec::new());
            }
        };
        let table = self
            .tables
            .get_mut(name)
            .ok_or_else(|| ProcessError::Retryable(format!("table {name} is not ready")))?;
        let row = table
            .row(
                event,
                Position {
                    partition: input.partition,
                    offset: input.offset,
                },
            )
            .map_err(|misfit| ProcessError::Permanent(misfit.to_string()))?;
        for (column, sql) in &row.new_columns {
            table.add(column, Some(*sql));
            self.pending.add_column(name, column, *sql);
        }
        self.pending.upsert(name, event.id, row.values);
        Ok(Vec::new())
    }

    async fn stored_positions(
        &mut self,
        partitions: &[(String, i32)],
    ) -> anyhow::Result<HashMap<(String, i32), i64>> {
        // Whatever was read before this assignment is read again from here.
        self.pending.clear();
        let stored = self.store.positions(partitions).await?;
        self.stored = partitions
            .iter()
            .map(|key| (key.clone(), stored.get(key).copied()))
            .collect();
        Ok(stored)
    }

    async fn store(&mut self, next: &HashMap<(String, i32), i64>) -> anyhow::Result<()> {
        // Only forward: a partition whose records were all stored already
        // keeps its offset.
        let next: HashMap<(String, i32), i64> = next
            .iter()
            .filter(|(key, offset)| {
                self.stored
                    .get(*key)
                    .copied()
                    .flatten()
                    .is_none_or(|at| **offset > at)
            })
            .map(|(key, offset)| (key.clone(), *offset))
            .collect();
        if next.is_empty() && self.pending.is_empty() {
            return Ok(());
        }
        let timer = self.metrics.batch_duration.start_timer();
        let applied = self
            .store
            .commit(&self.tables, &self.pending, &self.stored, &next)
            .await;
        self.pending.clear();
        match applied {
            Ok(applied) => {
                timer.observe_duration();
                self.health.set_ok(HEALTH_CHECK);
                self.stored
                    .extend(next.into_iter().map(|(key, offset)| (key, Some(offset))));
                self.metrics.count(&applied);
                Ok(())
            }
            Err(error) => {
                timer.stop_and_discard();
                self.health.set_failed(HEALTH_CHECK, error.to_string());
                Err(error.into())
            }
        }
    }
}
