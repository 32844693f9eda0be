//! Streaming. Each poll first reads what is new, from the cursor forward
//! by `(opdateringsdato, id)` keyset pages (ties wider than a page are
//! drained before the timestamp advances); then, in the time left before
//! the next poll, it goes on re-reading the lookback window behind the
//! cursor for late commits.
//!
//! The two are split because their costs differ by orders of magnitude.
//! New data is a page or two a poll; the window holds every row changed in
//! the last `poll.lookback` (at 100 changes/s and 10 minutes, 60,000 rows,
//! 600 requests: two minutes at ODA's polite 5 requests/s). Re-reading the
//! window in front of every poll made each change wait for the whole
//! window. Now the window is walked once per pass, at background priority
//! (the rate limiter serves new data first), a pass resuming where the
//! previous poll left it; when the window is small, a pass fits in one
//! poll, as before. A late commit is caught by the first pass that reaches
//! its timestamp: within one poll at low load, within
//! `rows in the window / 100` background requests at high load.

use std::time::Duration;

use chrono::NaiveDateTime;
use oda_cdc_core::oda::{FetchError, Priority};
use oda_model::odatime::{format_literal, is_ambiguous, parse_local};
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::in_flight::InFlight;
use super::records::Mode;
use super::{CycleError, Worker};
use crate::checkpoint::{Cursor, Update};
use crate::committer::CommitError;
use crate::keyset::{self, RowKey};

/// Where a keyset walk stands: rows after `(at, after)` are still to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Position {
    at: NaiveDateTime,
    after: Option<i64>,
    /// Rows shown at `at` with a higher id may remain (the last page was
    /// cut inside a tie).
    tie_open: bool,
}

impl Position {
    /// Just before `at`: the first read is the advance from `at` on.
    fn before(at: NaiveDateTime) -> Self {
        Self {
            at: at - chrono::Duration::milliseconds(1),
            after: None,
            tie_open: false,
        }
    }
}

/// What a poll keeps for the next one.
#[derive(Debug, Default)]
pub(super) struct StreamState {
    /// The window pass in progress, if any, and when it started.
    pass: Option<(Position, Instant)>,
    /// The last poll's pass read no page: every slot went to new data.
    starved: bool,
}

impl StreamState {
    /// Forget the pass (the cursor was moved by hand).
    pub(super) fn reset(&mut self) {
        *self = Self::default();
    }
}

/// Whether a step read the last page of its walk.
struct Step {
    last: Option<Cursor>,
    done: bool,
}

impl Worker {
    /// One poll: new rows from the cursor, then the window pass until
    /// `until`; returns the new cursor and how long reading the new rows
    /// took (the poll's duration as metrics show it: the pass only fills
    /// the time left).
    pub(super) async fn cycle(
        &self,
        cursor: Option<Cursor>,
        state: &mut StreamState,
        until: Instant,
    ) -> Result<(Option<Cursor>, Duration), CycleError> {
        let started = Instant::now();
        let newest = self.read_new(cursor).await?;
        let took = started.elapsed();
        self.pass_window(newest.as_ref(), state, until).await?;
        Ok((newest, took))
    }

    /// Reads every row stamped at the cursor's time or later. The rows
    /// of the cursor's own millisecond come again (one request either
    /// way; they are skipped as unchanged), so a row that joined that
    /// millisecond after the last read is not left to the window pass.
    async fn read_new(&self, cursor: Option<Cursor>) -> Result<Option<Cursor>, CycleError> {
        let from = cursor
            .as_ref()
            .and_then(|c| parse_local(&c.opdateringsdato).ok())
            .unwrap_or_else(|| chrono::DateTime::UNIX_EPOCH.naive_utc());
        let mut position = Position::before(from);
        let mut newest = cursor;
        let mut in_flight = InFlight::new(16);
        loop {
            let step = self
                .step(&mut position, Priority::Urgent, true, &mut in_flight)
                .await?;
            if let Some(next) = step.last {
                newest = max_cursor(newest, next);
            }
            if step.done {
                break;
            }
        }
        in_flight.drain().await?;
        Ok(newest)
    }

    /// Goes on re-reading the window behind `cursor` until the pass
    /// reaches the cursor or `until` comes (one page at least); at most one
    /// pass starts per poll.
    async fn pass_window(
        &self,
        cursor: Option<&Cursor>,
        state: &mut StreamState,
        until: Instant,
    ) -> Result<(), CycleError> {
        let Some(head) = cursor.and_then(|c| parse_local(&c.opdateringsdato).ok()) else {
            return Ok(());
        };
        let lookback = chrono::Duration::from_std(self.plan.lookback)
            .unwrap_or_else(|_| chrono::Duration::minutes(10));
        let (mut position, started) = state.pass.take().unwrap_or_else(|| {
            let from = head - lookback_from(head, lookback);
            (Position::before(from), Instant::now())
        });
        let mut in_flight = InFlight::new(16);
        // A page waits for a request slot only until the next poll is due,
        // so re-reads never delay new data; the first page of a poll may
        // wait a little longer, so that a poll whose new rows overran its
        // slot still moves the pass on.
        let grace = until.max(Instant::now() + self.plan.poll_interval / 4);
        // When new data took every slot in the last poll, the first page
        // of this one goes urgent: a pass always moves on, so a late
        // commit is found even when polls alone fill the rate limit.
        let mut first = true;
        let mut pages = 0_usize;
        let finished = loop {
            let priority = match (first, state.starved) {
                (true, true) => Priority::Urgent,
                (true, false) => Priority::Background { until: Some(grace) },
                (false, _) => Priority::Background { until: Some(until) },
            };
            first = false;
            let step = match self
                .step(&mut position, priority, false, &mut in_flight)
                .await
            {
                Ok(step) => step,
                Err(CycleError::Fetch(FetchError::Deferred)) => break false,
                Err(error) => {
                    // Keep the pass where it stands: the rows before it
                    // were re-read; the error ends this poll as before.
                    in_flight.drain().await?;
                    state.pass = Some((position, started));
                    return Err(error);
                }
            };
            pages += 1;
            if step.done || position.at > head {
                break true;
            }
            if Instant::now() >= until {
                break false;
            }
        };
        in_flight.drain().await?;
        state.starved = pages == 0;
        if finished {
            self.shared
                .metrics
                .window_pass
                .with_label_values(&[self.entity()])
                .set(started.elapsed().as_secs_f64());
        } else {
            state.pass = Some((position, started));
        }
        Ok(())
    }

