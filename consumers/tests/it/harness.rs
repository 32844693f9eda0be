//! Input fixtures and readers for the consumer tests.

use std::collections::BTreeMap;
use std::time::Duration;

use oda_cdc_core::config::{Delivery, Settings};
use oda_cdc_core::kafka::LogContext;
use oda_cdc_testkit::{ReadRecord, kafka, read_topic, unique};
use oda_model::event::{ChangeEvent, Op, headers};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

/// Settings for a processor under a fresh prefix, reading `entities`.
pub(crate) fn settings(prefix: &str, entities: &[&str], delivery: Delivery) -> Settings {
    let mut settings = Settings {
        kafka: kafka(),
        ..Settings::default()
    };
    settings.kafka.topic_prefix = prefix.to_owned();
    settings.entities = Some(entities.iter().map(|e| (*e).to_owned()).collect());
    settings.consumer.group = Some(unique("it-group"));
    settings.consumer.delivery = delivery;
    settings.metrics.addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    settings
}

/// A JSON change event of `entity` as the producer writes it.
pub(crate) fn event(entity: &str, id: i64, after: Value) -> ChangeEvent {
    ChangeEvent::new(
        Op::Create,
        entity,
        id,
        after.as_object().cloned(),
        after["opdateringsdato"].as_str().map(str::to_owned),
        "http://127.0.0.1:8089/api",
        &oda_model::odatime::format_utc(chrono::Utc::now()),
    )
}

/// One record to put on an input topic.
pub(crate) struct Fixture {
    pub(crate) key: String,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) headers: Vec<(&'static str, String)>,
}

impl Fixture {
    pub(crate) fn event(event: &ChangeEvent) -> Self {
        Self {
            key: event.key(),
            value: Some(event.to_json()),
            headers: vec![
                (headers::ENTITY, event.entity.clone()),
                (headers::OP, event.op.code().to_owned()),
                (headers::CONTENT_TYPE, headers::JSON.to_owned()),
            ],
        }
    }
}

