//! `oda-sim`: serves a simulated ODA API until Ctrl-C or SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Parser;
use oda_sim::faults::{FaultKind, Faults};
use oda_sim::time::Precision;
use oda_sim::world::MutatorKnobs;
use oda_sim::{SimConfig, start};

/// A faithful local stand-in for the Danish Parliament's ODA API
/// (https://oda.ft.dk/api): the OData 3.0 subset, live changes, injected
/// faults and a ground-truth change log under /_sim.
#[derive(Debug, Parser)]
#[command(name = "oda-sim", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long, default_value_t = 8089)]
    port: u16,
    /// Seed of the generated data and of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Total rows across all entity sets (ODA's full size is about 3,000,000).
    #[arg(long, default_value_t = 20_000, value_parser = positive_usize)]
    scale: usize,
    /// Server page size: rows per response before a nextLink (ODA: 100; once 20).
    #[arg(long, default_value_t = 100, value_parser = positive_usize)]
    page_size: usize,
    /// Background changes per second (inserts, updates, deletes, re-stamps).
    #[arg(long, default_value_t = 0.0, value_parser = non_negative)]
    mutation_rate: f64,
    /// Fixed latency added to every API response, e.g. `120ms`.
    #[arg(long, value_parser = humantime::parse_duration)]
    latency: Option<Duration>,
    /// Random extra latency, uniform between 0 and this.
    #[arg(long, value_parser = humantime::parse_duration)]
    jitter: Option<Duration>,
    /// Share of API requests that fail (0–1), with the kinds of --fault-kinds.
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    error_rate: f64,
    /// Failure kinds drawn for --error-rate: 500,503,429,hang,truncate,reset,ignore_filter.
    #[arg(long, value_delimiter = ',', value_parser = fault_kind)]
    fault_kinds: Vec<FaultKind>,
    /// Sim-clock start (RFC 3339); timestamps of changes come from this clock.
    #[arg(long, value_parser = rfc3339)]
    clock_start: Option<DateTime<Utc>>,
    /// Sim-clock speed: 60 runs an hour of source time per real minute.
    #[arg(long, default_value_t = 1.0, value_parser = positive_f64)]
    clock_speed: f64,
    /// The reported quirk: a filter naming an unknown field is ignored and
    /// the unfiltered set returned (instead of HTTP 400).
    #[arg(long)]
    ignore_unknown_filter_fields: bool,
    /// Hold timestamps as SQL Server `datetime` (1/300 s ticks) and compare
    /// literals as SQL Server compares them.
    #[arg(long)]
    sqlserver_datetime: bool,
    /// Share of background changes that only re-stamp a row (content unchanged).
    #[arg(long, default_value_t = 0.15, value_parser = fraction)]
    restamp_share: f64,
    /// Share of background changes that are bursts of 101–150 updates on one timestamp.
    #[arg(long, default_value_t = 0.01, value_parser = fraction)]
    burst_share: f64,
    /// Late commits: one background change in ten is stamped up to this far in the past.
    #[arg(long, value_parser = humantime::parse_duration)]
    late_commit_lag: Option<Duration>,
}

fn positive_usize(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) | Err(_) => Err("must be a whole number above 0".into()),
        Ok(n) => Ok(n),
    }
}

fn non_negative(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err("must be a number, 0 or more".into()),
    }
}

fn positive_f64(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err("must be a number above 0".into()),
    }
}

fn fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err("must be between 0 and 1".into()),
    }
}

fn fault_kind(text: &str) -> Result<FaultKind, String> {
    FaultKind::ALL
        .into_iter()
        .find(|k| k.name() == text)
        .ok_or_else(|| {
            format!(
                "unknown kind; one of {}",
                FaultKind::ALL.map(|k| k.name()).join(", ")
            )
        })
}

fn rfc3339(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    oda_cdc_core::telemetry::init(oda_cdc_core::config::LogFormat::Text);
    let faults = Faults {
        latency: args.latency.unwrap_or_default(),
        jitter: args.jitter.unwrap_or_default(),
        error_rate: args.error_rate,
        kinds: if args.fault_kinds.is_empty() {
            vec![FaultKind::Status500, FaultKind::Status503]
        } else {
            args.fault_kinds.clone()
        },
        until: None,
    };
    let config = SimConfig {
        addr: SocketAddr::new(args.host, args.port),
        seed: args.seed,
        scale: args.scale,
        page_size: args.page_size,
        mutation_rate: args.mutation_rate,
        faults,
        clock_start: args.clock_start.unwrap_or_else(Utc::now),
        clock_speed: args.clock_speed,
        ignore_unknown_filter_fields: args.ignore_unknown_filter_fields,
        precision: if args.sqlserver_datetime {
            Precision::SqlServer
        } else {
            Precision::Millis
        },
        knobs: MutatorKnobs {
            restamp_share: args.restamp_share,
            burst_share: args.burst_share,
            late_commit_lag: args.late_commit_lag.unwrap_or_default(),
        },
    };
    let shutdown = oda_cdc_core::shutdown::on_signals();
    let started = std::time::Instant::now();
    let sim = match start(config, shutdown.clone()).await {
        Ok(sim) => sim,
        Err(error) => {
            eprintln!(
                "error: cannot start oda-sim on {}:{}: {error}",
                args.host, args.port
            );
            return ExitCode::FAILURE;
        }
    };
    let rows = sim
        .state
        .world
        .read()
        .map(|w| w.store.total_rows())
        .unwrap_or(0);
    tracing::info!(
        url = %sim.base_url(),
        rows,
        seed = args.seed,
        build_ms = started.elapsed().as_millis() as u64,
        "oda-sim is serving."
    );
    // A machine-readable line for scripts that asked for port 0.
    println!("listening on {}", sim.base_url());
    if sim.join().await.is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
