//! Source faults for a while: nothing lost or duplicated, bad pages never
//! move the cursor, the breaker opens and closes, and the metrics say so.

use std::net::SocketAddr;
use std::time::Duration;

use oda_cdc_core::oda::{ClientTuning, RetryPolicy};
use oda_producer::RunOptions;
use oda_producer::StartFrom;
use serde_json::json;

use crate::harness::{
    Producer, Sim, assert_no_problems, converge, free_port, metric, op_counts, settings,
    wait_streaming,
};

const ENTITIES: &[&str] = &["Sag", "Aktør"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_faults_lose_nothing_and_show_in_the_metrics() {
    let sim = Sim::start(|_| {}).await;
    let initial = sim.initial(ENTITIES);
    let mut settings = settings(&sim.sim.base_url(), ENTITIES);
    let port = free_port();
    settings.metrics.addr = Some(SocketAddr::from(([127, 0, 0, 1], port)));
    let prefix = settings.kafka.topic_prefix.clone();
    let options = RunOptions {
        http: Some(ClientTuning {
            request_timeout: Duration::from_secs(1),
            retry: RetryPolicy {
                attempts: 3,
                base: Duration::from_millis(50),
                cap: Duration::from_millis(500),
            },
            breaker_threshold: 5,
            breaker_cool_down: Duration::from_secs(1),
            ..ClientTuning::default()
        }),
        ..RunOptions::from(StartFrom::Beginning)
    };
    let producer = Producer::start_with(settings, options);
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
        if let Some(text) = sim.scrape(port).await {
            worst_circuit = worst_circuit.max(metric(&text, "oda_cdc_circuit_state"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let problems = converge(&sim, &prefix, ENTITIES, &initial, Duration::from_secs(60)).await;
    let text = sim.scrape(port).await.expect("metrics");
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

/// An outage in the middle of the initial snapshot: the retry goes on from
/// the ranges' progress, so rows read before the outage and changed during
/// it are not read out a second time as `r`; the change follows as `u`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_mid_snapshot_resumes_it_without_second_reads() {
    const STEMME: &[&str] = &["Stemme"];
    let sim = Sim::start(|c| {
        c.scale = 20_000;
        c.faults.latency = Duration::from_millis(100);
    })
    .await;
    let initial = sim.initial(STEMME);
    let mut settings = settings(&sim.sim.base_url(), STEMME);
    // One range of ~200 pages: a snapshot of about 20 s.
    settings.http.max_in_flight = 1;
    let port = free_port();
    settings.metrics.addr = Some(SocketAddr::from(([127, 0, 0, 1], port)));
    let prefix = settings.kafka.topic_prefix.clone();
    let options = RunOptions {
        http: Some(ClientTuning {
            request_timeout: Duration::from_secs(2),
            retry: RetryPolicy {
                attempts: 2,
                base: Duration::from_millis(20),
                cap: Duration::from_millis(100),
            },
            ..ClientTuning::default()
        }),
        ..RunOptions::from(StartFrom::Beginning)
    };
    let producer = Producer::start_with(settings, options);

    // Wait until a good part of the snapshot is committed, then fail every
    // request for two seconds while rows (read and unread) change.
    let total = initial["Stemme"].len();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        // The metric, not the topic: a read_committed reader of a topic
        // under a stream of transactions only ends when they pause.
        let read = sim.scrape(port).await.map_or(0, |text| {
            metric(
                &text,
                "oda_cdc_records_published_total{entity=\"Stemme\",op=\"r\"}",
            ) as usize
        });
        assert!(
            read < total,
            "the snapshot ended before the outage; slow it down"
        );
        if read >= total / 10 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the snapshot does not progress"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let outage = sim
        .http
        .post(format!("http://{}/_sim/faults", sim.sim.addr))
        .json(&json!({"error_rate": 1.0, "kinds": ["500"], "for": "2s"}))
        .send()
        .await
        .expect("faults");
    assert_eq!(outage.status(), 200);
    for _ in 0..4 {
        sim.mutate(json!({"entity": "Stemme", "updates": 150, "same_timestamp": true}))
            .await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }

    let problems = converge(&sim, &prefix, STEMME, &initial, Duration::from_secs(90)).await;
    let text = sim.scrape(port).await.expect("metrics");
    producer.stop().await;
    assert_no_problems(&problems);
    assert!(
        metric(
            &text,
            "oda_cdc_polls_total{entity=\"Stemme\",outcome=\"error\"}"
        ) > 0.0,
        "the outage interrupted the snapshot:\n{text}"
    );
    let events =
        crate::harness::events(&oda_model::topics::Topics::new(&prefix, None).entity("Stemme"))
            .await;
    let read_twice: Vec<i64> = events
        .iter()
        .filter(|(_, list)| list.iter().filter(|e| e.op == "r").count() > 1)
        .map(|(id, _)| *id)
        .collect();
    assert!(read_twice.is_empty(), "ids read out twice: {read_twice:?}");
    let counts = op_counts(&prefix, "Stemme").await;
    assert_eq!(counts.get("r").copied(), Some(total), "{counts:?}");
}
