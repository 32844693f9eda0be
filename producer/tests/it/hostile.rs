//! A hostile front before the source, for one entity set at a time: a body
//! of 2 GiB, a gzip bomb, a redirect to another host, `Retry-After` as an
//! HTTP-date and as 10⁹ seconds, a row without id, a row whose timestamp
//! is a number. Each time the producer stays up, the
//! other entity keeps flowing, the bad one loses nothing once the front
//! behaves (its cursor never passed what it did not publish), the metrics
//! show what happened, and the producer's peak RSS stays under the memory
//! limit of its Kubernetes manifest.

use std::time::Duration;

use serde_json::json;

use crate::harness::{Sim, converge, free_port, metric, producer_command, wait_streaming};

const ENTITIES: &[&str] = &["Sag", "Aktør"];

/// The producer's memory limit in `deploy/k8s/base/producer-deployment.yaml`.
fn manifest_memory_limit() -> u64 {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/k8s/base/producer-deployment.yaml"
    );
    let text = std::fs::read_to_string(path).expect("the producer's manifest");
    let limits = text.split("limits:").nth(1).expect("a limits section");
    let mebibytes: u64 = limits
        .lines()
        .find_map(|l| l.trim().strip_prefix("memory:"))
        .and_then(|v| v.trim().strip_suffix("Mi"))
        .and_then(|v| v.parse().ok())
        .expect("memory: <n>Mi");
    mebibytes << 20
}

/// Peak resident memory of a process (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(0, |kb| kb << 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_answers_for_one_entity_leave_the_producer_up_and_the_others_flowing() {
    let sim = Sim::start(|_| {}).await;
    let initial = sim.initial(ENTITIES);
    let prefix = oda_cdc_testkit::unique("it-hostile");
    let port = free_port();
    // A 10⁹ s Retry-After must wait `http.retry_after_max`, not 31 years.
    let mut child = producer_command(&sim.sim.base_url(), &prefix, ENTITIES, &prefix, port)
        .env("ODA_CDC_HTTP__RETRY_AFTER_MAX", "1s")
        .spawn()
        .expect("oda-producer starts");
    for entity in ENTITIES {
        wait_streaming(&prefix, entity, Duration::from_secs(60)).await;
    }

    let faults = format!("http://{}/_sim/faults", sim.sim.addr);
    let http = reqwest::Client::new();
    for kind in [
        "huge_body",
        "gzip_bomb",
        "redirect",
        "retry_after_date",
        "retry_after_huge",
        "row_without_id",
        "numeric_timestamp",
    ] {
        let set = http
            .post(&faults)
            .json(&json!({"error_rate": 1.0, "kinds": [kind], "entity": "Sag", "for": "6s"}))
            .send()
            .await
            .expect("faults");
        assert_eq!(set.status(), 200, "{kind}");
        // While Sag is behind the hostile front, both change.
        sim.mutate(json!({"entity": "Sag", "updates": 5})).await;
        sim.mutate(json!({"entity": "Aktør", "updates": 5})).await;
        let others = converge(&sim, &prefix, &["Aktør"], &initial, Duration::from_secs(5)).await;
        assert!(
            others.is_empty(),
            "{kind}: Aktør flows while Sag is attacked: {others:?}"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "{kind}: the producer is still up"
        );
        // The front behaves again: Sag catches up, nothing lost.
        let problems = converge(&sim, &prefix, ENTITIES, &initial, Duration::from_secs(60)).await;
        assert!(problems.is_empty(), "{kind}: {problems:?}");
    }

    let text = sim.scrape(port).await.expect("metrics");
    let peak = peak_rss(child.id());
    let status = oda_cdc_testkit::terminate(&mut child, Duration::from_secs(10)).await;
    assert!(status.success(), "exits 0 on SIGTERM: {status:?}");
    let counted = |status: &str| {
        metric(
            &text,
            &format!("oda_cdc_http_requests_total{{status=\"{status}\"}}"),
        )
    };
    assert!(
        counted("too_large") >= 2.0,
        "a 2 GiB body and a gzip bomb refused:\n{text}"
    );
    assert!(
        counted("302") >= 1.0,
        "the redirect was answered, not followed:\n{text}"
    );
    assert!(counted("429") >= 2.0, "throttled twice:\n{text}");
    assert!(
        metric(
            &text,
            "oda_cdc_polls_total{entity=\"Sag\",outcome=\"error\"}"
        ) > 0.0,
        "Sag's failed polls counted:\n{text}"
    );
    assert_eq!(
        metric(
            &text,
            "oda_cdc_polls_total{entity=\"Aktør\",outcome=\"error\"}"
        ),
        0.0,
        "Aktør never failed:\n{text}"
    );
    // Rows no one can key went to the dead-letter topic, raw, and Sag went on.
    let letters = oda_cdc_testkit::read_topic(oda_model::topics::Topics::new(&prefix, None).dlq())
        .expect("dead-letter topic");
    let reason = |needle: &str| {
        letters.iter().any(|l| {
            l.header("oda.entity") == Some("Sag")
                && l.header("dlq.error.kind") == Some("encode")
                && l.header("dlq.error.message")
                    .is_some_and(|m| m.contains(needle))
        })
    };
    assert!(
        reason("no integer id"),
        "a row without id lettered: {letters:?}"
    );
    assert!(
        reason("opdateringsdato"),
        "a numeric timestamp lettered: {letters:?}"
    );
    let limit = manifest_memory_limit();
    assert!(peak > 0, "VmHWM read");
    assert!(
        peak < limit,
        "peak RSS {} MiB over the manifest's {} MiB",
        peak >> 20,
        limit >> 20
    );
    eprintln!(
        "hostile front: peak RSS {} MiB (limit {} MiB)",
        peak >> 20,
        limit >> 20
    );
}
