//! Injected faults arrive at the configured rate, in the configured
//! kinds, and show in `/_sim/stats`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::Sim;

async fn set_faults(sim: &Sim, body: Value) -> Value {
    let response = sim
        .http
        .post(sim.url("/_sim/faults"))
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

async fn stats(sim: &Sim) -> Value {
    sim.json(&sim.url("/_sim/stats")).await
}

#[tokio::test]
async fn error_rate_and_kinds_hold_within_tolerance_and_are_counted() {
    let sim = Sim::start(|_| {}).await;
    let active = set_faults(
        &sim,
        json!({"error_rate": 0.3, "kinds": ["500", "503", "429"]}),
    )
    .await;
    assert_eq!(active["error_rate"], 0.3);
    const N: usize = 600;
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for _ in 0..N {
        let response = sim
            .http
            .get(sim.api("Periode?$top=1"))
            .send()
            .await
            .expect("get");
        let status = response.status().as_u16();
        if status == 429 {
            assert_eq!(
                response.headers()["retry-after"],
                "1",
                "429 carries Retry-After"
            );
        }
        *by_status.entry(status).or_default() += 1;
    }
    let failed = N - by_status.get(&200).copied().unwrap_or(0);
    let rate = failed as f64 / N as f64;
    // Binomial(600, 0.3): sd ≈ 0.019; ±0.08 is over four sd.
    assert!((rate - 0.3).abs() < 0.08, "observed error rate {rate}");
    for status in [500, 503, 429] {
        let n = by_status.get(&status).copied().unwrap_or(0);
        assert!(n > 20, "kind {status} drawn {n} times of about 60");
    }
    let stats = stats(&sim).await;
    let counted: u64 = ["500", "503", "429"]
        .iter()
        .map(|k| stats["faults"][k].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        counted as usize, failed,
        "stats count every injected fault: {stats}"
    );
    assert!(stats["requests"].as_u64().expect("requests") >= N as u64);

    set_faults(&sim, json!({})).await;
    assert_eq!(
        sim.status(&sim.api("Periode?$top=1")).await,
        200,
        "{{}} clears the faults"
    );
}

#[tokio::test]
async fn faults_for_a_duration_expire() {
    let sim = Sim::start(|_| {}).await;
    set_faults(
        &sim,
        json!({"error_rate": 1.0, "kinds": ["503"], "for": "300ms"}),
    )
    .await;
    assert_eq!(sim.status(&sim.api("Periode")).await, 503);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sim.status(&sim.api("Periode")).await, 200);
}

#[tokio::test]
async fn truncated_bodies_resets_hangs_and_ignored_filters_look_like_the_real_failures() {
    let sim = Sim::start(|_| {}).await;
    let url = sim.api("Sag?$filter=id lt 2000&$orderby=id");

    set_faults(&sim, json!({"error_rate": 1.0, "kinds": ["truncate"]})).await;
    let response = sim.http.get(&url).send().await.expect("get");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("text");
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "a truncated body is not JSON"
    );

    set_faults(&sim, json!({"error_rate": 1.0, "kinds": ["reset"]})).await;
    let outcome = async { sim.http.get(&url).send().await?.bytes().await }.await;
    assert!(outcome.is_err(), "the connection breaks mid-body");

    set_faults(&sim, json!({"error_rate": 1.0, "kinds": ["hang"]})).await;
    let hung = sim
        .http
        .get(&url)
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(hung.expect_err("no answer").is_timeout());

    set_faults(&sim, json!({"error_rate": 1.0, "kinds": ["ignore_filter"]})).await;
    let ignored = sim
        .json(&sim.api("Sag?$filter=id lt 2000&$inlinecount=allpages&$top=5"))
        .await;
    set_faults(&sim, json!({})).await;
    let all = sim.json(&sim.api("Sag?$inlinecount=allpages&$top=5")).await;
    let filtered = sim
        .json(&sim.api("Sag?$filter=id lt 2000&$inlinecount=allpages&$top=5"))
        .await;
    assert_eq!(
        ignored["odata.count"], all["odata.count"],
        "the filter was ignored"
    );
    assert_ne!(filtered["odata.count"], all["odata.count"]);

    let stats = stats(&sim).await;
    for kind in ["truncate", "reset", "hang", "ignore_filter"] {
        assert!(
            stats["faults"][kind].as_u64().unwrap_or(0) >= 1,
            "{kind} counted: {stats}"
        );
    }
}

#[tokio::test]
async fn latency_and_jitter_delay_every_response() {
    let sim = Sim::start(|_| {}).await;
    set_faults(&sim, json!({"latency": "100ms", "jitter": "50ms"})).await;
    let mut elapsed = Vec::new();
    for _ in 0..10 {
        let started = std::time::Instant::now();
        assert_eq!(sim.status(&sim.api("Periode?$top=1")).await, 200);
        elapsed.push(started.elapsed());
    }
    assert!(
        elapsed.iter().all(|e| *e >= Duration::from_millis(100)),
        "{elapsed:?}"
    );
    assert!(
        elapsed.iter().any(|e| *e > Duration::from_millis(105)),
        "jitter varies: {elapsed:?}"
    );
    let bad = sim
        .http
        .post(sim.url("/_sim/faults"))
        .json(&json!({"latency": "soon"}))
        .send()
        .await
        .expect("post");
    assert_eq!(bad.status(), 400);
}
