//! Poison records — bytes that do not decode, a record the processor
//! refuses, one that stays retryable — land in the dead-letter topic with
//! every header of contract.md#dead-letters and their key and value untouched, while the rest
//! is processed.

use std::collections::BTreeMap;
use std::time::Duration;

use oda_cdc_core::config::{Delivery, Settings};
use oda_cdc_core::shutdown::CancellationToken;
use oda_cdc_testkit::{create_topic, read_topic, unique};
use oda_consumers::processors::passthrough::entity_inputs;
use oda_consumers::runner::{self, RunOptions};
use oda_consumers::{Context, Input, Output, ProcessError, Processor};
use oda_model::event::headers;
use oda_model::topics::Topics;

use crate::harness::{Fixture, event, produce, read_at_least, sag, settings};

/// Passes records on, except id 13 (refused for good) and id 14 (busy
/// every time it is asked).
struct Picky;

impl Processor for Picky {
    const NAME: &'static str = "it-picky";
    const METRICS_PORT: u16 = 0;

    fn inputs(settings: &Settings, topics: &Topics) -> Vec<String> {
        entity_inputs(settings, topics)
    }

    async fn open(_context: &Context) -> anyhow::Result<Self> {
        Ok(Self)
    }

    fn process(&mut self, input: &Input<'_>) -> Result<Vec<Output>, ProcessError> {
        let event = input
            .event
            .ok_or_else(|| ProcessError::Permanent("tombstone".into()))?;
        match event.id {
            13 => Err(ProcessError::Permanent("unlucky number".into())),
            14 => Err(ProcessError::Retryable("always busy".into())),
            id => Output::json(id.to_string(), &serde_json::json!({"id": id})).map(|o| vec![o]),
        }
    }
}

const CONTRACT_HEADERS: [&str; 9] = [
    "dlq.original.topic",
    "dlq.original.partition",
    "dlq.original.offset",
    "dlq.consumer.group",
    "dlq.processor",
    "dlq.error.kind",
    "dlq.error.message",
    "dlq.attempts",
    "dlq.failed.at",
];

async fn poison_scenario(delivery: Delivery) {
    crate::harness::logs();
    let prefix = unique("it-dlq");
    let input = Topics::new(&prefix, None).entity("Sag");
    create_topic(&input, 3).await.expect("input topic");
    let mut fixtures: Vec<Fixture> = (1..=50)
        .map(|id| Fixture::event(&event("Sag", id, sag(id))))
        .collect();
    fixtures.push(Fixture {
        key: "garbage".into(),
        value: Some(b"\x00\x01 not an event".to_vec()),
        headers: vec![(headers::CONTENT_TYPE, headers::JSON.into())],
    });
    fixtures.push(Fixture {
        key: "unframed".into(),
        value: Some(b"{\"looks\": \"like json\"}".to_vec()),
        headers: vec![(headers::CONTENT_TYPE, headers::AVRO.into())],
    });
    produce(&input, fixtures).await;

    let mut settings = settings(&prefix, &["Sag"], delivery);
    settings.consumer.max_retries = Some(2);
    let group = settings.consumer.group.clone().expect("group");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(runner::run::<Picky>(
        settings,
        RunOptions {
            instance: unique("it"),
        },
        shutdown.clone(),
    ));

    let processed = read_at_least(&format!("{input}-processed"), 48, Duration::from_secs(60)).await;
    let letters = read_at_least(Topics::new(&prefix, None).dlq(), 4, Duration::from_secs(30)).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops within 10 s")
        .expect("join")
        .expect("runs without error");

    let mut outputs: Vec<String> = processed.iter().filter_map(|r| r.key.clone()).collect();
    outputs.sort_by_key(|k| k.parse::<i64>().unwrap_or(0));
    let expected: Vec<String> = (1..=50)
        .filter(|id| *id != 13 && *id != 14)
        .map(|id: i64| id.to_string())
        .collect();
    assert_eq!(outputs, expected, "every good record processed once");

    let originals: BTreeMap<String, oda_cdc_testkit::ReadRecord> = read_topic(&input)
        .expect("input")
        .into_iter()
        .map(|r| (r.key.clone().unwrap_or_default(), r))
        .collect();
    let mut kinds = BTreeMap::new();
    for letter in &letters {
        let key = letter.key.clone().expect("key kept");
        let original = &originals[&key];
        assert_eq!(letter.value, original.value, "{key}: value untouched");
        for name in CONTRACT_HEADERS {
            assert!(letter.header(name).is_some(), "{key}: header {name}");
        }
        assert_eq!(letter.header("dlq.original.topic"), Some(input.as_str()));
        assert_eq!(
            letter.header("dlq.original.partition"),
            Some(original.partition.to_string().as_str())
        );
        assert_eq!(
            letter.header("dlq.original.offset"),
            Some(original.offset.to_string().as_str())
        );
        assert_eq!(letter.header("dlq.consumer.group"), Some(group.as_str()));
        assert_eq!(letter.header("dlq.processor"), Some("it-picky"));
        assert!(
            chrono::DateTime::parse_from_rfc3339(letter.header("dlq.failed.at").unwrap_or(""))
                .is_ok()
        );
        kinds.insert(
            key,
            (
                letter.header("dlq.error.kind").unwrap_or("").to_owned(),
                letter.header("dlq.attempts").unwrap_or("").to_owned(),
            ),
        );
    }
    let pair = |k: &str, a: &str| (k.to_owned(), a.to_owned());
    assert_eq!(
        kinds,
        BTreeMap::from([
            ("13".to_owned(), pair("processing", "1")),
            ("14".to_owned(), pair("timeout", "3")),
            ("garbage".to_owned(), pair("decode", "1")),
            ("unframed".to_owned(), pair("decode", "1")),
        ]),
        "one letter per poison record, kind and attempts as contract.md#dead-letters says"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_dead_lettered_exactly_once_mode() {
    poison_scenario(Delivery::ExactlyOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_dead_lettered_at_least_once_mode() {
    poison_scenario(Delivery::AtLeastOnce).await;
}
