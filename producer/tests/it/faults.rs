//! Source faults for a while: nothing lost or duplicated, bad pages never
//! move the cursor, the breaker opens and closes, and the metrics say so.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use oda_cdc_core::oda::{ClientTuning, RetryPolicy};
use oda_producer::app::RunOptions;
use oda_producer::worker::StartFrom;
use serde_json::json;

use crate::harness::{Producer, Sim, assert_no_problems, converge, settings, wait_streaming};

const ENTITIES: &[&str] = &["Sag", "Aktør"];

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The value of the first sample whose line starts with `prefix`, summed
/// over label sets.
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_faults_lose_nothing_and_show_in_the_metrics() {
    let sim = Sim::start(|_| {}).await;
    let initial = sim.initial(ENTITIES);
    let mut settings = settings(&sim.sim.base_url(), ENTITIES);
    let port = free_port();
    settings.metrics.addr = Some(SocketAddr::from(([127, 0, 0, 1], port)));
    let prefix = settings.kafka.topic_prefix.clone();
    let options = RunOptions {
        from: StartFrom::Beginning,
        http: ClientTuning {
            request_timeout: Duration::from_secs(1),
            retry: RetryPolicy {
                attempts: 3,
                base: Duration::from_millis(50),
                cap: Duration::from_millis(500),
            },
            breaker_threshold: 5,
            breaker_cool_down: Duration::from_secs(1),
            ..ClientTuning::default()
        },
    };
    let producer = Producer::start_with(settings, options);
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    wait_streaming(&prefix, "Sag", Duration::from_secs(60)).await;
    wait_streaming(&prefix, "Aktør", Duration::from_secs(60)).await;

    // First every request fails, in every failing way, for three seconds
    // (the breaker must open); then half of them answer with the filter
    // ignored (pages that must be refused), for three more.
    let phases = [
        json!({"error_rate": 1.0, "kinds": ["500", "503", "429", "truncate", "reset", "hang"], "for": "3s"}),
        json!({"error_rate": 0.5, "kinds": ["ignore_filter", "500"], "for": "3s"}),
    ];
    let mut worst_circuit: f64 = 0.0;
    for step in 0..35 {
        if step % 15 == 0 && step / 15 < phases.len() {
            let set = sim
                .http
                .post(format!("http://{}/_sim/faults", sim.sim.addr))
                .json(&phases[step / 15])
                .send()
                .await
                .expect("faults");
            assert_eq!(set.status(), 200);
        }
        sim.mutate(json!({"entity": "Sag", "inserts": 1, "updates": 3}))
            .await;
        sim.mutate(json!({"entity": "Aktør", "updates": 2})).await;
        if let Ok(response) = sim.http.get(&metrics_url).send().await
            && let Ok(text) = response.text().await
        {
            worst_circuit = worst_circuit.max(metric(&text, "oda_cdc_circuit_state"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let problems = converge(&sim, &prefix, ENTITIES, &initial, Duration::from_secs(60)).await;
    let text = sim
        .http
        .get(&metrics_url)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    producer.stop().await;
    assert_no_problems(&problems);
    assert_eq!(worst_circuit, 2.0, "the breaker opened during the faults");
    assert_eq!(
        metric(&text, "oda_cdc_circuit_state"),
        0.0,
        "and closed after"
    );
    assert!(metric(&text, "oda_cdc_http_retries_total") > 0.0);
    assert!(
        metric(
            &text,
            "oda_cdc_polls_total{entity=\"Sag\",outcome=\"invalid_page\"}"
        ) + metric(
            &text,
            "oda_cdc_polls_total{entity=\"Aktør\",outcome=\"invalid_page\"}"
        ) > 0.0,
        "ignore_filter answers were refused as invalid pages:\n{text}"
    );
    let errors: f64 = ["500", "503", "429"]
        .iter()
        .map(|s| {
            metric(
                &text,
                &format!("oda_cdc_http_requests_total{{status=\"{s}\"}}"),
            )
        })
        .sum();
    assert!(errors > 0.0, "error responses counted by status:\n{text}");
}
