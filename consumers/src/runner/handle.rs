//! One record through the processor: decoded, processed with bounded
//! retries, and turned into outputs or a dead letter.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use oda_cdc_core::dead_letter::{self, ErrorKind, Letter, Origin, headers as dlq};
use oda_cdc_core::kafka::{RecordLimits, TooLarge, record_size};
use oda_model::event::headers as event_headers;

use super::decode::DecodeError;
use super::processor::{Input, ProcessError, Processor};
use super::received::Received;
use super::write::Outgoing;
use super::{SessionError, Shared};

/// Where a session's outputs go and how large they may be.
pub(super) struct Targets {
    /// Input topic → its processor's default output topic.
    defaults: HashMap<String, String>,
    /// Read at the session's start, so a topic reconfigured since is seen
    /// by the next session.
    limits: RecordLimits,
}

impl Targets {
    pub(super) fn new(limits: RecordLimits) -> Self {
        Self {
            defaults: HashMap::new(),
            limits,
        }
    }

    /// The processor's output topic for records of `input`, worked out
    /// once per input topic.
    fn default_topic<P: Processor>(&mut self, shared: &Shared, input: &str) -> &str {
        if !self.defaults.contains_key(input) {
            let topic = P::output_topic(&shared.context.settings, &shared.context.topics, input);
            self.defaults.insert(input.to_owned(), topic);
        }
        self.defaults.get(input).map_or("", String::as_str)
    }

    fn check(&self, record: &Outgoing) -> Result<(), TooLarge> {
        self.limits.check(&record.topic, size(record, true))
    }
}

/// A record's size as the limits count it, with or without its value.
fn size(record: &Outgoing, with_value: bool) -> usize {
    record_size(
        record.key.as_ref().map_or(0, Vec::len),
        if with_value {
            record.value.as_ref().map_or(0, Vec::len)
        } else {
            0
        },
        record
            .headers
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_slice())),
    )
}

/// Decodes and processes one record, appending what it yields (outputs,
/// or a dead letter) to `outgoing`.
pub(super) async fn handle<P: Processor>(
    shared: &Shared,
    processor: &mut P,
    message: &Received,
    targets: &mut Targets,
    retry_budget: &mut Duration,
    outgoing: &mut Vec<Outgoing>,
) -> Result<(), SessionError> {
    let started = Instant::now();
    let earlier = dead_letter::earlier_attempts(&message.headers);
    let decoded = if processor.decodes(&message.topic) {
        shared
            .decoder
            .decode(
                message.payload.as_deref(),
                message.header(event_headers::CONTENT_TYPE),
                message.header(event_headers::ENTITY),
            )
            .await
    } else {
        Ok(None)
    };
    let event = match decoded {
        Ok(event) => event,
        Err(DecodeError::Invalid(reason)) => {
            outgoing.push(letter::<P>(
                shared,
                &targets.limits,
                message,
                ErrorKind::Decode,
                &reason,
                earlier + 1,
            ));
            return Ok(());
        }
        Err(unavailable) => return Err(unavailable.into()),
    };
    let input = Input {
        topic: &message.topic,
        partition: message.partition,
        offset: message.offset,
        timestamp: message.timestamp,
        key: message.key_text(),
        value: message.payload.as_deref(),
        headers: &message.headers,
        event: event.as_ref(),
    };
    let mut attempts = 0;
    let outcome = loop {
        attempts += 1;
        match processor.process(&input) {
            Ok(outputs) => break Ok(outputs),
            Err(ProcessError::Permanent(reason)) => break Err((ErrorKind::Processing, reason)),
            Err(ProcessError::Retryable(reason)) => {
                let pause = backoff(attempts);
                if attempts > shared.max_retries || pause > *retry_budget {
                    break Err((ErrorKind::Timeout, reason));
                }
                shared
                    .metrics
                    .records
                    .with_label_values(&[P::NAME, "retried"])
                    .inc();
                *retry_budget -= pause;
                tokio::time::sleep(pause).await;
            }
        }
    };
    shared
        .per_record
        .duration
        .observe(started.elapsed().as_secs_f64());
    let outcome = outcome.and_then(|outputs| {
        let default_topic = targets.default_topic::<P>(shared, &message.topic);
        let records: Vec<Outgoing> = outputs
            .into_iter()
            .map(|output| Outgoing {
                topic: output.topic.unwrap_or_else(|| default_topic.to_owned()),
                partition: output.partition,
                key: output
                    .key
                    .map(String::into_bytes)
                    .or_else(|| message.key.clone()),
                value: output.value,
                headers: output.headers,
            })
            .collect();
        // An output the topic cannot take would abort every transaction
        // it is in: the input is dead-lettered instead, and the stream goes
        // on (contract.md#records-too-large).
        match records.iter().find_map(|r| targets.check(r).err()) {
            None => Ok(records),
            Some(too_large) => Err((
                ErrorKind::Processing,
                format!("the output is too large: {too_large}"),
            )),
        }
    });
    match outcome {
        Ok(records) => {
            outgoing.extend(records);
            shared.per_record.processed.inc();
        }
        Err((kind, reason)) => {
            tracing::warn!(
                topic = message.topic,
                partition = message.partition,
                offset = message.offset,
                kind = kind.as_str(),
                %reason,
                "Record dead-lettered."
            );
            outgoing.push(letter::<P>(
                shared,
                &targets.limits,
                message,
                kind,
                &reason,
                earlier + attempts,
            ));
        }
    }
    Ok(())
}

/// The pause before retry `attempt` (1-based): 100 ms doubling, at most 5 s.
fn backoff(attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(6);
    (Duration::from_millis(100) * factor).min(Duration::from_secs(5))
}

/// The letter for `message`, its value left out when the dead-letter
/// topic cannot take it.
fn letter<P: Processor>(
    shared: &Shared,
    limits: &RecordLimits,
    message: &Received,
    kind: ErrorKind,
    reason: &str,
    attempts: u32,
) -> Outgoing {
    shared.metrics.dlq.with_label_values(&[P::NAME]).inc();
    shared
        .metrics
        .records
        .with_label_values(&[P::NAME, "dead_lettered"])
        .inc();
    let letter = Letter {
        processor: P::NAME,
        kind,
        message: reason,
        attempts,
        origin: Some(Origin {
            topic: &message.topic,
            partition: message.partition,
            offset: message.offset,
            group: &shared.group,
        }),
    };
    let mut record = Outgoing {
        topic: shared.context.topics.dlq().to_owned(),
        partition: None,
        key: message.key.clone(),
        value: None,
        headers: dead_letter::letter_headers(&message.headers, &letter),
    };
    let (value, omitted) = dead_letter::fit_value(
        limits,
        &record.topic,
        size(&record, false),
        message.payload.clone(),
    );
    record.value = value;
    if let Some(note) = omitted {
        record
            .headers
            .push((dlq::VALUE_OMITTED.to_owned(), note.into_bytes()));
    }
    record
}
