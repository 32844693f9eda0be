//! `oda-pg-sink --rebuild <entity>`: reads the entity's compacted topic
//! from the start into a twin table while the live table keeps serving
//! (and the running sink keeps writing it), then swaps the twin in, in one
//! transaction, at a position the running sink continues from.
//!
//! The swap holds the topic's rows of the offsets table, so the running
//! sink cannot commit that topic meanwhile; it brings the twin up to at
//! least those offsets, moves them to where the twin stands, and renames
//! the tables. A reader blocked on the rename reads the new table when it
//! goes on: never an empty one. The running sink's next commit finds the
//! offsets moved, rolls back, and starts again from them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use oda_cdc_core::config::Settings;
use oda_cdc_core::kafka::reader::TopicReader;
use oda_cdc_core::shutdown::CancellationToken;
use oda_model::event::Op;
use oda_model::topics::slug;
use rdkafka::Offset;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use tokio_postgres::GenericClient;

use super::batch::Pending;
use super::column::quoted;
use super::store::{self, OFFSETS_TABLE, Store, qualified};
use super::table::{Position, Table};
use super::{database_url, views};
use crate::runner::decode::Decoder;
use crate::runner::follow::decode_message;

/// Records applied per transaction while the twin fills.
const CHUNK: usize = 5_000;
/// How long the swap waits for the twin to reach the running sink's
/// offsets without a record arriving.
const PATIENCE: Duration = Duration::from_secs(60);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    pub table: String,
    pub records: u64,
    /// Records the twin could not take (they were dead-lettered by the
    /// running sink when it met them).
    pub skipped: u64,
    /// The next offset of each partition the swapped table holds.
    pub positions: HashMap<i32, i64>,
}

/// Rebuilds the table of `entity` (a name the model knows, any case).
pub async fn rebuild(
    settings: &Settings,
    entity: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<Rebuilt> {
    let entity = oda_model::entity::entity_set_ci(entity)
        .map_or_else(|| entity.to_owned(), |set| set.name.clone());
    let topic = settings.topics().entity(&entity);
    let live = slug(&entity);
    let twin = format!("{live}__rebuild");
    let definition = match oda_model::entity::entity_set(&entity) {
        Some(set) => Table::of_model(&live, set),
        None => Table::new(&live),
    };

    let url = database_url(settings)?;
    let mut store = Store::connect(&url, &settings.postgres.schema).await?;
    store.prepare(std::slice::from_ref(&definition)).await?;
    let schema = store.schema.clone();
    store
        .client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (LIKE {l} INCLUDING ALL)",
            t = qualified(&schema, &twin),
            l = qualified(&schema, &live),
        ))
        .await?;
    let mut twin_table = Table::new(&live);
    if let Some(found) = store::catalog(&store.client, &schema, std::slice::from_ref(&twin))
        .await?
        .remove(&twin)
    {
        for (name, sql) in found.columns() {
            twin_table.add(name, sql);
        }
    }

    let mut filler = Filler {
        reader: reader_of(settings, &topic)?,
        decoder: Decoder::new(&settings.schema_registry).context("schema_registry")?,
        table: twin_table,
        target: qualified(&schema, &twin),
        records: 0,
        skipped: 0,
    };
    tracing::info!(%topic, table = %live, "Rebuilding: reading the topic from its start.");
    let started = Instant::now();
    let mut told = Instant::now();
    while !tokio::task::block_in_place(|| filler.reader.caught_up()) {
        if shutdown.is_cancelled() {
            anyhow::bail!("stopped before the rebuild caught up; the live table is untouched");
        }
        let messages = filler.read_chunk();
        let tx = store.client.transaction().await?;
        filler.apply(&tx, &messages).await?;
        tx.commit().await?;
        if told.elapsed() >= PROGRESS_EVERY {
            told = Instant::now();
            tracing::info!(
                table = %live,
                records = filler.records,
                per_second = (filler.records as f64 / started.elapsed().as_secs_f64()) as u64,
                "Rebuilding."
            );
        }
    }

    // The swap.
    let tx = store.client.transaction().await?;
    let held: HashMap<i32, i64> = tx
        .query(
            &format!(
                "SELECT partition, next_offset FROM {}.{OFFSETS_TABLE} WHERE topic = $1 FOR UPDATE",
                quoted(&schema)
            ),
            &[&topic],
        )
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let mut waited = Instant::now();
    loop {
        let at = filler.positions(&topic)?;
        if held
            .iter()
            .all(|(partition, next)| at.get(partition).is_some_and(|a| a >= next))
        {
            break;
        }
        if waited.elapsed() > PATIENCE {
            anyhow::bail!(
                "the twin of {live} did not reach the running sink's offsets {held:?} \
                 (it stands at {at:?}); the live table is untouched"
            );
        }
        let messages = filler.read_chunk();
        if !messages.is_empty() {
            waited = Instant::now();
        }
        filler.apply(&tx, &messages).await?;
    }
    let positions = filler.positions(&topic)?;
    for (partition, next) in &positions {
        tx.execute(
            &format!(
                "INSERT INTO {}.{OFFSETS_TABLE} (topic, partition, next_offset) VALUES ($1, $2, $3) \
                 ON CONFLICT (topic, partition) DO UPDATE \
                 SET next_offset = EXCLUDED.next_offset, updated_at = now()",
                quoted(&schema)
            ),
            &[&topic, partition, next],
        )
        .await?;
    }
    swap(&tx, &schema, &live, &twin).await?;
    tx.commit().await?;
    tracing::info!(
        table = %live,
        records = filler.records,
        skipped = filler.skipped,
        took = ?started.elapsed(),
        "Rebuilt and swapped in."
    );
    Ok(Rebuilt {
        table: live,
        records: filler.records,
        skipped: filler.skipped,
        positions,
    })
}

