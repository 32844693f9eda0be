//! Turning source rows into what is published: the change event with its
//! headers, decided per id against the published state (new, changed,
//! unchanged), or a dead letter when it cannot be encoded.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::Utc;
use oda_cdc_core::dead_letter::{self, ErrorKind, Letter, headers as dlq};
use oda_model::entity::EntitySet;
use oda_model::event::{ChangeEvent, Op, headers};
use oda_model::hash::content_hash;
use oda_model::odatime;
use serde_json::{Map, Value};

use super::Worker;
use crate::committer::Outgoing;
use crate::keyset::RowKey;
use crate::signals::Signal;
use crate::state::Decision;

/// `dlq.processor` of the producer's letters and its metric label.
const PROCESSOR: &str = "oda-producer";

/// How records of a page are published.
#[derive(Debug, Clone, Copy)]
pub(super) enum Mode<'a> {
    /// Polling: `c` or `u`, unchanged rows skipped.
    Stream,
    /// The initial snapshot: `r`, unchanged rows (after a restart) skipped.
    Snapshot,
    /// A requested backfill: every row as `r`, marked with the request id.
    Backfill(&'a str),
}

/// What one page published, counted locally and added to the metrics
/// once: a labelled counter costs a hash and a lock per call.
#[derive(Debug, Default)]
struct Tally {
    unchanged: u64,
    dead_lettered: u64,
    /// Published per op: `r`, `c`, `u`.
    published: [u64; 3],
}

impl Tally {
    fn publish(&mut self, op: Op) {
        let slot = match op {
            Op::Create => 1,
            Op::Update => 2,
            Op::Read | Op::Delete => 0,
        };
        self.published[slot] += 1;
    }
}

