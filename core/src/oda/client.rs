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
use super::ratelimit::{Priority, RateLimiter};
use crate::config::HttpSettings;
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
    #[error(
        "the response body is larger than http.max_body_bytes ({limit} bytes, after decompression)"
    )]
    TooLarge { limit: u64 },
    #[error("the source redirects to {location}, another scheme or host: not followed")]
    Redirected { location: String },
    /// A background request found no free slot before its deadline: not
    /// sent, nothing failed.
    #[error("deferred: no request slot free before the deadline")]
    Deferred,
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
            FetchError::NotFound
            | FetchError::BreakerOpen
            | FetchError::TooLarge { .. }
            | FetchError::Redirected { .. }
            | FetchError::Deferred => false,
        }
    }

    /// Counts against the breaker (the source misbehaves, not the query).
    /// An oversized body or a redirect away is one entity's answer, not a
    /// source that is down: the other entities must keep flowing.
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

/// Timeouts, retries, limits and the breaker: the `http.*` settings, or
/// shorter values in tests that inject hangs.
#[derive(Debug, Clone, Copy)]
pub struct ClientTuning {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// The longest `Retry-After` honoured.
    pub retry_after_max: Duration,
    /// The largest body read, after decompression.
    pub max_body_bytes: u64,
    /// Consecutive failures that open the breaker.
    pub breaker_threshold: u32,
    pub breaker_cool_down: Duration,
}

impl Default for ClientTuning {
    fn default() -> Self {
        Self::from(&HttpSettings::default())
    }
}

