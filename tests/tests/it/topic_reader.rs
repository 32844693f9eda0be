//! The reader of topics to their end (`core::kafka::reader`): it stops at
//! the end each partition had when it started, stands at a real offset in
//! a partition it never read from, and is not held up by a writer that
//! keeps a transaction open all the time.

use std::time::{Duration, Instant};

use oda_cdc_core::kafka::{TopicReader, WriterContext, transactional_writer};
use oda_cdc_core::shutdown::CancellationToken;
use oda_cdc_testkit::{create_topic, kafka, unique};
use rdkafka::Offset;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::util::Timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_to_the_start_time_end_beside_a_writer_that_never_rests() {
    let topic = unique("it-reader");
    create_topic(&topic, 2).await.expect("topic");
    let writer = transactional_writer(
        &kafka(),
        &unique("it-reader-tx"),
        Duration::from_secs(30),
        &[],
        WriterContext::default(),
    )
    .await
    .expect("transactional producer");
    // 100 committed records, all in partition 0; partition 1 stays empty.
    writer.begin_transaction().expect("begin");
    for i in 0..100 {
        let value = i.to_string();
        writer
            .send(BaseRecord::to(&topic).partition(0).key("k").payload(&value))
            .map_err(|(error, _)| error)
            .expect("handed over");
    }
    writer
        .commit_transaction(Timeout::After(Duration::from_secs(10)))
        .expect("commit");

    // The writer keeps a transaction open nearly all the time from now on.
    let stop = CancellationToken::new();
    let busy = {
        let (writer, topic, stop) = (writer.clone(), topic.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rounds = 0u32;
            while !stop.is_cancelled() {
                writer.begin_transaction().expect("begin");
                let record = BaseRecord::to(&topic).partition(0).key("k").payload("busy");
                let _ = writer.send(record);
                std::thread::sleep(Duration::from_millis(250));
                writer
                    .commit_transaction(Timeout::After(Duration::from_secs(10)))
                    .expect("commit");
                rounds += 1;
            }
            rounds
        })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;

    let plan = [
        (topic.clone(), 0, Offset::Beginning),
        (topic.clone(), 1, Offset::Beginning),
    ];
    let (read, positions, took) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut reader = TopicReader::assign(&kafka(), "it-reader", &plan).expect("reader");
        let mut read = 0;
        reader
            .read_to_end(Duration::from_secs(30), &CancellationToken::new(), |_| {
                read += 1
            })
            .expect("caught up");
        (
            read,
            reader.positions().expect("positions"),
            started.elapsed(),
        )
    })
    .await
    .expect("join");
    stop.cancel();
    let rounds = busy.join().expect("writer");

    assert!(read >= 100, "read {read} records");
    assert!(
        rounds >= 2,
        "the writer kept writing: {rounds} transactions"
    );
    assert!(took < Duration::from_secs(15), "caught up in {took:?}");
    assert_eq!(
        positions.get(&(topic.clone(), 1)),
        Some(&0),
        "an empty partition stands at a real offset: {positions:?}"
    );
    assert!(
        positions[&(topic, 0)] >= 101,
        "past the first commit marker"
    );
}
