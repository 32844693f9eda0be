//! The simulator's in-memory tables.
//!
//! Rows are compact (one [`Cell`] per field, in `$metadata` order) so that
//! ODA's full size, about three million rows, fits in memory. Each table
//! keeps two orders: by id, and by `(opdateringsdato, id)`, the two orders
//! a change-capture client pages through.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use oda_model::entity::{EdmType, EntitySet};
use serde_json::{Map, Value};

use crate::filter::{self, FieldType, Scalar};
use crate::time::SimTime;

/// One field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i32),
    Bool(bool),
    Str(Box<str>),
    Time(SimTime),
}

impl Cell {
    /// The value as JSON, the way ODA writes it.
    pub fn to_json(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Int(i) => Value::from(*i),
            Cell::Bool(b) => Value::Bool(*b),
            Cell::Str(s) => Value::String(s.to_string()),
            Cell::Time(t) => Value::String(t.to_string()),
        }
    }

    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Cell::Null => out.extend_from_slice(b"null"),
            Cell::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Cell::Bool(true) => out.extend_from_slice(b"true"),
            Cell::Bool(false) => out.extend_from_slice(b"false"),
            Cell::Str(s) => write_json_str(out, s),
            Cell::Time(t) => {
                out.push(b'"');
                let _ = write!(out, "{t}");
                out.push(b'"');
            }
        }
    }

    fn scalar(&self) -> Scalar<'_> {
        match self {
            Cell::Null => Scalar::Null,
            Cell::Int(i) => Scalar::Int(i64::from(*i)),
            Cell::Bool(b) => Scalar::Bool(*b),
            Cell::Str(s) => Scalar::Str(s),
            Cell::Time(t) => Scalar::DateTime(*t),
        }
    }
}

fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json's escaping; writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// One record.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub cells: Box<[Cell]>,
}

/// A row seen through its entity's field names, for the filter evaluator.
#[derive(Debug)]
pub struct RowView<'a> {
    pub table: &'a Table,
    pub row: &'a Row,
}

impl filter::Row for RowView<'_> {
    fn get(&self, field: &str) -> Scalar<'_> {
        match self.table.field_index(field) {
            Some(i) => self.row.cells[i].scalar(),
            None => Scalar::Null,
        }
    }
}

/// One entity set's rows.
#[derive(Debug)]
pub struct Table {
    pub set: &'static EntitySet,
    rows: BTreeMap<i32, Row>,
    /// `(opdateringsdato, id)` of every row whose timestamp is not null.
    by_time: BTreeSet<(SimTime, i32)>,
    ts_index: usize,
    /// Every id once, in no order, so a uniformly random row is O(1)
    /// however the ids are spread.
    id_list: Vec<i32>,
    id_pos: std::collections::HashMap<i32, usize>,
}

impl Table {
    pub fn new(set: &'static EntitySet) -> Self {
        let ts_index = set
            .fields
            .iter()
            .position(|f| f.name == oda_model::hash::TIMESTAMP_FIELD)
            .unwrap_or(usize::MAX);
        Self {
            set,
            rows: BTreeMap::new(),
            by_time: BTreeSet::new(),
            ts_index,
            id_list: Vec::new(),
            id_pos: std::collections::HashMap::new(),
        }
    }

    /// Adds a nullable text field after the others (ODA adding a column):
    /// every row gets it as null. The set is copied (and kept for the
    /// rest of the process: a simulator adds a handful at most).
    pub fn add_text_field(&mut self, name: &str) {
        if self.field_index(name).is_some() {
            return;
        }
        let mut set = self.set.clone();
        set.fields.push(oda_model::entity::Field {
            name: name.to_owned(),
            edm: EdmType::String,
            nullable: true,
            key: false,
        });
        self.set = Box::leak(Box::new(set));
        for row in self.rows.values_mut() {
            let mut cells = std::mem::take(&mut row.cells).into_vec();
            cells.push(Cell::Null);
            row.cells = cells.into_boxed_slice();
        }
    }

    /// A uniformly random id, or `None` for an empty table.
    pub fn random_id(&self, rng: &mut impl rand::Rng) -> Option<i32> {
        if self.id_list.is_empty() {
            return None;
        }
        Some(self.id_list[rng.random_range(0..self.id_list.len())])
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.set.fields.iter().position(|f| f.name == name)
    }

    /// The filter type of a field, for validating `$filter` and `$orderby`.
    pub fn field_type(&self, name: &str) -> Option<FieldType> {
        self.set.field(name).map(|f| match f.edm {
            EdmType::Int16 | EdmType::Int32 => FieldType::Int,
            EdmType::Boolean => FieldType::Bool,
            EdmType::DateTime => FieldType::DateTime,
            EdmType::String => FieldType::Str,
        })
    }

    pub fn get(&self, id: i32) -> Option<&Row> {
        self.rows.get(&id)
    }

    pub fn max_id(&self) -> i32 {
        self.rows.keys().next_back().copied().unwrap_or(0)
    }

