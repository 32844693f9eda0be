//! HTTP to the ODA API with the politeness and resilience contract.md#configuration and the
//! producer issue ask for.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use super::breaker::Breaker;
use super::page::Page;
use super::ratelimit::RateLimiter;
use oda_model::odata::{Query, entity_path};

/// Why a request failed, by what the caller should do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("not found")]
    NotFound,
    #[error("HTTP {status} from the source")]
    Status { status: u16 },
    #[error("source throttled the request (retry after {retry_after:?})")]
    Throttled { retry_after: Option<Duration> },
    #[error("request to the source timed out")]
    Timeout,
    #[error("transport error: {0}")]
    Transport(String),
    #[error("unreadable response: {0}")]
    Decode(String),
    #[error("circuit breaker open: the source failed repeatedly")]
    BreakerOpen,
}

impl FetchError {
    /// Worth another attempt: server trouble, throttling, broken bodies.
    pub fn is_retryable(&self) -> bool {
        match self {
            FetchError::Status { status } => *status >= 500 || *status == 408,
            FetchError::Throttled { .. }
            | FetchError::Timeout
            | FetchError::Transport(_)
            | FetchError::Decode(_) => true,
            FetchError::NotFound | FetchError::BreakerOpen => false,
        }
    }

    /// Counts against the breaker (the source misbehaves, not the query).
    fn is_source_failure(&self) -> bool {
        self.is_retryable()
    }
}

/// Retries with full jitter: attempt n sleeps uniform(0, min(cap, base·2ⁿ)).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The pauses before each retry of one request: doubling from `base`
    /// up to `cap`, jittered so many clients do not retry in step, and
    /// `attempts - 1` of them (the first try needs none).
    fn delays(&self) -> impl Iterator<Item = Duration> + use<> {
        ExponentialBuilder::new()
            .with_min_delay(self.base)
            .with_max_delay(self.cap)
            .with_factor(2.0)
            .with_max_times(self.attempts.saturating_sub(1) as usize)
            .with_jitter()
            .build()
    }
}

/// Timeouts, retries and the breaker: production values by default,
/// shorter in tests that inject hangs.
#[derive(Debug, Clone, Copy)]
pub struct ClientTuning {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// Consecutive failures that open the breaker.
    pub breaker_threshold: u32,
    pub breaker_cool_down: Duration,
}

impl Default for ClientTuning {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            breaker_threshold: 5,
            breaker_cool_down: Duration::from_secs(30),
        }
    }
}

/// The client's metrics (names as contract.md#metrics fixes them).
#[derive(Debug, Clone)]
pub struct ClientMetrics {
    pub requests: IntCounterVec,
    pub retries: IntCounter,
    pub circuit_state: IntGauge,
}

impl ClientMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "oda_cdc_http_requests_total",
                "HTTP requests to the ODA API by response status (or error kind).",
            ),
            &["status"],
        )?;
        let retries = IntCounter::new(
            "oda_cdc_http_retries_total",
            "HTTP requests to the ODA API that were retried.",
        )?;
        let circuit_state = IntGauge::new(
            "oda_cdc_circuit_state",
            "Circuit breaker: 0 closed, 1 half-open, 2 open.",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(circuit_state.clone()))?;
        Ok(Self {
            requests,
            retries,
            circuit_state,
        })
    }

    /// Unregistered handles, for tools and tests that expose no metrics.
    pub fn detached() -> Self {
        Self::register(&Registry::new())
            .unwrap_or_else(|_| unreachable!("a fresh registry has no duplicates"))
    }
}

/// A client for one ODA base URL.
#[derive(Debug, Clone)]
pub struct OdaClient {
    http: reqwest::Client,
    base: String,
    limiter: Arc<RateLimiter>,
    in_flight: Arc<Semaphore>,
    breaker: Arc<Breaker>,
    retry: RetryPolicy,
    metrics: ClientMetrics,
}

/// Identifies us to Folketinget, as its terms of use ask of heavy users.
pub const USER_AGENT: &str = concat!(
    "oda-cdc/",
    env!("CARGO_PKG_VERSION"),
    " (change data capture of Folketingets Åbne Data into Kafka)"
);