/// Every partition of `topic`, from the beginning.
fn reader_of(settings: &Settings, topic: &str) -> anyhow::Result<TopicReader> {
    let probe: BaseConsumer<oda_cdc_core::kafka::LogContext> = settings
        .kafka
        .consumer_config("oda-pg-sink-rebuild")
        .create_with_context(oda_cdc_core::kafka::LogContext)?;
    let metadata = probe.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions: Vec<(String, i32, Offset)> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .map(|p| (topic.to_owned(), p, Offset::Beginning))
        .collect();
    if partitions.is_empty() {
        anyhow::bail!("{topic} does not exist: nothing to rebuild from");
    }
    Ok(TopicReader::assign(
        &settings.kafka,
        "oda-pg-sink-rebuild",
        &partitions,
    )?)
}

/// The drop-swap-remake of one transaction: views go (they follow the
/// table they were made on), the twin takes the live table's name and its
/// indexes the live names, the views come back.
async fn swap(
    client: &impl GenericClient,
    schema: &str,
    live: &str,
    twin: &str,
) -> Result<(), tokio_postgres::Error> {
    views::drop_all(client, schema).await?;
    let old = format!("{live}__old");
    client
        .batch_execute(&format!(
            "LOCK TABLE {l} IN ACCESS EXCLUSIVE MODE;\n\
             ALTER TABLE {l} RENAME TO {o};\n\
             ALTER TABLE {t} RENAME TO {lq};\n\
             DROP TABLE {s}.{o};",
            l = qualified(schema, live),
            o = quoted(&old),
            t = qualified(schema, twin),
            lq = quoted(live),
            s = quoted(schema),
        ))
        .await?;
    let indexes = client
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 AND tablename = $2",
            &[&schema, &live],
        )
        .await?;
    for row in indexes {
        let name: String = row.get(0);
        if let Some(rest) = name.strip_prefix(twin) {
            client
                .batch_execute(&format!(
                    "ALTER INDEX {}.{} RENAME TO {}",
                    quoted(schema),
                    quoted(&name),
                    quoted(&format!("{live}{rest}"))
                ))
                .await?;
        }
    }
    let present: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
            &[&schema],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    views::create(client, schema, &present).await
}

/// The twin's reader and writer.
struct Filler {
    reader: TopicReader,
    decoder: Decoder,
    table: Table,
    target: String,
    records: u64,
    skipped: u64,
}

impl Filler {
    /// Up to [`CHUNK`] records, or what arrives in 200 ms.
    fn read_chunk(&self) -> Vec<OwnedMessage> {
        let mut messages = Vec::new();
        let deadline = Instant::now() + Duration::from_millis(200);
        tokio::task::block_in_place(|| {
            while messages.len() < CHUNK && Instant::now() < deadline {
                self.reader.poll(Duration::from_millis(50), &mut |m| {
                    messages.push(m.detach())
                });
            }
        });
        messages
    }

    fn positions(&self, topic: &str) -> anyhow::Result<HashMap<i32, i64>> {
        Ok(tokio::task::block_in_place(|| self.reader.positions())?
            .into_iter()
            .filter(|((t, _), _)| t == topic)
            .map(|((_, p), at)| (p, at))
            .collect())
    }

    /// Applies records to the twin: the same rows the running sink makes.
    async fn apply(
        &mut self,
        client: &impl GenericClient,
        messages: &[OwnedMessage],
    ) -> anyhow::Result<()> {
        let mut pending = Pending::default();
        let live = self.table.name.clone();
        for message in messages {
            self.records += 1;
            let key_id = message
                .key()
                .and_then(|k| std::str::from_utf8(k).ok())
                .and_then(|k| k.parse::<i64>().ok());
            let event = match decode_message(&self.decoder, message).await {
                Ok(event) => event,
                Err(error) => {
                    tracing::debug!(%error, offset = message.offset(), "Skipped in the rebuild.");
                    self.skipped += 1;
                    continue;
                }
            };
            match event {
                Some(event) if event.op != Op::Delete && event.after.is_some() => {
                    let at = Position {
                        partition: message.partition(),
                        offset: message.offset(),
                    };
                    match self.table.row(&event, at) {
                        Ok(row) => {
                            for (column, sql) in &row.new_columns {
                                self.table.add(column, Some(*sql));
                                pending.add_column(&live, column, *sql);
                            }
                            pending.upsert(&live, event.id, row.values);
                        }
                        Err(misfit) => {
                            tracing::debug!(%misfit, "Skipped in the rebuild.");
                            self.skipped += 1;
                        }
                    }
                }
                Some(event) => pending.delete(&live, event.id),
                None => match key_id {
                    Some(id) => pending.delete(&live, id),
                    None => self.skipped += 1,
                },
            }
        }
        let tables = HashMap::from([(live.clone(), self.table.clone())]);
        store::apply(client, &tables, &pending, |_| self.target.clone()).await?;
        Ok(())
    }
}
