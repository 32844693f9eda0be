//! One entity set's life: snapshot on first start (or not, per `--from`),
//! then a poll cycle every interval. Every page becomes one batch for the
//! committer; the cursor moves only inside the transaction that holds the
//! page's records.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{NaiveDateTime, Utc};
use oda_cdc_core::event::{ChangeEvent, Op, headers};
use oda_cdc_core::hash::content_hash;
use oda_cdc_core::health::Health;
use oda_cdc_core::oda::{FetchError, OdaClient, Page, Query};
use oda_cdc_core::odatime::{format_literal, is_ambiguous, local_to_utc, parse_local};
use oda_cdc_core::shutdown::CancellationToken;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::checkpoint::{Checkpoint, Cursor, IdRange, SnapshotProgress, Update};
use crate::committer::{Batch, CommitError, Outgoing};
use crate::keyset::{self, RowKey, Violation};
use crate::metrics::Metrics;
use crate::signals::{Command, Signal};
use crate::state::{Decision, IdState};

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
pub struct EntityPlan {
    pub entity: String,
    pub topic: String,
    pub poll_interval: Duration,
    pub lookback: Duration,
    pub reconcile_interval: Duration,
    pub exclude_fields: Vec<String>,
    /// `opdateringsdato` may be null: reconciliation also sweeps every
    /// record, since date filters cannot see such rows.
    pub sweep: bool,
    /// Run the queued commands (a backfill, a rewind) without polling,
    /// then stop: what `snapshot` and `rewind` do with no service running.
    pub one_shot: bool,
}

/// What every worker shares.
#[derive(Debug, Clone)]
pub struct Shared {
    pub client: OdaClient,
    pub tx: mpsc::Sender<Batch>,
    pub state: Arc<Mutex<IdState>>,
    pub metrics: Metrics,
    pub health: Health,
    /// Parallel id ranges per snapshot.
    pub snapshot_ranges: usize,
    /// Where backfill progress is reported.
    pub signals_topic: String,
    /// Where records that cannot be encoded go (SPEC §8).
    pub dlq_topic: String,
    pub encoder: crate::encode::Encoder,
    /// Unknown fields already logged, so each is logged once.
    pub unknown_logged: Arc<Mutex<std::collections::HashSet<(String, String)>>>,
}

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("the source answers 404 for entity set {0}: it is not served (check `entities`)")]
    NotServed(String),
}

