//! oda-pg-sink against a real PostgreSQL (`DATABASE_URL`), each test in a
//! schema of its own: schema changes, misfits and deletes on fixtures;
//! then the whole pipeline (oda-sim, the producer, the sink binary) under
//! mutations with the sink killed at random instants, compared with the
//! simulator's own rows.

use std::collections::BTreeMap;
use std::process::Child;
use std::time::Duration;

use chrono::NaiveDateTime;
use oda_cdc_core::config::{Delivery, Format, HumanDuration, Settings};
use oda_cdc_core::secret::Secret;
use oda_cdc_core::shutdown::CancellationToken;
use oda_cdc_testkit::{create_topic, free_port, kafka, registry, terminate, unique};
use oda_consumers::processors::pgsink::{OFFSETS_TABLE, PgSink, rebuild};
use oda_consumers::runner::{self, RunOptions};
use oda_model::event::{ChangeEvent, Op};
use oda_model::topics::{Topics, slug};
use oda_producer::{RunOptions as ProducerOptions, StartFrom};
use rand::Rng;
use serde_json::{Map, Value, json};
use tokio_postgres::Client;

use crate::harness::{
    Fixture, event, get, logs, processed, processor, produce, producer_settings, read_at_least,
    sag, settings, start_sim,
};

/// The test database; scripts/test starts PostgreSQL and sets it.
fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must name the test database (scripts/test and scripts/stack set it)")
}

/// A schema no other run uses.
fn fresh_schema() -> String {
    unique("it_pg").replace('-', "_")
}

async fn connect() -> Client {
    let (client, connection) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .expect("the test database answers");
    tokio::spawn(connection);
    client
}

/// The stored next offsets of a topic's partitions.
async fn stored_offsets(client: &Client, schema: &str, topic: &str) -> BTreeMap<i32, i64> {
    client
        .query(
            &format!(
                "SELECT partition, next_offset FROM {schema}.{OFFSETS_TABLE} WHERE topic = $1"
            ),
            &[&topic],
        )
        .await
        .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        .unwrap_or_default()
}

/// Each partition's end (high watermark), partitions that hold nothing left out.
fn end_offsets(topic: &str) -> BTreeMap<i32, i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = kafka()
        .consumer_config(&unique("ends"))
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .filter_map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            (high > 0).then_some((p, high))
        })
        .collect()
}

