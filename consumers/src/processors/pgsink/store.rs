//! The database side: the schema the sink keeps (tables, indexes, views,
//! the offsets table), and the transaction that writes one batch with the
//! offsets it reached, fenced against another instance writing the same
//! partitions.

use std::collections::HashMap;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient, NoTls};

use super::batch::Pending;
use super::column::{SqlType, meta, quoted};
use super::table::Table;
use super::views;

/// The table of stored positions, in the sink's schema.
pub const OFFSETS_TABLE: &str = "sink_offsets";

/// Why the database refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// Another instance moved this partition since this one read it: the
    /// batch is rolled back and the session starts again from the store.
    #[error(
        "{topic}[{partition}] was written by another instance (stored {found:?}, this one \
         expected {expected:?}); starting again from the stored position"
    )]
    Fenced {
        topic: String,
        partition: i32,
        expected: Option<i64>,
        found: Option<i64>,
    },
}

/// What a committed batch did, for the metrics.
#[derive(Debug, Default, Clone)]
pub(crate) struct Applied {
    /// `(table, upserted, deleted)`.
    pub(crate) rows: Vec<(String, usize, usize)>,
    /// `(table, column)`.
    pub(crate) columns: Vec<(String, String)>,
}

/// A connection to the mirror's database.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) client: Client,
    pub(crate) schema: String,
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for Store {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl Store {
    /// Connects with a libpq connection string (URL or `key=value`).
    pub(crate) async fn connect(url: &str, schema: &str) -> Result<Self, StoreError> {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        let connection = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "The PostgreSQL connection ended.");
            }
        });
        Ok(Self {
            client,
            schema: schema.to_owned(),
            connection,
        })
    }

    /// Makes the schema, the offsets table and every table (with the
    /// model's columns and the relation indexes) and the views, under an
    /// advisory lock so instances starting together do not race on DDL.
    pub(crate) async fn prepare(&mut self, tables: &[Table]) -> Result<(), StoreError> {
        let schema = self.schema.clone();
        let tx = self.client.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('oda-pg-sink ' || $1))",
            &[&schema],
        )
        .await?;
        let mut ddl = format!(
            "CREATE SCHEMA IF NOT EXISTS {s};\n\
             CREATE TABLE IF NOT EXISTS {s}.{OFFSETS_TABLE} (\n\
               topic text NOT NULL,\n\
               partition integer NOT NULL,\n\
               next_offset bigint NOT NULL,\n\
               updated_at timestamptz NOT NULL DEFAULT now(),\n\
               PRIMARY KEY (topic, partition)\n\
             );\n",
            s = quoted(&schema)
        );
        for table in tables {
            ddl.push_str(&table_ddl(
                &qualified(&schema, &table.name),
                &table.name,
                table,
            ));
        }
        tx.batch_execute(&ddl).await?;
        let present: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
        views::create(&tx, &schema, &present).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The tables' columns as the database has them now.
    pub(crate) async fn catalog(
        &self,
        names: &[String],
    ) -> Result<HashMap<String, Table>, StoreError> {
        catalog(&self.client, &self.schema, names).await
    }

    /// The stored next offsets of those partitions (absent: never stored).
    pub(crate) async fn positions(
        &self,
        partitions: &[(String, i32)],
    ) -> Result<HashMap<(String, i32), i64>, StoreError> {
        let topics: Vec<&str> = partitions.iter().map(|(t, _)| t.as_str()).collect();
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT topic, partition, next_offset FROM {}.{OFFSETS_TABLE} \
                     WHERE topic = ANY($1)",
                    quoted(&self.schema)
                ),
                &[&topics],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| ((row.get::<_, String>(0), row.get::<_, i32>(1)), row.get(2)))
            .filter(|(key, _)| partitions.contains(key))
            .collect())
    }

    /// Writes a batch and its offsets in one transaction: offsets first
    /// (each moves only from where this instance found it), then new
    /// columns, deletes and upserts.
    pub(crate) async fn commit(
        &mut self,
        tables: &HashMap<String, Table>,
        pending: &Pending,
        expected: &HashMap<(String, i32), Option<i64>>,
        next: &HashMap<(String, i32), i64>,
    ) -> Result<Applied, StoreError> {
        let schema = self.schema.clone();
        let tx = self.client.transaction().await?;
        for ((topic, partition), offset) in next {
            let from = expected
                .get(&(topic.clone(), *partition))
                .copied()
                .flatten();
            move_offset(&tx, &schema, topic, *partition, from, *offset).await?;
        }
        let applied = apply(&tx, tables, pending, |t| qualified(&schema, t)).await?;
        tx.commit().await?;
        Ok(applied)
    }
}

/// `"schema"."table"`.
pub(crate) fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quoted(schema), quoted(table))
}

