//! Reading an entity in full: the initial snapshot (or placing the cursor
//! instead, per `--from`) and the id ranges a snapshot or backfill reads,
//! page by page, with their progress in the same transaction.

use chrono::NaiveDateTime;
use oda_cdc_core::oda::Priority;
use oda_model::odata::Query;
use oda_model::odatime::format_literal;

use super::in_flight::InFlight;
use super::records::Mode;
use super::{CycleError, Worker};
use crate::checkpoint::{Cursor, IdRange, SnapshotProgress, Update};
use crate::keyset;

impl Worker {
    /// The newest row by `(opdateringsdato, id)`, or `None` for an empty set.
    async fn newest_row(&self) -> Result<Option<Cursor>, CycleError> {
        let query = Query::default()
            .select("id,opdateringsdato")
            .orderby("opdateringsdato desc,id desc")
            .top(1);
        let page = self.fetch(&query).await?;
        let Some(record) = page.records.first() else {
            return Ok(None);
        };
        let key = keyset::row_key(0, record)?;
        Ok(key.literal.map(|l| Cursor {
            opdateringsdato: l,
            id: key.id,
        }))
    }

    async fn edge_id(&self, descending: bool) -> Result<Option<i64>, CycleError> {
        let order = if descending { "id desc" } else { "id" };
        let page = self
            .fetch(&Query::default().select("id").orderby(order).top(1))
            .await?;
        match page.records.first() {
            Some(record) => Ok(Some(keyset::row_key(0, record)?.id)),
            None => Ok(None),
        }
    }

    pub(super) async fn start_now(&self) -> Result<Option<Cursor>, CycleError> {
        let newest = self.newest_row().await?;
        let cursor = newest.unwrap_or_else(|| Cursor {
            opdateringsdato: format_literal(chrono::DateTime::UNIX_EPOCH.naive_utc()),
            id: 0,
        });
        self.commit_now(Vec::new(), Vec::new(), vec![Update::Cursor(cursor.clone())])
            .await?;
        tracing::info!(entity = self.entity(), cursor = ?cursor, "Streaming from now.");
        Ok(Some(cursor))
    }

    pub(super) async fn start_at(&self, at: NaiveDateTime) -> Result<Option<Cursor>, CycleError> {
        let cursor = Cursor {
            opdateringsdato: format_literal(at),
            id: 0,
        };
        self.commit_now(Vec::new(), Vec::new(), vec![Update::Cursor(cursor.clone())])
            .await?;
        Ok(Some(cursor))
    }

    /// Plans the initial snapshot and commits the plan, so a crash resumes
    /// it instead of starting over.
    pub(super) async fn start_snapshot(&self) -> Result<SnapshotProgress, CycleError> {
        // Streaming later starts from the newest row of now (less the
        // lookback), so changes made while the snapshot runs are caught.
        let stream_from = self.newest_row().await?;
        let progress = SnapshotProgress {
            ranges: self.ranges().await?,
            stream_from,
            request_id: None,
            since: None,
        };
        self.commit_now(
            Vec::new(),
            Vec::new(),
            vec![Update::StartSnapshot(progress.clone())],
        )
        .await?;
        tracing::info!(
            entity = self.entity(),
            ranges = progress.ranges.len(),
            "Snapshot starts."
        );
        Ok(progress)
    }

    /// Reads every range to its end, in parallel, then hands over to
    /// streaming. `progress` follows what was submitted, so a failed
    /// attempt leaves it where the next one must go on.
    pub(super) async fn snapshot(
        &self,
        progress: &mut SnapshotProgress,
    ) -> Result<Option<Cursor>, CycleError> {
        let tasks = progress
            .ranges
            .iter_mut()
            .enumerate()
            .filter(|(_, r)| !r.is_done())
            .map(|(index, range)| self.read_range(index, range, None, Mode::Snapshot, usize::MAX));
        for result in futures::future::join_all(tasks).await {
            result?;
        }
        self.commit_now(Vec::new(), Vec::new(), vec![Update::FinishSnapshot])
            .await?;
        tracing::info!(entity = self.entity(), "Snapshot done; streaming.");
        Ok(progress.stream_from.clone())
    }

