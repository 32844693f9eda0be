//! `oda-replay reset`: moves a group's committed offsets on one topic, so
//! its next run reprocesses from there. A dry run unless told to execute;
//! refused while the group has members (they would overwrite the offsets
//! with their own at their next commit).

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use oda_cdc_core::kafka::{LogContext, partitions};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use super::Cluster;
use super::{TIMEOUT, epoch_millis, log};

/// Where to move the offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Earliest,
    Latest,
    /// The first record at or after this time (epoch ms).
    Time(i64),
    Offset(i64),
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "earliest" => Ok(Target::Earliest),
            "latest" => Ok(Target::Latest),
            _ => match text.strip_prefix("offset:") {
                Some(n) => n
                    .parse()
                    .map(Target::Offset)
                    .map_err(|_| format!("`{text}`: offset:<n> needs a number")),
                None => epoch_millis(text).map(Target::Time),
            },
        }
    }
}

/// One partition's move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub partition: i32,
    /// The committed offset now, `None` when the group has none.
    pub current: Option<i64>,
    pub target: i64,
    /// The partition's end.
    pub end: i64,
}

impl Move {
    /// Records the group will process again (or skip, if negative).
    pub fn delta(&self) -> i64 {
        self.current.unwrap_or(self.end) - self.target
    }
}

/// Plans (and with `execute`, commits) the move of `group` on `topic`.
pub fn reset(
    cluster: Cluster<'_>,
    group: &str,
    topic: &str,
    target: Target,
    execute: bool,
) -> anyhow::Result<Vec<Move>> {
    let kafka = cluster.kafka;
    let consumer: BaseConsumer<LogContext> = kafka
        .consumer_config(group)
        .create_with_context(LogContext)
        .context("creating a consumer")?;
    let groups = consumer
        .fetch_group_list(Some(group), TIMEOUT)
        .context("describing the group")?;
    if let Some(described) = groups.groups().iter().find(|g| g.name() == group)
        && !described.members().is_empty()
    {
        let members: Vec<String> = described
            .members()
            .iter()
            .map(|m| format!("{} ({})", m.client_id(), m.client_host()))
            .collect();
        bail!(
            "group `{group}` has {} active member(s): {}; stop them first (their next commit would undo the reset)",
            members.len(),
            members.join(", ")
        );
    }
    let partitions = partitions(&consumer, topic, TIMEOUT).context("reading topic metadata")?;
    if partitions.is_empty() {
        bail!("topic `{topic}` does not exist");
    }
    let mut query = TopicPartitionList::new();
    for partition in &partitions {
        query.add_partition(topic, *partition);
    }
    let committed = consumer
        .committed_offsets(query, TIMEOUT)
        .context("reading the group's offsets")?;
    let at_time = match target {
        Target::Time(ms) => {
            let mut times = TopicPartitionList::new();
            for partition in &partitions {
                times.add_partition_offset(topic, *partition, Offset::Offset(ms))?;
            }
            Some(
                consumer
                    .offsets_for_times(times, TIMEOUT)
                    .context("looking offsets up by time")?,
            )
        }
        _ => None,
    };
    let mut moves = Vec::new();
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, TIMEOUT)?;
        let target = match target {
            Target::Earliest => low,
            Target::Latest => high,
            Target::Offset(n) => n.clamp(low, high),
            Target::Time(_) => at_time
                .as_ref()
                .and_then(|t| t.find_partition(topic, partition))
                .and_then(|p| match p.offset() {
                    Offset::Offset(n) => Some(n),
                    _ => None,
                })
                .unwrap_or(high),
        };
        let current = committed
            .find_partition(topic, partition)
            .and_then(|p| match p.offset() {
                Offset::Offset(n) => Some(n),
                _ => None,
            });
        moves.push(Move {
            partition,
            current,
            target,
            end: high,
        });
    }
    if execute {
        let mut commit = TopicPartitionList::new();
        for m in &moves {
            commit.add_partition_offset(topic, m.partition, Offset::Offset(m.target))?;
        }
        consumer
            .commit(&commit, CommitMode::Sync)
            .context("committing the new offsets")?;
        let records: i64 = moves.iter().map(|m| m.delta().max(0)).sum();
        let partitions: BTreeMap<String, serde_json::Value> = moves
            .iter()
            .map(|m| {
                (
                    m.partition.to_string(),
                    json!({"from": m.current, "to": m.target}),
                )
            })
            .collect();
        let entry = log::Entry::new(
            "reset",
            records as u64,
            json!({"group": group, "topic": topic, "to": format!("{target:?}"), "partitions": partitions}),
        );
        log::append(cluster, &entry)?;
    }
    Ok(moves)
}

/// The plan as a table for the terminal.
pub fn describe(topic: &str, moves: &[Move], executed: bool) -> String {
    let mut out = format!(
        "{:<40} {:>9} {:>12} {:>12} {:>10}\n",
        "topic", "partition", "current", "new", "records"
    );
    for m in moves {
        let current = m.current.map_or_else(|| "-".to_owned(), |c| c.to_string());
        out.push_str(&format!(
            "{:<40} {:>9} {:>12} {:>12} {:>+10}\n",
            topic,
            m.partition,
            current,
            m.target,
            m.delta()
        ));
    }
    let total: i64 = moves.iter().map(Move::delta).sum();
    out.push_str(&if executed {
        format!("Offsets moved: {total:+} records to process again.\n")
    } else {
        format!("Dry run: {total:+} records would be processed again; add --execute to move the offsets.\n")
    });
    out
}
