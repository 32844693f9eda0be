//! The change event of contract.md#change-event and the headers of contract.md#keys-and-headers.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::odatime;

/// What happened to a record, from this pipeline's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// A snapshot or backfill read.
    #[serde(rename = "r")]
    Read,
    /// The first time this pipeline sees the id.
    #[serde(rename = "c")]
    Create,
    /// A later change.
    #[serde(rename = "u")]
    Update,
    /// The id vanished from the source.
    #[serde(rename = "d")]
    Delete,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Read => "r",
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
        }
    }
}

/// `source` of the envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub system: String,
    pub base_url: String,
    /// The source literal, Danish local time without an offset.
    pub opdateringsdato: Option<String>,
    /// RFC 3339 in JSON.
    pub opdateringsdato_utc: Option<String>,
    pub polled_at: String,
    pub snapshot: bool,
}

/// The value of every entity-topic record except tombstones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    pub op: Op,
    pub entity: String,
    pub id: i64,
    pub ts_ms: i64,
    pub source: Source,
    pub after: Option<Map<String, Value>>,
    /// Fields the Avro schema does not know; always `{}` in JSON.
    pub extra: Map<String, Value>,
}

/// Header names (contract.md#keys-and-headers).
pub mod headers {
    pub const ENTITY: &str = "oda.entity";
    pub const OP: &str = "oda.op";
    pub const OPDATERINGSDATO: &str = "oda.opdateringsdato";
    pub const HASH: &str = "oda.hash";
    pub const CONTENT_TYPE: &str = "content-type";
    pub const BACKFILL: &str = "oda.backfill";
    pub const JSON: &str = "application/json";
    pub const AVRO: &str = "application/vnd.oda-cdc+avro";
}

impl ChangeEvent {
    /// Builds the event for a record read from the source at `polled_at`
    /// (formatted by [`odatime::format_utc`], once for a whole page).
    pub fn new(
        op: Op,
        entity: &str,
        id: i64,
        after: Option<Map<String, Value>>,
        opdateringsdato: Option<String>,
        base_url: &str,
        polled_at: &str,
    ) -> Self {
        let utc = opdateringsdato
            .as_deref()
            .and_then(|l| odatime::parse_local(l).ok())
            .map(|local| odatime::format_utc(odatime::local_to_utc(local)));
        Self {
            op,
            entity: entity.to_owned(),
            id,
            ts_ms: chrono::Utc::now().timestamp_millis(),
            source: Source {
                system: crate::SOURCE_SYSTEM.to_owned(),
                base_url: base_url.to_owned(),
                opdateringsdato,
                opdateringsdato_utc: utc,
                polled_at: polled_at.to_owned(),
                snapshot: op == Op::Read,
            },
            after,
            extra: Map::new(),
        }
    }

    /// The record key of contract.md#keys-and-headers: the id as a decimal string.
    pub fn key(&self) -> String {
        self.id.to_string()
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Room for a typical event, so the buffer is not regrown while
        // writing; serializing owned JSON values into a Vec cannot fail.
        let mut out = Vec::with_capacity(512);
        let _ = serde_json::to_writer(&mut out, self);
        out
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use serde_json::json;

    use super::*;

    #[test]
    fn json_shape_follows_the_spec() {
        let after = json!({"id": 7, "navn": "Aktør", "opdateringsdato": "2026-10-25T02:30:00"});
        let polled = DateTime::parse_from_rfc3339("2026-10-25T03:00:00Z")
            .expect("t")
            .with_timezone(&Utc);
        let event = ChangeEvent::new(
            Op::Create,
            "Aktør",
            7,
            after.as_object().cloned(),
            Some("2026-10-25T02:30:00".into()),
            "https://oda.ft.dk/api",
            &odatime::format_utc(polled),
        );
        let value: Value = serde_json::from_slice(&event.to_json()).expect("json");
        assert_eq!(value["op"], "c");
        assert_eq!(value["entity"], "Aktør");
        assert_eq!(value["id"], 7);
        assert_eq!(
            value["source"]["system"],
            "Folketingets Åbne Data (oda.ft.dk)"
        );
        assert_eq!(
            value["source"]["opdateringsdato_utc"], "2026-10-25T00:30:00.000Z",
            "first occurrence"
        );
        assert_eq!(value["source"]["polled_at"], "2026-10-25T03:00:00.000Z");
        assert_eq!(value["source"]["snapshot"], false);
        assert_eq!(value["after"]["navn"], "Aktør");
        assert_eq!(value["extra"], json!({}));
        assert_eq!(event.key(), "7");
    }
}
