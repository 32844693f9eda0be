//! ODA's date-times: Danish wall-clock values without an offset, held the
//! way SQL Server `datetime` holds them when asked to.
//!
//! A [`SimTime`] counts 1/3000 s since 1970-01-01T00:00:00 *local* time.
//! That unit holds both exact milliseconds (3 units) and SQL Server's
//! `datetime` ticks of 1/300 s (10 units), so a literal in milliseconds and
//! a stored tick compare exactly as SQL Server compares a `datetime2`
//! parameter with a `datetime` column: `.757` shown is really `.75666…`, and
//! `eq datetime'…20.757'` does not match it.

use std::fmt;

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};

/// Units per second (see the module docs).
pub const UNITS_PER_SECOND: i64 = 3000;
const UNITS_PER_MS: i64 = 3;
const UNITS_PER_TICK: i64 = 10;

/// A local date-time in 1/3000 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimTime(pub i64);

/// How stored values are quantised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Whole milliseconds, compared exactly.
    #[default]
    Millis,
    /// SQL Server `datetime`: ticks of 1/300 s, shown rounded to the
    /// millisecond (so the last digit is 0, 3 or 7).
    SqlServer,
}

impl Precision {
    /// The stored value for a wall-clock time. Both modes show what ODA
    /// shows (milliseconds ending in 0, 3 or 7); they differ in what is
    /// compared: the shown millisecond, or SQL Server's exact tick.
    pub fn quantize(self, t: SimTime) -> SimTime {
        // Round to the nearest tick, as SQL Server does on insert.
        let ticks = (t.0 + UNITS_PER_TICK / 2).div_euclid(UNITS_PER_TICK);
        let exact = SimTime(ticks * UNITS_PER_TICK);
        match self {
            Precision::Millis => SimTime(exact.display_millis() * UNITS_PER_MS),
            Precision::SqlServer => exact,
        }
    }
}

impl SimTime {
    pub fn from_naive(dt: NaiveDateTime) -> Self {
        let secs = dt.and_utc().timestamp();
        let ms = i64::from(dt.nanosecond() / 1_000_000);
        SimTime(secs * UNITS_PER_SECOND + ms * UNITS_PER_MS)
    }

    pub fn to_naive(self) -> NaiveDateTime {
        let ms = self.display_millis();
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|d| d.naive_utc())
            .unwrap_or_default()
    }

    /// Milliseconds since the local epoch, rounded as SQL Server shows them.
    pub fn display_millis(self) -> i64 {
        (self.0 + 1).div_euclid(UNITS_PER_MS)
    }

    /// Parses the inside of a `datetime'…'` literal or a record value:
    /// `YYYY-MM-DDTHH:MM[:SS[.f{1,3}]]`, no offset.
    pub fn parse(text: &str) -> Option<Self> {
        let (date, time) = text.split_once('T')?;
        let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
        let (clock, fraction) = match time.split_once('.') {
            Some((c, f)) => (c, Some(f)),
            None => (time, None),
        };
        let mut parts = clock.split(':');
        let h: u32 = parts.next()?.parse().ok()?;
        let m: u32 = parts.next()?.parse().ok()?;
        let s: u32 = match parts.next() {
            Some(p) => p.parse().ok()?,
            None => 0,
        };
        if parts.next().is_some() || (fraction.is_some() && clock.matches(':').count() != 2) {
            return None;
        }
        let ms = match fraction {
            None => 0,
            Some(f) if (1..=3).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => {
                let padded = format!("{f:0<3}");
                padded.parse::<i64>().ok()?
            }
            Some(_) => return None,
        };
        let dt = date.and_hms_opt(h, m, s)?;
        Some(SimTime(
            dt.and_utc().timestamp() * UNITS_PER_SECOND + ms * UNITS_PER_MS,
        ))
    }

    pub fn year(self) -> i64 {
        i64::from(self.to_naive().year())
    }

    pub fn month(self) -> i64 {
        i64::from(self.to_naive().month())
    }

    pub fn day(self) -> i64 {
        i64::from(self.to_naive().day())
    }

    pub fn plus_millis(self, ms: i64) -> Self {
        SimTime(self.0 + ms * UNITS_PER_MS)
    }
}

