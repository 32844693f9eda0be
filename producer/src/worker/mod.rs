//! One entity set's life: snapshot on first start (or not, per `--from`),
//! then a poll cycle every interval. Every page becomes one batch for the
//! committer; the cursor moves only inside the transaction that holds the
//! page's records.
//!
//! This module is the run loop and what a failure means; the jobs live
//! beside it: [`stream`] (poll cycles), [`snapshot`] (full reads),
//! [`commands`] (backfill, rewind), [`reconcile`] (deletes) and [`records`]
//! (rows to events).

mod commands;
mod in_flight;
mod reconcile;
mod records;
mod snapshot;
mod stream;
mod unserved;

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{NaiveDateTime, Utc};
use oda_cdc_core::health::Health;
use oda_cdc_core::oda::{FetchError, OdaClient, Page, Priority};
use oda_cdc_core::shutdown::CancellationToken;
use oda_model::odata::Query;
use oda_model::odatime::{local_to_utc, parse_local};
use oda_model::topics::Topics;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use self::commands::Backfill;
use self::stream::{StreamState, next_poll};
pub(crate) use self::unserved::Unserved;
use crate::checkpoint::{Checkpoint, Cursor, Update};
use crate::committer::{Batch, CommitError, Outgoing};
use crate::keyset::Violation;
use crate::metrics::Metrics;
use crate::signals::Command;
use crate::state::IdState;

/// Where an entity without a checkpoint starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFrom {
    /// Snapshot every row (`op = r`), then stream.
    Beginning,
    /// Stream from the newest row the source holds now.
    Now,
    /// Stream from this Danish local time.
    Time(NaiveDateTime),
}

/// Settings of one entity's worker.
#[derive(Debug, Clone)]
pub(crate) struct EntityPlan {
    pub(crate) entity: String,
    /// Shared by every record the worker writes.
    pub(crate) topic: Arc<str>,
    pub(crate) poll_interval: Duration,
    /// Where in each interval this set polls: sets spread evenly over the
    /// interval, so their reads do not queue at the rate limiter at once.
    pub(crate) phase: Duration,
    pub(crate) lookback: Duration,
    pub(crate) reconcile_interval: Duration,
    pub(crate) exclude_fields: Vec<String>,
    /// `opdateringsdato` may be null: reconciliation also sweeps every
    /// record, since date filters cannot see such rows.
    pub(crate) sweep: bool,
    /// Run the queued commands (a backfill, a rewind) without polling,
    /// then stop: what `snapshot` and `rewind` do with no service running.
    pub(crate) one_shot: bool,
}

/// What every worker shares.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) client: OdaClient,
    pub(crate) tx: mpsc::Sender<Batch>,
    pub(crate) state: Arc<Mutex<IdState>>,
    pub(crate) metrics: Metrics,
    pub(crate) health: Health,
    /// Parallel id ranges per snapshot.
    pub(crate) snapshot_ranges: usize,
    /// Where backfill progress and dead letters go.
    pub(crate) topics: Topics,
    pub(crate) encoder: crate::encode::Encoder,
    /// Unknown fields already logged, so each is logged once.
    pub(crate) unknown_logged: Arc<Mutex<std::collections::HashSet<(String, String)>>>,
    /// Sets the source answers 404 for.
    pub(crate) unserved: Arc<Unserved>,
    /// The largest record each topic takes.
    pub(crate) limits: oda_cdc_core::kafka::RecordLimits,
    /// The moment every set's poll grid counts from.
    pub(crate) origin: Instant,
}

/// The readiness check of an entity set the source does not serve.
fn unserved_check(entity: &str) -> String {
    format!("served {entity}")
}

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkerError {
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("the source answers 404 for entity set {0}: it is not served (check `entities`)")]
    NotServed(String),
}

