use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value as Apache;
use apache_avro::writer::datum::GenericDatumWriter;
use serde_json::{Map, Value as Json, json};

use super::*;
use crate::entity::{EdmType, entity_set};
use crate::event::{ChangeEvent, Op, Source};

fn set(name: &str) -> &'static EntitySet {
    entity_set(name).expect("entity set in the model")
}

fn parse(schema: &Json) -> Schema {
    Schema::parse(schema).expect("generated schema parses")
}

/// Avro binary encoding of one datum, as the registry wire format carries
/// it after the 5-byte header.
fn encode(schema: &Schema, value: Apache) -> Vec<u8> {
    GenericDatumWriter::builder(schema)
        .build()
        .and_then(|w| w.write_value_to_vec(value))
        .unwrap_or_else(|e| panic!("encodes: {e}"))
}

fn decode(schema: &Schema, mut bytes: &[u8]) -> Apache {
    let value = GenericDatumReader::builder(schema)
        .build()
        .and_then(|r| r.read_value(&mut bytes))
        .unwrap_or_else(|e| panic!("decodes: {e}"));
    assert!(bytes.is_empty(), "the datum used every byte");
    value
}

/// JSON record → Avro → bytes → Avro → JSON record, `extra` merged back.
fn round_trip(set: &EntitySet, record: &Map<String, Json>) -> Result<Map<String, Json>, AvroError> {
    let schema = parse(&entity_schema(set));
    let encoded = record_to_avro(set, record)?;
    let bytes = encode(&schema, encoded.value);
    let decoded = decode(&schema, &bytes);
    let mut out = avro_to_record(set, &decoded)?;
    for (name, text) in encoded.extra {
        out.insert(
            name,
            serde_json::from_str(&text).expect("extra is JSON text"),
        );
    }
    Ok(out)
}

const DATE_TIMES: [&str; 4] = [
    "2014-09-09T09:05:59",
    "2014-09-09T09:05:59.6",
    "2014-11-07T13:01:55.26",
    "2026-10-25T02:30:00.653",
];
const STRINGS: [&str; 5] = [
    "",
    "Æblegrød på øen",
    "Vedtaget\n\n108 stemmer \"for\" <p>&amp;</p>",
    "ÆØÅ æøå – “quoted” 🇩🇰",
    "L 200",
];

/// A record with every field set, varying with `seed`: nulls in nullable
/// fields, `""`, Danish text, extreme ints, both booleans, date-time
/// literals with 0-3 fraction digits.
fn generated_record(set: &EntitySet, seed: usize) -> Map<String, Json> {
    set.fields
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let k = i + seed;
            let value = if is_nullable(field) && k % 5 == 4 {
                Json::Null
            } else {
                match field.edm {
                    EdmType::Int16 => json!([0, i16::MIN, i16::MAX, 7][k % 4]),
                    EdmType::Int32 => json!([1, i32::MIN, i32::MAX, 4849][k % 4]),
                    EdmType::Boolean => json!(k.is_multiple_of(2)),
                    EdmType::DateTime => json!(DATE_TIMES[k % 4]),
                    EdmType::String => json!(STRINGS[k % 5]),
                }
            };
            (field.name.clone(), value)
        })
        .collect()
}

#[test]
fn names_transliterate_and_keep_case() {
    assert_eq!(avro_name("Aktør"), "Aktoer");
    assert_eq!(avro_name("AktørAktørRolle"), "AktoerAktoerRolle");
    assert_eq!(avro_name("Møde"), "Moede");
    assert_eq!(avro_name("afgørelsesårsag"), "afgoerelsesaarsag");
    assert_eq!(avro_name("Æble Ørn Å"), "Aeble Oern Aa");
    assert_eq!(avro_name("EUsag"), "EUsag");
    assert_eq!(try_avro_name("spørgsmålsid"), Ok("spoergsmaalsid".into()));
    for bad in ["café", "1abc", "a b", "", "a.b"] {
        assert!(
            matches!(try_avro_name(bad), Err(AvroError::InvalidName { .. })),
            "{bad}"
        );
    }
}

