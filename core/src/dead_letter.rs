//! The dead letter of contract.md#dead-letters, one builder for the
//! producer and the processors: the original key and value untouched, the
//! original headers kept (a redrive restores them), and `dlq.*` headers
//! saying where it came from and why. Earlier `dlq.*` headers are replaced,
//! never repeated, so a record dead-lettered again does not grow.

use chrono::{SecondsFormat, Utc};

use crate::kafka::RecordLimits;

/// Header names of contract.md#dead-letters.
pub mod headers {
    pub const ORIGINAL_TOPIC: &str = "dlq.original.topic";
    pub const ORIGINAL_PARTITION: &str = "dlq.original.partition";
    pub const ORIGINAL_OFFSET: &str = "dlq.original.offset";
    pub const CONSUMER_GROUP: &str = "dlq.consumer.group";
    pub const PROCESSOR: &str = "dlq.processor";
    pub const ERROR_KIND: &str = "dlq.error.kind";
    pub const ERROR_MESSAGE: &str = "dlq.error.message";
    pub const ATTEMPTS: &str = "dlq.attempts";
    pub const FAILED_AT: &str = "dlq.failed.at";
    /// Set when the original value was too large for the dead-letter
    /// topic and is not in the letter: its size and where to find it.
    pub const VALUE_OMITTED: &str = "dlq.value.omitted";
    /// The prefix every header above shares.
    pub const PREFIX: &str = "dlq.";
}

/// Why a record was dead-lettered (`dlq.error.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The value is not a change event (bytes, schema, JSON).
    Decode,
    /// The processor refused the record for good.
    Processing,
    /// A retryable error that did not clear within `consumer.max_retries`.
    Timeout,
    /// The producer cannot encode a source record (a type that changed).
    Encode,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Decode => "decode",
            ErrorKind::Processing => "processing",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Encode => "encode",
        }
    }
}

/// Where a processor read the failed record.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub group: &'a str,
}

/// Why and by whom a record is dead-lettered.
#[derive(Debug, Clone, Copy)]
pub struct Letter<'a> {
    /// `dlq.processor`: the binary that gave up (`oda-producer`, a processor).
    pub processor: &'a str,
    pub kind: ErrorKind,
    pub message: &'a str,
    /// Attempts so far, earlier runs' included ([`earlier_attempts`]).
    pub attempts: u32,
    /// Where a consumer read the record; `None` for the producer, whose
    /// records come from the source, not from a topic.
    pub origin: Option<Origin<'a>>,
}

/// Room kept in a letter for the `dlq.value.omitted` header.
const NOTE_ROOM: usize = 128;

/// Longest `dlq.error.message` kept: a header is no place for a dump.
const MAX_MESSAGE: usize = 2_000;

impl Letter<'_> {
    /// The `dlq.*` headers of this letter, the message cut on a character
    /// boundary at [`MAX_MESSAGE`] bytes.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut message = self.message.to_owned();
        if message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let mut out = Vec::with_capacity(9);
        if let Some(origin) = self.origin {
            out.push((headers::ORIGINAL_TOPIC, origin.topic.to_owned()));
            out.push((headers::ORIGINAL_PARTITION, origin.partition.to_string()));
            out.push((headers::ORIGINAL_OFFSET, origin.offset.to_string()));
            out.push((headers::CONSUMER_GROUP, origin.group.to_owned()));
        }
        out.push((headers::PROCESSOR, self.processor.to_owned()));
        out.push((headers::ERROR_KIND, self.kind.as_str().to_owned()));
        out.push((headers::ERROR_MESSAGE, message));
        out.push((headers::ATTEMPTS, self.attempts.to_string()));
        out.push((
            headers::FAILED_AT,
            Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        ));
        out
    }
}

/// A letter's value as it can be written to `topic`: whole when the
/// letter fits, else left out with the note for [`headers::VALUE_OMITTED`]
/// (a letter that cannot hold the record still says what happened; the
/// original stays where its provenance points, and `oda-replay dlq
/// redrive` skips the letter). `size_without_value` is the letter's
/// [`record_size`](crate::kafka::record_size) with no value (room for
/// the note is added here).
pub fn fit_value(
    limits: &RecordLimits,
    topic: &str,
    size_without_value: usize,
    value: Option<Vec<u8>>,
) -> (Option<Vec<u8>>, Option<String>) {
    let length = value.as_ref().map_or(0, Vec::len);
    let size = size_without_value + NOTE_ROOM;
    match limits.check(topic, size + length) {
        Ok(()) => (value, None),
        Err(too_large) => (
            None,
            Some(format!(
                "{length} bytes, more than the {} bytes topic {topic} takes",
                too_large.limit
            )),
        ),
    }
}