/// Waits until the stored offsets of `topic` equal its ends.
async fn wait_stored_at_end(client: &Client, schema: &str, topic: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let name = topic.to_owned();
        let ends = tokio::task::spawn_blocking(move || end_offsets(&name))
            .await
            .expect("join");
        let stored = stored_offsets(client, schema, topic).await;
        if stored == ends {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the offsets table of {topic} never reached the topic's ends: stored {stored:?}, \
             ends {ends:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A table's rows, `id → fields` (meta columns left out), timestamps
/// written one way.
async fn table_rows(
    client: &Client,
    schema: &str,
    table: &str,
) -> BTreeMap<i64, Map<String, Value>> {
    let rows = client
        .query(
            &format!("SELECT to_jsonb(t)::text FROM {schema}.\"{table}\" t"),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("reading {schema}.{table}: {e}"));
    rows.iter()
        .map(|row| {
            let text: String = row.get(0);
            let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&text) else {
                panic!("a row is an object")
            };
            let fields: Map<String, Value> = map
                .into_iter()
                .filter(|(k, _)| !k.starts_with('_'))
                .map(|(k, v)| (k, canonical(v)))
                .collect();
            (fields["id"].as_i64().expect("id"), fields)
        })
        .collect()
}

/// A timestamp literal as one format writes it (PostgreSQL drops trailing
/// zeros of the fraction, the source does not).
fn canonical(value: Value) -> Value {
    if let Value::String(text) = &value
        && let Ok(at) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
    {
        return Value::String(at.format("%Y-%m-%dT%H:%M:%S%.3f").to_string());
    }
    value
}

fn sink_settings(prefix: &str, entities: &[&str], schema: &str) -> Settings {
    let mut s = settings(prefix, entities, Delivery::ExactlyOnce);
    s.postgres.url = Some(Secret::new(database_url()));
    s.postgres.schema = schema.to_owned();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_fields_become_columns_misfits_are_dead_lettered_and_deletes_delete() {
    logs();
    let prefix = unique("it-pg");
    let schema = fresh_schema();
    let topics = Topics::new(&prefix, None);
    let input = topics.entity("Sag");
    create_topic(&input, 3).await.expect("input topic");

    let mut fixtures: Vec<Fixture> = (1..=40)
        .map(|id| Fixture::event(&event("Sag", id, sag(id))))
        .collect();
    let mut grown = sag(3);
    grown["nyfelt"] = json!("værdi");
    // Summer time: two hours ahead of UTC (the fixtures' own date is the
    // autumn fold, whose 02:30 has no single UTC time).
    grown["opdateringsdato"] = json!("2026-06-01T12:00:00.000");
    fixtures.push(Fixture::event(&event("Sag", 3, grown)));
    let mut retyped = sag(4);
    retyped["typeid"] = json!("fem");
    fixtures.push(Fixture::event(&event("Sag", 4, retyped)));
    fixtures.push(Fixture {
        key: "5".into(),
        value: None,
        headers: Vec::new(),
    });
    let deleted = ChangeEvent::new(
        Op::Delete,
        "Sag",
        6,
        None,
        None,
        "http://127.0.0.1:8089/api",
        &oda_model::odatime::format_utc(chrono::Utc::now()),
    );
    fixtures.push(Fixture::event(&deleted));
    produce(&input, fixtures).await;

    let stop = CancellationToken::new();
    let task = tokio::spawn(runner::run::<PgSink>(
        sink_settings(&prefix, &["Sag"], &schema),
        RunOptions {
            instance: unique("it"),
        },
        stop.clone(),
    ));
    let client = connect().await;
    wait_stored_at_end(&client, &schema, &input, Duration::from_secs(60)).await;

    let rows = table_rows(&client, &schema, "sag").await;
    assert_eq!(rows.len(), 38, "40 rows, one tombstoned, one deleted");
    assert!(!rows.contains_key(&5) && !rows.contains_key(&6));
    assert_eq!(
        rows[&3]["nyfelt"],
        json!("værdi"),
        "the new field has a column"
    );
    assert_eq!(rows[&2]["nyfelt"], Value::Null);
    assert_eq!(
        rows[&4]["typeid"],
        json!(3),
        "the misfit left the row as it was"
    );
    assert_eq!(rows[&1]["titel"], json!("Forslag til lov nr. 1"));
    assert_eq!(
        rows[&1]["opdateringsdato"],
        json!("2026-10-25T02:30:00.123"),
        "Danish local time, as the source gives it"
    );
    let column_type: String = client
        .query_one(
            "SELECT data_type::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = 'sag' AND column_name = 'nyfelt'",
            &[&schema],
        )
        .await
        .expect("the column exists")
        .get(0);
    assert_eq!(column_type, "text");
    let utc: Option<String> = client
        .query_one(
            &format!("SELECT to_char(_changed_utc AT TIME ZONE 'UTC', 'HH24:MI') FROM {schema}.sag WHERE id = 3"),
            &[],
        )
        .await
        .expect("row 3")
        .get(0);
    assert_eq!(
        utc.as_deref(),
        Some("10:00"),
        "the event's UTC time beside the local one"
    );

    let dead = read_at_least(topics.dlq(), 1, Duration::from_secs(30)).await;
    assert_eq!(dead.len(), 1, "one dead letter: {dead:?}");
    assert_eq!(dead[0].key.as_deref(), Some("4"));
    assert_eq!(dead[0].header("dlq.error.kind"), Some("processing"));
    assert!(
        dead[0]
            .header("dlq.error.message")
            .is_some_and(|m| m.contains("typeid")),
        "the dead letter names the field: {:?}",
        dead[0].headers
    );

    stop.cancel();
    task.await.expect("join").expect("the sink ran");
}

/// The sink binary, as an operator runs it, logging at `log`.
fn spawn_sink(prefix: &str, group: &str, schema: &str, entities: &str, log: &str) -> (Child, u16) {
    let port = free_port();
    let child = processor(
        env!("CARGO_BIN_EXE_oda-pg-sink"),
        prefix,
        group,
        "it-pg",
        port,
    )
    .env("ODA_CDC_ENTITIES", entities)
    .env("SCHEMA_REGISTRY_URL", registry().url)
    .env("DATABASE_URL", database_url())
    .env("ODA_CDC_POSTGRES__SCHEMA", schema)
    .env("RUST_LOG", log)
    .spawn()
    .expect("oda-pg-sink starts");
    (child, port)
}

/// The simulator's rows of `entity` (its ground truth), as the table
/// should hold them.
fn truth(sim: &oda_sim::RunningSim, entity: &str) -> BTreeMap<i64, Map<String, Value>> {
    let world = sim.state.world.read().unwrap_or_else(|p| p.into_inner());
    let table = world.store.table(entity).expect("a simulated set");
    table
        .iter()
        .map(|(id, row)| {
            let fields = table
                .row_map(row)
                .into_iter()
                .map(|(k, v)| (k, canonical(v)))
                .collect();
            (i64::from(id), fields)
        })
        .collect()
}

/// Where the mirror and the source differ, at most a few examples.
fn differences(
    mirror: &BTreeMap<i64, Map<String, Value>>,
    source: &BTreeMap<i64, Map<String, Value>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (id, row) in source {
        match mirror.get(id) {
            None => out.push(format!("{id} missing")),
            Some(got) => {
                for (field, value) in row {
                    let mirrored = got.get(field).unwrap_or(&Value::Null);
                    if mirrored != value {
                        out.push(format!("{id}.{field}: {mirrored} != {value}"));
                    }
                }
            }
        }
    }
    out.extend(
        mirror
            .keys()
            .filter(|id| !source.contains_key(id))
            .map(|id| format!("{id} deleted at the source but mirrored")),
    );
    out
}

const ENTITIES: &[&str] = &["Sag", "Sagstrin", "Stemme"];

async fn mutate(http: &reqwest::Client, base: &str, request: Value) {
    let root = base.trim_end_matches("/api");
    let answer = http
        .post(format!("{root}/_sim/mutate"))
        .json(&request)
        .send()
        .await
        .expect("mutate");
    assert!(answer.status().is_success(), "{request}: {answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_twenty_times_under_mutations_mirrors_the_source_row_for_row() {
    logs();
    let sim = start_sim(100, 15).await;
    let base = sim.base_url();
    let prefix = unique("it-pgk");
    let schema = fresh_schema();
    let group = unique("it-pgk-group");
    let mut produce = producer_settings(&prefix, &base, ENTITIES, Format::Avro);
    // Deletes are found by reconciling ids.
    produce.reconcile.interval = HumanDuration::from(Duration::from_secs(2));
    let stop_producer = CancellationToken::new();
    let producer_task = tokio::spawn(oda_producer::run(
        produce,
        ProducerOptions::from(StartFrom::Beginning),
        stop_producer.clone(),
    ));

    // Mutations all along: updates, inserts and deletes on every set, a
    // bulk re-stamp, and Sag gaining a field half-way.
    let http = reqwest::Client::new();
    let stop_mutating = CancellationToken::new();
    let mutator = {
        let (http, base, stop) = (http.clone(), base.clone(), stop_mutating.clone());
        tokio::spawn(async move {
            let mut round = 0u32;
            while !stop.is_cancelled() {
                round += 1;
                let entity = ENTITIES[round as usize % ENTITIES.len()];
                let mut request =
                    json!({"entity": entity, "updates": 6, "inserts": 2, "deletes": 1});
                if round == 15 {
                    request["restamps"] = json!(150);
                    request["same_timestamp"] = json!(true);
                }
                mutate(&http, &base, request).await;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };

    // Each life is killed after it has processed a random number of
    // records, at a random instant after that: mid-batch, mid-transaction
    // or between batches.
    let entities = ENTITIES.join(",");
    let (mut child, mut port) = spawn_sink(&prefix, &group, &schema, &entities, "warn");
    let mut rng = rand::rng();
    for kill in 0..20 {
        processed(port, rng.random_range(1..300)).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..200))).await;
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        if kill == 10 {
            mutate(
                &http,
                &base,
                json!({"entity": "Sag", "new_field": "nyt_felt", "updates": 25}),
            )
            .await;
        }
        // The life that must finish the job tells its story (sessions,
        // assignments, stuck fetches) should it not.
        let log = if kill == 19 { "info" } else { "warn" };
        (child, port) = spawn_sink(&prefix, &group, &schema, &entities, log);
    }
    stop_mutating.cancel();
    mutator.await.expect("mutator");

    // Quiet now: the producer catches up, the sink follows.
    let client = connect().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let mut last = Vec::new();
    loop {
        last.clear();
        for entity in ENTITIES {
            let source = truth(&sim, entity);
            let mirror = table_rows(&client, &schema, &slug(entity)).await;
            last.extend(
                differences(&mirror, &source)
                    .into_iter()
                    .take(5)
                    .map(|d| format!("{entity}: {d}")),
            );
        }
        if last.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            // Whether the last sink still reads, and how far behind it is.
            let (ready, why) = get(&format!("http://127.0.0.1:{port}/readyz")).await;
            let (_, metrics) = get(&format!("http://127.0.0.1:{port}/metrics")).await;
            let lag: Vec<&str> = metrics
                .lines()
                .filter(|l| l.starts_with("oda_cdc_consumer_lag{") && !l.ends_with(" 0"))
                .collect();
            panic!(
                "the mirror never equalled the source: {last:#?}\nthe sink: /readyz {ready} {why}; lag {lag:#?}"
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let filled: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {schema}.sag WHERE nyt_felt IS NOT NULL"),
            &[],
        )
        .await
        .expect("the new field's column")
        .get(0);
    assert!(
        filled >= 20,
        "rows changed after the field appeared fill it ({filled})"
    );
    let topics = Topics::new(&prefix, None);
    for entity in ENTITIES {
        wait_stored_at_end(
            &client,
            &schema,
            &topics.entity(entity),
            Duration::from_secs(30),
        )
        .await;
    }

    let status = terminate(&mut child, Duration::from_secs(10)).await;
    assert!(status.success(), "the last sink exits 0: {status:?}");
    stop_producer.cancel();
    producer_task.await.expect("join").expect("producer ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_while_the_sink_runs_ends_equal_and_readers_never_see_it_empty() {
    logs();
    let prefix = unique("it-pgr");
    let schema = fresh_schema();
    let topics = Topics::new(&prefix, None);
    let input = topics.entity("Sag");
    create_topic(&input, 3).await.expect("input topic");
    produce(
        &input,
        (1..=3_000)
            .map(|id| Fixture::event(&event("Sag", id, sag(id))))
            .collect(),
    )
    .await;
    let settings = sink_settings(&prefix, &["Sag"], &schema);
    let stop = CancellationToken::new();
    let task = tokio::spawn(runner::run::<PgSink>(
        settings.clone(),
        RunOptions {
            instance: unique("it"),
        },
        stop.clone(),
    ));
    let client = connect().await;
    wait_stored_at_end(&client, &schema, &input, Duration::from_secs(60)).await;

    // A reader counting all along, and a writer changing titles.
    let watching = CancellationToken::new();
    let reader = {
        let (schema, watching) = (schema.clone(), watching.clone());
        tokio::spawn(async move {
            let client = connect().await;
            let mut smallest = i64::MAX;
            let mut reads = 0u32;
            while !watching.is_cancelled() {
                let count: i64 = client
                    .query_one(&format!("SELECT count(*) FROM {schema}.sag"), &[])
                    .await
                    .expect("the table is always there")
                    .get(0);
                smallest = smallest.min(count);
                reads += 1;
            }
            (smallest, reads)
        })
    };
    let writer = {
        let (input, watching) = (input.clone(), watching.clone());
        tokio::spawn(async move {
            let mut round = 0;
            while !watching.is_cancelled() {
                round += 1;
                produce(
                    &input,
                    (1..=3_000)
                        .step_by(7)
                        .map(|id| {
                            let mut after = sag(id);
                            after["titel"] = json!(format!("runde {round}"));
                            Fixture::event(&event("Sag", id, after))
                        })
                        .collect(),
                )
                .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            round
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rebuilt = rebuild::rebuild(&settings, "sag", &CancellationToken::new())
        .await
        .expect("the rebuild swaps");
    assert_eq!(rebuilt.table, "sag");
    assert!(rebuilt.records >= 3_000, "{rebuilt:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    watching.cancel();
    let (smallest, reads) = reader.await.expect("reader");
    let rounds = writer.await.expect("writer");
    assert!(reads > 10, "the reader read all along ({reads})");
    assert_eq!(
        smallest, 3_000,
        "a reader never saw the table empty or partial"
    );

    wait_stored_at_end(&client, &schema, &input, Duration::from_secs(60)).await;
    let rows = table_rows(&client, &schema, "sag").await;
    assert_eq!(rows.len(), 3_000);
    let expected = format!("runde {rounds}");
    assert_eq!(rows[&1]["titel"], json!(expected), "the last change won");
    assert_eq!(rows[&2]["titel"], json!("Forslag til lov nr. 2"));
    let indexes: Vec<String> = client
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 AND tablename = 'sag' ORDER BY 1",
            &[&schema],
        )
        .await
        .expect("indexes")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        indexes.contains(&"sag_pkey".to_owned()) && indexes.contains(&"sag_typeid_idx".to_owned()),
        "the swapped table's indexes carry the live names: {indexes:?}"
    );
    stop.cancel();
    task.await.expect("join").expect("the sink ran");
}
