//! `oda-votes`: per Afstemning (a division of the Folketing), the tally by
//! vote type and by party, updated as the individual votes (Stemme) arrive.
//!
//! Votes are keyed by their own id, so the votes of one division are spread
//! over every partition of `parliament-stemme`, and they often arrive
//! before their division. As Kafka Streams does, the work is split in two
//! over an intermediate topic:
//!
//! 1. Stemme and Afstemning events are re-keyed by Afstemning id into
//!    `<prefix>-votes-repartition`, partition = id mod partitions;
//! 2. each instance keeps the votes of the repartition partitions it owns,
//!    writes every change to `<prefix>-votes-changelog` (same partition,
//!    compacted) in the same transaction, and emits the tallies touched by
//!    a batch to `<prefix>-votes-processed` once per batch. Whoever owns a
//!    partition next rebuilds its state from the changelog, never from the
//!    entity topics.
//!
//! Votes of a division that has not arrived are held (and counted in
//! `oda_cdc_votes_held`), never dropped; its tally appears when it does.
//! A deleted Stemme carries no Afstemning id, so its retraction goes to
//! every partition; so does one for a changed Stemme (its old division
//! may live elsewhere).
//!
//! Parties come from tables every instance holds whole: the member's
//! relation (AktørAktør) to an actor of type Folketingsgruppe valid on the
//! meeting's date (Møde.dato through Afstemning.mødeid).

pub mod state;
pub mod tables;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oda_cdc_core::config::Settings;
use oda_cdc_core::config::TopicClass;
use oda_cdc_core::kafka::TopicSpec;
use oda_model::event::{Op, headers};
use oda_model::topics::Topics;
use prometheus::IntGauge;
use rdkafka::message::Message;
use serde_json::{Map, Value, json};
use tokio_util::sync::DropGuard;

use self::state::{Division, PartitionState, Routed, Tally, Vote};
use self::tables::{TABLE_SETS, Tables, VoteKind};
use crate::runner::changelog::{ChangelogStore, partition_count};
use crate::runner::decode::Decoder;
use crate::runner::follow::decode_blocking;
use crate::runner::processor::{Context, Input, Output, ProcessError, Processor, Unusable};
use oda_cdc_core::kafka::TopicReader;
use oda_cdc_core::kafka::reader::key_text;

/// The held-votes gauge of this process.
static HELD: std::sync::OnceLock<Option<IntGauge>> = std::sync::OnceLock::new();

/// The least time between two recounts after the tables changed.
const REFRESH_EVERY: Duration = Duration::from_secs(10);

/// The topics oda-votes reads and writes, from the deployment's names.
#[derive(Debug, Clone)]
pub struct VoteTopics {
    pub stemme: String,
    pub afstemning: String,
    pub repartition: String,
    pub changelog: String,
    pub processed: String,
}

/// The name this processor's own topics carry.
const TOPIC_NAME: &str = "votes";

impl VoteTopics {
    pub fn new(topics: &Topics) -> Self {
        Self {
            stemme: topics.entity("Stemme"),
            afstemning: topics.entity("Afstemning"),
            repartition: topics.processor_topic(TOPIC_NAME, "repartition"),
            changelog: topics.processor_topic(TOPIC_NAME, "changelog"),
            processed: topics.processor_output(TOPIC_NAME),
        }
    }
}

/// The processor.
pub struct Votes {
    topics: VoteTopics,
    /// Partitions of the repartition topic (and of the changelog).
    partitions: i32,
    tables: Tables,
    /// State of the repartition partitions this instance owns.
    store: ChangelogStore<PartitionState>,
    /// Tallies a batch touched, emitted by `flush`.
    dirty: BTreeSet<(i32, i64)>,
    /// Afstemninger a batch deleted: their tally becomes a tombstone.
    gone: BTreeSet<i64>,
    /// A digest of each tally this instance wrote last.
    emitted: HashMap<i64, u64>,
    /// The tables' version the tallies were last counted with, and when.
    counted_with: u64,
    refreshed: Instant,
    held: IntGauge,
    _follower: DropGuard,
}

impl std::fmt::Debug for Votes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Votes")
            .field("topics", &self.topics)
            .field("partitions", &self.partitions)
            .field("store", &self.store.topic())
            .finish()
    }
}

fn int(record: &Map<String, Value>, field: &str) -> Option<i64> {
    record.get(field).and_then(Value::as_i64)
}

/// The id of the record an input is about: the event's, else the key's.
fn record_id(input: &Input<'_>) -> Result<i64, ProcessError> {
    match input.event {
        Some(event) => Ok(event.id),
        None => input
            .key
            .and_then(|k| k.trim().parse().ok())
            .ok_or_else(|| ProcessError::Permanent("a tombstone without a numeric key".into())),
    }
}

