//! The simulator's own clock, so hours of source behaviour (the autumn
//! clock change, late commits) run in seconds.

use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Europe::Copenhagen;

use crate::time::{Precision, SimTime};

/// Sim time = start + (real time since boot) × speed.
#[derive(Debug, Clone)]
pub struct SimClock {
    started: Instant,
    start: DateTime<Utc>,
    speed: f64,
}

impl SimClock {
    pub fn new(start: DateTime<Utc>, speed: f64) -> Self {
        Self {
            started: Instant::now(),
            start,
            speed,
        }
    }

    /// The current instant in UTC.
    pub fn now_utc(&self) -> DateTime<Utc> {
        let real = self.started.elapsed().as_secs_f64() * self.speed;
        let micros = (real * 1_000_000.0) as i64;
        self.start + Duration::microseconds(micros)
    }

    /// The current Danish wall-clock time as ODA stamps it. In the autumn
    /// fall-back hour these values repeat, exactly as the real server's do.
    pub fn now_local(&self, precision: Precision) -> SimTime {
        local_time(self.now_utc(), precision)
    }
}

/// A UTC instant as Danish local time at the given precision.
pub fn local_time(at: DateTime<Utc>, precision: Precision) -> SimTime {
    let local = Copenhagen.from_utc_datetime(&at.naive_utc()).naive_local();
    precision.quantize(SimTime::from_naive(local))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_autumn_hour_repeats_in_local_time() {
        // 2026-10-25 01:30 UTC is 02:30 CET… and 00:30 UTC is 02:30 CEST.
        let first = Utc
            .with_ymd_and_hms(2026, 10, 25, 0, 30, 0)
            .single()
            .expect("valid");
        let second = Utc
            .with_ymd_and_hms(2026, 10, 25, 1, 30, 0)
            .single()
            .expect("valid");
        let a = local_time(first, Precision::Millis);
        let b = local_time(second, Precision::Millis);
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "2026-10-25T02:30:00");
    }

    #[test]
    fn clock_runs_at_its_speed() {
        let start = Utc
            .with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
            .single()
            .expect("valid");
        let clock = SimClock::new(start, 1000.0);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let elapsed = clock.now_utc() - start;
        assert!(elapsed >= Duration::seconds(19), "{elapsed}");
    }
}