impl OdaClient {
    pub fn new(
        base_url: &str,
        max_in_flight: usize,
        rate_limit: f64,
        tuning: ClientTuning,
        metrics: ClientMetrics,
    ) -> Result<Self, FetchError> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(tuning.connect_timeout)
            .timeout(tuning.request_timeout)
            .gzip(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| FetchError::Transport(e.to_string()))?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            limiter: Arc::new(RateLimiter::new(rate_limit)),
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
            breaker: Arc::new(Breaker::new(
                tuning.breaker_threshold,
                tuning.breaker_cool_down,
            )),
            retry: tuning.retry,
            metrics,
        })
    }

    /// Replaces the breaker (tests use short cool-downs).
    pub fn with_breaker(mut self, breaker: Breaker) -> Self {
        self.breaker = Arc::new(breaker);
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// One page of a collection.
    pub async fn page(&self, entity: &str, query: &Query) -> Result<Page, FetchError> {
        let url = format!(
            "{}/{}?{}",
            self.base,
            entity_path(entity),
            query.to_query_string()
        );
        self.get_parsed(&url, |body| Page::parse(body).map_err(FetchError::Decode))
            .await
    }

    /// One record by key; `None` when the source answers 404.
    pub async fn by_key(
        &self,
        entity: &str,
        id: i64,
    ) -> Result<Option<Map<String, Value>>, FetchError> {
        let url = format!("{}/{}({id})?$format=json", self.base, entity_path(entity));
        let parse = |body: &Bytes| {
            let mut record: Map<String, Value> =
                serde_json::from_slice(body).map_err(|e| FetchError::Decode(e.to_string()))?;
            record.retain(|k, _| !k.starts_with("odata."));
            Ok(record)
        };
        match self.get_parsed(&url, parse).await {
            Ok(record) => Ok(Some(record)),
            Err(FetchError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `$metadata` as text (CSDL XML).
    pub async fn metadata(&self) -> Result<String, FetchError> {
        let url = format!("{}/$metadata", self.base);
        self.get_parsed(&url, |body| {
            String::from_utf8(body.to_vec()).map_err(|e| FetchError::Decode(e.to_string()))
        })
        .await
    }

    /// GET with the in-flight cap, rate limit, breaker and retries; a body
    /// `parse` rejects (truncated, not JSON) is retried like a 5xx.
    pub async fn get_parsed<T>(
        &self,
        url: &str,
        parse: impl Fn(&Bytes) -> Result<T, FetchError>,
    ) -> Result<T, FetchError> {
        let mut delays = self.retry.delays();
        let mut attempt = 0;
        loop {
            let result = self.attempt(url).await.and_then(|body| {
                parse(&body).inspect_err(|_| {
                    self.metrics.requests.with_label_values(&["decode"]).inc();
                    self.breaker.on_failure();
                })
            });
            self.metrics.circuit_state.set(self.breaker.state() as i64);
            let error = match result {
                Ok(body) => return Ok(body),
                Err(e) => e,
            };
            attempt += 1;
            let Some(backoff) = delays.next().filter(|_| error.is_retryable()) else {
                return Err(error);
            };
            self.metrics.retries.inc();
            let wait = match &error {
                FetchError::Throttled {
                    retry_after: Some(after),
                } => (*after).max(backoff),
                _ => backoff,
            };
            tracing::debug!(%error, attempt, wait_ms = wait.as_millis() as u64, url, "Retrying ODA request.");
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(&self, url: &str) -> Result<Bytes, FetchError> {
        if !self.breaker.admit() {
            self.metrics
                .requests
                .with_label_values(&["breaker_open"])
                .inc();
            return Err(FetchError::BreakerOpen);
        }
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| FetchError::Transport("client closed".into()))?;
        self.limiter.acquire().await;
        let result = self.send(url).await;
        match &result {
            Ok(_) => self.breaker.on_success(),
            Err(e) if e.is_source_failure() => self.breaker.on_failure(),
            // A 404 or a bad query is an answer: the source is healthy.
            Err(_) => self.breaker.on_success(),
        }
        result
    }

    async fn send(&self, url: &str) -> Result<Bytes, FetchError> {
        let response = match self
            .http
            .get(url)
            .header("Accept", "application/json")
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                let error = if e.is_timeout() {
                    FetchError::Timeout
                } else {
                    FetchError::Transport(e.to_string())
                };
                self.metrics
                    .requests
                    .with_label_values(&[label(&error)])
                    .inc();
                return Err(error);
            }
        };
        let status = response.status();
        self.metrics
            .requests
            .with_label_values(&[status.as_str()])
            .inc();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(FetchError::NotFound);
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(FetchError::Throttled { retry_after });
        }
        if !status.is_success() {
            return Err(FetchError::Status {
                status: status.as_u16(),
            });
        }
        response.bytes().await.map_err(|e| {
            if e.is_timeout() {
                FetchError::Timeout
            } else {
                FetchError::Transport(e.to_string())
            }
        })
    }
}

fn label(error: &FetchError) -> &'static str {
    match error {
        FetchError::Timeout => "timeout",
        FetchError::Transport(_) => "transport",
        FetchError::Decode(_) => "decode",
        FetchError::BreakerOpen => "breaker_open",
        FetchError::NotFound => "404",
        FetchError::Throttled { .. } => "429",
        FetchError::Status { .. } => "error",
    }
}