impl Votes {
    fn partition_of(&self, afstemning: i64) -> i32 {
        // rem_euclid of a positive modulus fits in i32.
        i32::try_from(afstemning.rem_euclid(i64::from(self.partitions))).unwrap_or(0)
    }

    fn routed(
        &self,
        routed: &Routed,
        afstemning: i64,
        partition: i32,
    ) -> Result<Output, ProcessError> {
        Ok(Output::json(afstemning.to_string(), routed)?
            .to(&self.topics.repartition)
            .at_partition(partition))
    }

    /// A retraction to every partition but `except`.
    fn broadcast(
        &self,
        stemme: i64,
        keep: Option<i64>,
        except: Option<i32>,
    ) -> Result<Vec<Output>, ProcessError> {
        let routed = Routed::Retract { stemme, keep };
        (0..self.partitions)
            .filter(|p| Some(*p) != except)
            .map(|p| self.routed(&routed, keep.unwrap_or(stemme), p))
            .collect()
    }

    /// Stage 1 for a Stemme event.
    fn route_stemme(&self, input: &Input<'_>) -> Result<Vec<Output>, ProcessError> {
        let stemme = record_id(input)?;
        let after = match input.event {
            Some(event) if event.op != Op::Delete => event.after.as_ref(),
            _ => None,
        };
        let Some(after) = after else {
            return self.broadcast(stemme, None, None);
        };
        let afstemning = int(after, "afstemningid").ok_or_else(|| {
            ProcessError::Permanent(format!("Stemme {stemme} has no afstemningid"))
        })?;
        let aktoer = int(after, "aktørid")
            .ok_or_else(|| ProcessError::Permanent(format!("Stemme {stemme} has no aktørid")))?;
        let partition = self.partition_of(afstemning);
        let vote = Routed::Vote {
            stemme,
            afstemning,
            vote: Vote {
                aktoer,
                typeid: int(after, "typeid"),
            },
        };
        let mut outputs = vec![self.routed(&vote, afstemning, partition)?];
        // A changed vote may have moved from another division, which may
        // live in another partition. First reads of a snapshot cannot have.
        let changed = input.event.is_some_and(|e| e.op == Op::Update)
            || input.header(headers::BACKFILL).is_some();
        if changed {
            outputs.extend(self.broadcast(stemme, Some(afstemning), Some(partition))?);
        }
        Ok(outputs)
    }

    /// Stage 1 for an Afstemning event.
    fn route_afstemning(&self, input: &Input<'_>) -> Result<Vec<Output>, ProcessError> {
        let afstemning = record_id(input)?;
        let after = match input.event {
            Some(event) if event.op != Op::Delete => event.after.as_ref(),
            _ => None,
        };
        let routed = match after {
            None => Routed::DivisionDeleted { afstemning },
            Some(after) => Routed::Division {
                afstemning,
                division: Division {
                    nummer: int(after, "nummer"),
                    typeid: int(after, "typeid"),
                    vedtaget: after.get("vedtaget").and_then(Value::as_bool),
                    moedeid: int(after, "mødeid"),
                    sagstrinid: int(after, "sagstrinid"),
                    opdateringsdato: after
                        .get("opdateringsdato")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                },
            },
        };
        Ok(vec![self.routed(
            &routed,
            afstemning,
            self.partition_of(afstemning),
        )?])
    }

    /// Stage 2: a repartitioned record changes the state it belongs to.
    fn count(&mut self, input: &Input<'_>) -> Result<Vec<Output>, ProcessError> {
        let value = input
            .value
            .ok_or_else(|| ProcessError::Permanent("an empty repartition record".into()))?;
        let routed: Routed = serde_json::from_slice(value)
            .map_err(|e| ProcessError::Permanent(format!("not a repartitioned vote: {e}")))?;
        let partition = input.partition;
        let Some(state) = self.store.get_mut(partition) else {
            // The runner hands over partitions before their records.
            return Err(ProcessError::Retryable(format!(
                "partition {partition} of {} is not restored",
                self.topics.repartition
            )));
        };
        if let Routed::DivisionDeleted { afstemning } = routed {
            self.gone.insert(afstemning);
        }
        let (changes, touched) = state.apply(routed);
        self.dirty.extend(
            touched
                .into_iter()
                .map(|afstemning| (partition, afstemning)),
        );
        Ok(changes
            .into_iter()
            .map(|change| self.store.record(partition, change.key, change.value))
            .collect())
    }