/// Why one cycle stopped early (the worker goes on next interval).
#[derive(Debug, thiserror::Error)]
enum CycleError {
    #[error("source request failed: {0}")]
    Fetch(#[from] FetchError),
    #[error("invalid page (cursor kept): {0}")]
    Invalid(#[from] Violation),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("shutting down")]
    Shutdown,
}

/// Batches sent but not yet acknowledged, awaited in order.
struct InFlight {
    acks: VecDeque<oneshot::Receiver<Result<(), CommitError>>>,
    limit: usize,
}

impl InFlight {
    fn new(limit: usize) -> Self {
        Self {
            acks: VecDeque::new(),
            limit,
        }
    }

    async fn push(
        &mut self,
        ack: oneshot::Receiver<Result<(), CommitError>>,
    ) -> Result<(), CommitError> {
        self.acks.push_back(ack);
        while self.acks.len() > self.limit {
            self.pop().await?;
        }
        Ok(())
    }

    async fn pop(&mut self) -> Result<(), CommitError> {
        match self.acks.pop_front() {
            Some(ack) => ack.await.unwrap_or(Err(CommitError::Stopped)),
            None => Ok(()),
        }
    }

    async fn drain(&mut self) -> Result<(), CommitError> {
        while !self.acks.is_empty() {
            self.pop().await?;
        }
        Ok(())
    }
}

/// Runs one entity until shutdown; returns an error only for failures the
/// whole pipeline must restart from (a failed transaction).
pub async fn run_entity(
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
    };
    worker.run(checkpoint, from, commands).await
}

struct Worker {
    shared: Shared,
    plan: EntityPlan,
    shutdown: CancellationToken,
}

impl Worker {
    fn entity(&self) -> &str {
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
                    Err(CycleError::Commit(e)) => return Err(e.into()),
                    Err(CycleError::Shutdown) => return Ok(()),
                    Err(CycleError::Fetch(FetchError::NotFound)) => {
                        return Err(WorkerError::NotServed(self.plan.entity.clone()));
                    }
                    Err(error) => {
                        self.failed_cycle(&error);
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
        loop {
            if !self.plan.one_shot {
                self.poll(&mut cursor, &mut last_reconcile).await?;
            }
            while let Some(command) = pending.take().or_else(|| commands.try_recv().ok()) {
                match self.command(command, &mut cursor, &mut backfill).await {
                    Ok(()) => {}
                    Err(CycleError::Commit(e)) => return Err(e.into()),
                    Err(CycleError::Shutdown) => return Ok(()),
                    Err(error) => self.failed_cycle(&error),
                }
            }
            if let Some(running) = backfill.as_mut() {
                match self.backfill_chunk(running).await {
                    Ok(true) => backfill = None,
                    Ok(false) => continue,
                    Err(CycleError::Commit(e)) => return Err(e.into()),
                    Err(CycleError::Shutdown) => return Ok(()),
                    Err(error) => self.failed_cycle(&error),
                }
            }
            if self.plan.one_shot {
                return Ok(());
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(self.plan.poll_interval) => {}
                command = commands.recv() => pending = command,
            }
        }
    }

    /// One poll cycle, then a reconcile when one is due. Cycle failures
    /// are counted and logged; only commit failures and an unserved set end
    /// the worker.
    async fn poll(
        &self,
        cursor: &mut Option<Cursor>,
        last_reconcile: &mut chrono::DateTime<Utc>,
    ) -> Result<(), WorkerError> {
        {
            let started = std::time::Instant::now();
            match self.cycle(cursor.clone()).await {
                Ok(next) => {
                    *cursor = next.or(cursor.take());
                    let entity = self.entity();
                    self.shared
                        .metrics
                        .polls
                        .with_label_values(&[entity, "ok"])
                        .inc();
                    self.shared
                        .metrics
                        .poll_duration
                        .with_label_values(&[entity])
                        .observe(started.elapsed().as_secs_f64());
                    self.shared
                        .metrics
                        .last_success
                        .with_label_values(&[entity])
                        .set(Utc::now().timestamp() as f64);
                    if let Some(c) = &cursor
                        && let Ok(local) = parse_local(&c.opdateringsdato)
                    {
                        let lag =
                            (Utc::now() - local_to_utc(local)).num_milliseconds() as f64 / 1000.0;
                        self.shared
                            .metrics
                            .source_lag
                            .with_label_values(&[entity])
                            .set(lag.max(0.0));
                    }
                    self.shared.health.set_ok("poll");
                }
                Err(CycleError::Commit(e)) => return Err(e.into()),
                Err(CycleError::Shutdown) => return Ok(()),
                Err(CycleError::Fetch(FetchError::NotFound)) => {
                    return Err(WorkerError::NotServed(self.plan.entity.clone()));
                }
                Err(error) => self.failed_cycle(&error),
            }
            let due = chrono::Duration::from_std(self.plan.reconcile_interval)
                .unwrap_or(chrono::Duration::days(1));
            if Utc::now() - *last_reconcile >= due {
                match self.reconcile().await {
                    Ok(()) => *last_reconcile = Utc::now(),
                    Err(CycleError::Commit(e)) => return Err(e.into()),
                    Err(CycleError::Shutdown) => return Ok(()),
                    Err(error) => self.failed_cycle(&error),
                }
            }
        }
        Ok(())
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

    async fn fetch(&self, query: &Query) -> Result<Page, CycleError> {
        tokio::select! {
            _ = self.shutdown.cancelled() => Err(CycleError::Shutdown),
            page = self.shared.client.page(self.entity(), query) => Ok(page?),
        }
    }

    /// Hands a batch to the committer.
    async fn submit(
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
    async fn commit_now(
        &self,
        records: Vec<Outgoing>,
        state: Vec<(i64, Option<String>)>,
        checkpoint: Vec<Update>,
    ) -> Result<(), CommitError> {
        let ack = self.submit(records, state, checkpoint).await?;
        ack.await.unwrap_or(Err(CommitError::Stopped))
    }

    /// Turns source records into events, deciding per id against the
    /// published state (which it updates).
    fn events(
        &self,
        records: Vec<Map<String, Value>>,
        keys: &[RowKey],
        mode: Mode<'_>,
    ) -> (Vec<Outgoing>, Vec<(i64, Option<String>)>) {
        let polled_at = Utc::now();
        let entity = self.entity();
        let mut out = Vec::with_capacity(records.len());
        let mut state_changes = Vec::with_capacity(records.len());
        let mut state = match self.shared.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        for (mut record, key) in records.into_iter().zip(keys) {
            for field in &self.plan.exclude_fields {
                record.remove(field);
            }
            let hash = content_hash(&record);
            let op = match (state.decide(entity, key.id, &hash), mode) {
                // A requested backfill re-sends every row (SPEC §5.3's exception).
                (_, Mode::Backfill(_)) => Op::Read,
                (Decision::Unchanged, _) => {
                    self.shared
                        .metrics
                        .skipped
                        .with_label_values(&[entity, "unchanged"])
                        .inc();
                    continue;
                }
                (_, Mode::Snapshot) => Op::Read,
                (Decision::New, Mode::Stream) => Op::Create,
                (Decision::Changed, Mode::Stream) => Op::Update,
            };
            let event = ChangeEvent::new(
                op,
                entity,
                key.id,
                Some(record),
                key.literal.clone(),
                self.shared.client.base_url(),
                polled_at,
            );
            let mut headers = vec![
                (headers::ENTITY, entity.to_owned()),
                (headers::OP, op.code().to_owned()),
                (headers::HASH, hash.clone()),
                (
                    headers::CONTENT_TYPE,
                    self.shared.encoder.content_type().to_owned(),
                ),
            ];
            if let Some(literal) = &key.literal {
                headers.push((headers::OPDATERINGSDATO, literal.clone()));
            }
            if let Mode::Backfill(request) = mode {
                headers.push((headers::BACKFILL, request.to_owned()));
            }
            self.note_unknown_fields(&event);
            match self.shared.encoder.encode(&event) {
                Ok(payload) => out.push(Outgoing {
                    topic: self.plan.topic.clone(),
                    key: event.key(),
                    payload: Some(payload),
                    headers,
                }),
                Err(error) => {
                    // Counts as published (SPEC §5): the raw record goes to
                    // the dead-letter topic in this same transaction.
                    tracing::warn!(entity, id = key.id, %error, "Record cannot be encoded; dead-lettered.");
                    out.push(self.dead_letter(&event, &error.to_string()));
                    state.set(entity, key.id, &hash);
                    state_changes.push((key.id, Some(hash)));
                    self.shared
                        .metrics
                        .dlq
                        .with_label_values(&["oda-producer"])
                        .inc();
                    continue;
                }
            }
            state.set(entity, key.id, &hash);
            state_changes.push((key.id, Some(hash)));
            self.shared
                .metrics
                .published
                .with_label_values(&[entity, op.code()])
                .inc();
        }
        (out, state_changes)
    }

    /// One poll cycle from `cursor − lookback`; returns the new cursor.
    async fn cycle(&self, cursor: Option<Cursor>) -> Result<Option<Cursor>, CycleError> {
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
                let page = self.fetch(&keyset::tie_query(at, after)).await?;
                let keys = keyset::check_tie(&page, at, after)?;
                let more = keyset::has_more(&page);
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
                if !more {
                    break;
                }
            }
            let page = self.fetch(&keyset::advance_query(at)).await?;
            let keys = keyset::check_advance(&page, at)?;
            let more = keyset::has_more(&page);
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

    /// Finds ids that vanished from the source: lists every id by keyset,
    /// confirms each missing one by key (so a row merely moving while the
    /// list is read is never taken for a delete), then publishes `d` and a
    /// tombstone. Sets whose timestamp may be null are swept in full, so
    /// their changes are found by hash too.
    async fn reconcile(&self) -> Result<(), CycleError> {
        let started = std::time::Instant::now();
        let mut seen = std::collections::HashSet::new();
        let mut after = i64::MIN;
        let mut in_flight = InFlight::new(4);
        loop {
            let mut query = keyset::id_range_query(after, i64::MAX);
            if !self.plan.sweep {
                query = query.select("id");
            }
            let page = self.fetch(&query).await?;
            let keys = keyset::check_id_range(&page, after, i64::MAX)?;
            let more = keyset::has_more(&page);
            seen.extend(keys.iter().map(|k| k.id));
            if self.plan.sweep && !keys.is_empty() {
                let (events, state) = self.events(page.records, &keys, Mode::Stream);
                if !events.is_empty() {
                    in_flight
                        .push(self.submit(events, state, Vec::new()).await?)
                        .await?;
                }
            }
            match keys.last() {
                Some(last) if more => after = last.id,
                _ => break,
            }
        }
        let published = match self.shared.state.lock() {
            Ok(state) => state.ids(self.entity()),
            Err(poisoned) => poisoned.into_inner().ids(self.entity()),
        };
        let missing: Vec<i64> = published
            .into_iter()
            .filter(|id| !seen.contains(id))
            .collect();
        let mut deleted = 0;
        for id in missing {
            let confirmed = tokio::select! {
                _ = self.shutdown.cancelled() => return Err(CycleError::Shutdown),
                found = self.shared.client.by_key(self.entity(), id) => found?.is_none(),
            };
            if !confirmed {
                continue;
            }
            in_flight
                .push(
                    self.submit(self.delete_records(id), vec![(id, None)], Vec::new())
                        .await?,
                )
                .await?;
            if let Ok(mut state) = self.shared.state.lock() {
                state.remove(self.entity(), id);
            }
            deleted += 1;
        }
        let count = seen.len() as f64;
        let alive = match self.shared.state.lock() {
            Ok(state) => state.len(self.entity()),
            Err(poisoned) => poisoned.into_inner().len(self.entity()),
        } as f64;
        let ratio = if count > 0.0 { alive / count } else { 1.0 };
        self.shared
            .metrics
            .completeness
            .with_label_values(&[self.entity()])
            .set(ratio);
        let at = Utc::now().to_rfc3339();
        in_flight
            .push(
                self.submit(Vec::new(), Vec::new(), vec![Update::Reconciled(at)])
                    .await?,
            )
            .await?;
        in_flight.drain().await?;
        tracing::info!(
            entity = self.entity(),
            source_ids = seen.len(),
            deleted,
            took_ms = started.elapsed().as_millis() as u64,
            "Reconciled ids."
        );
        Ok(())
    }

    /// A `d` event and its tombstone (SPEC §3).
    fn delete_records(&self, id: i64) -> Vec<Outgoing> {
        let entity = self.entity();
        let event = ChangeEvent::new(
            Op::Delete,
            entity,
            id,
            None,
            None,
            self.shared.client.base_url(),
            Utc::now(),
        );
        let headers = vec![
            (headers::ENTITY, entity.to_owned()),
            (headers::OP, Op::Delete.code().to_owned()),
        ];
        let mut event_headers = headers.clone();
        event_headers.push((headers::CONTENT_TYPE, headers::JSON.to_owned()));
        self.shared
            .metrics
            .published
            .with_label_values(&[entity, "d"])
            .inc();
        vec![
            Outgoing {
                topic: self.plan.topic.clone(),
                key: event.key(),
                payload: Some(event.to_json()),
                headers: event_headers,
            },
            Outgoing {
                topic: self.plan.topic.clone(),
                key: event.key(),
                payload: None,
                headers,
            },
        ]
    }

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

    async fn start_now(&self) -> Result<Option<Cursor>, CycleError> {
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

    async fn start_at(&self, at: NaiveDateTime) -> Result<Option<Cursor>, CycleError> {
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
    async fn start_snapshot(&self) -> Result<SnapshotProgress, CycleError> {
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
    async fn snapshot(
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
    async fn read_range(
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
            let page = self.fetch(&query).await?;
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
            let (events, state) = self.events(page.records, &keys, mode);
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
    async fn ranges(&self) -> Result<Vec<IdRange>, CycleError> {
        Ok(
            match (self.edge_id(false).await?, self.edge_id(true).await?) {
                (Some(min), Some(max)) => split(min - 1, max, self.shared.snapshot_ranges),
                _ => Vec::new(),
            },
        )
    }

    /// SPEC §8's letter for a record the producer cannot encode: the raw
    /// JSON from the source as the value, the id as the key.
    fn dead_letter(&self, event: &ChangeEvent, message: &str) -> Outgoing {
        let raw = event
            .after
            .as_ref()
            .map(|record| serde_json::to_vec(record).unwrap_or_default());
        Outgoing {
            topic: self.shared.dlq_topic.clone(),
            key: event.key(),
            payload: raw,
            headers: vec![
                (headers::ENTITY, event.entity.clone()),
                ("dlq.processor", "oda-producer".to_owned()),
                ("dlq.error.kind", "encode".to_owned()),
                ("dlq.error.message", message.to_owned()),
                ("dlq.attempts", "1".to_owned()),
                (
                    "dlq.failed.at",
                    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                ),
            ],
        }
    }

    /// Counts fields the entity model does not know and logs each once.
    fn note_unknown_fields(&self, event: &ChangeEvent) {
        let (Some(record), Some(set)) =
            (&event.after, oda_cdc_core::model::entity_set(&event.entity))
        else {
            return;
        };
        for name in record.keys().filter(|k| set.field(k).is_none()) {
            self.shared
                .metrics
                .unknown_fields
                .with_label_values(&[&event.entity])
                .inc();
            let first = self
                .shared
                .unknown_logged
                .lock()
                .map(|mut seen| seen.insert((event.entity.clone(), name.clone())))
                .unwrap_or(false);
            if first {
                tracing::warn!(entity = %event.entity, field = %name, "The source sends a field the schema does not know; it travels in `extra`.");
            }
        }
    }

    /// A report for the signals topic, committed with the work it reports.
    fn signal_record(&self, report: &Signal) -> Outgoing {
        Outgoing {
            topic: self.shared.signals_topic.clone(),
            key: self.plan.entity.clone(),
            payload: Some(report.to_json()),
            headers: Vec::new(),
        }
    }

    /// Runs an operator's request.
    async fn command(
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
                let record = Outgoing {
                    topic: self.shared.signals_topic.clone(),
                    key: self.plan.entity.clone(),
                    payload: Some(report.to_json()),
                    headers: Vec::new(),
                };
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
    async fn backfill_chunk(&self, backfill: &mut Backfill) -> Result<bool, CycleError> {
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
struct Backfill {
    progress: SnapshotProgress,
    read: u64,
}

/// How records of a page are published.
#[derive(Debug, Clone, Copy)]
enum Mode<'a> {
    /// Polling: `c` or `u`, unchanged rows skipped.
    Stream,
    /// The initial snapshot: `r`, unchanged rows (after a restart) skipped.
    Snapshot,
    /// A requested backfill: every row as `r`, marked with the request id.
    Backfill(&'a str),
}

/// How far before `cursor` a cycle re-reads: the lookback, plus the
/// repeated hour while the cursor or the window sits in it (after the
/// autumn change the source stamps rows 02:00–02:59 a second time, below a
/// cursor that already passed 02:59 in the first pass).
pub fn lookback_from(cursor: NaiveDateTime, lookback: chrono::Duration) -> chrono::Duration {
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

/// Splits `(after, to]` into `parts` ranges of about equal width.
pub fn split(after: i64, to: i64, parts: usize) -> Vec<IdRange> {
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
}
