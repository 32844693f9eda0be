//! Operators' requests, run between polls: a backfill (read in chunks so
//! polling keeps its pace) and a rewind of the cursor.

use oda_model::odatime::{format_literal, parse_local};

use super::records::Mode;
use super::{CycleError, Worker};
use crate::checkpoint::{Cursor, SnapshotProgress, Update};
use crate::keyset::Violation;
use crate::signals::{Command, Signal};

impl Worker {
    /// Runs an operator's request.
    pub(super) async fn command(
        &self,
        command: Command,
        cursor: &mut Option<Cursor>,
        backfill: &mut Option<Backfill>,
    ) -> Result<(), CycleError> {
        match command {
            Command::Backfill { id, since } => {
                let progress = SnapshotProgress {
                    ranges: self.ranges().await?,
                    stream_from: None,
                    request_id: Some(id.clone()),
                    since,
                };
                self.commit_now(
                    Vec::new(),
                    Vec::new(),
                    vec![Update::StartSnapshot(progress.clone())],
                )
                .await?;
                tracing::info!(entity = self.entity(), request = %id, "Backfill starts.");
                *backfill = Some(Backfill { progress, read: 0 });
            }
            Command::Rewind { id, to } => {
                let at = parse_local(&to).map_err(|e| Violation::BadTimestamp {
                    id: 0,
                    message: e.to_string(),
                })?;
                let target = Cursor {
                    opdateringsdato: format_literal(at),
                    id: 0,
                };
                // The acknowledgement commits with the rewind itself.
                let report = Signal::Progress {
                    id: id.clone(),
                    entity: self.plan.entity.clone(),
                    read: 0,
                    remaining: 0,
                    done: true,
                };
                let record = self.signal_record(&report);
                self.commit_now(
                    vec![record],
                    Vec::new(),
                    vec![Update::Rewind(target.clone())],
                )
                .await?;
                tracing::info!(entity = self.entity(), request = %id, to = %target.opdateringsdato, "Cursor rewound.");
                *cursor = Some(target);
            }
        }
        Ok(())
    }

    /// One chunk of a running backfill, so polls keep their pace between
    /// chunks; returns true when the backfill is complete.
    pub(super) async fn backfill_chunk(&self, backfill: &mut Backfill) -> Result<bool, CycleError> {
        let request = backfill.progress.request_id.clone().unwrap_or_default();
        let since = match backfill.progress.since.as_deref() {
            Some(text) => Some(parse_local(text).map_err(|e| Violation::BadTimestamp {
                id: 0,
                message: e.to_string(),
            })?),
            None => None,
        };
        let mut budget = BACKFILL_CHUNK_PAGES;
        for index in 0..backfill.progress.ranges.len() {
            if budget == 0 {
                break;
            }
            // Read in place: a failed chunk keeps what it submitted.
            let range = &mut backfill.progress.ranges[index];
            if range.is_done() {
                continue;
            }
            let before = range.after;
            backfill.read += self
                .read_range(index, range, since, Mode::Backfill(&request), budget)
                .await?;
            // Pages of this range used from the budget (at least one).
            budget = budget.saturating_sub(((range.after - before) as usize / 100).max(1));
        }
        let done = backfill.progress.is_done();
        let remaining: i64 = backfill
            .progress
            .ranges
            .iter()
            .map(|r| r.to - r.after)
            .sum();
        let report = Signal::Progress {
            id: request,
            entity: self.plan.entity.clone(),
            read: backfill.read,
            remaining: remaining.max(0) as u64,
            done,
        };
        let record = self.signal_record(&report);
        let updates = if done {
            vec![Update::FinishSnapshot]
        } else {
            Vec::new()
        };
        self.commit_now(vec![record], Vec::new(), updates).await?;
        if done {
            tracing::info!(
                entity = self.entity(),
                rows = backfill.read,
                "Backfill done."
            );
        }
        Ok(done)
    }
}

/// Pages a backfill reads between two polls.
const BACKFILL_CHUNK_PAGES: usize = 20;

/// A backfill in progress and the rows it has read.
#[derive(Debug, Clone)]
pub(super) struct Backfill {
    pub(super) progress: SnapshotProgress,
    pub(super) read: u64,
}