    /// Reads up to `max_pages` pages of one id range, publishing each page
    /// with the range's progress; returns the rows read.
    pub(super) async fn read_range(
        &self,
        index: usize,
        range: &mut IdRange,
        since: Option<NaiveDateTime>,
        mode: Mode<'_>,
        max_pages: usize,
    ) -> Result<u64, CycleError> {
        let mut in_flight = InFlight::new(64);
        let mut rows = 0;
        let mut pages = 0;
        while range.after < range.to && pages < max_pages {
            let query = match since {
                Some(t) => keyset::id_range_since_query(range.after, range.to, t),
                None => keyset::id_range_query(range.after, range.to),
            };
            let (page, letters) = self.fetch_rows(&query, Priority::Urgent).await?;
            let keys = keyset::check_id_range(&page, range.after, range.to)?;
            if let Some(t) = since {
                keyset::check_since(&keys, t)?;
            }
            let more = keyset::has_more(&page);
            let reached = match (keys.last(), more) {
                (Some(last), true) => last.id,
                // A short page without a nextLink: the range is read.
                _ => range.to,
            };
            rows += keys.len() as u64;
            let (mut events, state) = self.events(page.records, &keys, mode);
            events.extend(letters);
            let update = Update::RangeProgress {
                index,
                after: reached,
            };
            in_flight
                .push(self.submit(events, state, vec![update]).await?)
                .await?;
            range.after = reached;
            pages += 1;
        }
        in_flight.drain().await?;
        Ok(rows)
    }

    /// The id ranges a (back)fill reads: the whole id span, split.
    pub(super) async fn ranges(&self) -> Result<Vec<IdRange>, CycleError> {
        Ok(
            match (self.edge_id(false).await?, self.edge_id(true).await?) {
                (Some(min), Some(max)) => {
                    let parts = parts_for(max - min + 1, self.shared.snapshot_ranges);
                    split(min - 1, max, parts)
                }
                _ => Vec::new(),
            },
        )
    }
}

/// Ids a range spans at least before a set is split: ten full pages.
/// Every range ends on a short page, so splitting a small set only adds
/// requests (a 12-row set read as four ranges costs four requests for one
/// page of rows), and at a polite rate requests are the budget.
const MIN_RANGE_IDS: i64 = 1_000;

/// How many ranges an id span is read as: up to `wanted`, none narrower
/// than [`MIN_RANGE_IDS`].
fn parts_for(span: i64, wanted: usize) -> usize {
    let fit = usize::try_from(span / MIN_RANGE_IDS).unwrap_or(usize::MAX);
    wanted.min(fit).max(1)
}

/// Splits `(after, to]` into `parts` ranges of about equal width.
fn split(after: i64, to: i64, parts: usize) -> Vec<IdRange> {
    let parts = parts.max(1) as i64;
    let width = ((to - after) / parts).max(1);
    let mut ranges = Vec::new();
    let mut lo = after;
    while lo < to {
        let hi = if ranges.len() as i64 == parts - 1 {
            to
        } else {
            (lo + width).min(to)
        };
        ranges.push(IdRange { after: lo, to: hi });
        lo = hi;
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_the_range_without_overlap() {
        for (after, to, parts) in [(0, 100, 4), (999, 105_000, 4), (5, 6, 4), (0, 3, 8)] {
            let ranges = split(after, to, parts);
            assert!(ranges.len() <= parts.max(1));
            assert_eq!(ranges.first().map(|r| r.after), Some(after));
            assert_eq!(ranges.last().map(|r| r.to), Some(to));
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].to, pair[1].after);
            }
        }
        assert!(split(10, 10, 4).is_empty());
    }

    #[test]
    fn small_sets_are_read_as_one_range() {
        assert_eq!(parts_for(12, 4), 1);
        assert_eq!(parts_for(999, 4), 1);
        assert_eq!(parts_for(2_500, 4), 2);
        assert_eq!(parts_for(1_000_000, 4), 4);
        assert_eq!(parts_for(1_000_000, 0), 1);
        assert_eq!(parts_for(0, 4), 1);
    }
}
