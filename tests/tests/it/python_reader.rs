//! An independent reader (kafka-python + fastavro, no librdkafka) decodes
//! what our Rust code wrote through the registry.

use std::process::Command;
use std::time::Duration;

use oda_cdc_core::kafka::LogContext;
use oda_cdc_testkit::{create_topic, kafka, python, registry, tests_path, unique};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use schema_registry_converter::async_impl::avro::AvroEncoder;
use schema_registry_converter::schema_registry_common::SubjectNameStrategy;

use crate::registry::{VOTE_V1, vote_value};

#[tokio::test]
async fn python_reader_decodes_a_record_written_by_rust() {
    // Arrange: a schema, an encoded record, written transactionally.
    let topic = unique("it-python");
    create_topic(&topic, 1).await.expect("topic");
    let client = registry().client().expect("client");
    let id = client
        .register_avro(&format!("{topic}-value"), VOTE_V1)
        .await
        .expect("register");
    let encoder = AvroEncoder::new(registry().sr_settings().expect("settings"));
    let bytes = encoder
        .encode_value(
            vote_value(),
            &SubjectNameStrategy::TopicNameStrategy(topic.clone(), false),
        )
        .await
        .expect("encode");
    let producer: FutureProducer<LogContext> = kafka()
        .producer_config(Some(&unique("it-python-tx")))
        .create_with_context(LogContext)
        .expect("producer");
    let timeout = Timeout::After(Duration::from_secs(30));
    producer.init_transactions(timeout).expect("init");
    producer.begin_transaction().expect("begin");
    producer
        .send(
            FutureRecord::to(&topic).key("10530").payload(&bytes),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("send");
    producer.commit_transaction(timeout).expect("commit");

    // Act: the Python reader consumes with read_committed and decodes.
    let output = Command::new(python())
        .arg(tests_path("python/read_avro.py"))
        .args(["--brokers", &kafka().brokers])
        .args(["--registry", &registry().url])
        .args(["--topic", &topic])
        .args(["--count", "1"])
        .output()
        .expect("the test venv's python runs (scripts/test sets TEST_PYTHON)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python reader failed: {stderr}");

    // Assert: the same record, Danish text intact, schema id from the frame.
    let stdout = String::from_utf8(output.stdout).expect("utf8");
    let line = stdout.lines().next().expect("one decoded record");
    let decoded: serde_json::Value = serde_json::from_str(line).expect("json line");
    assert_eq!(decoded["key"], "10530");
    assert_eq!(decoded["schema_id"], id);
    assert_eq!(
        decoded["value"],
        serde_json::json!({
            "id": 10530,
            "konklusion": "Vedtaget med 91 stemmer for, 0 imod — æøå",
            "moedeid": 7,
            "vedtaget": true
        })
    );
}
