//! Faults as a layer in front of the OData surface: latency, error
//! statuses, hangs, bodies cut short or broken off, and answers that
//! ignore `$filter` (marked on the request for the handler to honour).

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Shared, empty};
use crate::faults::FaultKind;

/// On a request the layer chose to answer with `$filter` ignored.
#[derive(Debug, Clone, Copy)]
pub(super) struct IgnoreFilter;

/// Every `/api` request passes here: counted, delayed and perhaps failed
/// as the faults in force say, its status counted on the way out.
pub(super) async fn inject(
    State(state): State<Shared>,
    mut request: Request,
    next: Next,
) -> Response {
    state.stats.requests.fetch_add(1, Ordering::Relaxed);
    let (delay, fault) = {
        let faults = state.faults.lock().map(|f| f.active()).unwrap_or_default();
        let mut rng = match state.rng.lock() {
            Ok(rng) => rng,
            Err(poisoned) => poisoned.into_inner(),
        };
        (faults.delay(&mut *rng), faults.draw(&mut *rng))
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(kind) = fault {
        state.count_fault(kind);
    }
    let response = match fault {
        Some(FaultKind::Status500) => {
            let body = r#"{"odata.error":{"code":"","message":{"lang":"en-US","value":"An error has occurred."}}}"#;
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
        Some(FaultKind::Status503) => {
            (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response()
        }
        Some(FaultKind::Status429) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            "Too Many Requests",
        )
            .into_response(),
        Some(FaultKind::Hang) => {
            // Longer than any sane client timeout.
            tokio::time::sleep(Duration::from_secs(600)).await;
            empty(StatusCode::GATEWAY_TIMEOUT)
        }
        Some(FaultKind::Truncate) => truncate(next.run(request).await).await,
        Some(FaultKind::Reset) => reset(next.run(request).await).await,
        Some(FaultKind::IgnoreFilter) => {
            request.extensions_mut().insert(IgnoreFilter);
            next.run(request).await
        }
        None => next.run(request).await,
    };
    if let Ok(mut statuses) = state.stats.statuses.lock() {
        *statuses.entry(response.status().as_u16()).or_default() += 1;
    }
    response
}

/// A 200 whose body stops halfway: the client sees invalid JSON.
async fn truncate(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let cut = bytes.slice(..bytes.len() / 2);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(cut))
}

/// Half a body, then the connection breaks.
async fn reset(response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let half = bytes.slice(..bytes.len() / 2);
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(half),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "injected reset",
        )),
    ];
    Response::from_parts(parts, Body::from_stream(futures::stream::iter(chunks)))
}