/// Writes fixtures to `topic` (idempotent producer, acks=all; records up
/// to 16 MB, for a topic that takes them).
pub(crate) async fn produce(topic: &str, fixtures: Vec<Fixture>) {
    let producer: FutureProducer<LogContext> = kafka()
        .producer_config(None)
        .set("message.max.bytes", "16000000")
        .create_with_context(LogContext)
        .expect("producer");
    let mut deliveries = Vec::with_capacity(fixtures.len());
    for fixture in &fixtures {
        let mut headers = OwnedHeaders::new();
        for (name, value) in &fixture.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_bytes()),
            });
        }
        let mut record = FutureRecord::to(topic).key(&fixture.key).headers(headers);
        if let Some(value) = &fixture.value {
            record = record.payload(value);
        }
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((_, back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
    for delivery in deliveries {
        delivery.await.expect("delivered").expect("acknowledged");
    }
}

/// Reads a topic (read_committed), waiting until it holds at least `n`
/// records or `within` passes.
pub(crate) async fn read_at_least(topic: &str, n: usize, within: Duration) -> Vec<ReadRecord> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let name = topic.to_owned();
        let records = tokio::task::spawn_blocking(move || read_topic(&name))
            .await
            .expect("join")
            .unwrap_or_default();
        if records.len() >= n || tokio::time::Instant::now() > deadline {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Reads `topic` until it holds an output for each of `keys` distinct keys
/// (duplicates must not end the wait early) or `within` passes.
pub(crate) async fn outputs_for_keys(
    topic: &str,
    keys: usize,
    within: Duration,
) -> Vec<ReadRecord> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let outputs = read_at_least(topic, 0, Duration::ZERO).await;
        if by_key(&outputs).len() >= keys || tokio::time::Instant::now() > deadline {
            return outputs;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Fails unless ids `1..=n` each have exactly one output.
pub(crate) fn assert_each_once(outputs: &[ReadRecord], n: i64) {
    let counts = by_key(outputs);
    let missing: Vec<i64> = (1..=n)
        .filter(|id| !counts.contains_key(&id.to_string()))
        .take(10)
        .collect();
    let doubled: Vec<(&String, &usize)> =
        counts.iter().filter(|(_, c)| **c != 1).take(10).collect();
    assert!(missing.is_empty(), "inputs without output: {missing:?}…");
    assert!(
        doubled.is_empty(),
        "inputs with several outputs: {doubled:?}…"
    );
    assert_eq!(outputs.len(), n as usize);
}

/// Records per key.
pub(crate) fn by_key(records: &[ReadRecord]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for record in records {
        *counts
            .entry(record.key.clone().unwrap_or_default())
            .or_insert(0) += 1;
    }
    counts
}

/// A Sag record as the source sends it.
pub(crate) fn sag(id: i64) -> Value {
    json!({
        "id": id,
        "typeid": 3,
        "kategoriid": null,
        "statusid": 11,
        "titel": format!("Forslag til lov nr. {id}"),
        "titelkort": "",
        "offentlighedskode": "O",
        "nummer": null,
        "resume": "<p>Lovforslaget <strong>ændrer</strong>&nbsp;reglerne.</p>",
        "opdateringsdato": "2026-10-25T02:30:00.123"
    })
}

/// A processor binary's command, set up as every test runs one: the test
/// broker, a topic prefix, a group, an instance name and a metrics port.
pub(crate) fn processor(
    binary: &str,
    prefix: &str,
    group: &str,
    instance: &str,
    port: u16,
) -> std::process::Command {
    let mut command = std::process::Command::new(binary);
    command
        .args(["--instance", instance])
        .env("KAFKA_BROKERS", kafka().brokers)
        .env("ODA_CDC_KAFKA__TOPIC_PREFIX", prefix)
        .env("ODA_CDC_CONSUMER__GROUP", group)
        .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    command
}

/// A GET's status and body (status 0 and the error when nothing answered),
/// for a service's admin endpoints.
pub(crate) async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(answer) => (
            answer.status().as_u16(),
            answer.text().await.unwrap_or_default(),
        ),
        Err(error) => (0, error.to_string()),
    }
}

/// Log lines of the code under test, filtered by `RUST_LOG`.
pub(crate) fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Waits until this life has processed `records` records (or 10 s pass,
/// when the backlog is gone).
pub(crate) async fn processed(port: u16, records: u64) {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if let Ok(response) = http.get(&url).send().await
            && let Ok(text) = response.text().await
        {
            let done: u64 = text
                .lines()
                .filter(|l| l.starts_with("oda_cdc_consumer_records_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum();
            if done >= records {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// An in-process oda-sim on a free port.
pub(crate) async fn start_sim(scale: usize, seed: u64) -> oda_sim::RunningSim {
    oda_sim::start(
        oda_sim::SimConfig {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            scale,
            seed,
            ..oda_sim::SimConfig::default()
        },
        oda_cdc_core::shutdown::CancellationToken::new(),
    )
    .await
    .expect("sim")
}

/// Settings of a producer that captures `entities` from the simulator at
/// `base` under `prefix`, polling every 500 ms without a rate limit.
pub(crate) fn producer_settings(
    prefix: &str,
    base: &str,
    entities: &[&str],
    format: oda_cdc_core::config::Format,
) -> Settings {
    let mut produce = Settings {
        kafka: kafka(),
        schema_registry: oda_cdc_testkit::registry(),
        format,
        ..Settings::default()
    };
    produce.kafka.topic_prefix = prefix.to_owned();
    produce.source.base_url = base.to_owned();
    produce.entities = Some(entities.iter().map(|e| (*e).to_owned()).collect());
    produce.poll.interval = oda_cdc_core::config::HumanDuration::from(Duration::from_millis(500));
    produce.http.rate_limit = 0.0;
    produce.producer.transactional_id = unique(&format!("{prefix}-producer"));
    produce.metrics.addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    produce
}