#[test]
fn every_model_name_is_a_valid_unique_avro_name_and_maps_back() {
    let mut record_names = std::collections::BTreeSet::new();
    for set in entity_sets() {
        let name = try_avro_name(&set.name).expect("valid entity name");
        assert!(record_names.insert(name.clone()), "duplicate {name}");
        assert_eq!(
            entity_set_by_avro_name(&name).map(|s| &s.name),
            Some(&set.name)
        );
        let envelope = format!("{NAMESPACE}.{}", envelope_name(set));
        assert_eq!(
            entity_set_by_avro_name(&envelope).map(|s| &s.name),
            Some(&set.name)
        );
        let mut field_names = std::collections::BTreeSet::new();
        for field in &set.fields {
            let avro = try_avro_name(&field.name).expect("valid field name");
            assert!(
                field_names.insert(avro.clone()),
                "{}: duplicate {avro}",
                set.name
            );
            assert_eq!(oda_field_name(set, &avro), Some(field.name.as_str()));
        }
    }
    assert_eq!(record_names.len(), 50);
    assert_eq!(oda_field_name(set("Afstemning"), "moedeid"), Some("mødeid"));
    assert_eq!(oda_field_name(set("Afstemning"), "mødeid"), None);
    assert_eq!(
        entity_set_by_avro_name("dk.ft.oda.ChangeEventAktoer").map(|s| s.name.as_str()),
        Some("Aktør")
    );
    assert!(entity_set_by_avro_name("Nope").is_none());
}

#[test]
fn entity_schema_maps_types_and_nullability() {
    let schema = entity_schema(set("Afstemning"));
    assert_eq!(schema["name"], "Afstemning");
    assert_eq!(schema["namespace"], "dk.ft.oda");
    let fields = schema["fields"].as_array().expect("fields");
    let by_name = |n: &str| fields.iter().find(|f| f["name"] == n).expect(n).clone();
    assert_eq!(by_name("id")["type"], "int");
    assert!(by_name("id").get("default").is_none());
    assert_eq!(by_name("vedtaget")["type"], "boolean");
    assert_eq!(by_name("sagstrinid")["type"], json!(["null", "int"]));
    assert_eq!(by_name("sagstrinid")["default"], Json::Null);
    assert_eq!(by_name("konklusion")["type"], json!(["null", "string"]));
    assert_eq!(by_name("opdateringsdato")["type"], "string");
    assert_eq!(by_name("opdateringsdato")["oda.edm"], "Edm.DateTime");
    assert_eq!(by_name("moedeid")["oda.name"], "mødeid");
    let names: Vec<_> = fields.iter().map(|f| f["oda.name"].clone()).collect();
    let model: Vec<_> = set("Afstemning")
        .fields
        .iter()
        .map(|f| json!(f.name))
        .collect();
    assert_eq!(names, model, "model order");
    for set in entity_sets() {
        for (field, schema) in set.fields.iter().zip(
            entity_schema(set)["fields"]
                .as_array()
                .into_iter()
                .flatten(),
        ) {
            if field.edm == EdmType::String {
                assert_eq!(
                    schema["type"][0], "null",
                    "{}.{} strings are nullable",
                    set.name, field.name
                );
            }
            if field.edm == EdmType::Int16 {
                assert_eq!(
                    schema["type"],
                    json!(["null", "int"]),
                    "{}.{}",
                    set.name,
                    field.name
                );
            }
        }
    }
}

#[test]
fn envelope_schema_follows_spec_section_4() {
    let schema = envelope_schema(set("Aktør"));
    assert_eq!(schema["name"], "ChangeEventAktoer");
    assert_eq!(schema["namespace"], "dk.ft.oda");
    let names: Vec<_> = schema["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["op", "entity", "id", "ts_ms", "source", "after", "extra"]
    );
    let parsed = parse(&schema);
    let Schema::Record(record) = &parsed else {
        panic!("a record");
    };
    assert_eq!(record.name.fullname(None), "dk.ft.oda.ChangeEventAktoer");
    let source = &record.fields[4].schema;
    let Schema::Record(source) = source else {
        panic!("source is a record");
    };
    assert_eq!(source.name.fullname(None), "dk.ft.oda.Source");
    assert!(matches!(source.fields[4].schema, Schema::TimestampMillis));
    let Schema::Union(after) = &record.fields[5].schema else {
        panic!("after is a union");
    };
    let Schema::Record(entity) = &after.variants()[1] else {
        panic!("after holds the entity record");
    };
    assert_eq!(entity.name.fullname(None), "dk.ft.oda.Aktoer");
    assert_eq!(
        entity
            .fields
            .iter()
            .find(|f| f.name == "id")
            .map(|f| f.custom_attributes.get("oda.name").cloned()),
        Some(Some(json!("id")))
    );
}

