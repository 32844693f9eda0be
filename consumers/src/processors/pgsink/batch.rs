//! What one batch does to the database: per table, the last change of
//! each id (a batch holds an id's changes in partition order, so the last
//! one is the row's state), and the columns it adds.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use super::column::SqlType;

/// The end state of one id after a batch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    Upsert(Map<String, Value>),
    Delete,
}

/// One batch's changes, table by table.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    tables: BTreeMap<String, HashMap<i64, Change>>,
    /// Columns to add before the rows go in, in the order first seen.
    columns: Vec<(String, String, SqlType)>,
}

impl Pending {
    pub(crate) fn upsert(&mut self, table: &str, id: i64, row: Map<String, Value>) {
        self.changes(table).insert(id, Change::Upsert(row));
    }

    pub(crate) fn delete(&mut self, table: &str, id: i64) {
        self.changes(table).insert(id, Change::Delete);
    }

    pub(crate) fn add_column(&mut self, table: &str, column: &str, sql: SqlType) {
        let known = self
            .columns
            .iter()
            .any(|(t, c, _)| t == table && c == column);
        if !known {
            self.columns
                .push((table.to_owned(), column.to_owned(), sql));
        }
    }

    fn changes(&mut self, table: &str) -> &mut HashMap<i64, Change> {
        self.tables.entry(table.to_owned()).or_default()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.tables.is_empty() && self.columns.is_empty()
    }

    pub(crate) fn columns(&self) -> &[(String, String, SqlType)] {
        &self.columns
    }

    /// Per table, the rows to upsert and the ids to delete.
    pub(crate) fn split(&self) -> impl Iterator<Item = (&str, Vec<&Map<String, Value>>, Vec<i64>)> {
        self.tables.iter().map(|(table, changes)| {
            let mut rows = Vec::new();
            let mut gone = Vec::new();
            for (id, change) in changes {
                match change {
                    Change::Upsert(row) => rows.push(row),
                    Change::Delete => gone.push(*id),
                }
            }
            gone.sort_unstable();
            (table.as_str(), rows, gone)
        })
    }

    pub(crate) fn clear(&mut self) {
        self.tables.clear();
        self.columns.clear();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(v: i64) -> Map<String, Value> {
        let Value::Object(map) = json!({"v": v}) else {
            panic!("object")
        };
        map
    }

    #[test]
    fn the_last_change_of_an_id_wins() {
        let mut pending = Pending::default();
        pending.upsert("sag", 1, row(1));
        pending.upsert("sag", 1, row(2));
        pending.upsert("sag", 2, row(3));
        pending.delete("sag", 2);
        pending.delete("aktoer", 9);
        pending.upsert("aktoer", 9, row(4));
        let split: Vec<_> = pending.split().collect();
        assert_eq!(split.len(), 2);
        let (table, rows, gone) = &split[1];
        assert_eq!(*table, "sag");
        assert_eq!(rows, &vec![&row(2)]);
        assert_eq!(gone, &vec![2]);
        let (_, rows, gone) = &split[0];
        assert_eq!(rows, &vec![&row(4)]);
        assert!(gone.is_empty());
        pending.add_column("sag", "nyt", SqlType::Text);
        pending.add_column("sag", "nyt", SqlType::Text);
        assert_eq!(pending.columns().len(), 1);
        pending.clear();
        assert!(pending.is_empty());
    }
}
