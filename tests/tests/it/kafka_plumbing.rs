//! The idempotent keyed producer and a consumer, through the shared builders.

use std::collections::HashMap;
use std::time::Duration;

use oda_cdc_core::kafka::LogContext;
use oda_cdc_testkit::{create_topic, kafka, unique};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

const RECORDS: usize = 10_000;
const KEYS: usize = 50;

#[tokio::test]
async fn idempotent_keyed_producer_preserves_per_key_order() {
    // Arrange: a 6-partition topic and an idempotent producer (acks=all).
    let topic = unique("it-idempotent");
    create_topic(&topic, 6).await.expect("topic");
    let config = kafka().producer_config(None);
    assert_eq!(config.get("enable.idempotence"), Some("true"));
    assert_eq!(config.get("acks"), Some("all"));
    let producer: FutureProducer<LogContext> =
        config.create_with_context(LogContext).expect("producer");

    // Act: 10,000 records over 50 keys, each value carrying its per-key sequence.
    let mut deliveries = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let key = format!("{}", i % KEYS);
        let value = format!("{}", i / KEYS);
        let record = FutureRecord::to(&topic).key(&key).payload(&value);
        let delivery = producer
            .send_result(record)
            .map_err(|(e, _)| e)
            .expect("enqueue");
        deliveries.push(delivery);
    }
    for delivery in deliveries {
        delivery
            .await
            .expect("delivery future")
            .expect("broker acknowledged");
    }
    producer
        .flush(Timeout::After(Duration::from_secs(30)))
        .expect("flush");

    // Assert: a consumer sees every record once, in order per key.
    let consumer: StreamConsumer<LogContext> = kafka()
        .consumer_config(&unique("it-group"))
        .create_with_context(LogContext)
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut next: HashMap<String, usize> = HashMap::new();
    let mut partition_of: HashMap<String, i32> = HashMap::new();
    let mut seen = 0;
    while seen < RECORDS {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("records arrive within 30 s")
            .expect("consume");
        let key = String::from_utf8(message.key().expect("key").to_vec()).expect("utf8 key");
        let value: usize = std::str::from_utf8(message.payload().expect("payload"))
            .expect("utf8")
            .parse()
            .expect("number");
        let expected = next.entry(key.clone()).or_insert(0);
        assert_eq!(value, *expected, "key {key} out of order");
        *expected += 1;
        let partition = *partition_of
            .entry(key.clone())
            .or_insert(message.partition());
        assert_eq!(partition, message.partition(), "key {key} moved partitions");
        seen += 1;
    }
    assert_eq!(next.len(), KEYS);
    assert!(next.values().all(|n| *n == RECORDS / KEYS));
    let used_partitions: std::collections::HashSet<_> = partition_of.values().collect();
    assert!(
        used_partitions.len() > 1,
        "keys should spread over partitions"
    );
}
