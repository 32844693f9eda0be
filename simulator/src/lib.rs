//! `oda-sim`: the ODA API's OData subset served locally (contract.md#oda-sim), with
//! live changes, injected faults and a ground-truth change log.
//!
//! Every claim about the producer is proven against this server, so it
//! copies the real API's quirks on purpose: server-side paging with
//! nextLinks built as ASP.NET Web API builds them, Danish local
//! timestamps that repeat in the autumn hour, SQL Server `datetime`
//! precision, rows sharing one timestamp in bursts wider than a page.

pub mod cli;
pub mod clock;
pub mod faults;
pub mod filter;
pub mod generate;
pub mod metadata;
pub mod query;
pub mod server;
pub mod store;
pub mod time;
pub mod world;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use chrono::{DateTime, Utc};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::SimClock;
use crate::faults::Faults;
use crate::generate::GenConfig;
use crate::server::SimState;
use crate::time::Precision;
use crate::world::{MutatorKnobs, World};

/// Everything a simulator run is configured with.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub addr: SocketAddr,
    pub seed: u64,
    pub scale: usize,
    pub page_size: usize,
    pub mutation_rate: f64,
    pub faults: Faults,
    /// Where the sim clock starts; `None`: the wall clock, read when the
    /// clock starts (after the data is built, so that a build of seconds
    /// does not leave the clock, every stamp and every ground-truth `at`
    /// that far in the past).
    pub clock_start: Option<DateTime<Utc>>,
    pub clock_speed: f64,
    pub ignore_unknown_filter_fields: bool,
    pub precision: Precision,
    pub knobs: MutatorKnobs,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8089)),
            seed: 1,
            scale: 20_000,
            page_size: 100,
            mutation_rate: 0.0,
            faults: Faults::default(),
            clock_start: None,
            clock_speed: 1.0,
            ignore_unknown_filter_fields: false,
            precision: Precision::Millis,
            knobs: MutatorKnobs::default(),
        }
    }
}

/// A simulator serving in the background; dropping it stops it, so a
/// test's simulator never outlives the test.
#[derive(Debug)]
pub struct RunningSim {
    pub addr: SocketAddr,
    pub state: Arc<SimState>,
    task: Option<JoinHandle<()>>,
    shutdown: CancellationToken,
}

impl RunningSim {
    /// `http://<addr>/api`, what clients use as `source.base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// Serves until the shutdown token given to [`start`] is cancelled.
    pub async fn join(mut self) -> Result<(), tokio::task::JoinError> {
        match self.task.take() {
            Some(task) => task.await,
            None => Ok(()),
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Builds the data, binds the port and serves until `shutdown`.
pub async fn start(config: SimConfig, shutdown: CancellationToken) -> std::io::Result<RunningSim> {
    let gen_config = GenConfig {
        seed: config.seed,
        scale: config.scale,
        precision: config.precision,
        now: config.clock_start.unwrap_or_else(Utc::now),
    };
    let world = tokio::task::spawn_blocking(move || World::new(&gen_config))
        .await
        .map_err(std::io::Error::other)?;
    let clock = SimClock::new(
        config.clock_start.unwrap_or_else(Utc::now),
        config.clock_speed,
    );
    let mut state = SimState::new(
        world,
        clock,
        config.page_size,
        config.ignore_unknown_filter_fields,
        config.faults.clone(),
        config.seed,
    );
    state.knobs = config.knobs.clone();
    state.set_mutation_rate(config.mutation_rate);
    let state = Arc::new(state);
    let listener = TcpListener::bind(config.addr).await?;
    let addr = listener.local_addr()?;
    let app = server::router(state.clone());
    let mutator = tokio::spawn(run_mutator(state.clone(), shutdown.clone()));
    let serve_shutdown = shutdown.clone();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { serve_shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "oda-sim server failed.");
        }
        mutator.abort();
    });
    Ok(RunningSim {
        addr,
        state,
        task: Some(task),
        shutdown,
    })
}

/// The binary's whole run: starts the simulator, says where it listens
/// (also as a plain `listening on <url>` line on stdout, for scripts that
/// asked for port 0) and serves until `shutdown`.
pub async fn serve(config: SimConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (addr, seed) = (config.addr, config.seed);
    let started = Instant::now();
    let sim = start(config, shutdown)
        .await
        .with_context(|| format!("cannot start oda-sim on {addr}"))?;
    let rows = sim
        .state
        .world
        .read()
        .map(|w| w.store.total_rows())
        .unwrap_or(0);
    tracing::info!(
        url = %sim.base_url(),
        rows,
        seed,
        build_ms = started.elapsed().as_millis() as u64,
        "oda-sim is serving."
    );
    println!("listening on {}", sim.base_url());
    sim.join().await.context("the oda-sim server task failed")
}

/// Applies background changes at the configured rate (changeable at run
/// time through `PUT /_sim/mutation-rate`).
async fn run_mutator(state: Arc<SimState>, shutdown: CancellationToken) {
    let tick = Duration::from_millis(10);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut owed = 0.0_f64;
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        // Owed changes follow the time that really passed, so a starved
        // runtime catches up instead of silently lowering the rate.
        let now = tokio::time::Instant::now();
        let elapsed = now - last;
        last = now;
        let rate = state.mutation_rate();
        if rate <= 0.0 {
            owed = 0.0;
            continue;
        }
        owed += rate * elapsed.as_secs_f64();
        let due = owed.floor();
        if due < 1.0 {
            continue;
        }
        owed -= due;
        let mut world = match state.world.write() {
            Ok(world) => world,
            Err(poisoned) => poisoned.into_inner(),
        };
        for _ in 0..(due as u64) {
            world.mutate_randomly(&state.clock, &state.knobs);
        }
    }
}
