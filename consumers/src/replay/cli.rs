//! The `oda-replay` command line (contract.md#command-lines): flags, and
//! the start-up every command shares.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use oda_cdc_core::cli::{ConfigArgs, Failure, run_to_exit};
use oda_cdc_core::config::Settings;
use oda_cdc_core::config::TopicClass;
use oda_cdc_core::kafka::{TopicSpec, partitions};
use oda_cdc_core::service::Service;

use super::{Cluster, copy, epoch_millis, log, redrive, reset};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Replay and backfill: reset a group's offsets, copy a time range, redrive dead letters."
)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Moves a group's offsets on a topic (a dry run unless --execute;
    /// refused while the group has members).
    Reset {
        #[arg(long)]
        group: String,
        #[arg(long)]
        topic: String,
        /// earliest, latest, <time> (RFC 3339; Danish local time without an offset) or offset:<n>.
        #[arg(long, value_parser = |s: &str| s.parse::<reset::Target>())]
        to: reset::Target,
        #[arg(long)]
        execute: bool,
    },
    /// Copies the records of a time range of one topic to another.
    Copy {
        #[arg(long = "from-topic")]
        from_topic: String,
        #[arg(long = "to-topic")]
        to_topic: String,
        #[arg(long, value_parser = epoch_millis)]
        since: i64,
        #[arg(long, value_parser = epoch_millis)]
        until: Option<i64>,
    },
    /// Dead-letter commands.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Puts consumer dead letters back on their original topics (a dry
    /// run unless --execute).
    Redrive {
        /// Only the letters of this processor (`dlq.processor`).
        #[arg(long)]
        processor: Option<String>,
        #[arg(long)]
        execute: bool,
    },
}

/// The whole `oda-replay` binary; exit codes of contract.md#exit-codes.
pub fn main() -> ExitCode {
    let args = Args::parse();
    run_to_exit(run(args))
}

async fn run(args: Args) -> Result<(), Failure> {
    let settings = args.config.load()?;
    oda_cdc_core::telemetry::init(settings.log.format);
    let service = Service::command(&settings)?;
    let mut specs = vec![log::spec(&service.topics)];
    if let Command::Copy {
        from_topic,
        to_topic,
        ..
    } = &args.command
    {
        specs.push(copy_target(&settings, from_topic, to_topic)?);
    }
    service.ensure_topics(&specs).await?;
    let kafka = settings.kafka.clone();
    let topics = service.topics.clone();
    let report = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let cluster = Cluster {
            kafka: &kafka,
            topics: &topics,
        };
        Ok(match args.command {
            Command::Reset {
                group,
                topic,
                to,
                execute,
            } => {
                let moves = reset::reset(cluster, &group, &topic, to, execute)?;
                reset::describe(&topic, &moves, execute)
            }
            Command::Copy {
                from_topic,
                to_topic,
                since,
                until,
            } => {
                let copied = copy::copy(cluster, &from_topic, &to_topic, since, until)?;
                format!(
                    "Copied {} records from {from_topic} to {to_topic} (oda.replay: {}).\n",
                    copied.records, copied.id
                )
            }
            Command::Dlq {
                command: DlqCommand::Redrive { processor, execute },
            } => redrive::redrive(cluster, processor.as_deref(), execute)?.describe(),
        })
    })
    .await
    .map_err(|e| Failure::Runtime(e.into()))??;
    print!("{report}");
    Ok(())
}

/// The copy's target: created like its source's partition count when
/// missing, with delete retention of 7 days (create it yourself for
/// other settings).
fn copy_target(settings: &Settings, from: &str, to: &str) -> Result<TopicSpec, Failure> {
    use rdkafka::consumer::BaseConsumer;
    let consumer: BaseConsumer = settings
        .kafka
        .consumer_config("oda-replay-copy")
        .create()
        .context("creating a consumer")?;
    let count = partitions(&consumer, from, super::TIMEOUT)
        .context("reading topic metadata")?
        .len();
    if count == 0 {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "topic `{from}` does not exist"
        )));
    }
    let partitions = i32::try_from(count).context("partition count")?;
    Ok(TopicSpec::retained(TopicClass::Entity, to, 7).with_partitions(partitions))
}
