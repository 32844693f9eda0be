//! The simulated source: tables, the change log that is the ground truth,
//! and the mutations that write both.

use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::clock::SimClock;
use crate::generate::{GenConfig, RowMaker, populate};
use crate::store::{Cell, Store};
use crate::time::{Precision, SimTime, UNITS_PER_SECOND};

/// One applied change, as `GET /_sim/changes` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEntry {
    pub seq: u64,
    /// Sim-clock instant, RFC 3339 UTC.
    pub at: String,
    /// `c`, `u` or `d`.
    pub op: String,
    pub entity: String,
    pub id: i32,
    /// The source literal after the change (before it, for `d`).
    pub opdateringsdato: Option<String>,
    /// The content hash (contract.md#content-hash) of the new state; null for `d`.
    pub hash: Option<String>,
}

/// The body of `POST /_sim/mutate`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MutationRequest {
    pub entity: String,
    #[serde(default)]
    pub inserts: usize,
    #[serde(default)]
    pub updates: usize,
    #[serde(default)]
    pub deletes: usize,
    #[serde(default)]
    pub restamps: usize,
    /// Rows whose first integer field (after `id`) starts arriving as a
    /// string: a type change at the source, which an Avro consumer of the
    /// old schema cannot take.
    #[serde(default)]
    pub retypes: usize,
    /// Rows whose first text field grows to `inflate_bytes` (2 MiB unless
    /// given): a record larger than a topic takes.
    #[serde(default)]
    pub inflates: usize,
    #[serde(default)]
    pub inflate_bytes: Option<usize>,
    /// Every row of the batch gets one `opdateringsdato`.
    #[serde(default)]
    pub same_timestamp: bool,
    /// Stamp the batch this far before the sim clock (a late commit).
    #[serde(default)]
    pub backdate: Option<String>,
    /// The entity set gains a text field of this name, as ODA adds a
    /// column: every row serves it from now on, null until a change
    /// fills it; the rows this request inserts or updates get a value.
    #[serde(default)]
    pub new_field: Option<String>,
}

/// Why a mutation was refused.
#[derive(Debug, thiserror::Error)]
pub enum MutationError {
    #[error("unknown or unserved entity set {0}")]
    UnknownEntity(String),
    #[error("backdate: `{0}` is not a duration")]
    Backdate(String),
}

/// Everything the simulator holds, behind one lock.
#[derive(Debug)]
pub struct World {
    pub store: Store,
    pub log: Vec<ChangeEntry>,
    pub precision: Precision,
    rng: StdRng,
    maker: RowMaker,
}

/// Kinds of change a mutation applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Insert,
    Update,
    Delete,
    Restamp,
    Retype,
    /// The first text field becomes this many bytes long.
    Inflate(usize),
}

/// What `inflates` makes a text field when no size is given.
const INFLATED_BYTES: usize = 2 << 20;

/// Text of `bytes` bytes that does not compress to nothing.
fn inflated(id: i32, bytes: usize) -> String {
    let mut text = String::with_capacity(bytes + 16);
    let mut n = u64::from(id.unsigned_abs());
    while text.len() < bytes {
        n = n.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        text.push_str(&format!("{:x} ", n >> 20));
    }
    text.truncate(bytes);
    text
}

/// Gives the fields a `new_field` request added (those after the
/// model's) a value, as a source that started filling its new column.
fn fill_added_fields(set: &oda_model::entity::EntitySet, cells: &mut [Cell], id: i32, seq: usize) {
    let known =
        oda_model::entity::entity_set(&set.name).map_or(set.fields.len(), |m| m.fields.len());
    for (i, field) in set.fields.iter().enumerate().skip(known) {
        if let Some(cell) = cells.get_mut(i) {
            *cell = Cell::Str(format!("{}-{id}-{seq}", field.name).into());
        }
    }
}

impl World {
    pub fn new(config: &GenConfig) -> Self {
        let mut store = Store::new();
        populate(&mut store, config);
        Self {
            store,
            log: Vec::new(),
            precision: config.precision,
            rng: StdRng::seed_from_u64(config.seed ^ 0x5eed_cafe),
            maker: RowMaker {
                precision: config.precision,
            },
        }
    }

    /// The sequence number the next change will get.
    pub fn next_seq(&self) -> u64 {
        self.log.len() as u64 + 1
    }