#[test]
fn generated_records_of_every_entity_set_round_trip() {
    let mut records = 0;
    for set in entity_sets() {
        for seed in 0..8 {
            let record = generated_record(set, seed);
            let back = round_trip(set, &record).unwrap_or_else(|e| panic!("{}: {e}", set.name));
            assert_eq!(back, record, "{} seed {seed}", set.name);
            records += 1;
        }
    }
    assert_eq!(records, 400);
}

#[test]
fn generated_records_cover_null_empty_and_danish_values() {
    let sag = set("Sag");
    let values: Vec<Json> = (0..8)
        .flat_map(|seed| generated_record(sag, seed).into_values())
        .collect();
    for expected in [
        Json::Null,
        json!(""),
        json!("Æblegrød på øen"),
        json!(true),
        json!(false),
    ] {
        assert!(values.contains(&expected), "{expected}");
    }
    for literal in DATE_TIMES {
        assert!(values.contains(&json!(literal)), "{literal}");
    }
}

#[test]
fn real_samples_round_trip_with_danish_names_restored() {
    let mut complete = 0;
    let mut with_extra = 0;
    let mut incomplete = 0;
    for (entity, file, text) in crate::samples::ALL {
        let set = set(entity);
        let records = match serde_json::from_str::<Json>(text).expect("sample is JSON") {
            Json::Array(items) => items,
            other => vec![other],
        };
        for record in records {
            let record = record.as_object().expect("an object").clone();
            let missing_required = set
                .fields
                .iter()
                .find(|f| !is_nullable(f) && !record.contains_key(&f.name));
            match (round_trip(set, &record), missing_required) {
                (Ok(back), None) => {
                    // Missing nullable fields come back as null.
                    let mut expected = record.clone();
                    for field in &set.fields {
                        expected.entry(field.name.clone()).or_insert(Json::Null);
                    }
                    assert_eq!(back, expected, "{file}");
                    complete += 1;
                    if record.keys().any(|k| set.field(k).is_none()) {
                        with_extra += 1;
                    }
                }
                (Err(AvroError::NullNotAllowed { field, .. }), Some(missing)) => {
                    assert_eq!(field, missing.name, "{file}");
                    incomplete += 1;
                }
                (other, missing) => panic!("{file}: {other:?} (missing {missing:?})"),
            }
        }
    }
    assert!(complete >= 9, "{complete} complete sample records");
    assert!(with_extra >= 4, "odata.metadata goes through extra");
    assert!(
        incomplete >= 1,
        "Dokument.partial.json lacks required fields"
    );
}

#[test]
fn the_sag_sample_keeps_its_danish_field_names() {
    let text = crate::samples::complete("Sag").expect("sample");
    let records: Vec<Map<String, Json>> = serde_json::from_str(text).expect("sample");
    let sag = set("Sag");
    let encoded = record_to_avro(sag, &records[0]).expect("encodes");
    let Apache::Record(fields) = &encoded.value else {
        panic!("a record");
    };
    assert!(fields.iter().any(|(n, _)| n == "afgoerelsesdato"));
    let back = round_trip(sag, &records[0]).expect("round trip");
    assert!(back.contains_key("afgørelsesdato"));
    assert!(!back.contains_key("afgoerelsesdato"));
}

