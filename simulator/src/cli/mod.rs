//! The command line of `oda-sim`: its flags and what they build.

mod values;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::SimConfig;
use crate::faults::{FaultKind, Faults};
use crate::time::Precision;
use crate::world::MutatorKnobs;

/// A faithful local stand-in for the Danish Parliament's ODA API
/// (https://oda.ft.dk/api): the OData 3.0 subset, live changes, injected
/// faults and a ground-truth change log under /_sim.
#[derive(Debug, Parser)]
#[command(name = "oda-sim", version)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long, default_value_t = 8089)]
    pub port: u16,
    /// Seed of the generated data and of every random choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Total rows across all entity sets (ODA's full size is about 3,000,000).
    #[arg(long, default_value_t = 20_000, value_parser = values::positive_usize)]
    pub scale: usize,
    /// Server page size: rows per response before a nextLink (ODA: 100; once 20).
    #[arg(long, default_value_t = 100, value_parser = values::positive_usize)]
    pub page_size: usize,
    /// Background changes per second (inserts, updates, deletes, re-stamps).
    #[arg(long, default_value_t = 0.0, value_parser = values::non_negative)]
    pub mutation_rate: f64,
    /// Fixed latency added to every API response, e.g. `120ms`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub latency: Option<Duration>,
    /// Random extra latency, uniform between 0 and this.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub jitter: Option<Duration>,
    /// Share of API requests that fail (0–1), with the kinds of --fault-kinds.
    #[arg(long, default_value_t = 0.0, value_parser = values::fraction)]
    pub error_rate: f64,
    /// Failure kinds drawn for --error-rate: 500,503,429,hang,truncate,reset,ignore_filter.
    #[arg(long, value_delimiter = ',', value_parser = values::fault_kind)]
    pub fault_kinds: Vec<FaultKind>,
    /// Sim-clock start (RFC 3339); timestamps of changes come from this clock.
    #[arg(long, value_parser = values::rfc3339)]
    pub clock_start: Option<DateTime<Utc>>,
    /// Sim-clock speed: 60 runs an hour of source time per real minute.
    #[arg(long, default_value_t = 1.0, value_parser = values::positive_f64)]
    pub clock_speed: f64,
    /// The reported quirk: a filter naming an unknown field is ignored and
    /// the unfiltered set returned (instead of HTTP 400).
    #[arg(long)]
    pub ignore_unknown_filter_fields: bool,
    /// Hold timestamps as SQL Server `datetime` (1/300 s ticks) and compare
    /// literals as SQL Server compares them.
    #[arg(long)]
    pub sqlserver_datetime: bool,
    /// Share of background changes that only re-stamp a row (content unchanged).
    #[arg(long, default_value_t = 0.15, value_parser = values::fraction)]
    pub restamp_share: f64,
    /// Share of background changes that are bursts of 101–150 updates on one timestamp.
    #[arg(long, default_value_t = 0.01, value_parser = values::fraction)]
    pub burst_share: f64,
    /// Late commits: one background change in ten is stamped up to this far in the past.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub late_commit_lag: Option<Duration>,
}
impl Args {
    /// The simulator's configuration from the flags.
    pub fn to_config(&self) -> SimConfig {
        let faults = Faults {
            latency: self.latency.unwrap_or_default(),
            jitter: self.jitter.unwrap_or_default(),
            error_rate: self.error_rate,
            kinds: if self.fault_kinds.is_empty() {
                vec![FaultKind::Status500, FaultKind::Status503]
            } else {
                self.fault_kinds.clone()
            },
            until: None,
            entity: None,
        };
        SimConfig {
            addr: SocketAddr::new(self.host, self.port),
            seed: self.seed,
            scale: self.scale,
            page_size: self.page_size,
            mutation_rate: self.mutation_rate,
            faults,
            clock_start: self.clock_start,
            clock_speed: self.clock_speed,
            ignore_unknown_filter_fields: self.ignore_unknown_filter_fields,
            precision: if self.sqlserver_datetime {
                Precision::SqlServer
            } else {
                Precision::Millis
            },
            knobs: MutatorKnobs {
                restamp_share: self.restamp_share,
                burst_share: self.burst_share,
                late_commit_lag: self.late_commit_lag.unwrap_or_default(),
            },
        }
    }
}

/// Log lines to stderr; `RUST_LOG` filters them (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A token cancelled by SIGINT or SIGTERM, so the server drains and exits 0.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut terminate) => {
                    tokio::select! {
                        _ = interrupt => {}
                        _ = terminate.recv() => {}
                    }
                }
                Err(_) => drop(interrupt.await),
            }
        }
        #[cfg(not(unix))]
        drop(interrupt.await);
        tracing::info!("Shutdown requested.");
        trigger.cancel();
    });
    token
}
