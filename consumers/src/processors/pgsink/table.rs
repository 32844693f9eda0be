//! One mirrored table as the sink knows it: its columns and their types,
//! and how a change event becomes a row of it (or a refusal, when a value
//! no longer fits its column).

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat};
use oda_model::entity::EntitySet;
use oda_model::event::ChangeEvent;
use serde_json::{Map, Value};

use super::column::{SqlType, meta, quoted};

/// A table of the mirror.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    /// The unquoted table name: the topic's slug (`sag`, `aktoer`).
    pub(crate) name: String,
    /// The source's columns after `id`, in table order.
    columns: Vec<(String, Option<SqlType>)>,
    by_name: HashMap<String, usize>,
}

/// Why a record cannot become a row.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "field `{field}` of {table} id {id}: {value} does not fit its column of type {column} \
     (the source changed the field's type; the row keeps its last good version)"
)]
pub(crate) struct Misfit {
    pub(crate) table: String,
    pub(crate) id: i64,
    pub(crate) field: String,
    pub(crate) value: String,
    pub(crate) column: &'static str,
}

/// A row ready for `jsonb_populate_recordset`, and the columns it needs
/// that the table does not have yet.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) values: Map<String, Value>,
    pub(crate) new_columns: Vec<(String, SqlType)>,
}

/// Where a record was read, for the row's meta columns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Position {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

impl Table {
    /// An empty table (only `id` and the meta columns).
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            columns: Vec::new(),
            by_name: HashMap::new(),
        }
    }

    /// The table of an entity set, with a typed column per model field.
    pub(crate) fn of_model(name: &str, set: &EntitySet) -> Self {
        let mut table = Self::new(name);
        for field in set.fields.iter().filter(|f| f.name != "id") {
            table.add(&field.name, Some(SqlType::of_edm(field.edm)));
        }
        table
    }

    /// Adds a column (`None`: one whose type the sink does not write).
    pub(crate) fn add(&mut self, name: &str, sql: Option<SqlType>) {
        if name == "id" || meta::is_meta(name) || self.by_name.contains_key(name) {
            return;
        }
        self.by_name.insert(name.to_owned(), self.columns.len());
        self.columns.push((name.to_owned(), sql));
    }

    pub(crate) fn column(&self, name: &str) -> Option<Option<SqlType>> {
        self.by_name.get(name).map(|i| self.columns[*i].1)
    }

    /// The source's columns (after `id`).
    pub(crate) fn columns(&self) -> impl Iterator<Item = (&str, Option<SqlType>)> {
        self.columns.iter().map(|(n, t)| (n.as_str(), *t))
    }

    /// The columns that relations join on: `sagid`, `aktørid`, … (an
    /// index each, so a join from the other side does not scan).
    pub(crate) fn relation_columns(&self) -> impl Iterator<Item = &str> {
        self.columns()
            .filter(|(name, sql)| {
                name.len() > 2
                    && name.ends_with("id")
                    && matches!(
                        sql,
                        Some(SqlType::SmallInt | SqlType::Integer | SqlType::BigInt)
                    )
            })
            .map(|(name, _)| name)
    }

    /// `CREATE TABLE IF NOT EXISTS` for this table under `qualified`.
    pub(crate) fn create_sql(&self, qualified: &str) -> String {
        let mut columns = vec!["id bigint PRIMARY KEY".to_owned()];
        columns.extend(
            self.columns()
                .filter_map(|(name, sql)| Some(format!("{} {}", quoted(name), sql?.sql()))),
        );
        columns.extend(
            meta::COLUMNS
                .iter()
                .map(|(name, sql)| format!("{name} {sql}")),
        );
        format!(
            "CREATE TABLE IF NOT EXISTS {qualified} (\n  {}\n)",
            columns.join(",\n  ")
        )
    }

    /// The row of an upsert: every field in its column when it fits, in
    /// `_extra` when no column can hold it yet; a new field with a value
    /// gets a column. A field whose value does not fit its column refuses
    /// the whole record, so a row is never written half-way.
    pub(crate) fn row(&self, event: &ChangeEvent, at: Position) -> Result<Row, Misfit> {
        let mut values = Map::new();
        let mut extra = Map::new();
        let mut new_columns: Vec<(String, SqlType)> = Vec::new();
        let fields = event
            .after
            .iter()
            .flat_map(|after| after.iter())
            .chain(event.extra.iter());
        for (name, value) in fields {
            if name == "id" || meta::is_meta(name) {
                // `id` is the event's; a source field named like a meta
                // column cannot have a column of its own.
                if name != "id" {
                    extra.insert(name.clone(), value.clone());
                }
                continue;
            }
            if name.contains('.') {
                // An OData annotation (`odata.metadata`), not a field.
                extra.insert(name.clone(), value.clone());
                continue;
            }
            match self.column(name) {
                Some(Some(sql)) if sql.accepts(value) => {
                    values.insert(name.clone(), value.clone());
                }
                Some(Some(sql)) => {
                    return Err(Misfit {
                        table: self.name.clone(),
                        id: event.id,
                        field: name.clone(),
                        value: shorten(value),
                        column: sql.sql(),
                    });
                }
                Some(None) => {
                    extra.insert(name.clone(), value.clone());
                }
                None => match SqlType::infer(value) {
                    Some(sql) => {
                        new_columns.push((name.clone(), sql));
                        values.insert(name.clone(), value.clone());
                    }
                    None => {
                        extra.insert(name.clone(), value.clone());
                    }
                },
            }
        }
        values.insert("id".to_owned(), Value::from(event.id));
        values.insert(meta::EXTRA.to_owned(), Value::Object(extra));
        values.insert(
            meta::CHANGED_UTC.to_owned(),
            event
                .source
                .opdateringsdato_utc
                .clone()
                .map_or(Value::Null, Value::String),
        );
        let event_ts = DateTime::from_timestamp_millis(event.ts_ms)
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
            .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned());
        values.insert(meta::EVENT_TS.to_owned(), Value::String(event_ts));
        values.insert(meta::OP.to_owned(), Value::from(event.op.code()));
        values.insert(meta::PARTITION.to_owned(), Value::from(at.partition));
        values.insert(meta::OFFSET.to_owned(), Value::from(at.offset));
        Ok(Row {
            values,
            new_columns,
        })
    }
}

