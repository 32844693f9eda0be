//! The admin HTTP server every service runs: `/metrics`, `/healthz`,
//! `/readyz` (contract.md#http-endpoints).

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::health::Health;

/// Why the admin server could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot listen on {addr} for /metrics (metrics.addr): {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone)]
struct AdminState {
    registry: Registry,
    health: Health,
}

/// A running admin server.
#[derive(Debug)]
pub struct AdminServer {
    /// The bound address (useful when asked for port 0).
    pub addr: SocketAddr,
    pub task: JoinHandle<()>,
}

/// The admin address: `metrics.addr` when configured, else 127.0.0.1 and
/// the binary's own port of contract.md#defaults-and-ports.
pub fn address(configured: Option<SocketAddr>, default_port: u16) -> SocketAddr {
    configured.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], default_port)))
}

/// Binds `addr` and serves until `shutdown` is cancelled. Binding happens
/// before this returns, so a taken port is an error at start, not later.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    health: Health,
    shutdown: CancellationToken,
) -> Result<AdminServer, AdminError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| AdminError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| AdminError::Bind { addr, source })?;
    // The process's own RSS, CPU and file descriptors beside the service's
    // metrics (`process_resident_memory_bytes`…): the memory budget of
    // docs/BENCHMARKS.md, watched in production. A registry served twice
    // already has them.
    #[cfg(target_os = "linux")]
    let _ = registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ));
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AdminState { registry, health });
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "Admin server failed.");
        }
    });
    tracing::info!(%addr, "Serving /metrics, /healthz and /readyz.");
    Ok(AdminServer { addr, task })
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let families = state.registry.gather();
    let mut body = Vec::new();
    match TextEncoder::new().encode(&families, &mut body) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            body,
        )
            .into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

/// Why a probe of an admin endpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no answer: {0}")]
    Unreachable(#[source] reqwest::Error),
    #[error("answered {status}: {body}")]
    Unhealthy { status: u16, body: String },
}

/// GETs `url` once, within `timeout`: `Ok` on a 2xx answer. What the
/// container health check runs (`oda-healthcheck`), so the image needs no
/// curl.
pub async fn probe(url: &str, timeout: std::time::Duration) -> Result<(), ProbeError> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(ProbeError::Unreachable)?;
    let answer = client
        .get(url)
        .send()
        .await
        .map_err(ProbeError::Unreachable)?;
    let status = answer.status();
    if status.is_success() {
        return Ok(());
    }
    let mut body = answer.text().await.unwrap_or_default();
    body.truncate(body.floor_char_boundary(500));
    Err(ProbeError::Unhealthy {
        status: status.as_u16(),
        body: body.trim().to_owned(),
    })
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let readiness = state.health.readiness();
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, readiness.report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn metrics_include_the_process_and_readiness_follows_health() {
        let health = Health::new();
        health.register("kafka");
        let shutdown = CancellationToken::new();
        let server = serve(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Registry::new(),
            health.clone(),
            shutdown.clone(),
        )
        .await
        .expect("serves");
        let get = |path: &str| reqwest::get(format!("http://{}{path}", server.addr));

        let metrics = get("/metrics").await.expect("metrics");
        assert_eq!(metrics.status(), 200);
        let text = metrics.text().await.expect("body");
        if cfg!(target_os = "linux") {
            assert!(
                text.contains("process_resident_memory_bytes"),
                "the process's RSS is exported: {text}"
            );
        }
        assert_eq!(get("/healthz").await.expect("healthz").status(), 200);
        assert_eq!(
            get("/readyz").await.expect("readyz").status(),
            503,
            "kafka not ok yet"
        );
        health.set_ok("kafka");
        assert_eq!(get("/readyz").await.expect("readyz").status(), 200);
        shutdown.cancel();
    }
}
