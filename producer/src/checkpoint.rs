//! Per-entity checkpoints (contract.md#topics: compacted topic, key = entity set name,
//! value versioned `"v": 1`).
//!
//! A checkpoint says how far the entity's change stream is read — the
//! `(opdateringsdato, id)` keyset cursor — and, while a snapshot runs, how
//! far each id range has been read, so a crash resumes where the last
//! committed transaction left off.

use serde::{Deserialize, Serialize};

/// The current value format.
pub const VERSION: u32 = 1;

/// `(opdateringsdato literal, id)`: every row shown at an earlier time, or
/// at this time with an id up to this one, has been read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub opdateringsdato: String,
    pub id: i64,
}

/// One id range of a snapshot: `(after, to]` is left to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    /// Highest id read so far (exclusive lower bound of what is left).
    pub after: i64,
    /// Inclusive upper bound.
    pub to: i64,
}

impl IdRange {
    pub fn is_done(&self) -> bool {
        self.after >= self.to
    }
}

/// A snapshot in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotProgress {
    pub ranges: Vec<IdRange>,
    /// Where streaming starts once the snapshot is done.
    pub stream_from: Option<Cursor>,
    /// The backfill request this snapshot serves, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// A backfill of rows changed since this local time only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

impl SnapshotProgress {
    pub fn is_done(&self) -> bool {
        self.ranges.iter().all(IdRange::is_done)
    }
}

/// The value in the checkpoint topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub v: u32,
    pub entity: String,
    /// Stream cursor; `None` until streaming has a starting point.
    pub cursor: Option<Cursor>,
    /// Present while the initial snapshot (or a backfill) runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotProgress>,
    /// When ids were last reconciled (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconcile: Option<String>,
    /// When this checkpoint was written (RFC 3339).
    pub updated_at: String,
}

/// Why a stored checkpoint cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint of {entity} is not valid JSON: {message}")]
    Corrupt { entity: String, message: String },
    #[error("checkpoint of {entity} has version {version}; this build reads version {VERSION}")]
    Version { entity: String, version: u32 },
}

