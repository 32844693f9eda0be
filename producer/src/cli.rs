//! The command line (contract.md#command-lines): flags, and what each
//! command runs.

use std::process::ExitCode;

use chrono::NaiveDateTime;
use clap::{Parser, Subcommand};
use oda_cdc_core::cli::{ConfigArgs, Failure, run_to_exit};
use oda_cdc_core::config::{ConfigError, Origin};

use crate::app::{self, RunOptions};
use crate::worker::StartFrom;

/// Change data capture from Folketingets Åbne Data (oda.ft.dk) into Kafka.
#[derive(Debug, Parser)]
#[command(name = "oda-producer", version)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service: snapshot new entities, then poll every interval.
    Run {
        /// Where entities without a checkpoint start: `beginning` (snapshot),
        /// `now`, or a time (RFC 3339; without an offset, Danish local time).
        #[arg(long, default_value = "beginning", value_parser = parse_from)]
        from: StartFrom,
        /// This instance's name, unique among the instances sharing the
        /// transactional id: one writes, the others stand by.
        #[arg(long, env = "HOSTNAME", default_value = "0")]
        instance: String,
    },
    /// Each entity's checkpoint and lag, read from Kafka.
    Status,
    /// Backfill: publish every row of these entities again as `r` (through
    /// the running service, between its polls; with none running, here).
    Snapshot {
        /// Entity sets, comma-separated (e.g. `Sag,Aktør`).
        #[arg(long, value_delimiter = ',', required = true)]
        entities: Vec<String>,
        /// Only rows changed since this time (RFC 3339; without an offset,
        /// Danish local time).
        #[arg(long, value_parser = parse_time)]
        since: Option<NaiveDateTime>,
    },
    /// Schema registry operations.
    Schemas {
        #[command(subcommand)]
        command: SchemasCommand,
    },
    /// Move one entity's cursor to a time; the next cycle re-reads from there.
    Rewind {
        #[arg(long)]
        entity: String,
        /// RFC 3339; without an offset, Danish local time.
        #[arg(long, value_parser = parse_time)]
        to: NaiveDateTime,
    },
}

#[derive(Debug, Subcommand)]
enum SchemasCommand {
    /// Register every entity's change-event schema (`<topic>-value`) and
    /// report incompatibilities with the registry's reason.
    Register,
}

/// The whole `oda-producer` binary: flags, configuration (exit 2 on a bad
/// key), logging, then the command; exit codes of contract.md#exit-codes.
pub fn main() -> ExitCode {
    let args = Args::parse();
    run_to_exit(run(args))
}

async fn run(args: Args) -> Result<(), Failure> {
    let settings = args.config.load()?;
    oda_cdc_core::telemetry::init(settings.log.format);
    let topics = settings.topics();
    // Entity names are checked before anything starts: a typo is a
    // configuration error (exit 2), not a runtime failure.
    let plans = app::entity_plans(&settings, &topics).map_err(|e| {
        Failure::Config(ConfigError::InvalidValue {
            key: "entities".into(),
            origin: Origin::Merged,
            message: e.to_string(),
        })
    })?;
    match args.command {
        Command::Run { from, instance } => {
            let shutdown = oda_cdc_core::shutdown::on_signals();
            let options = RunOptions {
                instance,
                ..RunOptions::from(from)
            };
            app::run(settings, options, shutdown).await?;
        }
        Command::Snapshot { entities, since } => {
            crate::requests::snapshot(settings, &topics, entities, since).await?;
        }
        Command::Rewind { entity, to } => {
            crate::requests::rewind(settings, &topics, entity, to).await?;
        }
        Command::Schemas {
            command: SchemasCommand::Register,
        } => {
            let client = settings
                .schema_registry
                .client()
                .map_err(|e| Failure::Runtime(e.into()))?;
            let entities: Vec<(String, String)> = plans
                .iter()
                .map(|p| (p.entity.clone(), p.topic.to_string()))
                .collect();
            crate::encode::register(&client, &entities)
                .await
                .map_err(|e| Failure::Runtime(e.into()))?;
            println!("{} schemas registered.", entities.len());
        }
        Command::Status => crate::status::print(&settings, &topics).await?,
    }
    Ok(())
}

/// Parses `--from`.
fn parse_from(text: &str) -> Result<StartFrom, String> {
    match text {
        "beginning" => Ok(StartFrom::Beginning),
        "now" => Ok(StartFrom::Now),
        other => parse_time(other).map(StartFrom::Time),
    }
}

/// A `<time>` of contract.md#command-lines (see [`oda_model::odatime::parse_user_time`]).
pub(crate) fn parse_time(text: &str) -> Result<NaiveDateTime, String> {
    oda_model::odatime::parse_user_time(text).map_err(|_| {
        format!(
            "`{text}` is not `beginning`, `now` or a time like 2026-10-25T02:30:00 or 2026-10-25T00:30:00Z"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_accepts_words_local_and_offset_times() {
        assert_eq!(parse_from("beginning"), Ok(StartFrom::Beginning));
        assert_eq!(parse_from("now"), Ok(StartFrom::Now));
        let local = parse_time("2026-07-01T12:00:00").expect("local");
        assert_eq!(
            parse_from("2026-07-01T12:00:00"),
            Ok(StartFrom::Time(local))
        );
        // 10:00Z in summer is 12:00 in Copenhagen.
        assert_eq!(parse_time("2026-07-01T10:00:00Z"), Ok(local));
        assert!(parse_from("yesterday").is_err());
    }
}
