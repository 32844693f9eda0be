//! A source record larger than its topic takes
//! (contract.md#records-too-large), and a dead-letter topic that refuses
//! every letter (contract.md#writes-refused-for-good): the producer never
//! loops on either, and loses nothing.

use std::io::Read;
use std::time::Duration;

use oda_cdc_core::config::TopicClass;
use oda_cdc_core::kafka::TopicSpec;
use oda_cdc_testkit::{admin, create_topic_with, read_topic};
use oda_model::topics::Topics;
use oda_producer::StartFrom;
use rdkafka::admin::{AdminOptions, AlterConfig, ResourceSpecifier};
use serde_json::json;

use crate::harness::{
    Producer, Sim, converge, converge_where, free_port, producer_command, settings, wait_streaming,
};

/// The first id the changes after `seq` touched.
fn changed_id(sim: &Sim, after: usize) -> i64 {
    sim.log()
        .get(after)
        .map(|entry| i64::from(entry.id))
        .expect("a change was logged")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_larger_than_its_topic_takes_is_dead_lettered_and_the_entity_goes_on() {
    let sim = Sim::start(|_| {}).await;
    let initial = sim.initial(&["Sag"]);
    let mut settings = settings(&sim.sim.base_url(), &["Sag"]);
    // The client would send 8 MB; the topic takes 1 MiB and must say so.
    settings
        .kafka
        .properties
        .insert("message.max.bytes".into(), "8000000".into());
    let topics = settings.topics();
    let entity_topic = topics.entity("Sag");
    let mut spec = TopicSpec::compacted(TopicClass::Entity, topics.entity("Sag"));
    spec.configs
        .insert("max.message.bytes".into(), (1 << 20).to_string());
    create_topic_with(spec).await.expect("entity topic");
    let prefix = settings.kafka.topic_prefix.clone();
    let producer = Producer::start(settings, StartFrom::Beginning);
    wait_streaming(&prefix, "Sag", Duration::from_secs(60)).await;

    let before = sim.log().len();
    sim.mutate(json!({"entity": "Sag", "inflates": 1})).await;
    let inflated = changed_id(&sim, before);
    sim.mutate(json!({"entity": "Sag", "updates": 5, "inserts": 2}))
        .await;
    // Every other change arrives: the entity was not stopped by the one.
    let problems = converge_where(
        &sim,
        &prefix,
        &["Sag"],
        &initial,
        Duration::from_secs(60),
        |id| id != inflated,
    )
    .await;
    assert!(problems.is_empty(), "{problems:?}");
    let letters = tokio::task::spawn_blocking(move || read_topic(topics.dlq()).expect("dlq"))
        .await
        .expect("join");
    producer.stop().await;

    let letter = letters
        .iter()
        .find(|l| l.key.as_deref() == Some(inflated.to_string().as_str()))
        .unwrap_or_else(|| panic!("Sag {inflated} dead-lettered: {letters:?}"));
    assert_eq!(letter.header("oda.entity"), Some("Sag"));
    assert_eq!(letter.header("dlq.processor"), Some("oda-producer"));
    assert_eq!(letter.header("dlq.error.kind"), Some("encode"));
    let message = letter.header("dlq.error.message").unwrap_or_default();
    assert!(
        message.contains("too large")
            && message.contains(&entity_topic)
            && message.contains("1048576 bytes"),
        "a size note with the topic and its limit: {message}"
    );
    // The dead-letter topic takes about 1 MiB too: the raw row is left out
    // and the letter says so.
    assert!(letter.value.is_none());
    let omitted = letter.header("dlq.value.omitted").unwrap_or_default();
    let bytes: usize = omitted
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(bytes > 2 << 20, "{omitted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_topic_that_refuses_every_letter_stops_the_producer_and_nothing_is_lost() {
    let sim = Sim::start(|_| {}).await;
    let initial = sim.initial(&["Sag"]);
    let prefix = oda_cdc_testkit::unique("it-refused");
    let topics = Topics::new(&prefix, None);
    // No letter fits 300 bytes, not even without its value.
    let mut spec = TopicSpec::retained(TopicClass::Dlq, topics.dlq(), 1);
    spec.configs
        .insert("max.message.bytes".into(), "300".into());
    create_topic_with(spec).await.expect("dead-letter topic");
    let mut child = producer_command(&sim.sim.base_url(), &prefix, &["Sag"], &prefix, free_port())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("oda-producer starts");
    wait_streaming(&prefix, "Sag", Duration::from_secs(60)).await;

    // Every Sag page now carries a row without id: a letter each time.
    let faults = format!("http://{}/_sim/faults", sim.sim.addr);
    let http = reqwest::Client::new();
    let set = http
        .post(&faults)
        .json(&json!({"error_rate": 1.0, "kinds": ["row_without_id"], "entity": "Sag"}))
        .send()
        .await
        .expect("faults");
    assert_eq!(set.status(), 200);
    sim.mutate(json!({"entity": "Sag", "updates": 5})).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the producer stops by itself instead of restarting forever"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(topics.dlq()) && stderr.contains("refused 5 times in a row"),
        "names the topic and the bound: {stderr}"
    );

    // The operator fixes the topic; the next start publishes what the
    // stopped one could not, and nothing is lost.
    http.post(&faults)
        .json(&json!({"error_rate": 0.0}))
        .send()
        .await
        .expect("faults cleared");
    let admin = admin().expect("admin");
    let fixed = AlterConfig::new(ResourceSpecifier::Topic(topics.dlq()))
        .set("max.message.bytes", "1048588");
    admin
        .alter_configs(&[fixed], &AdminOptions::new())
        .await
        .expect("alter configs");
    let mut child = producer_command(&sim.sim.base_url(), &prefix, &["Sag"], &prefix, free_port())
        .spawn()
        .expect("oda-producer starts again");
    let problems = converge(&sim, &prefix, &["Sag"], &initial, Duration::from_secs(60)).await;
    let status = oda_cdc_testkit::terminate(&mut child, Duration::from_secs(10)).await;
    assert!(problems.is_empty(), "{problems:?}");
    assert!(status.success(), "{status:?}");
}
