//! Pacing requests to the source: starts at least `1/rate` apart, no
//! bursts (ODA asks heavy users to stay polite). `governor`'s GCRA with a
//! burst of one is exactly that pacing.
//!
//! Two priorities share the one pace. Reading what is new comes first;
//! re-reading the lookback window for late commits takes only the slots
//! nobody urgent is waiting for. Without that, a window of tens of
//! thousands of rows (100 changes/s over 10 minutes) queues in front of
//! every new change and the delay a subscriber feels grows with the load.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};

/// Who waits for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    /// New data: served first.
    #[default]
    Urgent,
    /// Re-reads: served when no urgent request waits, and given up when
    /// no slot is free before `until` (the worker has new data to read by
    /// then).
    Background { until: Option<tokio::time::Instant> },
}

/// How often a background request looks again while urgent ones wait.
const BACKGROUND_RECHECK: Duration = Duration::from_millis(10);

/// Spaces request starts evenly; a rate of 0 disables it.
#[derive(Debug)]
pub struct RateLimiter {
    limiter: Option<DefaultDirectRateLimiter>,
    urgent_waiting: AtomicUsize,
}

/// Counts an urgent waiter for as long as it waits, even if its future is
/// dropped (a cancelled cycle must not block background work forever).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl RateLimiter {
    pub fn new(per_second: f64) -> Self {
        let limiter = (per_second.is_finite() && per_second > 0.0)
            .then(|| Quota::with_period(Duration::from_secs_f64(1.0 / per_second)))
            .flatten()
            .map(|quota| governor::RateLimiter::direct(quota.allow_burst(NonZeroU32::MIN)));
        Self {
            limiter,
            urgent_waiting: AtomicUsize::new(0),
        }
    }

    /// Waits for this request's slot; false when a background request
    /// found none before its deadline.
    pub async fn acquire(&self, priority: Priority) -> bool {
        let Some(limiter) = &self.limiter else {
            return true;
        };
        match priority {
            Priority::Urgent => {
                self.urgent_waiting.fetch_add(1, Ordering::AcqRel);
                let _waiting = Waiting(&self.urgent_waiting);
                limiter.until_ready().await;
                true
            }
            Priority::Background { until } => loop {
                if until.is_some_and(|until| tokio::time::Instant::now() >= until) {
                    return false;
                }
                let wait = if self.urgent_waiting.load(Ordering::Acquire) > 0 {
                    BACKGROUND_RECHECK
                } else {
                    match limiter.check() {
                        Ok(()) => return true,
                        Err(not_until) => not_until
                            .wait_time_from(DefaultClock::default().now())
                            .min(BACKGROUND_RECHECK * 5),
                    }
                };
                tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[tokio::test]
    async fn requests_are_spaced_by_the_rate() {
        let limiter = RateLimiter::new(50.0);
        let start = Instant::now();
        for _ in 0..6 {
            limiter.acquire(Priority::Urgent).await;
        }
        // Six starts at 50/s: the sixth waits five periods (100 ms).
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(95), "{took:?}");
        assert!(took < Duration::from_millis(400), "{took:?}");
    }

    #[tokio::test]
    async fn background_requests_wait_while_urgent_ones_do() {
        let limiter = std::sync::Arc::new(RateLimiter::new(40.0));
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let background = {
            let (limiter, order) = (limiter.clone(), order.clone());
            tokio::spawn(async move {
                for _ in 0..3 {
                    assert!(limiter.acquire(Priority::Background { until: None }).await);
                    order.lock().expect("order").push('b');
                }
            })
        };
        // Let the background task take its first slot, then queue urgent ones.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let urgent: Vec<_> = (0..4)
            .map(|_| {
                let (limiter, order) = (limiter.clone(), order.clone());
                tokio::spawn(async move {
                    limiter.acquire(Priority::Urgent).await;
                    order.lock().expect("order").push('u');
                })
            })
            .collect();
        for task in urgent {
            task.await.expect("urgent task");
        }
        background.await.expect("background task");
        let order: String = order.lock().expect("order").iter().collect();
        assert_eq!(
            order, "buuuubb",
            "background slots only between urgent ones"
        );
    }

    #[tokio::test]
    async fn a_background_request_gives_up_at_its_deadline() {
        let limiter = RateLimiter::new(2.0);
        assert!(limiter.acquire(Priority::Urgent).await);
        let start = Instant::now();
        let until = tokio::time::Instant::now() + Duration::from_millis(100);
        let granted = limiter
            .acquire(Priority::Background { until: Some(until) })
            .await;
        assert!(!granted, "the next slot is 500 ms away");
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(95), "{took:?}");
        assert!(took < Duration::from_millis(400), "{took:?}");
    }

    #[tokio::test]
    async fn zero_disables_the_limit() {
        let limiter = RateLimiter::new(0.0);
        let start = Instant::now();
        for _ in 0..100 {
            limiter.acquire(Priority::Urgent).await;
        }
        assert!(start.elapsed() < Duration::from_millis(50));
    }
}
