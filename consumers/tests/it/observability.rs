//! Every metric the alert rules and the dashboard name is one the running
//! services export (scraped from a producer and a processor at work).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use oda_cdc_core::config::{Delivery, HumanDuration, Settings};
use oda_cdc_core::secret::Secret;
use oda_cdc_core::shutdown::CancellationToken;
use oda_cdc_testkit::{free_port, kafka, unique};
use oda_consumers::processors::normalize::Normalize;
use oda_consumers::processors::pgsink::PgSink;
use oda_consumers::runner::{self, RunOptions};
use oda_producer::RunOptions as ProducerOptions;
use oda_producer::StartFrom;
use oda_sim::SimConfig;

use crate::harness::settings;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");

/// `oda_cdc_…` names in a text, histogram suffixes folded into the family.
fn referenced(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("oda_cdc_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| f.ends_with("_seconds")))
            .unwrap_or(name);
        names.insert(family.to_owned());
        rest = &tail[end..];
    }
    names
}

/// Families a `/metrics` text declares.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect()
}

async fn scrape(port: u16) -> String {
    match reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

#[test]
fn the_name_scanner_finds_families() {
    let names =
        referenced("rate(oda_cdc_poll_duration_seconds_bucket[5m]) + oda_cdc_polls_total{x=\"y\"}");
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["oda_cdc_poll_duration_seconds", "oda_cdc_polls_total"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_dashboard_name_only_exported_metrics() {
    let mut wanted = BTreeSet::new();
    // The alert rules, and every dashboard there is.
    let mut files = vec![std::path::PathBuf::from(format!(
        "{DEPLOY}/prometheus/alerts.yml"
    ))];
    if let Ok(dashboards) = std::fs::read_dir(format!("{DEPLOY}/grafana/dashboards")) {
        files.extend(dashboards.filter_map(|e| Some(e.ok()?.path())));
    }
    for file in &files {
        let text = std::fs::read_to_string(file).expect("a deploy file");
        let names = referenced(&text);
        assert!(
            !names.is_empty(),
            "{} names no oda_cdc_ metric",
            file.display()
        );
        wanted.extend(names);
    }

    let sim = oda_sim::start(
        SimConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            scale: 1_000,
            ..SimConfig::default()
        },
        CancellationToken::new(),
    )
    .await
    .expect("sim");
    let prefix = unique("it-metrics");
    let producer_port = free_port();
    let mut produce = Settings {
        kafka: kafka(),
        ..Settings::default()
    };
    produce.kafka.topic_prefix = prefix.clone();
    produce.source.base_url = sim.base_url();
    produce.entities = Some(vec!["Sag".into()]);
    produce.poll.interval = HumanDuration::from(Duration::from_millis(500));
    // Completeness comes with a reconcile: have one soon.
    produce.reconcile.interval = HumanDuration::from(Duration::from_secs(2));
    produce.http.rate_limit = 0.0;
    produce.producer.transactional_id = unique("it-metrics-producer");
    produce.metrics.addr = Some(SocketAddr::from(([127, 0, 0, 1], producer_port)));
    let stop = CancellationToken::new();
    let producer_task = tokio::spawn(oda_producer::run(
        produce,
        ProducerOptions::from(StartFrom::Beginning),
        stop.clone(),
    ));
    let processor_port = free_port();
    let mut process = settings(&prefix, &["Sag"], Delivery::ExactlyOnce);
    process.metrics.addr = Some(SocketAddr::from(([127, 0, 0, 1], processor_port)));
    let processor_task = tokio::spawn(runner::run::<Normalize>(
        process,
        RunOptions {
            instance: "it".into(),
        },
        stop.clone(),
    ));

    // The PostgreSQL sink exports metrics of its own.
    let sink_port = free_port();
    let mut sink = settings(&prefix, &["Sag"], Delivery::ExactlyOnce);
    sink.metrics.addr = Some(SocketAddr::from(([127, 0, 0, 1], sink_port)));
    sink.postgres.url = Some(Secret::new(std::env::var("DATABASE_URL").expect(
        "DATABASE_URL must name the test database (scripts/test and scripts/stack set it)",
    )));
    sink.postgres.schema = unique("it_metrics").replace('-', "_");
    let sink_task = tokio::spawn(runner::run::<PgSink>(
        sink,
        RunOptions {
            instance: "it".into(),
        },
        stop.clone(),
    ));

    // Until all have worked (lag comes with librdkafka's statistics).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut families;
    loop {
        families = exported(&scrape(producer_port).await);
        families.extend(exported(&scrape(processor_port).await));
        families.extend(exported(&scrape(sink_port).await));
        if wanted.is_subset(&families) || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.cancel();
    producer_task.await.expect("join").expect("producer ran");
    processor_task.await.expect("join").expect("processor ran");
    sink_task.await.expect("join").expect("sink ran");
    let missing: Vec<&String> = wanted.difference(&families).collect();
    assert!(
        missing.is_empty(),
        "named in deploy/ but not exported: {missing:?}\nexported: {families:?}"
    );
}
