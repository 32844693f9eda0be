//! Starting the simulator and the producer, and judging the topics by the
//! rules of contract.md#delivery-guarantees against the simulator's ground truth.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use oda_cdc_core::config::{HumanDuration, Settings};
use oda_cdc_core::shutdown::CancellationToken;
use oda_cdc_testkit::{ReadRecord, kafka, read_topic, unique};
use oda_producer::RunOptions;
use oda_producer::StartFrom;
use oda_sim::{RunningSim, SimConfig};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

pub(crate) struct Sim {
    pub(crate) sim: RunningSim,
    pub(crate) http: reqwest::Client,
}

impl Sim {
    pub(crate) async fn start(adjust: impl FnOnce(&mut SimConfig)) -> Self {
        let mut config = SimConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            scale: 3_000,
            seed: 11,
            precision: oda_sim::time::Precision::SqlServer,
            ..SimConfig::default()
        };
        adjust(&mut config);
        let sim = oda_sim::start(config, CancellationToken::new())
            .await
            .expect("sim starts");
        Self {
            sim,
            http: reqwest::Client::new(),
        }
    }

    pub(crate) async fn mutate(&self, body: Value) {
        let response = self
            .http
            .post(format!("http://{}/_sim/mutate", self.sim.addr))
            .json(&body)
            .send()
            .await
            .expect("mutate");
        assert_eq!(response.status(), 200, "{body}");
    }

    /// Current hashes of every row of each entity: the states the ground
    /// truth starts from.
    pub(crate) fn initial(&self, entities: &[&str]) -> HashMap<String, BTreeMap<i64, String>> {
        entities
            .iter()
            .map(|e| ((*e).to_owned(), self.hashes(e)))
            .collect()
    }

    /// Current content hash of every row of a set.
    pub(crate) fn hashes(&self, entity: &str) -> BTreeMap<i64, String> {
        let world = self.sim.state.world.read().expect("lock");
        let table = world.store.table(entity).expect("table");
        table
            .iter()
            .map(|(id, row)| (i64::from(id), table.hash(row)))
            .collect()
    }

    /// The `/metrics` text of a producer on `port`, `None` while it does
    /// not answer.
    pub(crate) async fn scrape(&self, port: u16) -> Option<String> {
        let response = self
            .http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .ok()?;
        response.text().await.ok()
    }

    /// The ground-truth log so far.
    pub(crate) fn log(&self) -> Vec<oda_sim::world::ChangeEntry> {
        self.sim.state.world.read().expect("lock").log.clone()
    }
}

/// Settings for a producer writing under a fresh topic prefix.
pub(crate) fn settings(base_url: &str, entities: &[&str]) -> Settings {
    let mut settings = Settings {
        kafka: kafka(),
        ..Settings::default()
    };
    settings.kafka.topic_prefix = unique("it");
    settings.source.base_url = base_url.to_owned();
    settings.entities = Some(entities.iter().map(|e| (*e).to_owned()).collect());
    settings.poll.interval = HumanDuration::from(Duration::from_millis(500));
    settings.http.rate_limit = 0.0;
    settings.http.max_in_flight = 4;
    settings.producer.transactional_id = unique("it-producer");
    settings.metrics.addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    settings
}

pub(crate) struct Producer {
    pub(crate) shutdown: CancellationToken,
    pub(crate) task: JoinHandle<anyhow::Result<()>>,
}

impl Producer {
    pub(crate) fn start(settings: Settings, from: StartFrom) -> Self {
        Self::start_with(settings, RunOptions::from(from))
    }

    pub(crate) fn start_with(settings: Settings, options: RunOptions) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(oda_producer::run(settings, options, shutdown.clone()));
        Self { shutdown, task }
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(15), self.task).await;
        let result = stopped
            .expect("the producer stops within 15 s")
            .expect("join");
        result.expect("the producer ran without error");
    }
}

/// One change event as read back.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) op: String,
    pub(crate) hash: Option<String>,
    pub(crate) opdateringsdato: Option<String>,
    pub(crate) backfill: Option<String>,
    pub(crate) value: Option<Value>,
}

/// Events per id in topic order (one key stays in one partition).
pub(crate) async fn events(topic: &str) -> BTreeMap<i64, Vec<Event>> {
    try_events(topic).await.expect("read topic")
}