/// Moves a partition's stored offset from `from` to `to`, or fails with
/// [`StoreError::Fenced`] when it is not at `from` any more. The update
/// locks the row, so of two instances committing at once the second waits
/// and then finds the offset moved.
pub(crate) async fn move_offset(
    client: &impl GenericClient,
    schema: &str,
    topic: &str,
    partition: i32,
    from: Option<i64>,
    to: i64,
) -> Result<(), StoreError> {
    let table = format!("{}.{OFFSETS_TABLE}", quoted(schema));
    let fenced = |found| StoreError::Fenced {
        topic: topic.to_owned(),
        partition,
        expected: from,
        found,
    };
    match from {
        Some(from) => {
            let moved = client
                .execute(
                    &format!(
                        "UPDATE {table} SET next_offset = $3, updated_at = now() \
                         WHERE topic = $1 AND partition = $2 AND next_offset = $4"
                    ),
                    &[&topic, &partition, &to, &from],
                )
                .await?;
            if moved != 1 {
                let found = client
                    .query_opt(
                        &format!(
                            "SELECT next_offset FROM {table} WHERE topic = $1 AND partition = $2"
                        ),
                        &[&topic, &partition],
                    )
                    .await?
                    .map(|row| row.get::<_, i64>(0));
                return Err(fenced(found));
            }
        }
        None => {
            let inserted = client
                .execute(
                    &format!(
                        "INSERT INTO {table} (topic, partition, next_offset) VALUES ($1, $2, $3)"
                    ),
                    &[&topic, &partition, &to],
                )
                .await;
            match inserted {
                Ok(_) => {}
                Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    return Err(fenced(None));
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
    Ok(())
}

/// Applies a batch's columns, deletes and upserts to the tables `name`
/// maps each table to (the live ones, or a rebuild's twins).
pub(crate) async fn apply(
    client: &impl GenericClient,
    tables: &HashMap<String, Table>,
    pending: &Pending,
    name: impl Fn(&str) -> String,
) -> Result<Applied, StoreError> {
    let mut applied = Applied::default();
    for (table, column, sql) in pending.columns() {
        client
            .batch_execute(&format!(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}",
                name(table),
                quoted(column),
                sql.sql()
            ))
            .await?;
        applied.columns.push((table.clone(), column.clone()));
    }
    for (table, rows, gone) in pending.split() {
        let target = name(table);
        if !gone.is_empty() {
            client
                .execute(
                    &format!("DELETE FROM {target} WHERE id = ANY($1)"),
                    &[&gone],
                )
                .await?;
        }
        if !rows.is_empty() {
            let Some(known) = tables.get(table) else {
                continue;
            };
            let json = serde_json::to_string(&rows).unwrap_or_else(|_| "[]".to_owned());
            client
                .execute(&upsert_sql(&target, known), &[&json])
                .await?;
        }
        applied
            .rows
            .push((table.to_owned(), rows.len(), gone.len()));
    }
    Ok(applied)
}

/// One statement for many rows: the JSON array becomes rows of the
/// table's own type, and a row that exists takes every column the sink
/// writes (a column an operator added is left as it is).
fn upsert_sql(target: &str, table: &Table) -> String {
    let mut columns: Vec<String> = table
        .columns()
        .filter(|(_, sql)| sql.is_some())
        .map(|(name, _)| quoted(name))
        .collect();
    columns.extend(meta::COLUMNS.iter().map(|(name, _)| (*name).to_owned()));
    let assignments = columns
        .iter()
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {target} SELECT * FROM jsonb_populate_recordset(NULL::{target}, $1::text::jsonb) \
         ON CONFLICT (id) DO UPDATE SET {assignments}"
    )
}

/// The DDL of one table: created when missing, with every column of the
/// model added when missing (a newer model on an older table), and an
/// index on each relation column.
pub(crate) fn table_ddl(target: &str, index_prefix: &str, table: &Table) -> String {
    let mut ddl = table.create_sql(target);
    ddl.push_str(";\n");
    for (name, sql) in table.columns() {
        if let Some(sql) = sql {
            ddl.push_str(&format!(
                "ALTER TABLE {target} ADD COLUMN IF NOT EXISTS {} {};\n",
                quoted(name),
                sql.sql()
            ));
        }
    }
    for column in table.relation_columns() {
        ddl.push_str(&format!(
            "CREATE INDEX IF NOT EXISTS {} ON {target} ({});\n",
            quoted(&index_name(index_prefix, column)),
            quoted(column)
        ));
    }
    ddl
}

/// `<table>_<column>_idx`, cut to PostgreSQL's 63 bytes on a character
/// boundary.
pub(crate) fn index_name(table: &str, column: &str) -> String {
    let mut name = format!("{table}_{column}_idx");
    while name.len() > 63 {
        name.pop();
    }
    name
}

/// The columns of `names` in `schema`, as the database has them.
pub(crate) async fn catalog(
    client: &impl GenericClient,
    schema: &str,
    names: &[String],
) -> Result<HashMap<String, Table>, StoreError> {
    let rows = client
        .query(
            "SELECT table_name::text, column_name::text, data_type::text \
             FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = ANY($2) \
             ORDER BY table_name, ordinal_position",
            &[&schema, &names],
        )
        .await?;
    let mut tables: HashMap<String, Table> = HashMap::new();
    for row in rows {
        let table: String = row.get(0);
        let column: String = row.get(1);
        let data_type: String = row.get(2);
        tables
            .entry(table.clone())
            .or_insert_with(|| Table::new(&table))
            .add(&column, SqlType::from_catalog(&data_type));
    }
    Ok(tables)
}