    /// Applies a batch at once; returns the first and last sequence numbers
    /// (`from > to` when nothing changed).
    pub fn mutate(
        &mut self,
        request: &MutationRequest,
        clock: &SimClock,
    ) -> Result<(u64, u64), MutationError> {
        let entity = oda_model::entity::entity_set(&request.entity)
            .filter(|s| s.is_captured_by_default())
            .ok_or_else(|| MutationError::UnknownEntity(request.entity.clone()))?;
        let backdate = match request.backdate.as_deref() {
            None => std::time::Duration::ZERO,
            Some(text) => humantime::parse_duration(text)
                .map_err(|_| MutationError::Backdate(text.to_owned()))?,
        };
        if let Some(field) = &request.new_field
            && let Some(table) = self.store.table_mut(&entity.name)
        {
            table.add_text_field(field);
        }
        let from = self.next_seq();
        let shared = request.same_timestamp.then(|| self.stamp(clock, backdate));
        let plan = [
            (Change::Insert, request.inserts),
            (Change::Update, request.updates),
            (Change::Restamp, request.restamps),
            (Change::Retype, request.retypes),
            (
                Change::Inflate(request.inflate_bytes.unwrap_or(INFLATED_BYTES)),
                request.inflates,
            ),
            (Change::Delete, request.deletes),
        ];
        for (change, count) in plan {
            for _ in 0..count {
                let stamp = shared.unwrap_or_else(|| self.stamp(clock, backdate));
                self.apply(&entity.name, change, stamp, clock.now_utc());
            }
        }
        Ok((from, self.next_seq() - 1))
    }

    /// One random change, for the background mutator.
    pub fn mutate_randomly(&mut self, clock: &SimClock, knobs: &MutatorKnobs) {
        let names: Vec<String> = self
            .store
            .tables
            .iter()
            .filter(|(_, t)| t.set.is_captured_by_default() && !t.is_empty())
            .map(|(n, _)| n.clone())
            .collect();
        if names.is_empty() {
            return;
        }
        // Weighted by the square root of size: big sets change more, but
        // small ones still change.
        let weights: Vec<f64> = names
            .iter()
            .map(|n| (self.store.table(n).map_or(0, |t| t.len()) as f64).sqrt())
            .collect();
        let total: f64 = weights.iter().sum();
        let mut pick = self.rng.random::<f64>() * total;
        let mut name = &names[0];
        for (n, w) in names.iter().zip(&weights) {
            if pick < *w {
                name = n;
                break;
            }
            pick -= w;
        }
        let name = name.clone();
        let roll = self.rng.random::<f64>();
        let change = if roll < 0.3 {
            Change::Insert
        } else if roll < 0.3 + knobs.restamp_share {
            Change::Restamp
        } else if roll < 0.35 + knobs.restamp_share {
            Change::Delete
        } else {
            Change::Update
        };
        let backdate = if !knobs.late_commit_lag.is_zero() && self.rng.random_ratio(1, 10) {
            knobs.late_commit_lag.mul_f64(self.rng.random::<f64>())
        } else {
            std::time::Duration::ZERO
        };
        let stamp = self.stamp(clock, backdate);
        if knobs.burst_share > 0.0 && self.rng.random::<f64>() < knobs.burst_share {
            // A burst wider than a page, all on one timestamp.
            let size = self.rng.random_range(101..=150);
            for _ in 0..size {
                self.apply(&name, Change::Update, stamp, clock.now_utc());
            }
        } else {
            self.apply(&name, change, stamp, clock.now_utc());
        }
    }

    fn stamp(&self, clock: &SimClock, backdate: std::time::Duration) -> SimTime {
        let now = clock.now_local(Precision::Millis);
        let back = (backdate.as_secs_f64() * UNITS_PER_SECOND as f64) as i64;
        self.precision.quantize(SimTime(now.0 - back))
    }

    fn random_existing(&mut self, entity: &str) -> Option<i32> {
        self.store.table(entity)?.random_id(&mut self.rng)
    }