/// Like [`events`], with an error for a topic not created yet.
pub(crate) async fn try_events(topic: &str) -> anyhow::Result<BTreeMap<i64, Vec<Event>>> {
    let topic = topic.to_owned();
    let records: Vec<ReadRecord> = tokio::task::spawn_blocking(move || read_topic(&topic))
        .await
        .expect("join")?;
    let mut by_id: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
    for record in records {
        let id: i64 = record
            .key
            .as_deref()
            .and_then(|k| k.parse().ok())
            .expect("numeric key");
        let value = record
            .value
            .as_deref()
            .map(|v| serde_json::from_slice(v).expect("JSON event"));
        by_id.entry(id).or_default().push(Event {
            op: record.header("oda.op").unwrap_or_default().to_owned(),
            hash: record.header("oda.hash").map(str::to_owned),
            opdateringsdato: record.header("oda.opdateringsdato").map(str::to_owned),
            backfill: record.header("oda.backfill").map(str::to_owned),
            value,
        });
    }
    Ok(by_id)
}

/// The states each id held, in order: its initial hash, then every change.
pub(crate) fn states(
    initial: &BTreeMap<i64, String>,
    log: &[oda_sim::world::ChangeEntry],
    entity: &str,
) -> HashMap<i64, Vec<Option<String>>> {
    let mut states: HashMap<i64, Vec<Option<String>>> = HashMap::new();
    for (id, hash) in initial {
        states.entry(*id).or_default().push(Some(hash.clone()));
    }
    for entry in log.iter().filter(|e| e.entity == entity) {
        states
            .entry(i64::from(entry.id))
            .or_default()
            .push(entry.hash.clone());
    }
    states
}

/// Checks contract.md#delivery-guarantees rules 1–3 for every id of one entity; returns problems.
pub(crate) fn judge(
    entity: &str,
    events: &BTreeMap<i64, Vec<Event>>,
    states: &HashMap<i64, Vec<Option<String>>>,
    current: &BTreeMap<i64, String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (id, hash) in current {
        match events.get(id).and_then(|e| e.last()) {
            None => problems.push(format!("{entity}({id}): never published")),
            Some(last) if last.hash.as_ref() != Some(hash) => {
                problems.push(format!(
                    "{entity}({id}): newest event {:?} is not the current state {hash}",
                    last.hash
                ));
            }
            Some(_) => {}
        }
    }
    for (id, list) in events {
        let held = states.get(id).cloned().unwrap_or_default();
        if !current.contains_key(id) {
            // Deleted: a `d` event, then a tombstone, end the key.
            let n = list.len();
            let ends_deleted = n >= 2
                && list[n - 1].value.is_none()
                && list[n - 1].op == "d"
                && list[n - 2].op == "d"
                && list[n - 2].value.as_ref().is_some_and(|v| v["op"] == "d");
            if !ends_deleted {
                problems.push(format!("{entity}({id}): deleted at the source, but the topic does not end with d + tombstone"));
            }
        }
        if list.iter().any(|e| e.op == "d") && !held.iter().any(Option::is_none) {
            problems.push(format!(
                "{entity}({id}): published as deleted, but the source never deleted it"
            ));
        }
        for pair in list.windows(2) {
            if pair[0].hash == pair[1].hash && pair[1].op != "r" && pair[1].op != "d" {
                problems.push(format!(
                    "{entity}({id}): two consecutive events with hash {:?}",
                    pair[1].hash
                ));
            }
        }
        // Published states are a subsequence, in order, of the states held.
        let mut at = 0;
        for event in list.iter().filter(|e| e.op != "d") {
            match held[at..]
                .iter()
                .position(|h| h.as_ref() == event.hash.as_ref())
            {
                Some(offset) => at += offset,
                None => {
                    problems.push(format!(
                        "{entity}({id}): published {:?} ({}) is not a later state of {held:?}",
                        event.hash, event.op
                    ));
                    break;
                }
            }
        }
        if let Some(first) = list.first()
            && !matches!(first.op.as_str(), "r" | "c")
        {
            problems.push(format!("{entity}({id}): first event is `{}`", first.op));
        }
        for event in list {
            if let Some(value) = &event.value
                && (value["id"] != json!(id) || value["entity"] != json!(entity))
            {
                problems.push(format!(
                    "{entity}({id}): envelope names {} {}",
                    value["entity"], value["id"]
                ));
            }
        }
    }
    problems
}

/// Waits until every entity's topic agrees with the source (or the time is up).
pub(crate) async fn converge(
    sim: &Sim,
    prefix: &str,
    entities: &[&str],
    initial: &HashMap<String, BTreeMap<i64, String>>,
    within: Duration,
) -> Vec<String> {
    converge_where(sim, prefix, entities, initial, within, |_| true).await
}