/// A value as a refusal quotes it: short enough for a log line.
fn shorten(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use oda_model::event::{ChangeEvent, Op};
    use serde_json::json;

    use super::*;

    fn event(after: Value) -> ChangeEvent {
        let Value::Object(after) = after else {
            panic!("an object")
        };
        ChangeEvent::new(
            Op::Update,
            "Sag",
            7,
            Some(after),
            Some("2025-12-19T09:32:16.467".into()),
            "https://oda.ft.dk/api",
            &oda_model::odatime::format_utc(chrono::Utc::now()),
        )
    }

    fn sag() -> Table {
        let set = oda_model::entity::entity_set("Sag").expect("Sag");
        Table::of_model("sag", set)
    }

    const AT: Position = Position {
        partition: 2,
        offset: 40,
    };

    #[test]
    fn model_fields_become_typed_columns_with_indexed_relations() {
        let table = sag();
        assert_eq!(table.column("typeid"), Some(Some(SqlType::Integer)));
        assert_eq!(
            table.column("opdateringsdato"),
            Some(Some(SqlType::Timestamp))
        );
        let sql = table.create_sql("oda.sag");
        assert!(sql.contains("id bigint PRIMARY KEY"), "{sql}");
        assert!(sql.contains("\"titel\" text"), "{sql}");
        assert!(sql.contains("_extra jsonb NOT NULL"), "{sql}");
        let relations: Vec<&str> = table.relation_columns().collect();
        assert!(relations.contains(&"typeid") && relations.contains(&"statusid"));
        assert!(!relations.contains(&"id"));
    }

    #[test]
    fn a_new_field_asks_for_a_column_and_a_null_one_waits_in_extra() {
        let table = sag();
        let row = table
            .row(
                &event(json!({"id": 7, "titel": "T", "nyt": 5, "tom": null})),
                AT,
            )
            .expect("fits");
        assert_eq!(row.new_columns, vec![("nyt".to_owned(), SqlType::BigInt)]);
        assert_eq!(row.values["nyt"], json!(5));
        assert_eq!(row.values["_extra"], json!({"tom": null}));
        assert_eq!(row.values["id"], json!(7));
        assert_eq!(row.values["_op"], json!("u"));
        assert_eq!(row.values["_offset"], json!(40));
        assert_eq!(
            row.values["_changed_utc"],
            json!("2025-12-19T08:32:16.467Z")
        );
    }

    #[test]
    fn a_value_that_no_longer_fits_refuses_the_record() {
        let table = sag();
        let misfit = table
            .row(&event(json!({"id": 7, "typeid": "fem"})), AT)
            .expect_err("a string in an integer column");
        assert_eq!(misfit.field, "typeid");
        assert_eq!(misfit.column, "integer");
        assert!(misfit.to_string().contains("Sag") || misfit.to_string().contains("sag"));
    }
}
