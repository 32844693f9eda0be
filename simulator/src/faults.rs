//! Injected source faults (contract.md#oda-sim): latency, error responses, hangs,
//! truncated bodies, connection resets and the ignored-filter quirk, and
//! the answers of a hostile front (a body of gigabytes, a gzip bomb, a
//! redirect to another host, `Retry-After` as a date or far away); all of
//! them for every entity set or one.

use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};

/// One kind of injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FaultKind {
    #[serde(rename = "500")]
    Status500,
    #[serde(rename = "503")]
    Status503,
    #[serde(rename = "429")]
    Status429,
    #[serde(rename = "hang")]
    Hang,
    #[serde(rename = "truncate")]
    Truncate,
    #[serde(rename = "reset")]
    Reset,
    #[serde(rename = "ignore_filter")]
    IgnoreFilter,
    #[serde(rename = "huge_body")]
    HugeBody,
    #[serde(rename = "gzip_bomb")]
    GzipBomb,
    #[serde(rename = "redirect")]
    Redirect,
    #[serde(rename = "retry_after_date")]
    RetryAfterDate,
    #[serde(rename = "retry_after_huge")]
    RetryAfterHuge,
    #[serde(rename = "row_without_id")]
    RowWithoutId,
    #[serde(rename = "numeric_timestamp")]
    NumericTimestamp,
}

impl FaultKind {
    pub const ALL: [FaultKind; 14] = [
        FaultKind::Status500,
        FaultKind::Status503,
        FaultKind::Status429,
        FaultKind::Hang,
        FaultKind::Truncate,
        FaultKind::Reset,
        FaultKind::IgnoreFilter,
        FaultKind::HugeBody,
        FaultKind::GzipBomb,
        FaultKind::Redirect,
        FaultKind::RetryAfterDate,
        FaultKind::RetryAfterHuge,
        FaultKind::RowWithoutId,
        FaultKind::NumericTimestamp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Status500 => "500",
            FaultKind::Status503 => "503",
            FaultKind::Status429 => "429",
            FaultKind::Hang => "hang",
            FaultKind::Truncate => "truncate",
            FaultKind::Reset => "reset",
            FaultKind::IgnoreFilter => "ignore_filter",
            FaultKind::HugeBody => "huge_body",
            FaultKind::GzipBomb => "gzip_bomb",
            FaultKind::Redirect => "redirect",
            FaultKind::RetryAfterDate => "retry_after_date",
            FaultKind::RetryAfterHuge => "retry_after_huge",
            FaultKind::RowWithoutId => "row_without_id",
            FaultKind::NumericTimestamp => "numeric_timestamp",
        }
    }
}

/// The body of `POST /_sim/faults`; `{}` clears everything.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    #[serde(default)]
    pub latency: Option<String>,
    #[serde(default)]
    pub jitter: Option<String>,
    #[serde(default)]
    pub error_rate: Option<f64>,
    #[serde(default)]
    pub kinds: Option<Vec<FaultKind>>,
    /// How long the faults last; forever when absent.
    #[serde(default, rename = "for")]
    pub duration: Option<String>,
    /// Only requests for this entity set fail; every set when absent.
    #[serde(default)]
    pub entity: Option<String>,
}

/// Faults in force.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub latency: Duration,
    pub jitter: Duration,
    pub error_rate: f64,
    pub kinds: Vec<FaultKind>,
    pub until: Option<Instant>,
    /// Only this entity set's requests fail (latency applies to all).
    pub entity: Option<String>,
}

/// Why a fault request was refused.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("{field}: `{value}` is not a duration")]
    Duration { field: &'static str, value: String },
    #[error("error_rate must be between 0 and 1")]
    Rate,
}

fn duration(field: &'static str, value: Option<&str>) -> Result<Duration, FaultError> {
    match value {
        None => Ok(Duration::ZERO),
        Some(text) => humantime::parse_duration(text).map_err(|_| FaultError::Duration {
            field,
            value: text.to_owned(),
        }),
    }
}

impl Faults {
    pub fn from_request(request: &FaultRequest) -> Result<Self, FaultError> {
        let error_rate = request.error_rate.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&error_rate) {
            return Err(FaultError::Rate);
        }
        let until = match request.duration.as_deref() {
            None => None,
            Some(text) => Some(Instant::now() + duration("for", Some(text))?),
        };
        let kinds = match &request.kinds {
            Some(kinds) if !kinds.is_empty() => kinds.clone(),
            // A rate without kinds: server errors, the commonest failure.
            _ => vec![FaultKind::Status500, FaultKind::Status503],
        };
        Ok(Self {
            latency: duration("latency", request.latency.as_deref())?,
            jitter: duration("jitter", request.jitter.as_deref())?,
            error_rate,
            kinds,
            until,
            entity: request.entity.clone(),
        })
    }

    /// What is in force now (expired faults read as none).
    pub fn active(&self) -> Faults {
        match self.until {
            Some(until) if Instant::now() >= until => Faults::default(),
            _ => self.clone(),
        }
    }

    /// The latency of one request: fixed plus uniform jitter.
    pub fn delay(&self, rng: &mut impl Rng) -> Duration {
        if self.jitter.is_zero() {
            return self.latency;
        }
        let jitter = rng.random_range(0..=self.jitter.as_micros() as u64);
        self.latency + Duration::from_micros(jitter)
    }

    /// Draws whether this request (for `entity`, when it names one) fails
    /// and how.
    pub fn draw(&self, entity: Option<&str>, rng: &mut impl Rng) -> Option<FaultKind> {
        if self.error_rate <= 0.0 || self.kinds.is_empty() {
            return None;
        }
        if self.entity.is_some() && self.entity.as_deref() != entity {
            return None;
        }
        if rng.random::<f64>() >= self.error_rate {
            return None;
        }
        Some(self.kinds[rng.random_range(0..self.kinds.len())])
    }

    pub fn describe(&self) -> serde_json::Value {
        let active = self.active();
        serde_json::json!({
            "latency": humantime::format_duration(active.latency).to_string(),
            "jitter": humantime::format_duration(active.jitter).to_string(),
            "error_rate": active.error_rate,
            "kinds": active.kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
            "entity": active.entity,
            "remaining": active.until.map(|u| humantime::format_duration(
                Duration::from_secs(u.saturating_duration_since(Instant::now()).as_secs())).to_string()),
        })
    }
}
