//! What a processor is: a record in, zero or more records out, and an
//! error that says whether trying again can help. Everything else (group,
//! decoding, retries, dead letters, transactions) is the runner's.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use oda_cdc_core::config::TopicClass;
use oda_cdc_core::config::{ConfigError, Settings};
use oda_cdc_core::health::Health;
use oda_cdc_core::kafka::TopicSpec;
use oda_cdc_core::shutdown::CancellationToken;
use oda_model::event::{ChangeEvent, headers};
use oda_model::topics::Topics;
use prometheus::Registry;
use serde::Serialize;

/// One input record as the runner hands it over.
#[derive(Debug)]
pub struct Input<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Broker timestamp, epoch milliseconds.
    pub timestamp: Option<i64>,
    pub key: Option<&'a str>,
    /// The value as it was on the topic (Avro or JSON), `None` for a tombstone.
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(String, Vec<u8>)],
    /// The decoded change event; `None` for a tombstone, and for every
    /// record a processor does not want decoded ([`Processor::decodes`]).
    pub event: Option<&'a ChangeEvent>,
}

impl Input<'_> {
    /// The value of a header, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        oda_cdc_core::dead_letter::header_text(self.headers, name)
    }
}

/// One output record.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// `None`: the processor's output topic for this input.
    pub topic: Option<String>,
    /// `None`: the producer's partitioner picks one by key. A processor
    /// that keeps partitioned state (a changelog beside a repartition
    /// topic) places records itself.
    pub partition: Option<i32>,
    pub key: Option<String>,
    /// `None` writes a tombstone.
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Output {
    /// A JSON document under `key`, marked `content-type: application/json`.
    pub fn json(key: impl Into<String>, document: &impl Serialize) -> Result<Self, ProcessError> {
        let value = serde_json::to_vec(document)
            .map_err(|e| ProcessError::Permanent(format!("output is not JSON: {e}")))?;
        Ok(Self {
            topic: None,
            partition: None,
            key: Some(key.into()),
            value: Some(value),
            headers: vec![(headers::CONTENT_TYPE.to_owned(), headers::JSON.into())],
        })
    }

    /// A tombstone for `key` (the compacted output forgets it).
    pub fn tombstone(key: impl Into<String>) -> Self {
        Self {
            topic: None,
            partition: None,
            key: Some(key.into()),
            value: None,
            headers: Vec::new(),
        }
    }

    /// Sends this output to `topic` instead of the default.
    pub fn to(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// Sends this output to one partition of its topic.
    pub fn at_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// Why a record could not be processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// Trying again may help (a table not loaded yet, a busy dependency):
    /// retried with backoff up to `consumer.max_retries`, then dead-lettered.
    #[error("{0}")]
    Retryable(String),
    /// The record itself is wrong: dead-lettered at once.
    #[error("{0}")]
    Permanent(String),
}

/// A reason `open` fails that no restart can fix (topics that do not fit
/// together, say): the processor stops with exit code 1 instead of
/// retrying. Return it through `anyhow` (`Err(Unusable(…).into())`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unusable(pub String);

/// What a processor gets when it is opened.
#[derive(Debug, Clone)]
pub struct Context {
    pub settings: Settings,
    /// Every topic name, built once by the runner from the settings.
    pub topics: Topics,
    /// Register the processor's own metrics here.
    pub registry: Registry,
    pub health: Health,
    pub shutdown: CancellationToken,
}

/// A processor binary's logic. `main` is then one line:
/// `oda_consumers::main::<MyProcessor>()`.
pub trait Processor: Send + Sized + 'static {
    /// The binary's name: the default consumer group, the `processor`
    /// metric label and the `dlq.processor` header.
    const NAME: &'static str;
    /// The default port of `/metrics` (contract.md#defaults-and-ports).
    const METRICS_PORT: u16;

    /// How often an idle instance hands [`Processor::flush`] an empty
    /// batch (for output that does not wait for input, such as a recount
    /// after a table changed); `None`: only batches of records.
    const TICK: Option<Duration> = None;

    /// Settings this processor needs beyond the common ones, checked
    /// before anything starts: a missing or bad one exits 2 naming its key.
    fn check_settings(_settings: &Settings) -> Result<(), ConfigError> {
        Ok(())
    }

    /// The topics to read.
    fn inputs(settings: &Settings, topics: &Topics) -> Vec<String>;

    /// Where an output without a topic of its own goes: by default the
    /// input's `-processed` topic (contract.md#topics).
    fn output_topic(_settings: &Settings, topics: &Topics, input: &str) -> String {
        topics.processed(input)
    }

    /// The topics this processor writes, created at start when missing.
    fn output_topics(settings: &Settings, topics: &Topics) -> Vec<TopicSpec> {
        Self::inputs(settings, topics)
            .iter()
            .map(|input| {
                TopicSpec::compacted(
                    TopicClass::Processed,
                    Self::output_topic(settings, topics, input),
                )
            })
            .collect()
    }

    /// Builds the processor (loads its tables, restores its state). Called
    /// again whenever the runner rebuilds its clients after a failure, so
    /// state must come from Kafka, not from the previous instance.
    fn open(context: &Context) -> impl Future<Output = anyhow::Result<Self>> + Send;

    /// Whether the runner decodes the values of `topic` into change
    /// events (and dead-letters those that do not decode). A processor that
    /// treats values as opaque bytes, or reads a topic of its own, says
    /// `false` and sees `event: None`.
    fn decodes(&self, _topic: &str) -> bool {
        true
    }

    /// Handles one record. Must be deterministic given the same input and
    /// state: after an aborted transaction the record is processed again.
    fn process(&mut self, input: &Input<'_>) -> Result<Vec<Output>, ProcessError>;

    /// The group's partitions changed; called before the first record of
    /// the new assignment is processed, with every partition this instance
    /// now reads. A processor with partitioned state drops what it no
    /// longer owns and restores what it gained.
    fn assigned(
        &mut self,
        _partitions: &[(String, i32)],
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        async { Ok(()) }
    }

    /// Records that sum up a whole batch (a tally updated by many inputs
    /// goes out once, not once per input); written in the batch's
    /// transaction. An output without a topic goes to the first of
    /// [`Processor::output_topics`].
    fn flush(&mut self) -> Vec<Output> {
        Vec::new()
    }

    /// Whether the processor keeps its input positions in its own store,
    /// written in the same transaction there as the batch's effects (a
    /// database sink). The runner then seeks every assigned partition to
    /// [`Processor::stored_positions`], hands each batch to
    /// [`Processor::store`] after its dead letters are acknowledged, and
    /// commits the group's offsets only for lag tools to read.
    const STORES_POSITIONS: bool = false;

    /// The next offset to read of each partition just assigned, as the
    /// processor's store holds it; a partition it has never seen is left
    /// out (read from the beginning).
    fn stored_positions(
        &mut self,
        _partitions: &[(String, i32)],
    ) -> impl Future<Output = anyhow::Result<HashMap<(String, i32), i64>>> + Send {
        async { Ok(HashMap::new()) }
    }

    /// Makes the records processed since the last call durable together
    /// with `next`, the next offset to read per partition, in one
    /// transaction of the processor's store.
    fn store(
        &mut self,
        _next: &HashMap<(String, i32), i64>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        async { Ok(()) }
    }

    /// A batch was committed; `written` holds, per topic and partition, the
    /// offset of the last record it wrote there (what a changelog reader
    /// must not read again).
    fn committed(&mut self, _written: &HashMap<(String, i32), i64>) {}
}