    pub fn ids(&self) -> impl DoubleEndedIterator<Item = i32> + '_ {
        self.rows.keys().copied()
    }

    pub fn timestamp(&self, row: &Row) -> Option<SimTime> {
        match row.cells.get(self.ts_index) {
            Some(Cell::Time(t)) => Some(*t),
            _ => None,
        }
    }

    /// Inserts or replaces a row, keeping the time index right.
    pub fn put(&mut self, id: i32, row: Row) {
        let new_ts = self.timestamp(&row);
        match self.rows.insert(id, row) {
            Some(old) => {
                if let Some(ts) = self.timestamp(&old) {
                    self.by_time.remove(&(ts, id));
                }
            }
            None => {
                self.id_pos.insert(id, self.id_list.len());
                self.id_list.push(id);
            }
        }
        if let Some(ts) = new_ts {
            self.by_time.insert((ts, id));
        }
    }

    pub fn remove(&mut self, id: i32) -> Option<Row> {
        let old = self.rows.remove(&id)?;
        if let Some(pos) = self.id_pos.remove(&id) {
            self.id_list.swap_remove(pos);
            if let Some(moved) = self.id_list.get(pos) {
                self.id_pos.insert(*moved, pos);
            }
        }
        if let Some(ts) = self.timestamp(&old) {
            self.by_time.remove(&(ts, id));
        }
        Some(old)
    }

    /// Rows in id order within `range`.
    pub fn range_by_id(
        &self,
        range: (std::ops::Bound<i32>, std::ops::Bound<i32>),
    ) -> impl DoubleEndedIterator<Item = (i32, &Row)> + '_ {
        self.rows.range(range).map(|(id, row)| (*id, row))
    }

    /// Rows in `(opdateringsdato, id)` order within a time range.
    pub fn range_by_time(
        &self,
        range: (std::ops::Bound<SimTime>, std::ops::Bound<SimTime>),
    ) -> impl DoubleEndedIterator<Item = (i32, &Row)> + '_ {
        use std::ops::Bound;
        let lower = match range.0 {
            Bound::Included(t) => Bound::Included((t, i32::MIN)),
            Bound::Excluded(t) => Bound::Excluded((t, i32::MAX)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let upper = match range.1 {
            Bound::Included(t) => Bound::Included((t, i32::MAX)),
            Bound::Excluded(t) => Bound::Excluded((t, i32::MIN)),
            Bound::Unbounded => Bound::Unbounded,
        };
        self.by_time
            .range((lower, upper))
            .filter_map(|(_, id)| self.rows.get(id).map(|row| (*id, row)))
    }

    /// Every row in id order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (i32, &Row)> + '_ {
        self.rows.iter().map(|(id, row)| (*id, row))
    }

    /// A row as a JSON object in `$metadata` field order, optionally only
    /// the selected fields.
    pub fn write_row(&self, row: &Row, select: Option<&[usize]>, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut first = true;
        let mut write_field = |i: usize, out: &mut Vec<u8>| {
            if !first {
                out.push(b',');
            }
            first = false;
            write_json_str(out, &self.set.fields[i].name);
            out.push(b':');
            row.cells[i].write_json(out);
        };
        match select {
            Some(indices) => {
                for &i in indices {
                    write_field(i, out);
                }
            }
            None => {
                for i in 0..row.cells.len() {
                    write_field(i, out);
                }
            }
        }
        out.push(b'}');
    }

    /// The record as a JSON map, for hashing and the ground truth.
    pub fn row_map(&self, row: &Row) -> Map<String, Value> {
        self.set
            .fields
            .iter()
            .zip(row.cells.iter())
            .map(|(f, c)| (f.name.clone(), c.to_json()))
            .collect()
    }

    /// The content hash (contract.md#content-hash) of a row.
    pub fn hash(&self, row: &Row) -> String {
        oda_model::hash::content_hash(&self.row_map(row))
    }

    /// Reads a record from ODA JSON (the real samples), converting values
    /// the 2019 mirror stored as text back to their declared types.
    pub fn row_from_json(&self, record: &Map<String, Value>) -> Option<(i32, Row)> {
        let mut cells = Vec::with_capacity(self.set.fields.len());
        for field in &self.set.fields {
            let value = record.get(&field.name).unwrap_or(&Value::Null);
            let cell = match (field.edm, value) {
                (_, Value::Null) => Cell::Null,
                (EdmType::Int16 | EdmType::Int32, Value::Number(n)) => {
                    Cell::Int(i32::try_from(n.as_i64()?).ok()?)
                }
                (EdmType::Int16 | EdmType::Int32, Value::String(s)) if s.is_empty() => Cell::Null,
                (EdmType::Int16 | EdmType::Int32, Value::String(s)) => Cell::Int(s.parse().ok()?),
                (EdmType::Boolean, Value::Bool(b)) => Cell::Bool(*b),
                (EdmType::Boolean, Value::String(s)) if s.is_empty() => Cell::Null,
                (EdmType::Boolean, Value::String(s)) => Cell::Bool(s == "true"),
                (EdmType::DateTime, Value::String(s)) if s.is_empty() => Cell::Null,
                (EdmType::DateTime, Value::String(s)) => Cell::Time(SimTime::parse(s)?),
                (EdmType::String, Value::String(s)) => Cell::Str(s.as_str().into()),
                _ => return None,
            };
            cells.push(cell);
        }
        let id = match cells.first() {
            Some(Cell::Int(id)) => *id,
            _ => return None,
        };
        Some((
            id,
            Row {
                cells: cells.into_boxed_slice(),
            },
        ))
    }
}

/// All tables, by entity set name.
#[derive(Debug, Default)]
pub struct Store {
    pub tables: BTreeMap<String, Table>,
}

impl Store {
    pub fn new() -> Self {
        let tables = oda_model::entity::entity_sets()
            .iter()
            .filter(|set| !set.is_sag_view())
            .map(|set| (set.name.clone(), Table::new(set)))
            .collect();
        Self { tables }
    }

    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.get(name)
    }

    pub fn table_mut(&mut self, name: &str) -> Option<&mut Table> {
        self.tables.get_mut(name)
    }

    pub fn total_rows(&self) -> usize {
        self.tables.values().map(Table::len).sum()
    }
}
