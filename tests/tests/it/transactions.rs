//! A committed and an aborted transaction, read back with `read_committed`.

use std::time::Duration;

use oda_cdc_core::kafka::LogContext;
use oda_cdc_testkit::{create_topic, kafka, unique};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{Message, TopicPartitionList};

const BATCH: usize = 100;

fn read_all(topic: &str, isolation: &str) -> Vec<String> {
    let mut config = kafka().consumer_config(&unique("it-tx-reader"));
    config.set("isolation.level", isolation);
    let consumer: BaseConsumer<LogContext> =
        config.create_with_context(LogContext).expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("tpl");
    consumer.assign(&assignment).expect("assign");
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    let mut values = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let position = consumer
            .position()
            .ok()
            .and_then(|p| p.find_partition(topic, 0).map(|e| e.offset()));
        if let Some(rdkafka::Offset::Offset(pos)) = position
            && pos >= high
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reading {topic} timed out"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("consume");
            values.push(
                String::from_utf8(message.payload().expect("payload").to_vec()).expect("utf8"),
            );
        }
    }
    values
}

#[tokio::test]
async fn read_committed_sees_the_committed_batch_and_not_the_aborted_one() {
    // Arrange
    let topic = unique("it-tx");
    create_topic(&topic, 1).await.expect("topic");
    let producer: FutureProducer<LogContext> = kafka()
        .producer_config(Some(&unique("it-txid")))
        .create_with_context(LogContext)
        .expect("producer");
    let timeout = Timeout::After(Duration::from_secs(30));
    producer
        .init_transactions(timeout)
        .expect("init_transactions");

    // Act: commit batch A, abort batch B.
    for (batch, commit) in [("committed", true), ("aborted", false)] {
        producer.begin_transaction().expect("begin");
        for i in 0..BATCH {
            let value = format!("{batch}-{i}");
            let key = i.to_string();
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&value),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .expect("send in transaction");
        }
        if commit {
            producer.commit_transaction(timeout).expect("commit");
        } else {
            producer.abort_transaction(timeout).expect("abort");
        }
    }

    // Assert: the aborted records really reached the log (read_uncommitted
    // sees them), and read_committed filters them out.
    let uncommitted = read_all(&topic, "read_uncommitted");
    assert_eq!(
        uncommitted
            .iter()
            .filter(|v| v.starts_with("aborted-"))
            .count(),
        BATCH,
        "the aborted batch must be in the log, or this test proves nothing"
    );
    let committed = read_all(&topic, "read_committed");
    let expected: Vec<String> = (0..BATCH).map(|i| format!("committed-{i}")).collect();
    assert_eq!(committed, expected);
}