impl Worker {
    /// Turns source records into events, deciding per id against the
    /// published state (which it updates).
    pub(super) fn events(
        &self,
        records: Vec<Map<String, Value>>,
        keys: &[RowKey],
        mode: Mode<'_>,
    ) -> (Vec<Outgoing>, Vec<(i64, Option<String>)>) {
        let polled_at = odatime::format_utc(Utc::now());
        let entity = self.entity();
        let set = oda_model::entity::entity_set(entity);
        let content_type = self.shared.encoder.content_type();
        let mut tally = Tally::default();
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
                // A requested backfill re-sends every row (contract.md#no-duplicates: the exception).
                (_, Mode::Backfill(_)) => Op::Read,
                (Decision::Unchanged, _) => {
                    tally.unchanged += 1;
                    continue;
                }
                (_, Mode::Snapshot) => Op::Read,
                (Decision::New, Mode::Stream) => Op::Create,
                (Decision::Changed, Mode::Stream) => Op::Update,
            };
            if let Some(set) = set {
                self.note_unknown_fields(set, &record);
            }
            let event = ChangeEvent::new(
                op,
                entity,
                key.id,
                Some(record),
                key.literal.clone(),
                self.shared.client.base_url(),
                &polled_at,
            );
            let mut headers: Vec<(&'static str, Cow<'static, str>)> = vec![
                (headers::ENTITY, entity.to_owned().into()),
                (headers::OP, op.code().into()),
                (headers::HASH, hash.clone().into()),
                (headers::CONTENT_TYPE, content_type.into()),
            ];
            if let Some(literal) = &key.literal {
                headers.push((headers::OPDATERINGSDATO, literal.clone().into()));
            }
            if let Mode::Backfill(request) = mode {
                headers.push((headers::BACKFILL, request.to_owned().into()));
            }
            let published = self
                .shared
                .encoder
                .encode(&event)
                .map_err(|error| error.to_string())
                .and_then(|payload| {
                    let record = Outgoing {
                        topic: Arc::clone(&self.plan.topic),
                        key: event.key(),
                        payload: Some(payload),
                        headers,
                    };
                    // Too large for its topic, it would abort every
                    // transaction it is in, after every restart.
                    match self.shared.limits.check(&record.topic, record.size(true)) {
                        Ok(()) => Ok(record),
                        Err(too_large) => {
                            Err(format!("the change event is too large: {too_large}"))
                        }
                    }
                });
            match published {
                Ok(record) => {
                    out.push(record);
                    tally.publish(op);
                }
                Err(error) => {
                    // Counts as published (contract.md#delivery-guarantees): the raw record goes to
                    // the dead-letter topic in this same transaction.
                    tracing::warn!(entity, id = key.id, %error, "Record cannot be published; dead-lettered.");
                    out.push(self.dead_letter(&event, &error));
                    tally.dead_lettered += 1;
                }
            }
            state.set(entity, key.id, &hash);
            state_changes.push((key.id, Some(hash)));
        }
        drop(state);
        self.count(&tally);
        (out, state_changes)
    }

    fn count(&self, tally: &Tally) {
        let metrics = &self.shared.metrics;
        let entity = self.entity();
        if tally.unchanged > 0 {
            metrics
                .skipped
                .with_label_values(&[entity, "unchanged"])
                .inc_by(tally.unchanged);
        }
        if tally.dead_lettered > 0 {
            metrics
                .dlq
                .with_label_values(&[PROCESSOR])
                .inc_by(tally.dead_lettered);
        }
        for (op, n) in [Op::Read, Op::Create, Op::Update]
            .iter()
            .zip(tally.published)
        {
            if n > 0 {
                metrics
                    .published
                    .with_label_values(&[entity, op.code()])
                    .inc_by(n);
            }
        }
    }

    /// The letter (contract.md#dead-letters) for a record the producer
    /// cannot encode: the raw JSON from the source as the value, the id as
    /// the key.
    fn dead_letter(&self, event: &ChangeEvent, message: &str) -> Outgoing {
        let raw = event
            .after
            .as_ref()
            .map(|record| serde_json::to_vec(record).unwrap_or_default());
        let letter = Letter {
            processor: PROCESSOR,
            kind: ErrorKind::Encode,
            message,
            attempts: 1,
            origin: None,
        };
        let mut headers = vec![(headers::ENTITY, event.entity.clone())];
        headers.extend(letter.headers());
        self.letter(event.key(), raw, headers)
    }

    /// A letter to the dead-letter topic, its value left out (and said so)
    /// when the topic cannot take it.
    fn letter(
        &self,
        key: String,
        raw: Option<Vec<u8>>,
        headers: Vec<(&'static str, String)>,
    ) -> Outgoing {
        let mut record = Outgoing {
            topic: self.shared.topics.dlq().into(),
            key,
            payload: None,
            headers: headers.into_iter().map(|(n, v)| (n, v.into())).collect(),
        };
        let (payload, omitted) =
            dead_letter::fit_value(&self.shared.limits, &record.topic, record.size(false), raw);
        record.payload = payload;
        if let Some(note) = omitted {
            record.headers.push((dlq::VALUE_OMITTED, note.into()));
        }
        record
    }

    /// Letters for source rows whose key cannot be read (contract.md#dead-letters):
    /// the raw row as the value, its id (when it has one) as the key. A row
    /// already lettered by this process is not lettered again.
    pub(super) fn malformed_letters(
        &self,
        rows: Vec<(Map<String, Value>, crate::keyset::Violation)>,
    ) -> Vec<Outgoing> {
        if rows.is_empty() {
            return Vec::new();
        }
        let entity = self.entity();
        let mut lettered = match self.lettered.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut out = Vec::new();
        for (row, violation) in rows {
            if !lettered.insert(content_hash(&row)) {
                continue;
            }
            let message = format!("{entity}: {violation}; the row is skipped, the others go on");
            tracing::warn!(entity, %violation, "Malformed source row; dead-lettered.");
            let letter = Letter {
                processor: PROCESSOR,
                kind: ErrorKind::Encode,
                message: &message,
                attempts: 1,
                origin: None,
            };
            let mut headers = vec![(headers::ENTITY, entity.to_owned())];
            headers.extend(letter.headers());
            self.shared
                .metrics
                .dlq
                .with_label_values(&[PROCESSOR])
                .inc();
            out.push(
                self.letter(
                    row.get("id")
                        .map_or_else(|| "malformed".to_owned(), |id| id.to_string()),
                    serde_json::to_vec(&row).ok(),
                    headers,
                ),
            );
        }
        out
    }

    /// Counts fields the entity model does not know and logs each once.
    fn note_unknown_fields(&self, set: &EntitySet, record: &Map<String, Value>) {
        for name in record.keys().filter(|k| set.field(k).is_none()) {
            self.shared
                .metrics
                .unknown_fields
                .with_label_values(&[&set.name])
                .inc();
            let first = self
                .shared
                .unknown_logged
                .lock()
                .map(|mut seen| seen.insert((set.name.clone(), name.clone())))
                .unwrap_or(false);
            if first {
                tracing::warn!(entity = %set.name, field = %name, "The source sends a field the schema does not know; it travels in `extra`.");
            }
        }
    }

    /// A report for the signals topic, committed with the work it reports.
    pub(super) fn signal_record(&self, report: &Signal) -> Outgoing {
        Outgoing {
            topic: self.shared.topics.signals().into(),
            key: self.plan.entity.clone(),
            payload: Some(report.to_json()),
            headers: Vec::new(),
        }
    }
}
