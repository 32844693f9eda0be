//! Pacing requests to the source: starts at least `1/rate` apart, no
//! bursts (ODA asks heavy users to stay polite). `governor`'s GCRA with a
//! burst of one is exactly that pacing.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota};

/// Spaces request starts evenly; a rate of 0 disables it.
#[derive(Debug)]
pub struct RateLimiter {
    limiter: Option<DefaultDirectRateLimiter>,
}

impl RateLimiter {
    pub fn new(per_second: f64) -> Self {
        let limiter = (per_second.is_finite() && per_second > 0.0)
            .then(|| Quota::with_period(Duration::from_secs_f64(1.0 / per_second)))
            .flatten()
            .map(|quota| governor::RateLimiter::direct(quota.allow_burst(NonZeroU32::MIN)));
        Self { limiter }
    }

    /// Waits for this request's slot.
    pub async fn acquire(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
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
            limiter.acquire().await;
        }
        // Six starts at 50/s: the sixth waits five periods (100 ms).
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(95), "{took:?}");
        assert!(took < Duration::from_millis(400), "{took:?}");
    }

    #[tokio::test]
    async fn zero_disables_the_limit() {
        let limiter = RateLimiter::new(0.0);
        let start = Instant::now();
        for _ in 0..100 {
            limiter.acquire().await;
        }
        assert!(start.elapsed() < Duration::from_millis(50));
    }
}
