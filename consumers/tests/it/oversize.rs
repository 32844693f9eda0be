//! Records larger than a topic takes (contract.md#records-too-large) and
//! a dead-letter topic that refuses every letter
//! (contract.md#writes-refused-for-good): a processor never loops on them.

use std::time::Duration;

use oda_cdc_core::config::Delivery;
use oda_cdc_core::config::TopicClass;
use oda_cdc_core::kafka::TopicSpec;
use oda_cdc_core::shutdown::CancellationToken;
use oda_cdc_testkit::{create_topic_with, read_topic, unique};
use oda_consumers::processors::normalize::Normalize;
use oda_consumers::processors::passthrough::Passthrough;
use oda_consumers::replay::Cluster;
use oda_consumers::runner::{self, RunOptions};
use oda_model::event::headers;
use oda_model::topics::Topics;

use crate::harness::{Fixture, event, produce, read_at_least, sag, settings};

/// A topic of one partition that takes records up to `max_bytes`.
async fn topic(name: &str, max_bytes: usize) {
    let mut spec = TopicSpec::retained(TopicClass::Internal, name, 1).with_partitions(1);
    spec.configs
        .insert("max.message.bytes".into(), max_bytes.to_string());
    create_topic_with(spec).await.expect("topic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_larger_than_its_topic_takes_is_dead_lettered_and_the_stream_goes_on() {
    crate::harness::logs();
    let prefix = unique("it-oversize");
    let topics = Topics::new(&prefix, None);
    let input = topics.entity("Sag");
    let output = format!("{input}-processed");
    // The input takes 4 MiB; the processor's output topic only 1 MiB.
    topic(&input, 4 << 20).await;
    topic(&output, 1 << 20).await;
    let mut huge = sag(2);
    huge["resume"] = serde_json::Value::String("x".repeat(2 << 20));
    produce(
        &input,
        vec![
            Fixture::event(&event("Sag", 1, sag(1))),
            Fixture::event(&event("Sag", 2, huge)),
            Fixture::event(&event("Sag", 3, sag(3))),
        ],
    )
    .await;

    let settings = settings(&prefix, &["Sag"], Delivery::ExactlyOnce);
    let group = settings.consumer.group.clone().expect("group");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(runner::run::<Passthrough>(
        settings.clone(),
        RunOptions {
            instance: unique("it"),
        },
        shutdown.clone(),
    ));
    let processed = read_at_least(&output, 2, Duration::from_secs(60)).await;
    let letters = read_at_least(topics.dlq(), 1, Duration::from_secs(10)).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops within 10 s")
        .expect("join")
        .expect("runs without error");

    let keys: Vec<Option<String>> = processed.iter().map(|r| r.key.clone()).collect();
    assert_eq!(
        keys,
        [Some("1".to_owned()), Some("3".to_owned())],
        "the records around the large one are processed"
    );
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter.key.as_deref(), Some("2"));
    assert_eq!(letter.header("dlq.error.kind"), Some("processing"));
    assert_eq!(letter.header("dlq.original.topic"), Some(input.as_str()));
    assert_eq!(letter.header("dlq.original.partition"), Some("0"));
    assert_eq!(letter.header("dlq.original.offset"), Some("1"));
    assert_eq!(letter.header("dlq.consumer.group"), Some(group.as_str()));
    let message = letter.header("dlq.error.message").unwrap_or_default();
    assert!(
        message.contains("too large") && message.contains(&output),
        "a size note naming the topic: {message}"
    );
    // The dead-letter topic takes about 1 MiB too: the letter says where
    // the record is instead of holding it.
    assert!(letter.value.is_none(), "value left out");
    let omitted = letter.header("dlq.value.omitted").unwrap_or_default();
    assert!(
        omitted.starts_with(&format!(
            "{} bytes",
            read_topic(&input).expect("input")[1]
                .value
                .as_ref()
                .map_or(0, Vec::len)
        )),
        "{omitted}"
    );
    assert_eq!(
        letter.header(headers::ENTITY),
        Some("Sag"),
        "original headers kept"
    );

    // A redrive cannot put back a record it does not hold.
    let report = oda_consumers::replay::redrive::redrive(
        Cluster {
            kafka: &settings.kafka,
            topics: &settings.topics(),
        },
        None,
        false,
    )
    .expect("redrive");
    assert_eq!(report.without_value, 1, "{report:?}");
    assert_eq!(report.total(), 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_topic_that_refuses_every_letter_stops_the_processor() {
    crate::harness::logs();
    let prefix = unique("it-refused");
    let topics = Topics::new(&prefix, None);
    let input = topics.entity("Sag");
    topic(&input, 1 << 20).await;
    // No letter fits 300 bytes, not even without its value.
    topic(topics.dlq(), 300).await;
    produce(
        &input,
        vec![
            Fixture::event(&event("Sag", 1, sag(1))),
            Fixture {
                key: "garbage".into(),
                value: Some(b"\x00\x01 not an event".to_vec()),
                headers: vec![(headers::CONTENT_TYPE, headers::JSON.into())],
            },
        ],
    )
    .await;

    let settings = settings(&prefix, &["Sag"], Delivery::ExactlyOnce);

    let started = tokio::time::Instant::now();
    let ended = tokio::time::timeout(
        Duration::from_secs(120),
        // Normalize decodes its inputs: the garbage becomes a letter.
        runner::run::<Normalize>(
            settings,
            RunOptions {
                instance: unique("it"),
            },
            CancellationToken::new(),
        ),
    )
    .await
    .expect("the processor stops by itself, not restarting forever");
    let error = format!("{:#}", ended.expect_err("stops with an error"));
    assert!(
        error.contains(topics.dlq()) && error.contains("refused 5 times in a row"),
        "names the topic and the bound: {error}"
    );
    eprintln!("stopped after {:?}: {error}", started.elapsed());
    // Nothing was committed past the letter: the good record before it was
    // in the same aborted transactions.
    let processed = read_at_least(&format!("{input}-processed"), 0, Duration::ZERO).await;
    assert!(processed.is_empty(), "{processed:?}");
}