/// Why one cycle stopped early (the worker goes on next interval).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CycleError {
    #[error("source request failed: {0}")]
    Fetch(#[from] FetchError),
    #[error("invalid page (cursor kept): {0}")]
    Invalid(#[from] Violation),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("shutting down")]
    Shutdown,
}

/// Runs one entity until shutdown; returns an error only for failures the
/// whole pipeline must restart from (a failed transaction).
pub(crate) async fn run_entity(
    shared: Shared,
    plan: EntityPlan,
    checkpoint: Option<Checkpoint>,
    from: StartFrom,
    commands: mpsc::Receiver<Command>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let worker = Worker {
        shared,
        plan,
        shutdown,
        lettered: Mutex::new(std::collections::HashSet::new()),
    };
    worker.run(checkpoint, from, commands).await
}

struct Worker {
    shared: Shared,
    plan: EntityPlan,
    shutdown: CancellationToken,
    /// Content hashes of malformed rows already dead-lettered, so a row
    /// re-read every cycle is lettered once (per process).
    lettered: Mutex<std::collections::HashSet<String>>,
}

impl Worker {
    pub(super) fn entity(&self) -> &str {
        &self.plan.entity
    }

    async fn run(
        &self,
        checkpoint: Option<Checkpoint>,
        from: StartFrom,
        mut commands: mpsc::Receiver<Command>,
    ) -> Result<(), WorkerError> {
        let mut cursor = checkpoint.as_ref().and_then(|c| c.cursor.clone());
        let stored = checkpoint.as_ref().and_then(|c| c.snapshot.clone());
        // A backfill someone requested resumes between polls; an initial
        // snapshot must finish before streaming starts.
        let mut backfill = stored
            .clone()
            .filter(|s| s.request_id.is_some())
            .map(|progress| Backfill { progress, read: 0 });
        let snapshot = stored.filter(|s| s.request_id.is_none());
        let mut pending: Option<Command> = None;
        let mut last_reconcile = checkpoint
            .as_ref()
            .and_then(|c| c.last_reconcile.as_deref())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            // A fresh entity was just read in full: its first reconcile is an interval away.
            .unwrap_or_else(Utc::now);
        // Start-up: snapshot or place the cursor, retried until it works.
        // A retry resumes the snapshot from the progress its earlier attempt
        // submitted, never from the start: a re-read row that changed in
        // between would otherwise go out as a second `r`.
        let needs_start = checkpoint.is_none() || snapshot.is_some();
        let mut resume = snapshot;
        if needs_start {
            loop {
                let started = if let Some(progress) = resume.as_mut() {
                    self.snapshot(progress).await
                } else {
                    match (&from, checkpoint.is_none()) {
                        (StartFrom::Beginning, true) => match self.start_snapshot().await {
                            Ok(progress) => self.snapshot(resume.insert(progress)).await,
                            Err(error) => Err(error),
                        },
                        (StartFrom::Now, true) => self.start_now().await,
                        (StartFrom::Time(t), true) => self.start_at(*t).await,
                        (_, false) => Ok(cursor.clone()),
                    }
                };
                match started {
                    Ok(c) => {
                        cursor = c.or(cursor);
                        break;
                    }
                    Err(error) => {
                        if let ControlFlow::Break(end) = self.after_failure(error) {
                            return end;
                        }
                        if self
                            .sleep(self.plan.poll_interval.min(Duration::from_secs(30)))
                            .await
                        {
                            return Ok(());
                        }
                    }
                }
            }
        }
        let mut stream = StreamState::default();
        let mut next = Instant::now();
        loop {
            if !self.plan.one_shot {
                next = next_poll(
                    Instant::now(),
                    self.shared.origin,
                    self.plan.phase,
                    self.plan.poll_interval,
                );
                if let ControlFlow::Break(end) = self
                    .poll(&mut cursor, &mut stream, next, &mut last_reconcile)
                    .await
                {
                    return end;
                }
            }
            while let Some(command) = pending.take().or_else(|| commands.try_recv().ok()) {
                stream.reset();
                if let Err(error) = self.command(command, &mut cursor, &mut backfill).await
                    && let ControlFlow::Break(end) = self.after_failure(error)
                {
                    return end;
                }
            }
            if let Some(running) = backfill.as_mut() {
                match self.backfill_chunk(running).await {
                    Ok(true) => backfill = None,
                    Ok(false) => continue,
                    Err(error) => {
                        if let ControlFlow::Break(end) = self.after_failure(error) {
                            return end;
                        }
                    }
                }
            }
            if self.plan.one_shot {
                return Ok(());
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep_until(next) => {}
                command = commands.recv() => pending = command,
            }
        }
    }

    /// One poll cycle (its window pass ends by `until`, the next poll),
    /// then a reconcile when one is due.
    async fn poll(
        &self,
        cursor: &mut Option<Cursor>,
        stream: &mut StreamState,
        until: Instant,
        last_reconcile: &mut chrono::DateTime<Utc>,
    ) -> ControlFlow<Result<(), WorkerError>> {
        match self.cycle(cursor.clone(), stream, until).await {
            Ok((next, took)) => {
                *cursor = next.or(cursor.take());
                self.polled(cursor.as_ref(), took);
            }
            Err(error) => self.after_failure(error)?,
        }
        let due = chrono::Duration::from_std(self.plan.reconcile_interval)
            .unwrap_or(chrono::Duration::days(1));
        if Utc::now() - *last_reconcile >= due {
            match self.reconcile().await {
                Ok(()) => *last_reconcile = Utc::now(),
                Err(error) => self.after_failure(error)?,
            }
        }
        ControlFlow::Continue(())
    }

    /// A cycle succeeded: its metrics, the source lag, readiness.
    fn polled(&self, cursor: Option<&Cursor>, took: Duration) {
        let entity = self.entity();
        let metrics = &self.shared.metrics;
        metrics.polls.with_label_values(&[entity, "ok"]).inc();
        metrics
            .poll_duration
            .with_label_values(&[entity])
            .observe(took.as_secs_f64());
        metrics
            .last_success
            .with_label_values(&[entity])
            .set(Utc::now().timestamp() as f64);
        if let Some(c) = cursor
            && let Ok(local) = parse_local(&c.opdateringsdato)
        {
            let lag = (Utc::now() - local_to_utc(local)).num_milliseconds() as f64 / 1000.0;
            metrics
                .source_lag
                .with_label_values(&[entity])
                .set(lag.max(0.0));
        }
        self.shared.health.set_ok("poll");
        if self.shared.unserved.clear(entity) {
            tracing::info!(entity, "The source serves this entity set again.");
            metrics.unserved.with_label_values(&[entity]).set(0.0);
            self.shared.health.set_ok(&unserved_check(entity));
        }
    }

    /// The source answers 404 for this set: marked failed, tried again
    /// next interval; the producer stops only when no set is served.
    fn not_served(&self) -> ControlFlow<Result<(), WorkerError>> {
        let entity = self.entity();
        let (new, none_served) = self.shared.unserved.mark(entity);
        self.shared
            .metrics
            .polls
            .with_label_values(&[entity, "not_served"])
            .inc();
        if new {
            let error = WorkerError::NotServed(entity.to_owned());
            tracing::error!(entity, %error, "Entity set not served; the others go on.");
            self.shared
                .metrics
                .unserved
                .with_label_values(&[entity])
                .set(1.0);
            self.shared
                .health
                .set_failed(&unserved_check(entity), error.to_string());
        }
        if none_served {
            ControlFlow::Break(Err(WorkerError::NotServed(entity.to_owned())))
        } else {
            ControlFlow::Continue(())
        }
    }

    /// What a failed cycle, start-up, command or backfill chunk means for
    /// the worker: a failed transaction restarts the pipeline, shutdown
    /// ends the worker, an unserved set stops it; anything else is counted
    /// and logged, and the worker goes on with the cursor where it was.
    fn after_failure(&self, error: CycleError) -> ControlFlow<Result<(), WorkerError>> {
        match error {
            CycleError::Commit(e) => ControlFlow::Break(Err(e.into())),
            CycleError::Shutdown => ControlFlow::Break(Ok(())),
            CycleError::Fetch(FetchError::NotFound) => self.not_served(),
            error => {
                self.failed_cycle(&error);
                ControlFlow::Continue(())
            }
        }
    }

    fn failed_cycle(&self, error: &CycleError) {
        let outcome = match error {
            CycleError::Invalid(_) => "invalid_page",
            _ => "error",
        };
        self.shared
            .metrics
            .polls
            .with_label_values(&[self.entity(), outcome])
            .inc();
        self.shared
            .health
            .set_failed("poll", format!("{}: {error}", self.entity()));
        tracing::warn!(entity = self.entity(), %error, "Poll cycle failed; the cursor stays where it was.");
    }

    /// Sleeps; true when shutdown came first.
    async fn sleep(&self, duration: Duration) -> bool {
        tokio::select! {
            _ = self.shutdown.cancelled() => true,
            _ = tokio::time::sleep(duration) => false,
        }
    }

    /// A page with its malformed rows taken out, and the dead letters for
    /// those (to commit with the page).
    pub(super) async fn fetch_rows(
        &self,
        query: &Query,
        priority: Priority,
    ) -> Result<(Page, Vec<Outgoing>), CycleError> {
        let mut page = self.fetch_with(query, priority).await?;
        let malformed = crate::keyset::split_malformed(&mut page.records);
        Ok((page, self.malformed_letters(malformed)))
    }

    pub(super) async fn fetch(&self, query: &Query) -> Result<Page, CycleError> {
        self.fetch_with(query, Priority::Urgent).await
    }

    async fn fetch_with(&self, query: &Query, priority: Priority) -> Result<Page, CycleError> {
        tokio::select! {
            _ = self.shutdown.cancelled() => Err(CycleError::Shutdown),
            page = self.shared.client.page_with(self.entity(), query, priority) => Ok(page?),
        }
    }

    /// Hands a batch to the committer.
    pub(super) async fn submit(
        &self,
        records: Vec<Outgoing>,
        state: Vec<(i64, Option<String>)>,
        checkpoint: Vec<Update>,
    ) -> Result<oneshot::Receiver<Result<(), CommitError>>, CommitError> {
        let (done, ack) = oneshot::channel();
        let batch = Batch {
            entity: self.plan.entity.clone(),
            records,
            state,
            checkpoint,
            done,
        };
        self.shared
            .tx
            .send(batch)
            .await
            .map_err(|_| CommitError::Stopped)?;
        Ok(ack)
    }

    /// Hands a batch over and waits until its transaction committed.
    pub(super) async fn commit_now(
        &self,
        records: Vec<Outgoing>,
        state: Vec<(i64, Option<String>)>,
        checkpoint: Vec<Update>,
    ) -> Result<(), CommitError> {
        let ack = self.submit(records, state, checkpoint).await?;
        ack.await.unwrap_or(Err(CommitError::Stopped))
    }
}
