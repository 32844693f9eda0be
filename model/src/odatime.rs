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
    // Every record carries one: the shape ODA always sends is read by hand,
    // anything else by chrono's parser, which decides what is an error.
    if let Some(parsed) = parse_canonical(literal.as_bytes()) {
        return Ok(parsed);
    }
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

/// `YYYY-MM-DDTHH:MM:SS` with 0–3 fractional digits, digits exactly where
/// they belong; `None` for anything else (including impossible dates).
fn parse_canonical(b: &[u8]) -> Option<NaiveDateTime> {
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        b.get(range)?.iter().try_fold(0_u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(at, c)| b.get(at) != Some(&c)) {
        return None;
    }
    let millis = match b.len() {
        19 => 0,
        21..=23 if b[19] == b'.' => digits(20..b.len())? * 10_u32.pow(23 - b.len() as u32),
        _ => return None,
    };
    let year = i32::try_from(digits(0..4)?).ok()?;
    chrono::NaiveDate::from_ymd_opt(year, digits(5..7)?, digits(8..10)?)?.and_hms_milli_opt(
        digits(11..13)?,
        digits(14..16)?,
        digits(17..19)?,
        millis,
    )
}

/// RFC 3339 in UTC with milliseconds and `Z` (`2026-10-25T00:30:00.000Z`),
/// the form of every timestamp in the change event; written by hand since
/// every record carries two and chrono's formatter interprets its pattern
/// each time.
pub fn format_utc(t: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    let (year, nanos) = (t.year(), t.nanosecond());
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        // Outside four-digit years, or a leap second: chrono knows how.
        return t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    }
    let mut out = String::with_capacity(24);
    let parts = [
        (None, year.unsigned_abs(), 4),
        (Some('-'), t.month(), 2),
        (Some('-'), t.day(), 2),
        (Some('T'), t.hour(), 2),
        (Some(':'), t.minute(), 2),
        (Some(':'), t.second(), 2),
        (Some('.'), nanos / 1_000_000, 3),
    ];
    for (separator, value, width) in parts {
        out.extend(separator);
        for place in (0..width).rev() {
            let digit = (value / 10_u32.pow(place)) % 10;
            out.push(char::from(b'0' + digit as u8));
        }
    }
    out.push('Z');
    out
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

    /// chrono's parser, which the hand-written fast path must agree with.
    fn parse_slowly(literal: &str) -> Option<NaiveDateTime> {
        let (clock, fraction) = match literal.split_once('.') {
            Some((c, f)) if (1..=3).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => {
                (c, f)
            }
            Some(_) => return None,
            None => (literal, "0"),
        };
        let base = NaiveDateTime::parse_from_str(clock, "%Y-%m-%dT%H:%M:%S").ok()?;
        Some(base + Duration::milliseconds(format!("{fraction:0<3}").parse().ok()?))
    }

    #[test]
    fn the_fast_parser_agrees_with_chrono() {
        let cases = [
            "2014-09-09T09:05:59.653",
            "2014-09-09T09:05:59.65",
            "2014-09-09T09:05:59.6",
            "2014-09-09T09:05:59",
            "2014-09-09T09:05:59.",
            "2014-09-09T09:05:59.6531",
            "2024-02-29T23:59:59.999",
            "2023-02-29T10:00:00",
            "2014-13-09T09:05:59",
            "2014-09-09T24:05:59",
            "2014-09-09T09:60:59",
            "2014-09-09 09:05:59",
            "2014-9-09T09:05:59.653",
            "+014-09-09T09:05:59",
            "2014-09-09T09:05:5a",
            "2014-09-09T09:05:59.6a",
            "0000-01-01T00:00:00",
            "",
        ];
        for case in cases {
            if let Some(fast) = parse_canonical(case.as_bytes()) {
                assert_eq!(Some(fast), parse_slowly(case), "{case}");
            }
            assert_eq!(parse_local(case).ok(), parse_slowly(case), "{case}");
        }
        for shape in [
            "2014-09-09T09:05:59",
            "2014-09-09T09:05:59.6",
            "2014-09-09T09:05:59.653",
        ] {
            assert!(
                parse_canonical(shape.as_bytes()).is_some(),
                "{shape} takes the fast path"
            );
        }
    }

    #[test]
    fn the_hand_written_format_is_chronos() {
        let start = Utc
            .with_ymd_and_hms(1999, 12, 31, 22, 59, 58)
            .single()
            .expect("t");
        for step in 0..20_000_i64 {
            let t = start + Duration::milliseconds(step * 7_919_993 + step % 1000);
            assert_eq!(
                format_utc(t),
                t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            );
        }
        let far = Utc
            .with_ymd_and_hms(12_000, 1, 1, 0, 0, 0)
            .single()
            .expect("t");
        assert_eq!(
            format_utc(far),
            far.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        );
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
