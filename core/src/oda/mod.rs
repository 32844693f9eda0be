//! The ODA API client: polite (in-flight cap, rate limit), resilient
//! (timeouts, retries with full jitter, Retry-After, a circuit breaker) and
//! strict about what it accepts (an envelope it cannot read is an error,
//! never an empty page).

mod breaker;
mod client;
mod page;
mod ratelimit;

pub use self::breaker::{Breaker, BreakerState};
pub use self::client::{
    ClientMetrics, ClientTuning, FetchError, OdaClient, RetryPolicy, USER_AGENT,
};
pub use self::page::Page;
pub use self::ratelimit::{Priority, RateLimiter};