    /// Reads one page from `position` and moves it past the page.
    async fn step(
        &self,
        position: &mut Position,
        priority: Priority,
        moves_cursor: bool,
        in_flight: &mut InFlight,
    ) -> Result<Step, CycleError> {
        if position.tie_open {
            let (page, letters) = self
                .fetch_rows(&keyset::tie_query(position.at, position.after), priority)
                .await?;
            let keys = keyset::check_tie(&page, position.at, position.after)?;
            let more = keyset::has_more(&page);
            self.letters(letters, in_flight).await?;
            let mut last = None;
            if let Some(key) = keys.last() {
                position.after = Some(key.id);
                let next = Cursor {
                    opdateringsdato: key
                        .literal
                        .clone()
                        .unwrap_or_else(|| format_literal(position.at)),
                    id: key.id,
                };
                self.publish(page.records, &keys, &next, moves_cursor, in_flight)
                    .await?;
                last = Some(next);
            }
            // Nothing readable on a page with more after it: the rest of
            // the tie cannot be reached by id; the advance goes on.
            if !more || keys.is_empty() {
                position.tie_open = false;
            }
            return Ok(Step { last, done: false });
        }
        let (page, letters) = self
            .fetch_rows(&keyset::advance_query(position.at), priority)
            .await?;
        let keys = keyset::check_advance(&page, position.at)?;
        let more = keyset::has_more(&page);
        self.letters(letters, in_flight).await?;
        let Some(key) = keys.last().cloned() else {
            return Ok(Step {
                last: None,
                done: true,
            });
        };
        let next = Cursor {
            opdateringsdato: key.literal.clone().unwrap_or_default(),
            id: key.id,
        };
        self.publish(page.records, &keys, &next, moves_cursor, in_flight)
            .await?;
        let done = match key.at {
            Some(at) if more => {
                *position = Position {
                    at,
                    after: Some(key.id),
                    tie_open: true,
                };
                false
            }
            Some(at) => {
                *position = Position {
                    at,
                    after: Some(key.id),
                    tie_open: false,
                };
                true
            }
            None => true,
        };
        Ok(Step {
            last: Some(next),
            done,
        })
    }

    async fn letters(
        &self,
        letters: Vec<crate::committer::Outgoing>,
        in_flight: &mut InFlight,
    ) -> Result<(), CommitError> {
        if letters.is_empty() {
            return Ok(());
        }
        in_flight
            .push(self.submit(letters, Vec::new(), Vec::new()).await?)
            .await
    }

    async fn publish(
        &self,
        records: Vec<Map<String, Value>>,
        keys: &[RowKey],
        cursor: &Cursor,
        moves_cursor: bool,
        in_flight: &mut InFlight,
    ) -> Result<(), CommitError> {
        let (events, state) = self.events(records, keys, Mode::Stream);
        let updates = if moves_cursor {
            vec![Update::Cursor(cursor.clone())]
        } else {
            Vec::new()
        };
        let ack = self.submit(events, state, updates).await?;
        in_flight.push(ack).await
    }
}

/// The next poll after one that started at `started`: on the worker's own
/// grid (`origin + phase + k × interval`), so that the sets of one
/// producer poll at evenly spread moments instead of queueing at the rate
/// limiter together; at once when the poll overran its slot.
pub(super) fn next_poll(
    started: Instant,
    origin: Instant,
    phase: Duration,
    interval: Duration,
) -> Instant {
    let first = origin + phase;
    if started < first || interval.is_zero() {
        return first.max(started);
    }
    let slots = (started - first).as_nanos() / interval.as_nanos() + 1;
    let offset = interval.as_nanos().saturating_mul(slots);
    first + Duration::from_nanos(u64::try_from(offset).unwrap_or(u64::MAX))
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
    fn polls_keep_to_their_grid_and_overruns_start_at_once() {
        let origin = Instant::now();
        let second = Duration::from_secs(1);
        let phase = Duration::from_millis(500);
        let at = |ms: u64| origin + Duration::from_millis(ms);
        assert_eq!(
            next_poll(origin, origin, phase, 2 * second),
            at(500),
            "first slot"
        );
        assert_eq!(next_poll(at(500), origin, phase, 2 * second), at(2500));
        // A poll that started late still aims at the slot after its start.
        assert_eq!(next_poll(at(900), origin, phase, 2 * second), at(2500));
        assert_eq!(next_poll(at(2600), origin, phase, 2 * second), at(4500));
        assert_eq!(
            next_poll(at(7000), origin, Duration::ZERO, Duration::ZERO),
            at(7000),
            "no interval: at once"
        );
    }

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
