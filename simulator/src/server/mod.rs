//! The HTTP side: ODA's OData surface at `/api` ([`odata`], requests read
//! by [`resource`]), the faults a test asks for as a layer in front of it
//! ([`fault_layer`]), and the `/_sim` control API ([`control`]).

mod control;
mod fault_layer;
mod odata;
mod resource;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::clock::SimClock;
use crate::faults::{FaultKind, Faults};
use crate::world::World;

/// Shared state of a running simulator.
#[derive(Debug)]
pub struct SimState {
    pub world: RwLock<World>,
    pub clock: SimClock,
    pub page_size: usize,
    pub ignore_unknown_filter_fields: bool,
    pub faults: Mutex<Faults>,
    pub stats: Stats,
    pub mutation_rate: AtomicU64,
    pub knobs: crate::world::MutatorKnobs,
    pub(crate) rng: Mutex<StdRng>,
}

/// Counters behind `GET /_sim/stats`.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub faults: Mutex<BTreeMap<&'static str, u64>>,
    pub statuses: Mutex<BTreeMap<u16, u64>>,
}

impl SimState {
    pub fn new(
        world: World,
        clock: SimClock,
        page_size: usize,
        ignore_unknown_filter_fields: bool,
        faults: Faults,
        seed: u64,
    ) -> Self {
        Self {
            world: RwLock::new(world),
            clock,
            page_size,
            ignore_unknown_filter_fields,
            faults: Mutex::new(faults),
            stats: Stats::default(),
            mutation_rate: AtomicU64::new(0f64.to_bits()),
            knobs: crate::world::MutatorKnobs::default(),
            rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0xfa17)),
        }
    }

    pub fn set_mutation_rate(&self, per_second: f64) {
        self.mutation_rate
            .store(per_second.max(0.0).to_bits(), Ordering::Relaxed);
    }

    pub fn mutation_rate(&self) -> f64 {
        f64::from_bits(self.mutation_rate.load(Ordering::Relaxed))
    }

    pub(crate) fn count_fault(&self, kind: FaultKind) {
        if let Ok(mut faults) = self.faults_stats() {
            *faults.entry(kind.name()).or_default() += 1;
        }
    }

    fn faults_stats(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<&'static str, u64>>, ()> {
        self.stats.faults.lock().map_err(|_| ())
    }
}

type Shared = Arc<SimState>;

/// The router: `/api/...` as ODA serves it (behind the fault layer),
/// `/_sim/...` for tests.
pub fn router(state: Shared) -> Router {
    let api = Router::new()
        .route("/api", get(odata::api))
        .route("/api/", get(odata::api))
        .route("/api/{*rest}", get(odata::api))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            fault_layer::inject,
        ));
    Router::new()
        .merge(api)
        .route("/_sim/changes", get(control::changes))
        .route("/_sim/mutate", post(control::mutate))
        .route("/_sim/mutation-rate", put(control::mutation_rate))
        .route(
            "/_sim/faults",
            post(control::set_faults).get(control::get_faults),
        )
        .route("/_sim/stats", get(control::stats))
        .with_state(state)
}

pub(crate) fn empty(status: StatusCode) -> Response {
    (status, Body::empty()).into_response()
}

pub(crate) fn not_found_page() -> Response {
    let body = "<!DOCTYPE html><html><head><title>404 - File or directory not found.</title></head>\
                <body><h2>404 - File or directory not found.</h2></body></html>";
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/html")],
        body,
    )
        .into_response()
}

pub(crate) fn json_response(body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(
            "application/json; odata=minimalmetadata; streaming=true; charset=utf-8",
        ),
    );
    headers.insert("DataServiceVersion", HeaderValue::from_static("3.0"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