/// Attempts a record already had before this run (a redriven letter
/// carries its count), so the count goes on rather than restarting.
pub fn earlier_attempts(headers: &[(String, Vec<u8>)]) -> u32 {
    header_text(headers, headers::ATTEMPTS)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The first header named `name`, as text; `None` when absent or not UTF-8.
pub fn header_text<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// A consumed record's headers for its letter: the original ones without
/// any `dlq.*`, then the letter's.
pub fn letter_headers(
    original: &[(String, Vec<u8>)],
    letter: &Letter<'_>,
) -> Vec<(String, Vec<u8>)> {
    original
        .iter()
        .filter(|(n, _)| !n.starts_with(headers::PREFIX))
        .cloned()
        .chain(
            letter
                .headers()
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value.into_bytes())),
        )
        .collect()
}

/// A record's headers as owned pairs (a header without a value as empty).
pub fn owned_headers(message: &impl rdkafka::Message) -> Vec<(String, Vec<u8>)> {
    use rdkafka::message::Headers;
    message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(kind: ErrorKind, message: &str, attempts: u32) -> Letter<'_> {
        Letter {
            processor: "oda-normalize",
            kind,
            message,
            attempts,
            origin: Some(Origin {
                topic: "parliament-sag",
                partition: 3,
                offset: 42,
                group: "g",
            }),
        }
    }

    #[test]
    fn a_second_letter_replaces_the_dlq_headers_and_counts_on() {
        let original = vec![("oda.entity".to_owned(), b"Sag".to_vec())];
        let first = letter_headers(&original, &letter(ErrorKind::Timeout, "slow", 4));
        assert_eq!(first.len(), 10);
        assert_eq!(earlier_attempts(&first), 4);
        let again = letter_headers(&first, &letter(ErrorKind::Processing, "bad", 5));
        assert_eq!(again.len(), first.len(), "headers do not grow");
        assert_eq!(earlier_attempts(&again), 5);
        let kind: Vec<_> = again
            .iter()
            .filter(|(n, _)| n == headers::ERROR_KIND)
            .collect();
        assert_eq!(kind.len(), 1);
        assert_eq!(kind[0].1, b"processing");
        assert_eq!(again[0], ("oda.entity".to_owned(), b"Sag".to_vec()));
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let long = "ø".repeat(3_000);
        let headers = letter_headers(&[], &letter(ErrorKind::Decode, &long, 1));
        let message = &headers
            .iter()
            .find(|(n, _)| n == headers::ERROR_MESSAGE)
            .expect("message")
            .1;
        assert!(message.len() <= MAX_MESSAGE + 3);
        assert!(std::str::from_utf8(message).is_ok());
    }

    #[test]
    fn a_value_too_large_for_the_letter_is_left_out_with_a_note() {
        let limits = RecordLimits::client(&crate::config::KafkaSettings::default());
        let (kept, note) = fit_value(&limits, "dlq", 600, Some(vec![b'x'; 1000]));
        assert_eq!(kept.map(|v| v.len()), Some(1000));
        assert!(note.is_none());
        let (kept, note) = fit_value(&limits, "dlq", 600, Some(vec![b'x'; 2 << 20]));
        assert!(kept.is_none());
        let note = note.expect("a note");
        assert!(note.starts_with("2097152 bytes"), "{note}");
        assert!(note.contains("topic dlq"), "{note}");
    }

    #[test]
    fn a_producer_letter_has_no_consumer_origin() {
        let producer = Letter {
            processor: "oda-producer",
            kind: ErrorKind::Encode,
            message: "Sag.typeid: not an int",
            attempts: 1,
            origin: None,
        };
        let names: Vec<&str> = producer.headers().iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                headers::PROCESSOR,
                headers::ERROR_KIND,
                headers::ERROR_MESSAGE,
                headers::ATTEMPTS,
                headers::FAILED_AT
            ]
        );
        assert!(
            producer
                .headers()
                .contains(&(headers::ERROR_KIND, "encode".to_owned()))
        );
    }
}