    /// The output document of one tally.
    pub fn document(tables: &Tables, afstemning: i64, tally: &Tally, division: &Division) -> Value {
        let date = division.moedeid.and_then(|m| tables.meeting_date(m));
        let zero = || -> BTreeMap<&'static str, u64> {
            VoteKind::ALL.iter().map(|k| (k.as_str(), 0)).collect()
        };
        let mut totals = zero();
        let mut parties: BTreeMap<String, (i64, BTreeMap<&'static str, u64>)> = BTreeMap::new();
        let mut without_party = zero();
        for vote in tally.votes.values() {
            let kind = tables.vote_kind(vote.typeid).as_str();
            *totals.entry(kind).or_default() += 1;
            let party = date
                .as_deref()
                .and_then(|d| tables.party_of(vote.aktoer, d));
            let counts = match party {
                Some(party) => {
                    &mut parties
                        .entry(party.label)
                        .or_insert_with(|| (party.id, zero()))
                        .1
                }
                None => &mut without_party,
            };
            *counts.entry(kind).or_default() += 1;
        }
        let by_party: Map<String, Value> = parties
            .into_iter()
            .map(|(label, (id, counts))| {
                let mut entry = json!({ "aktoerid": id });
                for (kind, n) in counts {
                    entry[kind] = json!(n);
                }
                (label, entry)
            })
            .collect();
        json!({
            "afstemning": afstemning,
            "nummer": division.nummer,
            "typeid": division.typeid,
            "vedtaget": division.vedtaget,
            "moedeid": division.moedeid,
            "sagstrinid": division.sagstrinid,
            "date": date,
            "votes": tally.votes.len(),
            "tally": totals,
            "by_party": by_party,
            "party_unresolved": without_party,
        })
    }
}

/// A stable digest of an output value.
fn digest(value: Option<&[u8]>) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

impl Votes {
    /// Members change party and meetings get their dates after votes were
    /// counted (the tables' topics are read beside the votes, not before
    /// each one): when the tables changed, every tally is counted again, at
    /// most every [`REFRESH_EVERY`], and those that came out different
    /// are written.
    fn refresh_if_tables_changed(&mut self) {
        let version = self.tables.version();
        if version == self.counted_with || self.refreshed.elapsed() < REFRESH_EVERY {
            return;
        }
        self.counted_with = version;
        self.refreshed = Instant::now();
        let all: Vec<(i32, i64)> = self
            .store
            .iter()
            .flat_map(|(p, state)| state.divisions().map(move |a| (p, a)))
            .collect();
        self.dirty.extend(all);
    }
}

impl Processor for Votes {
    const NAME: &'static str = "oda-votes";
    const METRICS_PORT: u16 = 9466;
    const TICK: Option<Duration> = Some(REFRESH_EVERY);

    fn inputs(_settings: &Settings, topics: &Topics) -> Vec<String> {
        let t = VoteTopics::new(topics);
        vec![t.stemme, t.afstemning, t.repartition]
    }

    fn output_topic(_settings: &Settings, topics: &Topics, _input: &str) -> String {
        VoteTopics::new(topics).processed
    }

    fn output_topics(_settings: &Settings, topics: &Topics) -> Vec<TopicSpec> {
        let t = VoteTopics::new(topics);
        vec![
            TopicSpec::compacted(TopicClass::Processed, t.processed),
            // Never compacted: one key (an Afstemning) carries many votes.
            TopicSpec::retained(TopicClass::Internal, t.repartition, 7),
            TopicSpec::compacted(TopicClass::State, t.changelog),
        ]
    }

