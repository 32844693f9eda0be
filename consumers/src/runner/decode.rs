//! Turning an entity-topic value back into a [`ChangeEvent`]: Avro in the
//! Confluent wire format (writer schema fetched from the registry once per
//! id and cached by the decoder), or JSON.

use oda_cdc_core::config::RegistrySettings;
use oda_cdc_core::registry::RegistryError;
use oda_model::avro::{avro_to_event, entity_set_by_avro_name};
use oda_model::entity::entity_set;
use oda_model::event::{ChangeEvent, headers};
use schema_registry_converter::async_impl::avro::AvroDecoder;

/// Why a value is not a change event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are wrong: the record goes to the dead-letter topic.
    #[error("{0}")]
    Invalid(String),
    /// The registry could not be asked: nothing is wrong with the record;
    /// the batch is retried.
    #[error("schema registry: {0}")]
    Unavailable(String),
}

/// Decodes values of either format; Avro needs a configured registry.
pub struct Decoder {
    avro: Option<AvroDecoder>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("avro", &self.avro.is_some())
            .finish()
    }
}

/// Confluent framing: magic byte 0, then a 4-byte schema id.
fn is_confluent_framed(value: &[u8]) -> bool {
    value.len() > 5 && value[0] == 0
}

impl Decoder {
    /// A decoder for both formats; a registry setting that cannot be used
    /// (a CA file that does not read) is an error here, at start.
    pub fn new(registry: &RegistrySettings) -> Result<Self, RegistryError> {
        Ok(Self {
            avro: Some(AvroDecoder::new(registry.sr_settings()?)),
        })
    }

    /// JSON only (no registry): Avro values are then invalid input.
    pub fn json_only() -> Self {
        Self { avro: None }
    }

    /// `Ok(None)` for a tombstone.
    pub async fn decode(
        &self,
        value: Option<&[u8]>,
        content_type: Option<&str>,
        entity_header: Option<&str>,
    ) -> Result<Option<ChangeEvent>, DecodeError> {
        let Some(value) = value else {
            return Ok(None);
        };
        let avro = match content_type {
            Some(headers::AVRO) => true,
            Some(headers::JSON) => false,
            _ => is_confluent_framed(value),
        };
        if avro {
            self.decode_avro(value, entity_header).await.map(Some)
        } else {
            serde_json::from_slice::<ChangeEvent>(value)
                .map(Some)
                .map_err(|e| DecodeError::Invalid(format!("not a JSON change event: {e}")))
        }
    }

    async fn decode_avro(
        &self,
        value: &[u8],
        entity_header: Option<&str>,
    ) -> Result<ChangeEvent, DecodeError> {
        let decoder = self.avro.as_ref().ok_or_else(|| {
            DecodeError::Invalid("an Avro value, and no schema registry is configured".into())
        })?;
        if !is_confluent_framed(value) {
            return Err(DecodeError::Invalid(
                "marked Avro but not in the Confluent wire format".into(),
            ));
        }
        let decoded = decoder.decode(Some(value)).await.map_err(|e| {
            if e.retriable {
                DecodeError::Unavailable(e.to_string())
            } else {
                DecodeError::Invalid(format!("Avro: {e}"))
            }
        })?;
        let set = decoded
            .name
            .as_ref()
            .and_then(|name| entity_set_by_avro_name(&name.fullname(None)))
            .or_else(|| entity_header.and_then(entity_set))
            .ok_or_else(|| {
                DecodeError::Invalid("the writer schema names no ODA entity set".into())
            })?;
        avro_to_event(set, &decoded.value).map_err(|e| DecodeError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use oda_model::event::Op;

    use super::*;

    #[tokio::test]
    async fn json_events_tombstones_and_garbage() {
        let decoder = Decoder::json_only();
        let event = ChangeEvent::new(
            Op::Create,
            "Sag",
            7,
            serde_json::json!({"id": 7}).as_object().cloned(),
            None,
            "http://x",
            chrono::Utc::now(),
        );
        let bytes = event.to_json();
        let decoded = decoder
            .decode(Some(&bytes), Some(headers::JSON), None)
            .await
            .expect("decodes");
        assert_eq!(decoded, Some(event));
        assert!(matches!(decoder.decode(None, None, None).await, Ok(None)));
        assert!(matches!(
            decoder.decode(Some(b"{not json"), None, None).await,
            Err(DecodeError::Invalid(_))
        ));
        // Avro framing without a registry is invalid input, not a crash.
        assert!(matches!(
            decoder
                .decode(Some(&[0, 0, 0, 0, 1, 2, 3]), Some(headers::AVRO), None)
                .await,
            Err(DecodeError::Invalid(_))
        ));
    }
}
