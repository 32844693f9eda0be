//! Readiness as a set of named checks.
//!
//! `/healthz` only says the process is alive; `/readyz` says every
//! registered check last succeeded (Kafka reachable, last poll or batch
//! ok). A check starts as pending, so a service is not ready before it has
//! done real work once.

use std::sync::Arc;

use dashmap::DashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum CheckState {
    Pending,
    Ok,
    Failed(String),
}

/// Shared readiness state; clone it into every component.
#[derive(Debug, Clone, Default)]
pub struct Health {
    checks: Arc<DashMap<String, CheckState>>,
}

/// What `/readyz` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    /// One line per check: `name: ok|pending|failed: reason`.
    pub report: String,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a check that must succeed before the service is ready.
    pub fn register(&self, name: &str) {
        self.checks
            .entry(name.to_owned())
            .or_insert(CheckState::Pending);
    }

    pub fn set_ok(&self, name: &str) {
        self.checks.insert(name.to_owned(), CheckState::Ok);
    }

    pub fn set_failed(&self, name: &str, reason: impl Into<String>) {
        self.checks
            .insert(name.to_owned(), CheckState::Failed(reason.into()));
    }

    pub fn readiness(&self) -> Readiness {
        let mut lines: Vec<(String, String)> = self
            .checks
            .iter()
            .map(|entry| {
                let state = match entry.value() {
                    CheckState::Pending => "pending".to_owned(),
                    CheckState::Ok => "ok".to_owned(),
                    CheckState::Failed(reason) => format!("failed: {reason}"),
                };
                (entry.key().clone(), state)
            })
            .collect();
        lines.sort();
        let ready = self
            .checks
            .iter()
            .all(|entry| *entry.value() == CheckState::Ok);
        let report = lines
            .into_iter()
            .map(|(name, state)| format!("{name}: {state}\n"))
            .collect();
        Readiness { ready, report }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_check_succeeded() {
        let health = Health::new();
        health.register("kafka");
        health.register("poll");
        assert!(!health.readiness().ready);
        health.set_ok("kafka");
        assert!(!health.readiness().ready);
        health.set_ok("poll");
        assert!(health.readiness().ready);
        health.set_failed("poll", "HTTP 503");
        let r = health.readiness();
        assert!(!r.ready);
        assert_eq!(r.report, "kafka: ok\npoll: failed: HTTP 503\n");
    }
}