impl fmt::Display for SimTime {
    /// ODA's form: seconds always, the fraction without trailing zeros.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.display_millis();
        let secs = ms.div_euclid(1000);
        let frac = ms.rem_euclid(1000);
        let dt = chrono::DateTime::from_timestamp(secs, 0)
            .map(|d| d.naive_utc())
            .unwrap_or_default();
        write!(f, "{}", dt.format("%Y-%m-%dT%H:%M:%S"))?;
        if frac != 0 {
            let digits = format!("{frac:03}");
            write!(f, ".{}", digits.trim_end_matches('0'))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_zero_to_three_fraction_digits() {
        for (text, shown) in [
            ("2014-09-09T09:05:59.653", "2014-09-09T09:05:59.653"),
            ("2015-08-13T11:22:10.49", "2015-08-13T11:22:10.49"),
            ("2014-09-10T13:17:24.08", "2014-09-10T13:17:24.08"),
            ("2014-09-10T13:17:24.000", "2014-09-10T13:17:24"),
            ("2014-09-10T13:17:24", "2014-09-10T13:17:24"),
            ("2014-09-10T13:17", "2014-09-10T13:17:00"),
        ] {
            assert_eq!(
                SimTime::parse(text).map(|t| t.to_string()).as_deref(),
                Some(shown),
                "{text}"
            );
        }
        for bad in [
            "2014-09-10",
            "2014-09-10T25:00:00",
            "2014-09-10T13:17:24.1234",
            "x",
        ] {
            assert!(SimTime::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn sql_server_values_show_milliseconds_ending_in_0_3_or_7() {
        let base = SimTime::parse("2020-01-01T00:00:00").expect("valid");
        let mut endings = std::collections::BTreeSet::new();
        for ms in 0..1000 {
            let stored = Precision::SqlServer.quantize(base.plus_millis(ms));
            let shown = stored.display_millis() % 10;
            endings.insert(shown);
            // SQL Server never moves a value by more than half a tick.
            assert!((stored.0 - base.plus_millis(ms).0).abs() <= 5);
        }
        assert_eq!(endings.into_iter().collect::<Vec<_>>(), [0, 3, 7]);
    }

    #[test]
    fn a_shown_sql_server_value_is_not_equal_to_its_literal() {
        // .757 is tick 227 = .756666…: `eq` misses it, `ge` too; `gt .756` sees it.
        let stored =
            Precision::SqlServer.quantize(SimTime::parse("2014-01-03T13:10:20.757").expect("t"));
        assert_eq!(stored.to_string(), "2014-01-03T13:10:20.757");
        let literal = SimTime::parse("2014-01-03T13:10:20.757").expect("t");
        assert!(stored < literal);
        assert!(stored > SimTime::parse("2014-01-03T13:10:20.756").expect("t"));
        // .003 is tick 1 = .00333…: above its literal.
        let stored =
            Precision::SqlServer.quantize(SimTime::parse("2014-01-03T13:10:20.003").expect("t"));
        assert!(stored > SimTime::parse("2014-01-03T13:10:20.003").expect("t"));
    }

    #[test]
    fn millis_mode_compares_exactly_what_it_shows() {
        let t = Precision::Millis.quantize(SimTime::parse("2014-01-03T13:10:20.757").expect("t"));
        assert_eq!(t, SimTime::parse("2014-01-03T13:10:20.757").expect("t"));
        // Still SQL Server's grid: .755 is shown (and compared) as .757.
        let t = Precision::Millis.quantize(SimTime::parse("2014-01-03T13:10:20.755").expect("t"));
        assert_eq!(t.to_string(), "2014-01-03T13:10:20.757");
        assert_eq!(t, SimTime::parse("2014-01-03T13:10:20.757").expect("t"));
    }

    #[test]
    fn date_parts() {
        let t = SimTime::parse("2025-09-09T23:59:59.997").expect("t");
        assert_eq!((t.year(), t.month(), t.day()), (2025, 9, 9));
    }
}
