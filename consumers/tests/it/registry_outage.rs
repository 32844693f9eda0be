//! The schema registry, not the records, goes bad: it is stopped, then
//! refuses our credentials (401), then comes back. A processor must not
//! dead-letter a single valid record, must say why in `/readyz` and a
//! metric, and must go on by itself once the registry answers again. Only
//! bytes that really cannot be decoded (an id the registry does not know)
//! go to the dead-letter topic.
//!
//! The registry is the real one, behind a front this test controls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use apache_avro::writer::datum::GenericDatumWriter;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use oda_cdc_core::config::{Delivery, Settings};
use oda_cdc_core::shutdown::CancellationToken;
use oda_cdc_testkit::{create_topic, free_port, registry, unique};
use oda_consumers::processors::passthrough::entity_inputs;
use oda_consumers::runner::{self, RunOptions};
use oda_consumers::{Context, Input, Output, ProcessError, Processor};
use oda_model::avro::{envelope_schema, event_to_avro, render};
use oda_model::entity::entity_set;
use oda_model::event::headers;
use oda_model::topics::Topics;
use tokio::task::JoinHandle;

use crate::harness::{Fixture, event, get, produce, read_at_least, settings};

/// Decodes every record (the registry is on its path) and echoes the id.
struct Echo;

impl Processor for Echo {
    const NAME: &'static str = "it-echo";
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
        Output::json(event.id.to_string(), &serde_json::json!({"id": event.id})).map(|o| vec![o])
    }
}

const FORWARD: u8 = 0;
const UNAUTHORIZED: u8 = 1;

/// The registry as the processor sees it: forwarded, or answering 401.
/// Stopping it (aborting its task) closes the port: connection refused.
struct Front {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    task: Option<JoinHandle<()>>,
}

async fn forward(
    State((mode, upstream)): State<(Arc<AtomicU8>, String)>,
    request: Request,
) -> Response {
    if mode.load(Ordering::SeqCst) == UNAUTHORIZED {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"error_code":401,"message":"Unauthorized"}"#,
        )
            .into_response();
    }
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let base = upstream.trim_end_matches('/');
    let path = path.strip_prefix("/front").unwrap_or(&path);
    match reqwest::get(format!("{base}{path}")).await {
        Ok(answer) => {
            let status =
                StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, answer.bytes().await.unwrap_or_default()).into_response()
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

impl Front {
    fn new() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            mode: Arc::new(AtomicU8::new(FORWARD)),
            task: None,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/front", self.addr)
    }

    async fn start(&mut self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
        if self.task.is_some() {
            return;
        }
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("front binds");
        let app = Router::new()
            .fallback(forward)
            .with_state((Arc::clone(&self.mode), registry().url));
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// `n` Sag events in the Confluent wire format, their schema registered
/// under the topic's subject in the real registry.
async fn avro_events(topic: &str, ids: std::ops::RangeInclusive<i64>) -> Vec<Fixture> {
    let set = entity_set("Sag").expect("Sag");
    let text = render(&envelope_schema(set));
    let schema = apache_avro::Schema::parse_str(&text).expect("schema");
    let id = registry()
        .client()
        .expect("registry client")
        .register_avro(&format!("{topic}-value"), &text)
        .await
        .expect("registered");
    let writer = GenericDatumWriter::builder(&schema)
        .build()
        .expect("writer");
    // A real Sag record (every field the schema needs), renumbered.
    let sample: serde_json::Value =
        serde_json::from_str(oda_model::samples::complete("Sag").expect("sample")).expect("JSON");
    ids.map(|n| {
        let mut record = sample[0].clone();
        record["id"] = n.into();
        let change = event("Sag", n, record);
        let datum = writer
            .write_value_to_vec(event_to_avro(&change, set).expect("encodes"))
            .expect("datum");
        let mut value = vec![0];
        value.extend_from_slice(&id.to_be_bytes());
        value.extend_from_slice(&datum);
        Fixture {
            key: n.to_string(),
            value: Some(value),
            headers: vec![
                (headers::ENTITY, "Sag".into()),
                (headers::CONTENT_TYPE, headers::AVRO.into()),
            ],
        }
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_and_refusal_dead_letter_nothing_and_heal_by_themselves() {
    crate::harness::logs();
    let prefix = unique("it-registry");
    let topics = Topics::new(&prefix, None);
    let input = topics.entity("Sag");
    create_topic(&input, 3).await.expect("input topic");
    let mut fixtures = avro_events(&input, 1..=40).await;
    // Framed like Avro, with a schema id no registry has: really undecodable.
    fixtures.push(Fixture {
        key: "unknown-schema".into(),
        value: Some(vec![0, 0x7f, 0xff, 0xff, 0xf0, 2, 4, 6]),
        headers: vec![(headers::CONTENT_TYPE, headers::AVRO.into())],
    });
    produce(&input, fixtures).await;

    let mut front = Front::new();
    let mut settings = settings(&prefix, &["Sag"], Delivery::ExactlyOnce);
    settings.schema_registry.url = front.url();
    let admin_port = free_port();
    settings.metrics.addr = Some(SocketAddr::from(([127, 0, 0, 1], admin_port)));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(runner::run::<Echo>(
        settings,
        RunOptions {
            instance: unique("it"),
        },
        shutdown.clone(),
    ));
    let output = format!("{input}-processed");
    let admin = format!("http://127.0.0.1:{admin_port}");

    // Stopped: nothing decodes, nothing is dead-lettered, /readyz says why.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(read_at_least(&output, 0, Duration::ZERO).await.is_empty());
    assert!(
        read_at_least(topics.dlq(), 0, Duration::ZERO)
            .await
            .is_empty(),
        "nothing dead-lettered while the registry is away"
    );
    let (status, report) = get(&format!("{admin}/readyz")).await;
    assert_eq!(status, 503, "{report}");
    assert!(
        report.contains("registry: failed: schema registry unavailable"),
        "{report}"
    );

    // Refusing our credentials, for less than the grace.
    front.start(UNAUTHORIZED).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        read_at_least(topics.dlq(), 0, Duration::ZERO)
            .await
            .is_empty(),
        "nothing dead-lettered on a 401"
    );
    let (_, metrics) = get(&format!("{admin}/metrics")).await;
    let count = |kind: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("oda_cdc_registry_errors_total")
                    && l.contains(&format!("kind=\"{kind}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(count("unavailable") >= 1.0, "{metrics}");
    assert!(count("unauthorized") >= 1.0, "{metrics}");

    // Back: every record goes through, by itself.
    front.start(FORWARD).await;
    let outputs = read_at_least(&output, 40, Duration::from_secs(60)).await;
    let letters = read_at_least(topics.dlq(), 1, Duration::from_secs(10)).await;
    let (status, report) = get(&format!("{admin}/readyz")).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops within 10 s")
        .expect("join")
        .expect("runs without error");

    let mut ids: Vec<i64> = outputs
        .iter()
        .filter_map(|r| r.key.as_deref()?.parse().ok())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=40).collect::<Vec<_>>(), "each valid record once");
    assert_eq!(letters.len(), 1, "only the undecodable record: {letters:?}");
    assert_eq!(letters[0].key.as_deref(), Some("unknown-schema"));
    assert_eq!(letters[0].header("dlq.error.kind"), Some("decode"));
    assert_eq!(status, 200, "ready again: {report}");
}
