//! Turning an entity-topic value back into a [`ChangeEvent`]: Avro in the
//! Confluent wire format, or JSON.
//!
//! Writer schemas come from the registry once per id and are cached;
//! failures are not. A registry that is away, refuses our credentials or
//! answers 5xx says nothing about the record, so those are
//! [`DecodeError::Unavailable`] / [`DecodeError::Unauthorized`] and the
//! record is read again later; only bytes that cannot be decoded (no
//! framing, an id the registry does not know, data that does not fit its
//! schema) are [`DecodeError::Invalid`] and go to the dead-letter topic.

use std::sync::Arc;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use dashmap::DashMap;
use oda_cdc_core::config::RegistrySettings;
use oda_cdc_core::registry::{RegistryClient, RegistryError};
use oda_model::avro::{avro_to_event, entity_set_by_avro_name};
use oda_model::entity::entity_set;
use oda_model::event::{ChangeEvent, headers};

/// Why a value is not a change event (yet).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are wrong: the record goes to the dead-letter topic.
    #[error("{0}")]
    Invalid(String),
    /// The registry could not be asked: nothing is wrong with the record;
    /// the batch is read again after a pause.
    #[error("schema registry unavailable: {0}")]
    Unavailable(String),
    /// The registry refuses our credentials: nothing is wrong with the
    /// record either; retried for a while, then the service stops.
    #[error("{0}")]
    Unauthorized(String),
}

/// Decodes values of either format; Avro needs a configured registry.
pub struct Decoder {
    registry: Option<RegistryClient>,
    schemas: DashMap<u32, Arc<Schema>>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("registry", &self.registry.is_some())
            .field("schemas", &self.schemas.len())
            .finish()
    }
}

/// Confluent framing: magic byte 0, then a 4-byte schema id.
fn confluent_schema_id(value: &[u8]) -> Option<u32> {
    match value {
        [0, a, b, c, d, _, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

impl Decoder {
    /// A decoder for both formats; a registry setting that cannot be used
    /// (a CA file that does not read) is an error here, at start.
    pub fn new(registry: &RegistrySettings) -> Result<Self, RegistryError> {
        Ok(Self {
            registry: Some(registry.client()?),
            schemas: DashMap::new(),
        })
    }

    /// JSON only (no registry): Avro values are then invalid input.
    pub fn json_only() -> Self {
        Self {
            registry: None,
            schemas: DashMap::new(),
        }
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
            _ => confluent_schema_id(value).is_some(),
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
        let id = confluent_schema_id(value).ok_or_else(|| {
            DecodeError::Invalid("marked Avro but not in the Confluent wire format".into())
        })?;
        let schema = self.writer_schema(id).await?;
        let mut datum = &value[5..];
        let decoded = GenericDatumReader::builder(&schema)
            .build()
            .and_then(|reader| reader.read_value(&mut datum))
            .map_err(|e| DecodeError::Invalid(format!("Avro (schema {id}): {e}")))?;
        let name = match schema.as_ref() {
            Schema::Record(record) => Some(record.name.fullname(None)),
            _ => None,
        };
        let set = name
            .as_deref()
            .and_then(entity_set_by_avro_name)
            .or_else(|| entity_header.and_then(entity_set))
            .ok_or_else(|| {
                DecodeError::Invalid("the writer schema names no ODA entity set".into())
            })?;
        avro_to_event(set, &decoded).map_err(|e| DecodeError::Invalid(e.to_string()))
    }

    /// The writer schema of `id`, from the cache or the registry; only a
    /// schema that was found is cached.
    async fn writer_schema(&self, id: u32) -> Result<Arc<Schema>, DecodeError> {
        if let Some(schema) = self.schemas.get(&id) {
            return Ok(Arc::clone(&schema));
        }
        let registry = self.registry.as_ref().ok_or_else(|| {
            DecodeError::Invalid("an Avro value, and no schema registry is configured".into())
        })?;
        let text = registry
            .schema_by_id(id)
            .await
            .map_err(|error| match error {
                RegistryError::Unauthorized { .. } => DecodeError::Unauthorized(error.to_string()),
                RegistryError::UnknownSchema { .. } => DecodeError::Invalid(error.to_string()),
                error => DecodeError::Unavailable(error.to_string()),
            })?;
        let schema = Schema::parse_str(&text)
            .map_err(|e| DecodeError::Invalid(format!("schema {id} does not parse: {e}")))?;
        let schema = Arc::new(schema);
        self.schemas.insert(id, Arc::clone(&schema));
        Ok(schema)
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
            &oda_model::odatime::format_utc(chrono::Utc::now()),
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