    fn apply(&mut self, entity: &str, change: Change, stamp: SimTime, at: DateTime<Utc>) {
        let Some(set) = self.store.table(entity).map(|t| t.set) else {
            return;
        };
        let ts_index = set
            .fields
            .iter()
            .position(|f| f.name == oda_model::hash::TIMESTAMP_FIELD);
        let (op, id) = match change {
            Change::Insert => {
                let id = self.store.table(entity).map_or(1, |t| t.max_id() + 1);
                let row = self
                    .maker
                    .make(&mut self.rng, &self.store, set, id, stamp, (2014, 2026));
                if let Some(table) = self.store.table_mut(entity) {
                    table.put(id, row);
                }
                ("c", id)
            }
            Change::Update | Change::Restamp | Change::Retype | Change::Inflate(_) => {
                let Some(id) = self.random_existing(entity) else {
                    return;
                };
                let Some(mut row) = self.store.table(entity).and_then(|t| t.get(id)).cloned()
                else {
                    return;
                };
                if change == Change::Update {
                    self.change_content(set, &mut row.cells, id);
                    fill_added_fields(set, &mut row.cells, id, self.log.len());
                }
                if change == Change::Retype
                    && let Some(i) = set.fields.iter().skip(1).position(|f| {
                        matches!(
                            f.edm,
                            oda_model::entity::EdmType::Int16 | oda_model::entity::EdmType::Int32
                        )
                    })
                    && let Cell::Int(n) = row.cells[i + 1]
                {
                    row.cells[i + 1] = Cell::Str(format!("T{n}").into());
                }
                if let Change::Inflate(bytes) = change
                    && let Some(i) = set
                        .fields
                        .iter()
                        .skip(1)
                        .position(|f| matches!(f.edm, oda_model::entity::EdmType::String))
                {
                    row.cells[i + 1] = Cell::Str(inflated(id, bytes).into());
                }
                if let Some(i) = ts_index {
                    // A null timestamp stays null: such rows are only found by sweeps.
                    if row.cells[i] != Cell::Null {
                        row.cells[i] = Cell::Time(stamp);
                    }
                }
                if let Some(table) = self.store.table_mut(entity) {
                    table.put(id, row);
                }
                ("u", id)
            }
            Change::Delete => {
                let Some(id) = self.random_existing(entity) else {
                    return;
                };
                let Some(table) = self.store.table_mut(entity) else {
                    return;
                };
                let Some(old) = table.remove(id) else {
                    return;
                };
                let literal = table.timestamp(&old).map(|t| t.to_string());
                self.record("d", entity, id, literal, None, at);
                return;
            }
        };
        let Some(table) = self.store.table(entity) else {
            return;
        };
        let Some(row) = table.get(id) else {
            return;
        };
        let literal = table.timestamp(row).map(|t| t.to_string());
        let hash = table.hash(row);
        self.record(op, entity, id, literal, Some(hash), at);
    }

    /// Changes one content field so the hash really changes.
    fn change_content(
        &mut self,
        set: &'static oda_model::entity::EntitySet,
        cells: &mut [Cell],
        id: i32,
    ) {
        let candidates: Vec<usize> = set
            .fields
            .iter()
            .enumerate()
            .filter(|(_, f)| f.name != "id" && f.name != oda_model::hash::TIMESTAMP_FIELD)
            .map(|(i, _)| i)
            .collect();
        if candidates.is_empty() {
            return;
        }
        let i = candidates[self.rng.random_range(0..candidates.len())];
        let field = &set.fields[i];
        for attempt in 0..5 {
            let value = self
                .maker
                .value(&mut self.rng, &self.store, set, field, id, (2014, 2026));
            if value != cells[i] {
                cells[i] = value;
                return;
            }
            if attempt == 4 {
                cells[i] = match &cells[i] {
                    Cell::Str(s) => Cell::Str(format!("{s} (ændret)").into()),
                    Cell::Int(n) => Cell::Int(n.wrapping_add(1)),
                    Cell::Bool(b) => Cell::Bool(!b),
                    Cell::Null => Cell::Str("ændret".into()),
                    Cell::Time(t) => Cell::Time(t.plus_millis(1000)),
                };
            }
        }
    }

    fn record(
        &mut self,
        op: &str,
        entity: &str,
        id: i32,
        opdateringsdato: Option<String>,
        hash: Option<String>,
        at: DateTime<Utc>,
    ) {
        let seq = self.next_seq();
        self.log.push(ChangeEntry {
            seq,
            at: at.to_rfc3339_opts(SecondsFormat::Millis, true),
            op: op.to_owned(),
            entity: entity.to_owned(),
            id,
            opdateringsdato,
            hash,
        });
    }
}

/// How the background mutator shapes its changes.
#[derive(Debug, Clone, Default)]
pub struct MutatorKnobs {
    /// Share of changes that only re-stamp (content unchanged).
    pub restamp_share: f64,
    /// Share of changes that are bursts of 101–150 updates on one timestamp.
    pub burst_share: f64,
    /// Up to this far before the clock, one change in ten is stamped.
    pub late_commit_lag: std::time::Duration,
}
