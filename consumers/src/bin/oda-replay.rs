//! `oda-replay`: see `oda-replay --help` (SPEC §9).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use oda_cdc_core::cli::{ConfigArgs, Failure, exit_code};
use oda_cdc_core::config::Settings;
use oda_cdc_core::kafka::{TopicSpec, ensure_topics};
use oda_consumers::replay::{copy, epoch_millis, log, redrive, reset};

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

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return exit_code(Err(Failure::Runtime(error.into()))),
    };
    exit_code(runtime.block_on(run(args)))
}

async fn run(args: Args) -> Result<(), Failure> {
    let settings = args.config.load()?;
    oda_cdc_core::telemetry::init(settings.log.format);
    let mut specs = vec![log::spec(&settings.kafka)];
    if let Command::Copy {
        from_topic,
        to_topic,
        ..
    } = &args.command
    {
        specs.push(copy_target(&settings, from_topic, to_topic)?);
    }
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> = settings
        .kafka
        .client_config()
        .create()
        .context("creating the Kafka admin client")?;
    ensure_topics(&admin, &specs)
        .await
        .context("creating the replay-log topic")?;
    let kafka = settings.kafka.clone();
    let dlq_topic = settings
        .consumer
        .dlq_topic
        .clone()
        .unwrap_or_else(|| oda_cdc_core::topics::dlq_topic(&kafka.topic_prefix));
    let report = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        Ok(match args.command {
            Command::Reset {
                group,
                topic,
                to,
                execute,
            } => {
                let moves = reset::reset(&kafka, &group, &topic, to, execute)?;
                reset::describe(&topic, &moves, execute)
            }
            Command::Copy {
                from_topic,
                to_topic,
                since,
                until,
            } => {
                let copied = copy::copy(&kafka, &from_topic, &to_topic, since, until)?;
                format!(
                    "Copied {} records from {from_topic} to {to_topic} (oda.replay: {}).\n",
                    copied.records, copied.id
                )
            }
            Command::Dlq {
                command: DlqCommand::Redrive { processor, execute },
            } => redrive::redrive(&kafka, &dlq_topic, processor.as_deref(), execute)?.describe(),
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
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = settings
        .kafka
        .consumer_config("oda-replay-copy")
        .create()
        .context("creating a consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(from), std::time::Duration::from_secs(15))
        .context("reading topic metadata")?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == from && t.error().is_none())
        .map(|t| t.partitions().len() as i32)
        .ok_or_else(|| Failure::Runtime(anyhow::anyhow!("topic `{from}` does not exist")))?;
    Ok(TopicSpec::retained(to, 7).with_partitions(partitions))
}
