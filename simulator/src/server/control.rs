//! The `/_sim` control API: the ground-truth change log, mutations, the
//! background mutation rate, faults and counters.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::Shared;
use crate::faults::{FaultRequest, Faults};
use crate::world::MutationRequest;

#[derive(Deserialize)]
pub(super) struct ChangesQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    limit: Option<usize>,
}

pub(super) async fn changes(
    State(state): State<Shared>,
    Query(q): Query<ChangesQuery>,
) -> Response {
    let world = match state.world.read() {
        Ok(world) => world,
        Err(poisoned) => poisoned.into_inner(),
    };
    let start = usize::try_from(q.after)
        .unwrap_or(usize::MAX)
        .min(world.log.len());
    let end = q.limit.map_or(world.log.len(), |l| {
        start.saturating_add(l).min(world.log.len())
    });
    let mut body = Vec::new();
    for entry in &world.log[start..end] {
        let _ = serde_json::to_writer(&mut body, entry);
        body.push(b'\n');
    }
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

pub(super) async fn mutate(State(state): State<Shared>, body: Bytes) -> Response {
    let request: MutationRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let result = {
        let mut world = match state.world.write() {
            Ok(world) => world,
            Err(poisoned) => poisoned.into_inner(),
        };
        world.mutate(&request, &state.clock)
    };
    match result {
        Ok((from, to)) => {
            axum::Json(serde_json::json!({"from_seq": from, "to_seq": to})).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateRequest {
    per_second: f64,
}

pub(super) async fn mutation_rate(State(state): State<Shared>, body: Bytes) -> Response {
    match serde_json::from_slice::<RateRequest>(&body) {
        Ok(r) if r.per_second.is_finite() && r.per_second >= 0.0 => {
            state.set_mutation_rate(r.per_second);
            axum::Json(serde_json::json!({"per_second": r.per_second})).into_response()
        }
        Ok(_) => (StatusCode::BAD_REQUEST, "per_second must be 0 or more").into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

pub(super) async fn set_faults(State(state): State<Shared>, body: Bytes) -> Response {
    let request: FaultRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    match Faults::from_request(&request) {
        Ok(faults) => {
            let described = faults.describe();
            if let Ok(mut current) = state.faults.lock() {
                *current = faults;
            }
            axum::Json(described).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

pub(super) async fn get_faults(State(state): State<Shared>) -> Response {
    let described = state
        .faults
        .lock()
        .map(|f| f.describe())
        .unwrap_or_default();
    axum::Json(described).into_response()
}

pub(super) async fn stats(State(state): State<Shared>) -> Response {
    let rows = {
        let world = match state.world.read() {
            Ok(world) => world,
            Err(poisoned) => poisoned.into_inner(),
        };
        crate::generate::row_counts(&world.store)
    };
    let faults = state
        .stats
        .faults
        .lock()
        .map(|f| f.clone())
        .unwrap_or_default();
    let statuses: BTreeMap<String, u64> = state
        .stats
        .statuses
        .lock()
        .map(|s| s.iter().map(|(k, v)| (k.to_string(), *v)).collect())
        .unwrap_or_default();
    let changes = state.world.read().map(|w| w.log.len()).unwrap_or(0);
    axum::Json(serde_json::json!({
        "rows": rows,
        "requests": state.stats.requests.load(Ordering::Relaxed),
        "responses_by_status": statuses,
        "faults": faults,
        "changes": changes,
        "mutation_rate": state.mutation_rate(),
        "clock": state.clock.now_utc().to_rfc3339(),
    }))
    .into_response()
}
