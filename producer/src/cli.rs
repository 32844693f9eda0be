//! Command-line arguments (SPEC §9).

use chrono::NaiveDateTime;
use clap::{Parser, Subcommand};
use oda_cdc_core::cli::ConfigArgs;

use crate::worker::StartFrom;

/// Change data capture from Folketingets Åbne Data (oda.ft.dk) into Kafka.
#[derive(Debug, Parser)]
#[command(name = "oda-producer", version)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: snapshot new entities, then poll every interval.
    Run {
        /// Where entities without a checkpoint start: `beginning` (snapshot),
        /// `now`, or a time (RFC 3339; without an offset, Danish local time).
        #[arg(long, default_value = "beginning", value_parser = parse_from)]
        from: StartFrom,
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
pub enum SchemasCommand {
    /// Register every entity's change-event schema (`<topic>-value`) and
    /// report incompatibilities with the registry's reason.
    Register,
}

/// Parses `--from`.
pub fn parse_from(text: &str) -> Result<StartFrom, String> {
    match text {
        "beginning" => Ok(StartFrom::Beginning),
        "now" => Ok(StartFrom::Now),
        other => parse_time(other).map(StartFrom::Time),
    }
}

/// SPEC §9's `<time>` (see [`oda_cdc_core::odatime::parse_user_time`]).
pub fn parse_time(text: &str) -> Result<NaiveDateTime, String> {
    oda_cdc_core::odatime::parse_user_time(text).map_err(|_| {
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
