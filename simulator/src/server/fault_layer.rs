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

use super::resource::entity_of;
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
        let entity = entity_of(request.uri().path());
        (
            faults.delay(&mut *rng),
            faults.draw(entity.as_deref(), &mut *rng),
        )
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
        Some(FaultKind::Status429) => throttled("1"),
        Some(FaultKind::Hang) => {
            // Longer than any sane client timeout.
            tokio::time::sleep(Duration::from_secs(600)).await;
            empty(StatusCode::GATEWAY_TIMEOUT)
        }
        Some(FaultKind::Truncate) => truncate(next.run(request).await).await,
        Some(FaultKind::Reset) => reset(next.run(request).await).await,
        Some(FaultKind::HugeBody) => huge_body(),
        Some(FaultKind::GzipBomb) => gzip_bomb(),
        Some(FaultKind::Redirect) => redirect_away(&request),
        Some(FaultKind::RetryAfterDate) => {
            let at = chrono::Utc::now() + chrono::Duration::seconds(2);
            throttled(&at.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        }
        Some(FaultKind::RetryAfterHuge) => throttled("1000000000"),
        Some(kind @ (FaultKind::RowWithoutId | FaultKind::NumericTimestamp)) => {
            with_bad_row(next.run(request).await, kind).await
        }
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

/// A 429 with this `Retry-After`.
fn throttled(retry_after: &str) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, retry_after.to_owned())],
        "Too Many Requests",
    )
        .into_response()
}

/// What a hostile body is made of (the start of a page, then blanks).
const PAGE_START: &[u8] = br#"{"odata.metadata":"x","value":["#;
/// 2 GiB of body, sent as it is read.
const HUGE_BODY_BYTES: usize = 2 << 30;
/// What the gzip bomb inflates to (about 1 MiB on the wire).
const BOMB_BYTES: usize = 1 << 30;

/// A 200 whose body never ends in practice: 2 GiB of blanks after the start
/// of a page, produced lazily (the server holds one chunk at a time).
fn huge_body() -> Response {
    const CHUNK: usize = 1 << 20;
    let blanks = Bytes::from(vec![b' '; CHUNK]);
    let chunks = std::iter::once(Ok::<_, std::io::Error>(Bytes::from_static(PAGE_START)))
        .chain(std::iter::repeat_n(blanks, HUGE_BODY_BYTES / CHUNK).map(Ok));
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(futures::stream::iter(chunks)),
    )
        .into_response()
}

/// A gzip-encoded 200 of about 1 MiB that inflates to 1 GiB; compressed
/// once, on first use.
fn gzip_bomb() -> Response {
    static BOMB: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    let body = BOMB.get_or_init(|| {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let blanks = vec![b' '; 1 << 20];
        let _ = encoder.write_all(PAGE_START);
        for _ in 0..BOMB_BYTES / blanks.len() {
            let _ = encoder.write_all(&blanks);
        }
        Bytes::from(encoder.finish().unwrap_or_default())
    });
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CONTENT_ENCODING, "gzip"),
        ],
        body.clone(),
    )
        .into_response()
}

/// A 302 to the same path on another host name (`localhost` for the
/// address the client used): a client that follows it reads from a host
/// it was not configured for.
fn redirect_away(request: &Request) -> Response {
    let port = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.rsplit_once(':'))
        .map_or("8089", |(_, port)| port);
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    (
        StatusCode::FOUND,
        [(header::LOCATION, format!("http://localhost:{port}{path}"))],
    )
        .into_response()
}

/// A page with one more row that no client can key: a copy of its first
/// row without `id`, or with `opdateringsdato` as a number. The real rows
/// stay as they are; other answers pass unchanged.
async fn with_bad_row(response: Response, kind: FaultKind) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let Ok(mut page) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let Some(rows) = page
        .get_mut("value")
        .and_then(serde_json::Value::as_array_mut)
    else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    if let Some(serde_json::Value::Object(first)) = rows.first() {
        let mut bad = first.clone();
        if kind == FaultKind::RowWithoutId {
            bad.remove("id");
        } else {
            bad.insert("opdateringsdato".into(), serde_json::json!(1_733_310_000));
        }
        rows.push(serde_json::Value::Object(bad));
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(page.to_string()))
}