/// Like [`converge`], judging only the ids `keep` accepts.
pub(crate) async fn converge_where(
    sim: &Sim,
    prefix: &str,
    entities: &[&str],
    initial: &HashMap<String, BTreeMap<i64, String>>,
    within: Duration,
    keep: impl Fn(i64) -> bool,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let log = sim.log();
        let mut problems = Vec::new();
        for entity in entities {
            let topic = oda_model::topics::Topics::new(prefix, None).entity(entity);
            let mut events = events(&topic).await;
            events.retain(|id, _| keep(*id));
            let states = states(&initial[*entity], &log, entity);
            let mut current = sim.hashes(entity);
            current.retain(|id, _| keep(*id));
            problems.extend(judge(entity, &events, &states, &current));
        }
        if problems.is_empty() || tokio::time::Instant::now() > deadline {
            return problems;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// How many events of each op an entity's topic holds.
pub(crate) async fn op_counts(prefix: &str, entity: &str) -> BTreeMap<String, usize> {
    let topic = oda_model::topics::Topics::new(prefix, None).entity(entity);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for list in events(&topic).await.values() {
        for event in list {
            *counts.entry(event.op.clone()).or_default() += 1;
        }
    }
    counts
}

/// Fails with the first few problems a judge found.
pub(crate) fn assert_no_problems(problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{} problems, first: {:#?}",
        problems.len(),
        &problems[..problems.len().min(10)]
    );
}

/// Waits until `entity`'s committed checkpoint shows streaming (its
/// snapshot finished), so a test's changes land after it.
pub(crate) async fn wait_streaming(prefix: &str, entity: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let topic = oda_model::topics::Topics::new(prefix, None);
    loop {
        let t = topic.clone();
        let checkpoints =
            tokio::task::spawn_blocking(move || oda_producer::read_checkpoints(&kafka(), &t))
                .await
                .expect("join")
                .unwrap_or_default();
        let streaming = checkpoints
            .get(entity)
            .is_some_and(|c| c.snapshot.is_none() && c.cursor.is_some());
        if streaming {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{entity} did not finish its snapshot in time"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub(crate) use oda_cdc_testkit::free_port;

/// The value of the first sample whose line starts with `prefix`, summed
/// over label sets.
pub(crate) fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `oda-producer run --from beginning` as a child process (so a test can
/// `kill -9` it), polling `entities` every 300 ms without a rate limit.
pub(crate) fn spawn_producer(
    base_url: &str,
    prefix: &str,
    entities: &[&str],
    transactional_id: &str,
    port: u16,
) -> std::process::Child {
    producer_command(base_url, prefix, entities, transactional_id, port)
        .spawn()
        .expect("oda-producer starts")
}

/// The command [`spawn_producer`] runs, for a test that adds settings.
pub(crate) fn producer_command(
    base_url: &str,
    prefix: &str,
    entities: &[&str],
    transactional_id: &str,
    port: u16,
) -> std::process::Command {
    producer_command_args(
        &["run", "--from", "beginning"],
        base_url,
        prefix,
        entities,
        transactional_id,
        port,
    )
}

/// [`producer_command`] with other arguments (another subcommand).
pub(crate) fn producer_command_args(
    args: &[&str],
    base_url: &str,
    prefix: &str,
    entities: &[&str],
    transactional_id: &str,
    port: u16,
) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_oda-producer"));
    command
        .args(args)
        .env("KAFKA_BROKERS", kafka().brokers)
        .env("ODA_BASE_URL", base_url)
        .env("ODA_CDC_KAFKA__TOPIC_PREFIX", prefix)
        .env("ODA_CDC_ENTITIES", entities.join(","))
        .env("ODA_CDC_POLL__INTERVAL", "300ms")
        .env("ODA_CDC_HTTP__RATE_LIMIT", "0")
        .env("ODA_CDC_PRODUCER__TRANSACTIONAL_ID", transactional_id)
        .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    command
}

/// Posts each of `batches` to `/_sim/mutate` every 300 ms until `changing`
/// is cancelled, so changes keep coming through whatever a test breaks;
/// returns the rounds done.
pub(crate) fn keep_mutating(
    sim: &Sim,
    changing: &oda_cdc_core::shutdown::CancellationToken,
    batches: Vec<serde_json::Value>,
) -> tokio::task::JoinHandle<u32> {
    let changing = changing.clone();
    let http = sim.http.clone();
    let url = format!("http://{}/_sim/mutate", sim.sim.addr);
    tokio::spawn(async move {
        let mut rounds = 0u32;
        while !changing.is_cancelled() {
            for body in &batches {
                let _ = http.post(&url).json(body).send().await;
            }
            rounds += 1;
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        rounds
    })
}
