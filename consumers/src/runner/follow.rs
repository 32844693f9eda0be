//! Decoding entity-topic records read outside the group (the tables a
//! processor keeps); the reading itself is [`oda_cdc_core::kafka::reader`].

use std::sync::Arc;

use oda_model::event::{ChangeEvent, headers};
use rdkafka::message::{BorrowedMessage, Headers, Message};

use crate::runner::decode::{DecodeError, Decoder};

/// Decodes an entity-topic message on a thread outside the runtime.
pub fn decode_blocking(
    runtime: &tokio::runtime::Handle,
    decoder: &Arc<Decoder>,
    message: &BorrowedMessage<'_>,
) -> Result<Option<ChangeEvent>, DecodeError> {
    runtime.block_on(decode_message(decoder, message))
}

/// Decodes an entity-topic message read outside the group, by the
/// content type and entity its headers name.
pub async fn decode_message(
    decoder: &Decoder,
    message: &impl Message,
) -> Result<Option<ChangeEvent>, DecodeError> {
    decoder
        .decode(
            message.payload(),
            header_text(message, headers::CONTENT_TYPE),
            header_text(message, headers::ENTITY),
        )
        .await
}

/// A header's value as text.
fn header_text<'a>(message: &'a impl Message, name: &str) -> Option<&'a str> {
    message.headers().and_then(|h| {
        h.iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    })
}
