//! Streaming: one poll cycle reads every row stamped after the cursor,
//! less the lookback, by `(opdateringsdato, id)` keyset pages; ties wider
//! than a page are drained before the timestamp advances.

use chrono::NaiveDateTime;
use oda_model::odatime::{format_literal, is_ambiguous, parse_local};
use serde_json::{Map, Value};

use super::in_flight::InFlight;
use super::records::Mode;
use super::{CycleError, Worker};
use crate::checkpoint::{Cursor, Update};
use crate::committer::CommitError;
use crate::keyset::{self, RowKey};

impl Worker {
    /// One poll cycle from `cursor − lookback`; returns the new cursor.
    pub(super) async fn cycle(&self, cursor: Option<Cursor>) -> Result<Option<Cursor>, CycleError> {
        let lookback = chrono::Duration::from_std(self.plan.lookback)
            .unwrap_or_else(|_| chrono::Duration::minutes(10));
        let origin = cursor
            .as_ref()
            .and_then(|c| parse_local(&c.opdateringsdato).ok())
            .map(|t| t - lookback_from(t, lookback))
            .unwrap_or_else(|| chrono::DateTime::UNIX_EPOCH.naive_utc());
        let mut at = origin;
        let mut after: Option<i64> = None;
        let mut newest = cursor;
        let mut in_flight = InFlight::new(16);
        loop {
            // Drain every row shown at `at` (ties may be wider than a page).
            loop {
                let (page, letters) = self.fetch_rows(&keyset::tie_query(at, after)).await?;
                let keys = keyset::check_tie(&page, at, after)?;
                let more = keyset::has_more(&page);
                if !letters.is_empty() {
                    in_flight
                        .push(self.submit(letters, Vec::new(), Vec::new()).await?)
                        .await?;
                }
                if let Some(last) = keys.last() {
                    after = Some(last.id);
                    let next = Cursor {
                        opdateringsdato: last.literal.clone().unwrap_or_else(|| format_literal(at)),
                        id: last.id,
                    };
                    self.publish(page.records, &keys, &next, &mut in_flight)
                        .await?;
                    newest = max_cursor(newest, next);
                }
                // Nothing readable on a page with more after it: the rest
                // of the tie cannot be reached by id; the advance goes on.
                if !more || keys.is_empty() {
                    break;
                }
            }
            let (page, letters) = self.fetch_rows(&keyset::advance_query(at)).await?;
            let keys = keyset::check_advance(&page, at)?;
            let more = keyset::has_more(&page);
            if !letters.is_empty() {
                in_flight
                    .push(self.submit(letters, Vec::new(), Vec::new()).await?)
                    .await?;
            }
            let Some(last) = keys.last().cloned() else {
                break;
            };
            let next = Cursor {
                opdateringsdato: last.literal.clone().unwrap_or_default(),
                id: last.id,
            };
            self.publish(page.records, &keys, &next, &mut in_flight)
                .await?;
            newest = max_cursor(newest, next);
            let Some(last_at) = last.at else { break };
            at = last_at;
            after = Some(last.id);
            if !more {
                break;
            }
        }
        in_flight.drain().await?;
        Ok(newest)
    }

    async fn publish(
        &self,
        records: Vec<Map<String, Value>>,
        keys: &[RowKey],
        cursor: &Cursor,
        in_flight: &mut InFlight,
    ) -> Result<(), CommitError> {
        let (events, state) = self.events(records, keys, Mode::Stream);
        let ack = self
            .submit(events, state, vec![Update::Cursor(cursor.clone())])
            .await?;
        in_flight.push(ack).await
    }
}

/// How far before `cursor` a cycle re-reads: the lookback, plus the
/// repeated hour while the cursor or the window sits in it (after the
/// autumn change the source stamps rows 02:00–02:59 a second time, below a
/// cursor that already passed 02:59 in the first pass).
fn lookback_from(cursor: NaiveDateTime, lookback: chrono::Duration) -> chrono::Duration {
    if is_ambiguous(cursor) || is_ambiguous(cursor - lookback) {
        lookback + chrono::Duration::hours(1)
    } else {
        lookback
    }
}

fn max_cursor(current: Option<Cursor>, candidate: Cursor) -> Option<Cursor> {
    match current {
        Some(c) if !crate::checkpoint::cursor_after(&candidate, &c) => Some(c),
        _ => Some(candidate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookback_widens_over_the_repeated_hour() {
        let ten = chrono::Duration::minutes(10);
        let t = |s: &str| parse_local(s).expect("valid");
        assert_eq!(lookback_from(t("2026-10-24T14:00:00"), ten), ten);
        let widened = ten + chrono::Duration::hours(1);
        assert_eq!(
            lookback_from(t("2026-10-25T02:59:59.997"), ten),
            widened,
            "cursor in the hour"
        );
        assert_eq!(
            lookback_from(t("2026-10-25T03:05:00"), ten),
            widened,
            "window reaches into it"
        );
        assert_eq!(lookback_from(t("2026-10-25T03:10:01"), ten), ten, "past it");
    }
}
