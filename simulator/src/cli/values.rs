//! Value parsers for the flags: each refuses what the simulator cannot
//! use, with a message clap prints beside the flag's name.

use chrono::{DateTime, Utc};

use crate::faults::FaultKind;

pub(super) fn positive_usize(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) | Err(_) => Err("must be a whole number above 0".into()),
        Ok(n) => Ok(n),
    }
}

pub(super) fn non_negative(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err("must be a number, 0 or more".into()),
    }
}

pub(super) fn positive_f64(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err("must be a number above 0".into()),
    }
}

pub(super) fn fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err("must be between 0 and 1".into()),
    }
}

pub(super) fn fault_kind(text: &str) -> Result<FaultKind, String> {
    FaultKind::ALL
        .into_iter()
        .find(|k| k.name() == text)
        .ok_or_else(|| {
            format!(
                "unknown kind; one of {}",
                FaultKind::ALL.map(|k| k.name()).join(", ")
            )
        })
}

pub(super) fn rfc3339(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time: {e}"))
}