impl From<&HttpSettings> for ClientTuning {
    fn from(http: &HttpSettings) -> Self {
        Self {
            connect_timeout: http.connect_timeout.get(),
            request_timeout: http.request_timeout.get(),
            retry: RetryPolicy {
                attempts: http.attempts.max(1),
                base: http.backoff.get(),
                cap: http.backoff_max.get(),
            },
            retry_after_max: http.retry_after_max.get(),
            max_body_bytes: http.max_body_bytes,
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
    /// [`Self::base`] without credentials.
    shown_base: String,
    retry: RetryPolicy,
    retry_after_max: Duration,
    max_body_bytes: u64,
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
            .redirect(same_origin_redirects())
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| FetchError::Transport(e.to_string()))?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            shown_base: without_credentials(base_url.trim_end_matches('/')),
            limiter: Arc::new(RateLimiter::new(rate_limit)),
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
            breaker: Arc::new(Breaker::new(
                tuning.breaker_threshold,
                tuning.breaker_cool_down,
            )),
            retry: tuning.retry,
            retry_after_max: tuning.retry_after_max,
            max_body_bytes: tuning.max_body_bytes,
            metrics,
        })
    }

    /// Replaces the breaker (tests use short cool-downs).
    pub fn with_breaker(mut self, breaker: Breaker) -> Self {
        self.breaker = Arc::new(breaker);
        self
    }

    /// The base URL as events and logs may show it: without the user
    /// name and password a configured URL may carry.
    pub fn base_url(&self) -> &str {
        &self.shown_base
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// One page of a collection, ahead of background reads.
    pub async fn page(&self, entity: &str, query: &Query) -> Result<Page, FetchError> {
        self.page_with(entity, query, Priority::Urgent).await
    }

    /// One page of a collection at the given priority.
    pub async fn page_with(
        &self,
        entity: &str,
        query: &Query,
        priority: Priority,
    ) -> Result<Page, FetchError> {
        let url = format!(
            "{}/{}?{}",
            self.base,
            entity_path(entity),
            query.to_query_string()
        );
        self.get_parsed_with(&url, priority, |body| {
            Page::parse(body).map_err(FetchError::Decode)
        })
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
        self.get_parsed_with(url, Priority::Urgent, parse).await
    }

    async fn get_parsed_with<T>(
        &self,
        url: &str,
        priority: Priority,
        parse: impl Fn(&Bytes) -> Result<T, FetchError>,
    ) -> Result<T, FetchError> {
        let mut delays = self.retry.delays();
        let mut attempt = 0;
        loop {
            let result = self.attempt(url, priority).await.and_then(|body| {
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
                } => (*after).min(self.retry_after_max).max(backoff),
                _ => backoff,
            };
            tracing::debug!(%error, attempt, wait_ms = wait.as_millis() as u64, url = %crate::secret::redact_url(url), "Retrying ODA request.");
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(&self, url: &str, priority: Priority) -> Result<Bytes, FetchError> {
        if !self.breaker.admit() {
            self.metrics
                .requests
                .with_label_values(&["breaker_open"])
                .inc();
            return Err(FetchError::BreakerOpen);
        }
        // A background request takes its slot before a connection permit,
        // so that waiting re-reads never hold the permits new data needs.
        if matches!(priority, Priority::Background { .. }) && !self.limiter.acquire(priority).await
        {
            return Err(FetchError::Deferred);
        }
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| FetchError::Transport("client closed".into()))?;
        if priority == Priority::Urgent {
            self.limiter.acquire(priority).await;
        }
        let started = std::time::Instant::now();
        let result = self.send(url).await;
        // Which requests a run spends its rate on, for whoever tunes it.
        tracing::trace!(
            url = %crate::secret::redact_url(url),
            ?priority,
            ok = result.is_ok(),
            ms = started.elapsed().as_millis() as u64,
            "ODA request."
        );
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
                    FetchError::Transport(e.without_url().to_string())
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
                .and_then(|v| retry_after(v, chrono::Utc::now()));
            return Err(FetchError::Throttled { retry_after });
        }
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("(no Location)")
                .to_owned();
            self.metrics
                .requests
                .with_label_values(&["redirect_refused"])
                .inc();
            return Err(FetchError::Redirected { location });
        }
        if !status.is_success() {
            return Err(FetchError::Status {
                status: status.as_u16(),
            });
        }
        self.read_body(response).await
    }

    /// The body, decompressed, refused past `max_body_bytes`: read chunk by
    /// chunk, so a 2 GiB page or a gzip bomb costs at most the limit.
    async fn read_body(&self, mut response: reqwest::Response) -> Result<Bytes, FetchError> {
        let limit = self.max_body_bytes;
        let too_large = || {
            self.metrics
                .requests
                .with_label_values(&["too_large"])
                .inc();
            FetchError::TooLarge { limit }
        };
        // The declared length is of the compressed body, if any: a hint only.
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut body = bytes::BytesMut::new();
        loop {
            let chunk = response.chunk().await.map_err(|e| {
                if e.is_timeout() {
                    FetchError::Timeout
                } else {
                    FetchError::Transport(e.without_url().to_string())
                }
            })?;
            let Some(chunk) = chunk else {
                return Ok(body.freeze());
            };
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
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
        FetchError::TooLarge { .. } => "too_large",
        FetchError::Redirected { .. } => "redirect_refused",
        FetchError::Deferred => "deferred",
    }
}

/// `url` without a user name or password.
fn without_credentials(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.as_str().trim_end_matches('/').to_owned()
        }
        Err(_) => crate::secret::redact_url(url),
    }
}

/// Follows a redirect only to the same scheme, host and port (a load
/// balancer's trailing-slash hop), at most five times; anything else comes
/// back as the 3xx answer, which the client refuses.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same = attempt.previous().first().is_some_and(|first| {
            first.scheme() == attempt.url().scheme()
                && first.host_str() == attempt.url().host_str()
                && first.port_or_known_default() == attempt.url().port_or_known_default()
        });
        if same && attempt.previous().len() <= 5 {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// `Retry-After` in either form: delay-seconds, or an HTTP-date (a date in
/// the past means now). The caller caps it (`http.retry_after_max`).
fn retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_and_as_an_http_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-04T12:00:00Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after(" 1000000000 ", now),
            Some(Duration::from_secs(1_000_000_000))
        );
        assert_eq!(
            retry_after("Fri, 04 Dec 2026 12:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Fri, 04 Dec 2026 11:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past: now"
        );
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn oversized_bodies_and_redirects_away_are_final_and_not_the_sources_fault() {
        for error in [
            FetchError::TooLarge { limit: 1 },
            FetchError::Redirected {
                location: "http://elsewhere/".into(),
            },
        ] {
            assert!(!error.is_retryable(), "{error}");
            assert!(!error.is_source_failure(), "{error}");
        }
    }
}
