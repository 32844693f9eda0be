//! Finding deletes: ODA keeps no tombstones, so every reconcile lists the
//! source's ids and compares them with what was published.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use chrono::Utc;
use oda_model::event::{ChangeEvent, Op, headers};
use oda_model::odatime;

use super::in_flight::InFlight;
use super::records::Mode;
use super::{CycleError, Worker};
use crate::checkpoint::Update;
use crate::committer::Outgoing;
use crate::keyset;

impl Worker {
    /// Finds ids that vanished from the source: lists every id by keyset,
    /// confirms each missing one by key (so a row merely moving while the
    /// list is read is never taken for a delete), then publishes `d` and a
    /// tombstone. Sets whose timestamp may be null are swept in full, so
    /// their changes are found by hash too.
    pub(super) async fn reconcile(&self) -> Result<(), CycleError> {
        let started = std::time::Instant::now();
        let mut seen = HashSet::new();
        let mut after = i64::MIN;
        let mut in_flight = InFlight::new(4);
        loop {
            let mut query = keyset::id_range_query(after, i64::MAX);
            if !self.plan.sweep {
                query = query.select("id");
            }
            // Malformed rows are the cycles' to letter; a listing skips them.
            let mut page = self.fetch(&query).await?;
            keyset::split_malformed(&mut page.records);
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
        // Counted once committed: a reconcile cut short publishes again.
        let metrics = &self.shared.metrics;
        let entity = self.entity();
        metrics
            .last_reconcile
            .with_label_values(&[entity])
            .set(Utc::now().timestamp() as f64);
        metrics
            .reconcile_ids
            .with_label_values(&[entity])
            .set(seen.len() as f64);
        metrics
            .deletes_confirmed
            .with_label_values(&[entity])
            .inc_by(deleted);
        tracing::info!(
            entity = self.entity(),
            source_ids = seen.len(),
            deleted,
            took_ms = started.elapsed().as_millis() as u64,
            "Reconciled ids."
        );
        Ok(())
    }

    /// A `d` event and its tombstone (contract.md#keys-and-headers).
    fn delete_records(&self, id: i64) -> Vec<Outgoing> {
        let entity = self.entity();
        let event = ChangeEvent::new(
            Op::Delete,
            entity,
            id,
            None,
            None,
            self.shared.client.base_url(),
            &odatime::format_utc(Utc::now()),
        );
        let headers: Vec<(&'static str, Cow<'static, str>)> = vec![
            (headers::ENTITY, entity.to_owned().into()),
            (headers::OP, Op::Delete.code().into()),
        ];
        // In the topic's own format: an Avro topic's readers (a plain
        // Confluent deserializer) must read the `d` event too.
        let (payload, content_type) = match self.shared.encoder.encode(&event) {
            Ok(bytes) => (bytes, self.shared.encoder.content_type()),
            Err(error) => {
                tracing::warn!(entity, id, %error, "The delete event cannot be encoded; written as JSON.");
                (event.to_json(), headers::JSON)
            }
        };
        let mut event_headers = headers.clone();
        event_headers.push((headers::CONTENT_TYPE, content_type.into()));
        self.shared
            .metrics
            .published
            .with_label_values(&[entity, "d"])
            .inc();
        vec![
            Outgoing {
                topic: Arc::clone(&self.plan.topic),
                key: event.key(),
                payload: Some(payload),
                headers: event_headers,
            },
            Outgoing {
                topic: Arc::clone(&self.plan.topic),
                key: event.key(),
                payload: None,
                headers,
            },
        ]
    }
}
