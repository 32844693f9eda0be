//! An input record taken out of librdkafka's buffer once, in the shape the
//! runner and processors read: its headers as owned pairs, so neither a
//! detached message's header list nor a second copy of it is made per
//! record.

use oda_cdc_core::dead_letter::{header_text, owned_headers};
use rdkafka::message::{BorrowedMessage, Message};

/// One input record.
#[derive(Debug)]
pub(super) struct Received {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) offset: i64,
    /// Broker timestamp, epoch milliseconds.
    pub(super) timestamp: Option<i64>,
    pub(super) key: Option<Vec<u8>>,
    pub(super) payload: Option<Vec<u8>>,
    pub(super) headers: Vec<(String, Vec<u8>)>,
}

impl Received {
    pub(super) fn copy_of(message: &BorrowedMessage<'_>) -> Self {
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers: owned_headers(message),
        }
    }

    /// The key as text; `None` when absent or not UTF-8.
    pub(super) fn key_text(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
    }

    /// A header's value as text.
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        header_text(&self.headers, name)
    }
}
