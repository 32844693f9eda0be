//! How fast one core of oda-sim serves the producer's two query shapes.
//!
//! The server runs on a single-threaded Tokio runtime (one core); clients
//! on another thread page through `Stemme` (a million rows by default)
//! with keyset cursors, as the producer does:
//!
//! - time keyset: `$filter=opdateringsdato gt datetime'T' or
//!   (opdateringsdato eq datetime'T' and id gt N)&$orderby=opdateringsdato,id`
//! - id keyset: `$filter=id gt N&$orderby=id`
//!
//! Run: `cargo bench -p oda-sim --bench serve_pages [-- --scale N --seconds S --runs R --clients C]`.
//! Prints pages/s per run and the median per shape.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oda_sim::{SimConfig, start};
use tokio_util::sync::CancellationToken;

struct Options {
    scale: usize,
    seconds: f64,
    runs: usize,
    clients: usize,
}

fn options() -> Options {
    let mut o = Options {
        scale: 1_900_000,
        seconds: 3.0,
        runs: 5,
        clients: 4,
    };
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(v) = value("--scale").and_then(|v| v.parse().ok()) {
        o.scale = v;
    }
    if let Some(v) = value("--seconds").and_then(|v| v.parse().ok()) {
        o.seconds = v;
    }
    if let Some(v) = value("--runs").and_then(|v| v.parse().ok()) {
        o.runs = v;
    }
    if let Some(v) = value("--clients").and_then(|v| v.parse().ok()) {
        o.clients = v;
    }
    o
}

#[derive(Clone, Copy)]
enum Shape {
    TimeKeyset,
    IdKeyset,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::TimeKeyset => "time keyset ($orderby=opdateringsdato,id)",
            Shape::IdKeyset => "id keyset ($filter=id gt N&$orderby=id)",
        }
    }
}

async fn client(
    base: String,
    shape: Shape,
    seed: i64,
    stop: Arc<AtomicBool>,
    pages: Arc<AtomicU64>,
) {
    let http = reqwest::Client::new();
    let mut id: i64 = 1000 + seed * 7919;
    let mut ts = String::from("2014-01-01T00:00:00");
    while !stop.load(Ordering::Relaxed) {
        let url = match shape {
            Shape::TimeKeyset => format!(
                "{base}/Stemme?$filter=opdateringsdato gt datetime'{ts}' or (opdateringsdato eq datetime'{ts}' and id gt {id})&$orderby=opdateringsdato,id&$top=100"
            ),
            Shape::IdKeyset => format!("{base}/Stemme?$filter=id gt {id}&$orderby=id&$top=100"),
        };
        let Ok(response) = http.get(&url).send().await else {
            continue;
        };
        let Ok(body) = response.bytes().await else {
            continue;
        };
        let Ok(page) = serde_json::from_slice::<serde_json::Value>(&body) else {
            continue;
        };
        let rows = page["value"].as_array().cloned().unwrap_or_default();
        pages.fetch_add(1, Ordering::Relaxed);
        match rows.last() {
            Some(last) => {
                id = last["id"].as_i64().unwrap_or(id);
                if let Some(t) = last["opdateringsdato"].as_str() {
                    ts = t.to_owned();
                }
            }
            None => {
                // End of the set: start over.
                id = 0;
                ts = String::from("2014-01-01T00:00:00");
            }
        }
        if rows.len() != 100 && !rows.is_empty() {
            id = 0;
            ts = String::from("2014-01-01T00:00:00");
        }
    }
}

fn main() {
    let o = options();
    let shutdown = CancellationToken::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let server_shutdown = shutdown.clone();
    let scale = o.scale;
    // The server: one thread, one single-threaded runtime.
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let config = SimConfig {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                scale,
                ..SimConfig::default()
            };
            let built = Instant::now();
            let sim = start(config, server_shutdown.clone()).await.expect("start");
            let rows = sim
                .state
                .world
                .read()
                .map(|w| w.store.table("Stemme").map_or(0, |t| t.len()))
                .unwrap_or(0);
            let total = sim
                .state
                .world
                .read()
                .map(|w| w.store.total_rows())
                .unwrap_or(0);
            tx.send((sim.base_url(), rows, total, built.elapsed()))
                .expect("send");
            server_shutdown.cancelled().await;
        });
    });
    let (base, stemme, total, build) = rx.recv().expect("server started");
    println!(
        "oda-sim: {total} rows ({stemme} in Stemme) built in {build:.1?}; server on one core; {} clients",
        o.clients
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    for shape in [Shape::TimeKeyset, Shape::IdKeyset] {
        let mut rates = Vec::new();
        for run in 0..o.runs {
            let stop = Arc::new(AtomicBool::new(false));
            let pages = Arc::new(AtomicU64::new(0));
            let started = Instant::now();
            runtime.block_on(async {
                let tasks: Vec<_> = (0..o.clients)
                    .map(|c| {
                        tokio::spawn(client(
                            base.clone(),
                            shape,
                            (run * o.clients + c) as i64,
                            stop.clone(),
                            pages.clone(),
                        ))
                    })
                    .collect();
                tokio::time::sleep(Duration::from_secs_f64(o.seconds)).await;
                stop.store(true, Ordering::Relaxed);
                for task in tasks {
                    let _ = task.await;
                }
            });
            let rate = pages.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
            println!("  {}: run {}: {rate:.0} pages/s", shape.name(), run + 1);
            rates.push(rate);
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "{}: median {:.0} pages/s of 100 rows",
            shape.name(),
            rates[rates.len() / 2]
        );
    }
    shutdown.cancel();
    let _ = server.join();
    println!("peak RSS of the whole run: {}", peak_rss());
}

/// `VmHWM` from /proc (Linux); "unknown" elsewhere.
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}