#[test]
fn unknown_fields_go_to_extra_as_json_text() {
    let stemme = set("Stemme");
    let mut record = generated_record(stemme, 0);
    record.insert(
        "odata.metadata".into(),
        json!("https://oda.ft.dk/api/$metadata#Stemme/@Element"),
    );
    record.insert("nytfelt".into(), json!({"a": [1, null, "ø"]}));
    let encoded = record_to_avro(stemme, &record).expect("encodes");
    assert_eq!(
        encoded.extra.get("odata.metadata").map(String::as_str),
        Some("\"https://oda.ft.dk/api/$metadata#Stemme/@Element\"")
    );
    assert_eq!(
        encoded.extra.get("nytfelt").map(String::as_str),
        Some(r#"{"a":[1,null,"ø"]}"#)
    );
    assert_eq!(encoded.extra.len(), 2);
}

#[test]
fn missing_nullable_fields_become_null() {
    let aktoer = set("Aktør");
    let record = json!({"id": 2, "typeid": 1, "opdateringsdato": "2014-11-14T11:38:35.957"});
    let back = round_trip(aktoer, record.as_object().expect("object")).expect("round trip");
    assert_eq!(back["navn"], Json::Null);
    assert_eq!(back["id"], 2);
    assert_eq!(back.len(), aktoer.fields.len());
}

#[test]
fn wrong_types_are_errors_naming_entity_field_and_value() {
    let afstemning = set("Afstemning");
    let cases = [
        ("mødeid", json!("17"), "an Edm.Int32 integer"),
        ("mødeid", json!(1.5), "an Edm.Int32 integer"),
        (
            "mødeid",
            json!(i64::from(i32::MAX) + 1),
            "an Edm.Int32 integer",
        ),
        ("vedtaget", json!("true"), "a boolean"),
        ("konklusion", json!(5), "a string"),
        (
            "opdateringsdato",
            json!(20140909),
            "an Edm.DateTime literal string",
        ),
    ];
    for (field, value, expected) in cases {
        let mut record = generated_record(afstemning, 1);
        record.insert(field.into(), value.clone());
        let err = record_to_avro(afstemning, &record).expect_err(field);
        assert_eq!(
            err,
            AvroError::WrongType {
                entity: "Afstemning".into(),
                field: field.into(),
                expected,
                value: value.to_string(),
            }
        );
        assert!(err.is_data_error());
        let message = err.to_string();
        assert!(
            message.contains("Afstemning") && message.contains(field),
            "{message}"
        );
    }
    let mut record = generated_record(afstemning, 1);
    record.insert("vedtaget".into(), Json::Null);
    assert_eq!(
        record_to_avro(afstemning, &record),
        Err(AvroError::NullNotAllowed {
            entity: "Afstemning".into(),
            field: "vedtaget".into()
        })
    );
    // Edm.Int16 keeps its range although Avro's int is wider.
    let (int16_set, int16_field) = entity_sets()
        .iter()
        .find_map(|s| {
            s.fields
                .iter()
                .find(|f| f.edm == EdmType::Int16)
                .map(|f| (s, f))
        })
        .expect("one Int16 field");
    let mut record = generated_record(int16_set, 0);
    record.insert(int16_field.name.clone(), json!(40000));
    assert!(matches!(
        record_to_avro(int16_set, &record),
        Err(AvroError::WrongType {
            expected: "an Edm.Int16 integer",
            ..
        })
    ));
}

#[test]
fn decoding_an_unknown_avro_field_is_an_error() {
    let stemme = set("Stemme");
    let value = Apache::Record(vec![
        ("id".into(), Apache::Int(1)),
        ("ukendt".into(), Apache::Int(2)),
    ]);
    assert!(matches!(
        avro_to_record(stemme, &value),
        Err(AvroError::UnknownAvroField { .. })
    ));
}

fn sample_event(set: &EntitySet, op: Op, seed: usize) -> ChangeEvent {
    let after = (op != Op::Delete).then(|| generated_record(set, seed));
    ChangeEvent {
        op,
        entity: set.name.clone(),
        id: [1, i64::from(i32::MAX), 4849][seed % 3],
        ts_ms: 1_761_350_400_123,
        source: Source {
            system: crate::SOURCE_SYSTEM.into(),
            base_url: crate::DEFAULT_ODA_BASE_URL.into(),
            opdateringsdato: seed
                .is_multiple_of(2)
                .then(|| "2026-10-25T02:30:00.653".into()),
            opdateringsdato_utc: seed
                .is_multiple_of(2)
                .then(|| "2026-10-25T00:30:00.653Z".into()),
            polled_at: "2026-10-25T03:00:00.000Z".into(),
            snapshot: op == Op::Read,
        },
        after,
        extra: Map::new(),
    }
}

fn event_round_trip(set: &EntitySet, event: &ChangeEvent) -> ChangeEvent {
    let schema = parse(&envelope_schema(set));
    let value = event_to_avro(event, set).unwrap_or_else(|e| panic!("{}: {e}", set.name));
    let bytes = encode(&schema, value);
    let decoded = decode(&schema, &bytes);
    avro_to_event(set, &decoded).unwrap_or_else(|e| panic!("{}: {e}", set.name))
}

#[test]
fn envelopes_of_every_entity_set_round_trip() {
    for set in entity_sets() {
        for (seed, op) in [Op::Read, Op::Create, Op::Update, Op::Delete]
            .into_iter()
            .enumerate()
        {
            let event = sample_event(set, op, seed);
            assert_eq!(event_round_trip(set, &event), event, "{} {op:?}", set.name);
        }
    }
}

#[test]
fn envelope_round_trip_from_change_event_new() {
    let aktoer = set("Aktør");
    let polled = chrono::DateTime::parse_from_rfc3339("2026-03-29T01:00:00.5Z")
        .expect("time")
        .with_timezone(&chrono::Utc);
    let after = generated_record(aktoer, 3);
    let event = ChangeEvent::new(
        Op::Update,
        "Aktør",
        7,
        Some(after),
        Some("2026-03-29T02:30:00".into()),
        "https://oda.ft.dk/api",
        &crate::odatime::format_utc(polled),
    );
    assert_eq!(event_round_trip(aktoer, &event), event);
}

#[test]
fn envelope_carries_unknown_fields_in_extra_and_restores_them_into_after() {
    let stemme = set("Stemme");
    let mut event = sample_event(stemme, Op::Create, 0);
    if let Some(after) = event.after.as_mut() {
        after.insert("nytfelt".into(), json!({"ø": [1, "x"]}));
        after.insert("tekst".into(), json!("Æblegrød"));
    }
    let value = event_to_avro(&event, stemme).expect("encodes");
    let Apache::Record(fields) = &value else {
        panic!("a record");
    };
    let extra = fields
        .iter()
        .find(|(n, _)| n == "extra")
        .map(|(_, v)| v.clone());
    let Some(Apache::Map(extra)) = extra else {
        panic!("extra is a map");
    };
    assert_eq!(
        extra.get("nytfelt"),
        Some(&Apache::String(r#"{"ø":[1,"x"]}"#.into()))
    );
    assert_eq!(
        extra.get("tekst"),
        Some(&Apache::String("\"Æblegrød\"".into()))
    );
    assert_eq!(event_round_trip(stemme, &event), event);

    // Without `after` (a delete), extra stays extra.
    let mut deleted = sample_event(stemme, Op::Delete, 1);
    deleted.extra.insert("grund".into(), json!("forsvundet"));
    assert_eq!(event_round_trip(stemme, &deleted), deleted);
}

#[test]
fn envelope_errors() {
    let stemme = set("Stemme");
    let event = sample_event(set("Sag"), Op::Create, 0);
    assert!(matches!(
        event_to_avro(&event, stemme),
        Err(AvroError::EntityMismatch { .. })
    ));
    let mut event = sample_event(stemme, Op::Create, 0);
    event.source.polled_at = "2026-10-25 03:00".into();
    assert_eq!(
        event_to_avro(&event, stemme),
        Err(AvroError::Timestamp {
            field: "source.polled_at",
            value: "2026-10-25 03:00".into()
        })
    );
    let mut event = sample_event(stemme, Op::Create, 0);
    if let Some(after) = event.after.as_mut() {
        after.insert("aktørid".into(), json!("5"));
    }
    assert!(matches!(
        event_to_avro(&event, stemme),
        Err(AvroError::WrongType { ref field, .. }) if field == "aktørid"
    ));
}

#[test]
fn render_is_stable_and_readable() {
    let text = render(&entity_schema(set("Stemme")));
    assert!(text.ends_with("}\n"));
    assert!(
        text.starts_with(
            "{\n  \"type\": \"record\",\n  \"name\": \"Stemme\",\n  \"namespace\": \"dk.ft.oda\""
        ),
        "{text}"
    );
    assert!(text.contains("\"type\": [\"null\", \"int\"]"), "{text}");
    let reparsed: Json = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(reparsed, entity_schema(set("Stemme")));
}