    async fn open(context: &Context) -> anyhow::Result<Self> {
        let settings = &context.settings;
        let topics = VoteTopics::new(&context.topics);
        let partitions = partition_count(&settings.kafka, &topics.repartition)?;
        let changelog = partition_count(&settings.kafka, &topics.changelog)?;
        if partitions != changelog {
            return Err(Unusable(format!(
                "{} has {partitions} partitions and {} has {changelog}: they must match \
                 (a partition's state lives in the changelog partition of the same number)",
                topics.repartition, topics.changelog
            ))
            .into());
        }
        // The runner opens a new processor after a failure: one gauge,
        // registered once, serves them all.
        let held = HELD
            .get_or_init(|| {
                let gauge = IntGauge::new(
                    "oda_cdc_votes_held",
                    "Votes counted for an Afstemning that has not arrived yet (held, not dropped).",
                )
                .ok()?;
                context.registry.register(Box::new(gauge.clone())).ok()?;
                Some(gauge)
            })
            .clone()
            .ok_or_else(|| anyhow::anyhow!("registering oda_cdc_votes_held"))?;

        let tables = Tables::default();
        let decoder = Arc::new(Decoder::new(&settings.schema_registry)?);
        let by_topic: HashMap<String, &'static str> = TABLE_SETS
            .iter()
            .map(|set| (context.topics.entity(set), *set))
            .collect();
        let names: Vec<String> = by_topic.keys().cloned().collect();
        let reader = TopicReader::whole_topics(&settings.kafka, "oda-votes-tables", &names)?;
        let follower = context.shutdown.child_token();
        let runtime = tokio::runtime::Handle::current();
        let shared = tables.clone();
        reader
            .follow("votes-tables", follower.clone(), move |message| {
                let Some(set) = by_topic.get(message.topic()) else {
                    return;
                };
                let event = match decode_blocking(&runtime, &decoder, message) {
                    Ok(event) => event,
                    Err(error) => {
                        tracing::warn!(set, %error, "Table record skipped.");
                        return;
                    }
                };
                let id = event
                    .as_ref()
                    .map(|e| e.id)
                    .or_else(|| key_text(message).and_then(|k| k.parse().ok()));
                if let Some(id) = id {
                    shared.apply(set, id, event.as_ref());
                }
            })
            .await?;
        tracing::info!(rows = tables.len(), "Vote tables loaded.");
        let version = tables.version();
        Ok(Self {
            store: ChangelogStore::new(
                &settings.kafka,
                &topics.changelog,
                context.shutdown.clone(),
            ),
            topics,
            partitions,
            tables,
            dirty: BTreeSet::new(),
            gone: BTreeSet::new(),
            emitted: HashMap::new(),
            counted_with: version,
            refreshed: Instant::now(),
            held,
            _follower: follower.drop_guard(),
        })
    }

    /// The repartition topic holds this processor's own JSON records.
    fn decodes(&self, topic: &str) -> bool {
        topic != self.topics.repartition
    }

    fn process(&mut self, input: &Input<'_>) -> Result<Vec<Output>, ProcessError> {
        if input.topic == self.topics.repartition {
            self.count(input)
        } else if input.topic == self.topics.stemme {
            self.route_stemme(input)
        } else if input.topic == self.topics.afstemning {
            self.route_afstemning(input)
        } else {
            Err(ProcessError::Permanent(format!(
                "oda-votes does not read {}",
                input.topic
            )))
        }
    }

    async fn assigned(&mut self, partitions: &[(String, i32)]) -> anyhow::Result<()> {
        let mine: BTreeSet<i32> = partitions
            .iter()
            .filter(|(topic, _)| *topic == self.topics.repartition)
            .map(|(_, p)| *p)
            .collect();
        self.dirty.retain(|(p, _)| mine.contains(p));
        self.gone.clear();
        // Another owner may have written tallies meanwhile, even of a
        // partition this instance has again: what it wrote last says
        // nothing about the topic now.
        self.emitted.clear();
        self.store.assign(mine).await
    }

    fn flush(&mut self) -> Vec<Output> {
        self.refresh_if_tables_changed();
        let dirty = std::mem::take(&mut self.dirty);
        let gone = std::mem::take(&mut self.gone);
        let mut outputs = Vec::with_capacity(dirty.len());
        for (partition, afstemning) in dirty {
            let tally = self.store.get(partition).and_then(|s| s.tally(afstemning));
            let key = afstemning.to_string();
            match tally {
                Some(
                    tally @ Tally {
                        division: Some(division),
                        ..
                    },
                ) => {
                    let document = Self::document(&self.tables, afstemning, tally, division);
                    match Output::json(key, &document) {
                        Ok(output) => {
                            // A tally written before unchanged is not written again.
                            let digest = digest(output.value.as_deref());
                            if self.emitted.insert(afstemning, digest) != Some(digest) {
                                outputs.push(output.to(&self.topics.processed));
                            }
                        }
                        Err(error) => tracing::error!(afstemning, %error, "Tally not written."),
                    }
                }
                // A deleted division's tally is forgotten; held votes have
                // none yet.
                _ if gone.contains(&afstemning) => {
                    self.emitted.remove(&afstemning);
                    outputs.push(Output::tombstone(key).to(&self.topics.processed));
                }
                _ => {}
            }
        }
        let held: usize = self.store.states().map(PartitionState::held_votes).sum();
        self.held.set(i64::try_from(held).unwrap_or(i64::MAX));
        outputs
    }

    fn committed(&mut self, written: &HashMap<(String, i32), i64>) {
        self.store.committed(written);
    }
}