impl Checkpoint {
    pub fn new(entity: &str) -> Self {
        Self {
            v: VERSION,
            entity: entity.to_owned(),
            cursor: None,
            snapshot: None,
            last_reconcile: None,
            updated_at: chrono::Utc::now().to_rfc3339(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(entity: &str, bytes: &[u8]) -> Result<Self, CheckpointError> {
        #[derive(Deserialize)]
        struct Probe {
            v: u32,
        }
        let probe: Probe = serde_json::from_slice(bytes).map_err(|e| CheckpointError::Corrupt {
            entity: entity.to_owned(),
            message: e.to_string(),
        })?;
        if probe.v != VERSION {
            return Err(CheckpointError::Version {
                entity: entity.to_owned(),
                version: probe.v,
            });
        }
        serde_json::from_slice(bytes).map_err(|e| CheckpointError::Corrupt {
            entity: entity.to_owned(),
            message: e.to_string(),
        })
    }
}

/// A change to an entity's checkpoint, applied in commit order by the one
/// writer that owns the checkpoint (so parallel snapshot ranges never
/// overwrite each other's progress).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Streaming reached this cursor.
    Cursor(Cursor),
    /// A snapshot starts with these ranges.
    StartSnapshot(SnapshotProgress),
    /// Snapshot range `index` has read every id up to `after`.
    RangeProgress { index: usize, after: i64 },
    /// The snapshot is complete: stream from its `stream_from`.
    FinishSnapshot,
    /// Ids were reconciled now.
    Reconciled(String),
    /// An operator moved the cursor (back): set it as given.
    Rewind(Cursor),
}

impl Checkpoint {
    pub fn apply(&mut self, update: &Update) {
        match update {
            Update::Cursor(cursor) => {
                if self.cursor.as_ref().is_none_or(|c| cursor_after(cursor, c)) {
                    self.cursor = Some(cursor.clone());
                }
            }
            Update::StartSnapshot(progress) => self.snapshot = Some(progress.clone()),
            Update::RangeProgress { index, after } => {
                if let Some(range) = self
                    .snapshot
                    .as_mut()
                    .and_then(|s| s.ranges.get_mut(*index))
                {
                    range.after = range.after.max(*after);
                }
            }
            Update::FinishSnapshot => {
                if let Some(snapshot) = self.snapshot.take()
                    && self.cursor.is_none()
                {
                    self.cursor = snapshot.stream_from;
                }
            }
            Update::Reconciled(at) => self.last_reconcile = Some(at.clone()),
            Update::Rewind(cursor) => self.cursor = Some(cursor.clone()),
        }
        self.updated_at = chrono::Utc::now().to_rfc3339();
    }
}

/// Whether `a` is later than `b` in `(opdateringsdato, id)` order. Literals
/// with different fraction lengths compare by their parsed time.
pub fn cursor_after(a: &Cursor, b: &Cursor) -> bool {
    let ta = oda_model::odatime::parse_local(&a.opdateringsdato).ok();
    let tb = oda_model::odatime::parse_local(&b.opdateringsdato).ok();
    match (ta, tb) {
        (Some(ta), Some(tb)) => (ta, a.id) > (tb, b.id),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(ts: &str, id: i64) -> Cursor {
        Cursor {
            opdateringsdato: ts.into(),
            id,
        }
    }

    #[test]
    fn round_trips_and_rejects_other_versions() {
        let mut cp = Checkpoint::new("Aktør");
        cp.apply(&Update::Cursor(cursor("2014-09-09T09:05:59.653", 7)));
        let back = Checkpoint::from_json("Aktør", &cp.to_json()).expect("valid");
        assert_eq!(back, cp);
        let v2 = br#"{"v":2,"entity":"Sag"}"#;
        assert!(matches!(
            Checkpoint::from_json("Sag", v2),
            Err(CheckpointError::Version { version: 2, .. })
        ));
        assert!(matches!(
            Checkpoint::from_json("Sag", b"{"),
            Err(CheckpointError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_rewind_moves_the_cursor_back() {
        let mut cp = Checkpoint::new("Sag");
        cp.apply(&Update::Cursor(cursor("2020-01-01T00:00:00", 9)));
        cp.apply(&Update::Rewind(cursor("2019-01-01T00:00:00", 0)));
        assert_eq!(cp.cursor, Some(cursor("2019-01-01T00:00:00", 0)));
    }

    #[test]
    fn cursor_never_moves_back() {
        let mut cp = Checkpoint::new("Sag");
        cp.apply(&Update::Cursor(cursor("2020-01-01T00:00:00.5", 9)));
        cp.apply(&Update::Cursor(cursor("2020-01-01T00:00:00.497", 100)));
        assert_eq!(cp.cursor, Some(cursor("2020-01-01T00:00:00.5", 9)));
        cp.apply(&Update::Cursor(cursor("2020-01-01T00:00:00.500", 10)));
        assert_eq!(cp.cursor, Some(cursor("2020-01-01T00:00:00.500", 10)));
    }

    #[test]
    fn parallel_range_progress_merges_and_finishing_hands_over_to_streaming() {
        let mut cp = Checkpoint::new("Stemme");
        cp.apply(&Update::StartSnapshot(SnapshotProgress {
            ranges: vec![
                IdRange { after: 0, to: 100 },
                IdRange {
                    after: 100,
                    to: 200,
                },
            ],
            stream_from: Some(cursor("2025-01-01T00:00:00", 0)),
            request_id: None,
            since: None,
        }));
        cp.apply(&Update::RangeProgress {
            index: 1,
            after: 150,
        });
        cp.apply(&Update::RangeProgress {
            index: 0,
            after: 100,
        });
        cp.apply(&Update::RangeProgress {
            index: 1,
            after: 120,
        });
        let snapshot = cp.snapshot.clone().expect("running");
        assert_eq!(
            snapshot.ranges[0],
            IdRange {
                after: 100,
                to: 100
            }
        );
        assert_eq!(
            snapshot.ranges[1],
            IdRange {
                after: 150,
                to: 200
            }
        );
        assert!(!snapshot.is_done());
        cp.apply(&Update::RangeProgress {
            index: 1,
            after: 200,
        });
        assert!(cp.snapshot.as_ref().is_some_and(SnapshotProgress::is_done));
        cp.apply(&Update::FinishSnapshot);
        assert!(cp.snapshot.is_none());
        assert_eq!(cp.cursor, Some(cursor("2025-01-01T00:00:00", 0)));
    }
}
