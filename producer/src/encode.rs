//! How change events become record values: JSON, or Avro in the Confluent
//! wire format (magic byte 0, the registry's schema id, the Avro datum).
//!
//! Avro schemas are registered once at start and their ids kept, so no
//! record costs a registry call; encoding itself is synchronous.

use std::collections::HashMap;
use std::sync::Arc;

use oda_cdc_core::registry::{RegistryClient, RegistryError};
use oda_model::avro::{envelope_schema, event_to_avro, render};
use oda_model::entity::entity_set;
use oda_model::event::{ChangeEvent, headers};

/// One entity's registered envelope schema.
#[derive(Debug)]
pub(crate) struct Registered {
    id: u32,
    schema: apache_avro::Schema,
}

/// The configured wire format.
#[derive(Debug, Clone)]
pub(crate) enum Encoder {
    Json,
    Avro(Arc<HashMap<String, Registered>>),
}

/// Why an event could not be encoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EncodeError {
    /// The record does not fit its schema (a type changed at the source):
    /// dead-letter it with its raw JSON.
    #[error(transparent)]
    Data(#[from] oda_model::avro::AvroError),
    #[error("no schema registered for entity {0}")]
    NoSchema(String),
    #[error("Avro writer: {0}")]
    Writer(String),
}

/// Why schemas could not be registered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SchemaError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("generated schema for {entity} does not parse: {message}")]
    Parse { entity: String, message: String },
}

/// The subject of an entity topic's values (TopicNameStrategy).
pub(crate) fn subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// Registers every entity's envelope schema under `<topic>-value`; an
/// incompatible change stops with the subject and the registry's reason.
pub(crate) async fn register(
    client: &RegistryClient,
    entities: &[(String, String)],
) -> Result<Encoder, SchemaError> {
    let mut registered = HashMap::new();
    for (entity, topic) in entities {
        let Some(set) = entity_set(entity) else {
            continue;
        };
        let text = render(&envelope_schema(set));
        let schema = apache_avro::Schema::parse_str(&text).map_err(|e| SchemaError::Parse {
            entity: entity.clone(),
            message: e.to_string(),
        })?;
        let id = client.register_avro(&subject(topic), &text).await?;
        tracing::info!(entity, subject = %subject(topic), id, "Schema registered.");
        registered.insert(entity.clone(), Registered { id, schema });
    }
    Ok(Encoder::Avro(Arc::new(registered)))
}

impl Encoder {
    pub(crate) fn content_type(&self) -> &'static str {
        match self {
            Encoder::Json => headers::JSON,
            Encoder::Avro(_) => headers::AVRO,
        }
    }

    pub(crate) fn encode(&self, event: &ChangeEvent) -> Result<Vec<u8>, EncodeError> {
        match self {
            Encoder::Json => Ok(event.to_json()),
            Encoder::Avro(schemas) => {
                let registered = schemas
                    .get(&event.entity)
                    .ok_or_else(|| EncodeError::NoSchema(event.entity.clone()))?;
                let set = entity_set(&event.entity)
                    .ok_or_else(|| EncodeError::NoSchema(event.entity.clone()))?;
                let value = event_to_avro(event, set)?;
                let datum =
                    apache_avro::writer::datum::GenericDatumWriter::builder(&registered.schema)
                        .build()
                        .and_then(|w| w.write_value_to_vec(value))
                        .map_err(|e| EncodeError::Writer(e.to_string()))?;
                let mut framed = Vec::with_capacity(datum.len() + 5);
                framed.push(0);
                framed.extend_from_slice(&registered.id.to_be_bytes());
                framed.extend_from_slice(&datum);
                Ok(framed)
            }
        }
    }
}
