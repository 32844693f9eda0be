//! `format = avro`: schemas registered at start, every entity's events in
//! the Confluent wire format, readable by an independent Python reader and
//! equal to the source record once decoded.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use oda_cdc_core::config::Format;
use oda_cdc_testkit::{python, read_topic, registry, tests_path};
use oda_producer::StartFrom;
use schema_registry_converter::async_impl::avro::AvroDecoder;

use crate::harness::{Producer, Sim, settings, wait_streaming};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_entity_in_avro_decodes_in_rust_and_in_python() {
    let sim = Sim::start(|c| c.scale = 3_000).await;
    let all: Vec<&str> = oda_model::entity::entity_sets()
        .iter()
        .filter(|s| s.is_captured_by_default())
        .map(|s| s.name.as_str())
        .collect();
    let mut settings = settings(&sim.sim.base_url(), &all);
    settings.format = Format::Avro;
    settings.schema_registry = registry();
    let prefix = settings.kafka.topic_prefix.clone();
    let producer = Producer::start(settings, StartFrom::Beginning);

    // Wait until Sag holds every row.
    let sag_topic = oda_model::topics::Topics::new(&prefix, None).entity("Sag");
    let rows = sim.hashes("Sag").len();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let records = loop {
        let topic = sag_topic.clone();
        let records = tokio::task::spawn_blocking(move || read_topic(&topic).unwrap_or_default())
            .await
            .expect("join");
        if records.len() >= rows || tokio::time::Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    producer.stop().await;
    assert_eq!(records.len(), rows, "every Sag row snapshotted");

    // Rust: decode through the registry, restore Danish names, compare hashes.
    let decoder = AvroDecoder::new(registry().sr_settings().expect("settings"));
    let set = oda_model::entity::entity_set("Sag").expect("Sag");
    let hashes = sim.hashes("Sag");
    for record in &records {
        assert_eq!(
            record.header("content-type"),
            Some("application/vnd.oda-cdc+avro")
        );
        let decoded = decoder
            .decode(record.value.as_deref())
            .await
            .expect("decodes");
        let event = oda_model::avro::avro_to_event(set, &decoded.value).expect("an event");
        let after = event.after.expect("after");
        assert_eq!(
            Some(&oda_model::hash::content_hash(&after)),
            hashes.get(&event.id),
            "Sag({}) decodes to the source record",
            event.id
        );
        assert!(
            after.contains_key("afgørelsesdato"),
            "Danish names restored"
        );
    }

    // Python: kafka-python + fastavro read one event of every entity topic.
    let mut command = Command::new(python());
    command
        .arg(tests_path("python/read_avro.py"))
        .args(["--brokers", &oda_cdc_testkit::kafka().brokers])
        .args(["--registry", &registry().url])
        .args(["--count", "1"]);
    for entity in &all {
        command.args([
            "--topic",
            &oda_model::topics::Topics::new(&prefix, None).entity(entity),
        ]);
    }
    let output = tokio::task::spawn_blocking(move || command.output().expect("python runs"))
        .await
        .expect("join");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut per_topic: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let value: serde_json::Value = serde_json::from_str(line).expect("json line");
        per_topic.insert(value["topic"].as_str().expect("topic").to_owned(), value);
    }
    assert_eq!(
        per_topic.len(),
        all.len(),
        "one decoded event per entity topic"
    );
    for (topic, decoded) in &per_topic {
        let event = &decoded["value"];
        assert_eq!(event["op"], "r", "{topic}");
        assert_eq!(
            event["id"].to_string(),
            decoded["key"].as_str().expect("key"),
            "{topic}"
        );
        assert_eq!(
            event["source"]["system"],
            "Folketingets Åbne Data (oda.ft.dk)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_that_changes_type_is_dead_lettered_and_the_stream_goes_on() {
    let sim = Sim::start(|c| c.scale = 2_000).await;
    let mut settings = settings(&sim.sim.base_url(), &["Sag"]);
    settings.format = Format::Avro;
    settings.schema_registry = registry();
    let prefix = settings.kafka.topic_prefix.clone();
    let producer = Producer::start(settings, StartFrom::Beginning);
    wait_streaming(&prefix, "Sag", Duration::from_secs(60)).await;

    // Sag.typeid (an Int32) starts arriving as a string for three rows.
    sim.mutate(serde_json::json!({"entity": "Sag", "retypes": 3}))
        .await;
    let retyped: Vec<i64> = sim
        .log()
        .iter()
        .filter(|e| e.op == "u")
        .map(|e| i64::from(e.id))
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    sim.mutate(serde_json::json!({"entity": "Sag", "inserts": 2}))
        .await;
    let inserted: Vec<i64> = sim
        .log()
        .iter()
        .filter(|e| e.op == "c")
        .map(|e| i64::from(e.id))
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    producer.stop().await;

    let dlq = oda_model::topics::Topics::new(&prefix, None)
        .dlq()
        .to_owned();
    let letters = tokio::task::spawn_blocking(move || read_topic(&dlq).expect("dlq"))
        .await
        .expect("join");
    let mut lettered: Vec<i64> = letters
        .iter()
        .map(|l| {
            l.key
                .as_deref()
                .and_then(|k| k.parse().ok())
                .expect("id key")
        })
        .collect();
    lettered.sort_unstable();
    let mut expected = retyped.clone();
    expected.sort_unstable();
    expected.dedup();
    assert_eq!(lettered, expected, "each retyped row dead-lettered once");
    for letter in &letters {
        assert_eq!(letter.header("dlq.processor"), Some("oda-producer"));
        assert_eq!(letter.header("dlq.error.kind"), Some("encode"));
        assert_eq!(letter.header("oda.entity"), Some("Sag"));
        assert!(
            letter
                .header("dlq.error.message")
                .is_some_and(|m| m.contains("typeid"))
        );
        assert!(letter.header("dlq.failed.at").is_some());
        let raw: serde_json::Value =
            serde_json::from_slice(letter.value.as_deref().expect("raw JSON")).expect("JSON");
        assert!(raw["typeid"].is_string(), "the raw source record: {raw}");
    }
    // The stream went on: later inserts are on the entity topic.
    let topic = oda_model::topics::Topics::new(&prefix, None).entity("Sag");
    let keys: Vec<i64> = tokio::task::spawn_blocking(move || read_topic(&topic).expect("topic"))
        .await
        .expect("join")
        .iter()
        .filter_map(|r| r.key.as_deref().and_then(|k| k.parse().ok()))
        .collect();
    assert!(
        inserted.iter().all(|id| keys.contains(id)),
        "inserts after the letters were published"
    );
}

/// Deletes in an Avro topic are Avro too: a plain Confluent deserializer
/// reads the `d` event (no `after`), and the tombstone follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_events_in_an_avro_topic_are_avro() {
    let sim = Sim::start(|c| c.scale = 1_000).await;
    let mut settings = settings(&sim.sim.base_url(), &["Sag"]);
    settings.format = Format::Avro;
    settings.schema_registry = registry();
    settings.reconcile.interval = oda_cdc_core::config::HumanDuration::from(Duration::from_secs(2));
    let prefix = settings.kafka.topic_prefix.clone();
    let producer = Producer::start(settings, StartFrom::Beginning);
    wait_streaming(&prefix, "Sag", Duration::from_secs(60)).await;
    sim.mutate(serde_json::json!({"entity": "Sag", "deletes": 3}))
        .await;
    let deleted: Vec<i64> = sim
        .log()
        .iter()
        .filter(|e| e.entity == "Sag" && e.op == "d")
        .map(|e| i64::from(e.id))
        .collect();
    assert_eq!(deleted.len(), 3);

    let topic = oda_model::topics::Topics::new(&prefix, None).entity("Sag");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let deletes = loop {
        let name = topic.clone();
        let records = tokio::task::spawn_blocking(move || read_topic(&name).unwrap_or_default())
            .await
            .expect("join");
        let deletes: Vec<_> = records
            .into_iter()
            .filter(|r| r.header("oda.op") == Some("d"))
            .collect();
        if deletes.len() >= 6 || tokio::time::Instant::now() > deadline {
            break deletes;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    producer.stop().await;
    assert_eq!(
        deletes.len(),
        6,
        "a d event and a tombstone per deleted row"
    );

    let decoder = AvroDecoder::new(registry().sr_settings().expect("settings"));
    let set = oda_model::entity::entity_set("Sag").expect("Sag");
    let mut decoded_ids = Vec::new();
    for record in deletes.iter().filter(|r| r.value.is_some()) {
        assert_eq!(
            record.header("content-type"),
            Some("application/vnd.oda-cdc+avro")
        );
        let decoded = decoder
            .decode(record.value.as_deref())
            .await
            .expect("a plain Confluent deserializer reads the d event");
        let event = oda_model::avro::avro_to_event(set, &decoded.value).expect("an event");
        assert_eq!(event.op, oda_model::event::Op::Delete);
        assert!(event.after.is_none());
        decoded_ids.push(event.id);
    }
    decoded_ids.sort_unstable();
    let mut expected = deleted;
    expected.sort_unstable();
    assert_eq!(decoded_ids, expected);
    assert_eq!(
        deletes.iter().filter(|r| r.value.is_none()).count(),
        3,
        "the tombstones"
    );
}
