//! ODA's timestamps: Danish wall-clock literals without an offset
//! (`2014-09-09T09:05:59.653`, 0–3 fractional digits).
//!
//! Converting to UTC follows contract.md#change-event: an ambiguous local time (the
//! repeated autumn hour) maps to its first occurrence (+02:00), a
//! non-existent one (the spring gap) moves forward by the gap.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Europe::Copenhagen;

/// Why a literal is not an ODA timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an ODA timestamp (YYYY-MM-DDTHH:MM:SS[.fff])")]
pub struct TimestampError(pub String);

/// Parses a source literal.
pub fn parse_local(literal: &str) -> Result<NaiveDateTime, TimestampError> {
    let err = || TimestampError(literal.to_owned());
    let (clock, fraction) = match literal.split_once('.') {
        Some((c, f)) if (1..=3).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => {
            (c, Some(f))
        }
        Some(_) => return Err(err()),
        None => (literal, None),
    };
    let base = NaiveDateTime::parse_from_str(clock, "%Y-%m-%dT%H:%M:%S").map_err(|_| err())?;
    let millis: i64 = match fraction {
        None => 0,
        Some(f) => format!("{f:0<3}").parse().map_err(|_| err())?,
    };
    Ok(base + Duration::milliseconds(millis))
}

/// Formats as a filter literal body, always with milliseconds.
pub fn format_literal(local: NaiveDateTime) -> String {
    local.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
}

/// The UTC instant of a Danish wall-clock time (the rules of contract.md#change-event for the
/// repeated and the missing hour).
pub fn local_to_utc(local: NaiveDateTime) -> DateTime<Utc> {
    match Copenhagen.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // In the spring gap: the same wall-clock reading one hour later
            // is what the clock showed after jumping.
            let shifted = local + Duration::hours(1);
            match Copenhagen.from_local_datetime(&shifted) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
                LocalResult::None => Utc.from_utc_datetime(&local),
            }
        }
    }
}

/// Danish wall-clock time of a UTC instant.
pub fn utc_to_local(at: DateTime<Utc>) -> NaiveDateTime {
    Copenhagen.from_utc_datetime(&at.naive_utc()).naive_local()
}

/// Whether a Danish wall-clock reading happened twice (the repeated hour
/// of the autumn change).
pub fn is_ambiguous(local: NaiveDateTime) -> bool {
    matches!(
        Copenhagen.from_local_datetime(&local),
        LocalResult::Ambiguous(_, _)
    )
}

/// The `<time>` of contract.md#command-lines on a command line: RFC 3339 with an offset, or
/// without one read as Danish local time (also `YYYY-MM-DDTHH:MM` and a
/// bare date); the result is Danish local time.
pub fn parse_user_time(text: &str) -> Result<NaiveDateTime, TimestampError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(utc_to_local(t.with_timezone(&chrono::Utc)));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(t);
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN));
    }
    parse_local(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(s: &str) -> NaiveDateTime {
        parse_local(s).expect("valid")
    }

    #[test]
    fn literals_with_zero_to_three_fraction_digits() {
        assert_eq!(
            format_literal(local("2015-08-13T11:22:10.49")),
            "2015-08-13T11:22:10.490"
        );
        assert_eq!(
            format_literal(local("2014-09-10T13:17:24")),
            "2014-09-10T13:17:24.000"
        );
        assert_eq!(
            format_literal(local("2014-09-09T09:05:59.653")),
            "2014-09-09T09:05:59.653"
        );
        for bad in [
            "2014-09-10",
            "2014-09-10T13:17:24.1234",
            "2014-09-10T13:17:24Z",
            "",
        ] {
            assert!(parse_local(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn summer_and_winter_offsets() {
        assert_eq!(
            local_to_utc(local("2025-07-01T12:00:00")).to_rfc3339(),
            "2025-07-01T10:00:00+00:00"
        );
        assert_eq!(
            local_to_utc(local("2025-01-01T12:00:00")).to_rfc3339(),
            "2025-01-01T11:00:00+00:00"
        );
    }

    #[test]
    fn the_repeated_hour_maps_to_its_first_occurrence() {
        // 2026-10-25 02:30 happens at 00:30 UTC (CEST) and 01:30 UTC (CET).
        assert_eq!(
            local_to_utc(local("2026-10-25T02:30:00")).to_rfc3339(),
            "2026-10-25T00:30:00+00:00"
        );
    }

    #[test]
    fn the_missing_hour_moves_forward_by_the_gap() {
        // 2026-03-29 02:30 does not exist; the clock jumped 02:00 → 03:00.
        assert_eq!(
            local_to_utc(local("2026-03-29T02:30:00")).to_rfc3339(),
            "2026-03-29T01:30:00+00:00"
        );
    }

    #[test]
    fn only_the_repeated_hour_is_ambiguous() {
        assert!(is_ambiguous(local("2026-10-25T02:00:00")));
        assert!(is_ambiguous(local("2026-10-25T02:59:59.997")));
        assert!(!is_ambiguous(local("2026-10-25T03:00:00")));
        assert!(!is_ambiguous(local("2026-10-25T01:59:59")));
        assert!(
            !is_ambiguous(local("2026-03-29T02:30:00")),
            "the spring gap is missing, not repeated"
        );
    }
}
