//! What the runner does when the schema registry, not a record, is the
//! problem: the batch is read again after a pause (the supervisor's), the
//! `registry` readiness check says why, `oda_cdc_registry_errors_total`
//! counts it; refused credentials that persist past [`AUTH_GRACE`] stop
//! the service, since no retry fixes a wrong password.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use oda_cdc_core::health::Health;

use super::decode::DecodeError;

/// How long refused credentials are retried before the service stops (a
/// registry restarting with its users not loaded yet answers 401 too).
pub(super) const AUTH_GRACE: Duration = Duration::from_secs(60);

/// The readiness check this module owns; present only once the registry
/// failed, so a processor that never needs it is not held back by it.
const CHECK: &str = "registry";

/// What the registry's answers have been, across sessions.
#[derive(Debug, Default)]
pub(super) struct RegistryWatch {
    failing: AtomicBool,
    refused_since: Mutex<Option<Instant>>,
}

/// What a registry failure means for the service.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Read the batch again after a pause.
    Retry,
    /// Credentials refused for longer than [`AUTH_GRACE`]: stop.
    Stop,
}

impl RegistryWatch {
    /// Records a failure (its kind for the metric) and judges it.
    pub(super) fn failed(&self, error: &DecodeError, health: &Health) -> Verdict {
        self.failing.store(true, Ordering::SeqCst);
        health.set_failed(CHECK, error.to_string());
        let mut since = match self.refused_since.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        match error {
            DecodeError::Unauthorized(_) => {
                let first = *since.get_or_insert_with(Instant::now);
                if first.elapsed() >= AUTH_GRACE {
                    Verdict::Stop
                } else {
                    Verdict::Retry
                }
            }
            _ => {
                *since = None;
                Verdict::Retry
            }
        }
    }

    /// A batch went through: whatever the registry did before is over.
    pub(super) fn answered(&self, health: &Health) {
        if self.failing.swap(false, Ordering::SeqCst) {
            health.set_ok(CHECK);
            if let Ok(mut since) = self.refused_since.lock() {
                *since = None;
            }
        }
    }
}

/// The metric label of a registry failure.
pub(super) fn kind(error: &DecodeError) -> &'static str {
    match error {
        DecodeError::Unauthorized(_) => "unauthorized",
        _ => "unavailable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_retry_and_clear_refusals_stop_only_after_the_grace() {
        let health = Health::new();
        let watch = RegistryWatch::default();
        let away = DecodeError::Unavailable("connection refused".into());
        let refused = DecodeError::Unauthorized("HTTP 401".into());
        assert_eq!(watch.failed(&away, &health), Verdict::Retry);
        assert!(health.readiness().report.contains("registry: failed"));
        assert_eq!(watch.failed(&refused, &health), Verdict::Retry);
        watch.answered(&health);
        assert!(health.readiness().report.contains("registry: ok"));
        // Refused for longer than the grace: stop.
        if let Ok(mut since) = watch.refused_since.lock() {
            *since = Some(Instant::now() - AUTH_GRACE);
        }
        assert_eq!(watch.failed(&refused, &health), Verdict::Stop);
    }
}
