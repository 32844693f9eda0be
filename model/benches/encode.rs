//! Cost per record of turning a change event into bytes: JSON, and Avro
//! (codec to an Avro value, then the datum writer), for a real `Sag`
//! record (29 fields, HTML in `resume`) and a small `Stemme` record.
//!
//! Run: `cargo bench -p oda-model --bench encode`.

use std::hint::black_box;

use apache_avro::writer::datum::GenericDatumWriter;
use criterion::{Criterion, criterion_group, criterion_main};
use oda_model::avro::{envelope_schema, event_to_avro, render};
use oda_model::entity::entity_set;
use oda_model::event::{ChangeEvent, Op};
use oda_model::hash::content_hash;
use serde_json::{Map, Value};

fn record(text: &str) -> Map<String, Value> {
    let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let first = match value {
        Value::Array(mut items) if !items.is_empty() => items.remove(0),
        other => other,
    };
    let mut record = first.as_object().cloned().unwrap_or_default();
    record.retain(|k, _| !k.starts_with("odata."));
    record
}

fn bench(c: &mut Criterion) {
    for entity in ["Sag", "Stemme"] {
        let text =
            oda_model::samples::complete(entity).unwrap_or_else(|| panic!("a {entity} sample"));
        let set = entity_set(entity).unwrap_or_else(|| panic!("{entity} in the model"));
        let after = record(text);
        let id = after.get("id").and_then(Value::as_i64).unwrap_or(0);
        let event = ChangeEvent::new(
            Op::Update,
            entity,
            id,
            Some(after.clone()),
            after
                .get("opdateringsdato")
                .and_then(Value::as_str)
                .map(str::to_owned),
            "https://oda.ft.dk/api",
            &oda_model::odatime::format_utc(chrono::Utc::now()),
        );
        let schema = apache_avro::Schema::parse_str(&render(&envelope_schema(set)))
            .unwrap_or_else(|e| panic!("{entity} schema: {e}"));
        let writer = GenericDatumWriter::builder(&schema)
            .build()
            .unwrap_or_else(|e| panic!("writer: {e}"));

        c.bench_function(&format!("{entity}/json"), |b| {
            b.iter(|| black_box(&event).to_json())
        });
        c.bench_function(&format!("{entity}/avro"), |b| {
            b.iter(|| {
                let value = event_to_avro(black_box(&event), set).unwrap_or_else(|e| panic!("{e}"));
                writer
                    .write_value_to_vec(value)
                    .unwrap_or_else(|e| panic!("{e}"))
            })
        });
        c.bench_function(&format!("{entity}/content_hash"), |b| {
            b.iter(|| content_hash(black_box(&after)))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
