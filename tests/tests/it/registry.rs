//! Avro through the real registry: registration, Confluent framing with
//! schema_registry_converter, decoding, and BACKWARD compatibility.

use apache_avro::types::Value;
use oda_cdc_core::registry::RegistryError;
use oda_cdc_testkit::{registry, unique};
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::schema_registry_common::SubjectNameStrategy;

/// A small record with a Danish name restored through `oda.name`.
pub(crate) const VOTE_V1: &str = r#"{
  "type": "record", "name": "Afstemning", "namespace": "dk.ft.oda.test",
  "fields": [
    {"name": "id", "type": "int"},
    {"name": "konklusion", "type": ["null", "string"], "default": null},
    {"name": "moedeid", "type": "int", "oda.name": "mødeid"},
    {"name": "vedtaget", "type": "boolean"}
  ]
}"#;

/// Adds an optional field with a default: BACKWARD-compatible.
const VOTE_V2_OPTIONAL: &str = r#"{
  "type": "record", "name": "Afstemning", "namespace": "dk.ft.oda.test",
  "fields": [
    {"name": "id", "type": "int"},
    {"name": "konklusion", "type": ["null", "string"], "default": null},
    {"name": "moedeid", "type": "int", "oda.name": "mødeid"},
    {"name": "vedtaget", "type": "boolean"},
    {"name": "kommentar", "type": ["null", "string"], "default": null}
  ]
}"#;

/// Adds a field without a default: new readers cannot read old data.
const VOTE_V3_REQUIRED: &str = r#"{
  "type": "record", "name": "Afstemning", "namespace": "dk.ft.oda.test",
  "fields": [
    {"name": "id", "type": "int"},
    {"name": "konklusion", "type": ["null", "string"], "default": null},
    {"name": "moedeid", "type": "int", "oda.name": "mødeid"},
    {"name": "vedtaget", "type": "boolean"},
    {"name": "kommentar", "type": ["null", "string"], "default": null},
    {"name": "typeid", "type": "int"}
  ]
}"#;

pub(crate) fn vote_value() -> Value {
    Value::Record(vec![
        ("id".into(), Value::Int(10530)),
        (
            "konklusion".into(),
            Value::Union(
                1,
                Box::new(Value::String(
                    "Vedtaget med 91 stemmer for, 0 imod — æøå".into(),
                )),
            ),
        ),
        ("moedeid".into(), Value::Int(7)),
        ("vedtaget".into(), Value::Boolean(true)),
    ])
}

#[tokio::test]
async fn registry_enforces_backward_compatibility_globally() {
    let client = registry().client().expect("client");
    let level = client.global_compatibility().await.expect("GET /config");
    assert_eq!(
        level, "BACKWARD",
        "scripts/stack must leave the registry at BACKWARD"
    );
}

#[tokio::test]
async fn avro_record_round_trips_in_confluent_wire_format() {
    // Arrange: register v1 under a TopicNameStrategy subject.
    let topic = unique("it-avro");
    let subject = format!("{topic}-value");
    let client = registry().client().expect("client");
    let id = client
        .register_avro(&subject, VOTE_V1)
        .await
        .expect("register v1");
    let settings = registry().sr_settings().expect("sr settings");

    // Act: encode with schema_registry_converter, decode it back.
    let encoder = AvroEncoder::new(settings.clone());
    let strategy = SubjectNameStrategy::TopicNameStrategy(topic.clone(), false);
    let bytes = encoder
        .encode_value(vote_value(), &strategy)
        .await
        .expect("encode");
    let decoded = AvroDecoder::new(settings)
        .decode(Some(&bytes))
        .await
        .expect("decode");

    // Assert: magic byte 0, the registry's id big-endian, the same value back.
    assert_eq!(bytes[0], 0, "Confluent magic byte");
    assert_eq!(
        u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]),
        id
    );
    assert_eq!(decoded.value, vote_value());
}

#[tokio::test]
async fn optional_field_passes_and_required_field_is_rejected_with_the_reason() {
    let subject = format!("{}-value", unique("it-evolve"));
    let client = registry().client().expect("client");
    let v1 = client
        .register_avro(&subject, VOTE_V1)
        .await
        .expect("register v1");
    let v2 = client
        .register_avro(&subject, VOTE_V2_OPTIONAL)
        .await
        .expect("an optional field with a default is BACKWARD-compatible");
    assert_ne!(v1, v2);
    let again = client.register_avro(&subject, VOTE_V1).await;
    assert!(
        again.is_ok(),
        "re-registering a known schema returns its id: {again:?}"
    );

    match client.register_avro(&subject, VOTE_V3_REQUIRED).await {
        Err(RegistryError::Incompatible { subject: s, reason }) => {
            assert_eq!(s, subject);
            assert!(
                !reason.trim().is_empty(),
                "the registry's reason must be shown"
            );
            let text = RegistryError::Incompatible {
                subject: s,
                reason: reason.clone(),
            }
            .to_string();
            assert!(text.contains(&subject) && text.contains(&reason), "{text}");
        }
        other => panic!(
            "a required field without default must be rejected as incompatible, got {other:?}"
        ),
    }
}

#[tokio::test]
async fn every_generated_envelope_schema_registers_in_the_real_registry() {
    let client = registry().client().expect("client");
    let prefix = unique("it-envelopes");
    let mut registered = 0;
    for (file, text) in oda_model::avro::schema_files() {
        if !file.starts_with("ChangeEvent") {
            continue;
        }
        let subject = format!("{prefix}-{}-value", file.trim_end_matches(".avsc"));
        client
            .register_avro(&subject, &text)
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        registered += 1;
    }
    assert_eq!(registered, 50);
}

#[tokio::test]
async fn a_generated_schema_evolves_by_optional_fields_only() {
    let set = oda_model::entity::entity_set("Sag").expect("Sag");
    let client = registry().client().expect("client");
    let subject = format!("{}-value", unique("it-sag-evolve"));
    let base = oda_model::avro::entity_schema(set);
    client
        .register_avro(&subject, &base.to_string())
        .await
        .expect("v1");
    let with = |field: serde_json::Value| {
        let mut schema = base.clone();
        schema["fields"].as_array_mut().expect("fields").push(field);
        schema.to_string()
    };
    let optional =
        with(serde_json::json!({"name": "nyfelt", "type": ["null", "string"], "default": null}));
    client
        .register_avro(&subject, &optional)
        .await
        .expect("an optional field with a default is BACKWARD-compatible");
    let required = with(serde_json::json!({"name": "pligtfelt", "type": "int"}));
    match client.register_avro(&subject, &required).await {
        Err(RegistryError::Incompatible { reason, .. }) => assert!(!reason.is_empty()),
        other => panic!("a field without a default must be refused: {other:?}"),
    }
}
