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
    let header = |name: &str| {
        message.headers().and_then(|h| {
            h.iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
        })
    };
    runtime.block_on(decoder.decode(
        message.payload(),
        header(headers::CONTENT_TYPE),
        header(headers::ENTITY),
    ))
}
