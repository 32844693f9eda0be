//! The context-reporting writer (`core::kafka::writer`): once a flush or a
//! commit returns, it knows where every record landed and which one the
//! broker refused, with no future per record.

use std::collections::HashMap;
use std::time::Duration;

use oda_cdc_core::config::TopicClass;
use oda_cdc_core::kafka::{WriterContext, hand_over, refusal, transactional_writer};
use oda_cdc_testkit::{create_topic, create_topic_with, kafka, read_topic, unique};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::util::Timeout;

const RECORDS: usize = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_batch_knows_the_last_offset_of_every_partition() {
    let topic = unique("it-writer");
    create_topic(&topic, 3).await.expect("topic");
    let producer: ThreadedProducer<WriterContext> = kafka()
        .producer_config(None)
        .create_with_context(WriterContext::tracking_offsets())
        .expect("producer");

    for round in 0..2 {
        for i in 0..RECORDS {
            let key = format!("{round}-{i}");
            let record: BaseRecord<'_, str, str> =
                BaseRecord::to(&topic).key(key.as_str()).payload("v");
            hand_over(&producer, record).await.expect("handed over");
        }
        let flushed = producer.clone();
        let landed = tokio::task::spawn_blocking(move || {
            flushed.flush(Timeout::Never).expect("flush");
            assert!(
                flushed.context().wait_reported(Duration::from_secs(10)),
                "every report ran"
            );
            flushed.context().take_landed()
        })
        .await
        .expect("join");
        assert!(
            producer.context().take_refusal().is_none(),
            "nothing refused"
        );

        let read_topic_name = topic.clone();
        let records = tokio::task::spawn_blocking(move || read_topic(&read_topic_name))
            .await
            .expect("join")
            .expect("read");
        assert_eq!(
            records.len(),
            RECORDS * (round + 1),
            "round {round}: all delivered"
        );
        let mut last: HashMap<(String, i32), i64> = HashMap::new();
        for record in &records {
            let at = last.entry((topic.clone(), record.partition)).or_insert(-1);
            *at = (*at).max(record.offset);
        }
        assert_eq!(
            landed, last,
            "round {round}: the context's last offsets are the topic's"
        );
        assert!(
            producer.context().take_landed().is_empty(),
            "taken means gone"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_record_fails_the_commit_and_names_its_topic() {
    let small = unique("it-writer-small");
    let mut spec = oda_cdc_core::kafka::TopicSpec::retained(TopicClass::Internal, &small, 1)
        .with_partitions(1);
    spec.configs
        .insert("max.message.bytes".to_owned(), "2048".to_owned());
    create_topic_with(spec).await.expect("small topic");
    let roomy = unique("it-writer-roomy");
    create_topic(&roomy, 1).await.expect("topic");
    let producer = transactional_writer(
        &kafka(),
        &unique("it-writer-tx"),
        Duration::from_secs(30),
        &[],
        WriterContext::tracking_offsets(),
    )
    .await
    .expect("transactional writer");

    producer.begin_transaction().expect("begin");
    // Bytes no compression shrinks under the topic's 2 KiB.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let big: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 56) as u8
        })
        .collect();
    for i in 0..100 {
        let key = i.to_string();
        let fits: BaseRecord<'_, str, [u8]> =
            BaseRecord::to(&roomy).key(key.as_str()).payload(&big[..10]);
        hand_over(&producer, fits).await.expect("handed over");
    }
    let too_big: BaseRecord<'_, str, [u8]> = BaseRecord::to(&small).key("big").payload(&big);
    hand_over(&producer, too_big).await.expect("handed over");
    let committer = producer.clone();
    let committed = tokio::task::spawn_blocking(move || {
        committer.commit_transaction(Timeout::After(Duration::from_secs(30)))
    })
    .await
    .expect("join");
    assert!(
        committed.is_err(),
        "a transaction with a refused record does not commit"
    );
    let refused = producer
        .context()
        .take_refusal()
        .expect("the refusal is kept");
    assert_eq!(
        refused.topic, small,
        "it names the topic that refused: {refused}"
    );
    assert!(
        refusal::is_permanent(&refused.error),
        "too large is for good: {refused}"
    );
    let aborter = producer.clone();
    tokio::task::spawn_blocking(move || {
        aborter.abort_transaction(Timeout::After(Duration::from_secs(30)))
    })
    .await
    .expect("join")
    .expect("abort");
    let read = roomy.clone();
    let records = tokio::task::spawn_blocking(move || read_topic(&read))
        .await
        .expect("join")
        .expect("read");
    assert!(records.is_empty(), "the aborted records stay invisible");
}
