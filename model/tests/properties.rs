//! Property tests of the pure parts: ODA time, the OData query builder and
//! the content hash.
//!
//! Every property runs a few hundred to a thousand cases in the normal test
//! run; `PROPTEST_CASES=<n>` (see `scripts/proptest-long`) raises them all.
//! Each property prints how many cases passed (`-- --nocapture` shows it).

use oda_cdc_testkit::properties::{property, text};

mod odatime {
    use chrono::{
        DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveDateTime, SecondsFormat,
        TimeZone, Timelike, Utc,
    };
    use chrono_tz::Europe::Copenhagen;
    use oda_model::odatime::{
        format_literal, is_ambiguous, local_to_utc, parse_local, parse_user_time, utc_to_local,
    };
    use proptest::prelude::*;

    use super::{property, text};

    fn midnight(year: i32, month: u32, day: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(year, month, day)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("a valid date")
    }

    /// Millisecond-precision local times from the start of `from` to the
    /// end of `to`.
    fn local_time(from: i32, to: i32) -> impl Strategy<Value = NaiveDateTime> {
        let start = midnight(from, 1, 1);
        let span = (midnight(to + 1, 1, 1) - start).num_milliseconds();
        (0..span).prop_map(move |ms| start + Duration::milliseconds(ms))
    }

    /// The last Sunday of a month (computed without the time zone database).
    fn last_sunday(year: i32, month: u32) -> NaiveDate {
        let first_of_next = if month == 12 {
            NaiveDate::from_ymd_opt(year + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(year, month + 1, 1)
        }
        .expect("a valid date");
        let last = first_of_next.pred_opt().expect("a valid date");
        last - Duration::days(i64::from(last.weekday().num_days_from_sunday()))
    }

    /// The years the DST properties cover. Denmark's rule before 1996 ended
    /// summer time in September; chrono-tz 0.10's compiled table of
    /// Europe/Copenhagen stops after the change of October 2099 (from 2100
    /// on it reads CET all year), so 2100 is left out.
    const DST_YEARS: std::ops::RangeInclusive<i32> = 1990..=2099;

    /// Local 02:00 on the day summer time starts (`spring`) or ends: the
    /// last Sunday of March, and of October (of September up to 1995).
    fn change(year: i32, spring: bool) -> NaiveDateTime {
        let month = match (spring, year) {
            (true, _) => 3,
            (false, ..=1995) => 9,
            (false, _) => 10,
        };
        last_sunday(year, month)
            .and_hms_opt(2, 0, 0)
            .expect("a valid time")
    }

    /// Denmark's rule: summer time (+02:00) from 01:00 UTC on the last
    /// Sunday of March to 01:00 UTC on the last Sunday of October (of
    /// September up to 1995), +01:00 otherwise.
    fn offset_hours_at_utc(utc: NaiveDateTime) -> i64 {
        let year = utc.year();
        let spring = change(year, true) - Duration::hours(1);
        let autumn = change(year, false) - Duration::hours(1);
        if spring <= utc && utc < autumn { 2 } else { 1 }
    }

    /// Where a local reading falls, by the same rule.
    #[derive(Debug, PartialEq, Eq)]
    enum Reading {
        Winter,
        Summer,
        /// Local 02:00–02:59:59.999 on the last Sunday of March.
        Gap,
        /// Local 02:00–02:59:59.999 on the last Sunday of October.
        Repeated,
    }

    fn reading(local: NaiveDateTime) -> Reading {
        let spring = change(local.year(), true);
        let autumn = change(local.year(), false);
        let hour = Duration::hours(1);
        if spring <= local && local < spring + hour {
            Reading::Gap
        } else if autumn <= local && local < autumn + hour {
            Reading::Repeated
        } else if spring + hour <= local && local < autumn {
            Reading::Summer
        } else {
            Reading::Winter
        }
    }

    /// Local times within four hours of a change of offset.
    fn near_a_change() -> impl Strategy<Value = NaiveDateTime> {
        let four_hours: i64 = 4 * 3_600_000;
        (DST_YEARS, any::<bool>(), -four_hours..four_hours)
            .prop_map(|(year, spring, ms)| change(year, spring) + Duration::milliseconds(ms))
    }

    /// Local times inside the repeated autumn hour or the spring gap.
    fn inside_the_hour(spring: bool) -> impl Strategy<Value = NaiveDateTime> {
        (DST_YEARS, 0..3_600_000i64)
            .prop_map(move |(year, ms)| change(year, spring) + Duration::milliseconds(ms))
    }

    /// The ODA literal of a time, written field by field.
    fn literal_by_hand(t: NaiveDateTime) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.nanosecond() / 1_000_000
        )
    }

    #[test]
    fn format_then_parse_round_trips_with_milliseconds() {
        property(
            "odatime::format_then_parse_round_trips_with_milliseconds",
            1000,
            local_time(1990, 2100),
            |t| {
                let literal = format_literal(t);
                prop_assert_eq!(&literal, &literal_by_hand(t));
                prop_assert_eq!(literal.len(), 23, "three fraction digits: {}", literal);
                prop_assert_eq!(parse_local(&literal), Ok(t));
                prop_assert_eq!(parse_user_time(&literal), Ok(t));
                Ok(())
            },
        );
    }

    #[test]
    fn literals_with_zero_to_three_fraction_digits_parse_and_others_do_not() {
        let fields = (
            (1900..=2200i32, 1..=12u32, 1..=31u32),
            (0..=23u32, 0..=59u32, 0..=59u32),
            "[0-9]{0,5}",
            any::<bool>(),
        );
        property(
            "odatime::literals_with_zero_to_three_fraction_digits_parse_and_others_do_not",
            1000,
            fields,
            |((year, month, day), (hour, minute, second), fraction, dot)| {
                let mut literal =
                    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
                if dot || !fraction.is_empty() {
                    literal.push('.');
                    literal.push_str(&fraction);
                }
                let millis: i64 = if fraction.is_empty() {
                    0
                } else {
                    format!("{fraction:0<3}").parse().expect("digits")
                };
                let fraction_ok = if dot || !fraction.is_empty() {
                    (1..=3).contains(&fraction.len())
                } else {
                    true
                };
                let expected = NaiveDate::from_ymd_opt(year, month, day)
                    .and_then(|d| d.and_hms_opt(hour, minute, second))
                    .filter(|_| fraction_ok)
                    .map(|t| t + Duration::milliseconds(millis));
                prop_assert_eq!(parse_local(&literal).ok(), expected, "{}", literal);
                Ok(())
            },
        );
    }

    #[test]
    fn the_repeated_autumn_hour_maps_to_its_first_occurrence() {
        property(
            "odatime::the_repeated_autumn_hour_maps_to_its_first_occurrence",
            1000,
            inside_the_hour(false),
            |local| {
                prop_assert!(is_ambiguous(local), "{}", local);
                // +02:00: the first of the two instants.
                let expected = (local - Duration::hours(2)).and_utc();
                prop_assert_eq!(local_to_utc(local), expected, "{}", local);
                prop_assert_eq!(utc_to_local(expected), local);
                Ok(())
            },
        );
    }

    #[test]
    fn the_spring_gap_moves_forward_by_the_gap() {
        property(
            "odatime::the_spring_gap_moves_forward_by_the_gap",
            1000,
            inside_the_hour(true),
            |local| {
                prop_assert!(!is_ambiguous(local), "{}", local);
                // The reading one hour later, in summer time (+02:00).
                let expected = (local + Duration::hours(1) - Duration::hours(2)).and_utc();
                prop_assert_eq!(local_to_utc(local), expected, "{}", local);
                prop_assert_eq!(utc_to_local(expected), local + Duration::hours(1));
                Ok(())
            },
        );
    }

    #[test]
    fn every_other_local_time_converts_back_to_itself() {
        let times = prop_oneof![
            local_time(*DST_YEARS.start(), *DST_YEARS.end()),
            near_a_change()
        ];
        property(
            "odatime::every_other_local_time_converts_back_to_itself",
            2000,
            times,
            |local| {
                let at = local_to_utc(local);
                let expected = match reading(local) {
                    Reading::Gap | Reading::Repeated => {
                        // Covered by the two properties above.
                        return Ok(());
                    }
                    Reading::Summer => local - Duration::hours(2),
                    Reading::Winter => local - Duration::hours(1),
                };
                prop_assert_eq!(at, expected.and_utc(), "{}", local);
                prop_assert_eq!(
                    Copenhagen.from_utc_datetime(&at.naive_utc()).naive_local(),
                    local
                );
                prop_assert_eq!(utc_to_local(at), local);
                prop_assert!(!is_ambiguous(local), "{}", local);
                Ok(())
            },
        );
    }

    #[test]
    fn only_the_repeated_hour_is_ambiguous() {
        let times = prop_oneof![
            local_time(*DST_YEARS.start(), *DST_YEARS.end()),
            near_a_change()
        ];
        property(
            "odatime::only_the_repeated_hour_is_ambiguous",
            1000,
            times,
            |local| {
                prop_assert_eq!(
                    is_ambiguous(local),
                    reading(local) == Reading::Repeated,
                    "{}",
                    local
                );
                Ok(())
            },
        );
    }

    #[test]
    fn user_times_with_an_offset_are_read_as_danish_local_time() {
        let first = midnight(*DST_YEARS.start(), 1, 2);
        let start = first.and_utc();
        let span = (midnight(*DST_YEARS.end(), 12, 30) - first).num_milliseconds();
        let instants = prop_oneof![
            (0..span).prop_map(move |ms| start + Duration::milliseconds(ms)),
            near_a_change().prop_map(|t| t.and_utc()),
        ];
        let offset_minutes = -(23 * 60 + 59)..=(23 * 60 + 59i32);
        property(
            "odatime::user_times_with_an_offset_are_read_as_danish_local_time",
            1000,
            (instants, offset_minutes, any::<bool>()),
            |(at, minutes, use_z): (DateTime<Utc>, i32, bool)| {
                let offset = FixedOffset::east_opt(minutes * 60).expect("in range");
                let text = at
                    .with_timezone(&offset)
                    .to_rfc3339_opts(SecondsFormat::Millis, use_z);
                let utc = at.naive_utc();
                let expected = utc + Duration::hours(offset_hours_at_utc(utc));
                prop_assert_eq!(parse_user_time(&text), Ok(expected), "{}", text);
                Ok(())
            },
        );
    }

    #[test]
    fn user_times_without_an_offset_are_taken_as_written() {
        let forms = (
            local_time(1990, 2100),
            0..1_000_000_000u32,
            0..=9usize,
            0..3u8,
        );
        property(
            "odatime::user_times_without_an_offset_are_taken_as_written",
            1000,
            forms,
            |(t, nanos, digits, form)| {
                let date = format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day());
                let minute = format!("{date}T{:02}:{:02}", t.hour(), t.minute());
                let (text, expected) = match form {
                    0 => (date, t.date().and_hms_opt(0, 0, 0)),
                    1 => (minute, t.with_second(0).and_then(|t| t.with_nanosecond(0))),
                    _ => {
                        let scale = 10u32.pow(9 - digits as u32);
                        let kept = nanos / scale;
                        let mut text = format!("{minute}:{:02}", t.second());
                        if digits > 0 {
                            text.push_str(&format!(".{kept:0digits$}"));
                        }
                        (text, t.with_nanosecond(kept * scale))
                    }
                };
                let expected = expected.expect("a valid time");
                prop_assert_eq!(parse_user_time(&text), Ok(expected), "{}", text);
                Ok(())
            },
        );
    }

    /// Texts near the grammar: digits, separators, signs, zones.
    fn timestamp_like() -> impl Strategy<Value = String> {
        prop_oneof![
            "[+-]?[0-9]{1,7}-[0-9]{1,3}-[0-9]{1,3}(T[0-9]{1,3}(:[0-9]{1,3}(:[0-9]{1,3}(\\.[0-9]{0,12})?)?)?)?(Z|z|[+-][0-9]{1,2}:[0-9]{1,2})?",
            "[0-9T:.+ Zz-]{0,32}",
        ]
    }

    #[test]
    fn arbitrary_text_never_panics_and_what_parses_formats_back() {
        let texts = prop_oneof![text(40), timestamp_like()];
        property(
            "odatime::arbitrary_text_never_panics_and_what_parses_formats_back",
            2000,
            texts,
            |text| {
                if let Ok(t) = parse_local(&text) {
                    prop_assert_eq!(parse_local(&format_literal(t)), Ok(t), "from {:?}", text);
                    // What parses is a wall-clock time of millisecond precision.
                    prop_assert_eq!(t.nanosecond() % 1_000_000, 0, "from {:?}", text);
                    let _ = local_to_utc(t);
                }
                if let Ok(t) = parse_user_time(&text) {
                    let _ = (local_to_utc(t), is_ambiguous(t), format_literal(t));
                }
                Ok(())
            },
        );
    }
}

mod odata {
    use oda_model::odata::{Query, encode_component, entity_path, escape_data_string};
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
    use proptest::prelude::*;

    use super::{property, text};

    /// What `encode_component` leaves raw: RFC 3986 unreserved plus `'(),:`.
    const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b'\'')
        .remove(b'(')
        .remove(b')')
        .remove(b',')
        .remove(b':');

    /// RFC 3986 unreserved: what `Uri.EscapeDataString` leaves raw.
    const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');

    fn decode(encoded: &str) -> Option<String> {
        percent_decode_str(encoded)
            .decode_utf8()
            .ok()
            .map(|s| s.into_owned())
    }

    /// Every byte is `raw` or starts a `%XX` escape with upper-case hex.
    fn only_allowed(encoded: &str, raw: fn(u8) -> bool) -> Result<(), String> {
        let bytes = encoded.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'%' {
                let hex = bytes.get(i + 1..i + 3).ok_or("a cut `%` escape")?;
                if !hex
                    .iter()
                    .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h))
                {
                    return Err(format!("bad escape at {i} in {encoded}"));
                }
                i += 3;
            } else if raw(b) {
                i += 1;
            } else {
                return Err(format!("raw {:?} at {i} in {encoded}", b as char));
            }
        }
        Ok(())
    }

    fn unreserved(b: u8) -> bool {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
    }

    fn component(b: u8) -> bool {
        unreserved(b) || matches!(b, b'\'' | b'(' | b')' | b',' | b':')
    }

    /// Unicode text, with ODA filter syntax mixed in often.
    fn value_text() -> impl Strategy<Value = String> {
        prop_oneof![text(40), "[a-zæøåA-ZÆØÅ0-9 '(),:&=+#%?/$.-]{0,40}",]
    }

    #[test]
    fn encode_component_decodes_back_and_keeps_only_allowed_bytes() {
        property(
            "odata::encode_component_decodes_back_and_keeps_only_allowed_bytes",
            1000,
            value_text(),
            |s| {
                let encoded = encode_component(&s);
                prop_assert_eq!(decode(&encoded), Some(s.clone()));
                only_allowed(&encoded, component).map_err(TestCaseError::fail)?;
                prop_assert_eq!(&encoded, &utf8_percent_encode(&s, COMPONENT).to_string());
                prop_assert_eq!(entity_path(&s), encoded);
                Ok(())
            },
        );
    }

    #[test]
    fn escape_data_string_decodes_back_and_keeps_only_unreserved_bytes() {
        property(
            "odata::escape_data_string_decodes_back_and_keeps_only_unreserved_bytes",
            1000,
            value_text(),
            |s| {
                let encoded = escape_data_string(&s);
                prop_assert_eq!(decode(&encoded), Some(s.clone()));
                only_allowed(&encoded, unreserved).map_err(TestCaseError::fail)?;
                prop_assert_eq!(encoded, utf8_percent_encode(&s, UNRESERVED).to_string());
                Ok(())
            },
        );
    }

    #[test]
    fn query_strings_carry_each_option_once_in_order() {
        let options = (
            proptest::option::of(value_text()),
            proptest::option::of(value_text()),
            proptest::option::of(value_text()),
            proptest::option::of(any::<u32>()),
            any::<bool>(),
        );
        property(
            "odata::query_strings_carry_each_option_once_in_order",
            1000,
            options,
            |(filter, orderby, select, top, inlinecount)| {
                let query = Query {
                    filter: filter.clone(),
                    orderby: orderby.clone(),
                    select: select.clone(),
                    top,
                    inlinecount,
                };
                let mut built = Query::default();
                if let Some(f) = &filter {
                    built = built.filter(f.as_str());
                }
                if let Some(o) = &orderby {
                    built = built.orderby(o.as_str());
                }
                if let Some(s) = &select {
                    built = built.select(s.as_str());
                }
                if let Some(t) = top {
                    built = built.top(t);
                }
                if inlinecount {
                    built = built.inlinecount();
                }
                prop_assert_eq!(&built, &query);

                let text = query.to_query_string();
                prop_assert!(text.starts_with("$format=json"), "{}", text);
                let mut expected: Vec<(&str, String)> = vec![("$format", "json".to_owned())];
                if let Some(f) = &filter {
                    expected.push(("$filter", f.clone()));
                }
                if let Some(o) = &orderby {
                    expected.push(("$orderby", o.clone()));
                }
                if let Some(s) = &select {
                    expected.push(("$select", s.clone()));
                }
                if let Some(t) = top {
                    expected.push(("$top", t.to_string()));
                }
                if inlinecount {
                    expected.push(("$inlinecount", "allpages".to_owned()));
                }
                let parts: Vec<(&str, Option<String>)> = text
                    .split('&')
                    .map(|part| {
                        let (name, value) = part.split_once('=').unwrap_or((part, ""));
                        (name, decode(value))
                    })
                    .collect();
                let expected: Vec<(&str, Option<String>)> = expected
                    .into_iter()
                    .map(|(name, value)| (name, Some(value)))
                    .collect();
                prop_assert_eq!(parts, expected, "{}", text);
                for name in [
                    "$format",
                    "$filter",
                    "$orderby",
                    "$select",
                    "$top",
                    "$inlinecount",
                ] {
                    let pattern = format!("{name}=");
                    prop_assert!(text.matches(&pattern).count() <= 1, "{}", text);
                }
                Ok(())
            },
        );
    }
}

mod hash {
    use oda_model::hash::{TIMESTAMP_FIELD, canonical_json, content_hash};
    use proptest::prelude::*;
    use serde_json::{Map, Number, Value};
    use sha2::{Digest, Sha256};

    use super::{property, text};

    /// The record without the fields the hash leaves out (the timestamp
    /// and `odata.*` annotations, as `canonical_json` documents).
    fn hashed_part(record: &Map<String, Value>) -> Map<String, Value> {
        record
            .iter()
            .filter(|(k, _)| k.as_str() != TIMESTAMP_FIELD && !k.starts_with("odata."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn reference_jcs(record: &Map<String, Value>) -> String {
        serde_jcs::to_string(&Value::Object(hashed_part(record))).expect("JSON serializes")
    }

    fn reference_hash(record: &Map<String, Value>) -> String {
        hex::encode(Sha256::digest(reference_jcs(record).as_bytes()))
    }

    fn jcs(value: &Value) -> String {
        serde_jcs::to_string(value).expect("JSON serializes")
    }

    fn leaf() -> impl Strategy<Value = Value> {
        let limit = 1i64 << 53;
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-limit..=limit).prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
            Just(Value::String(String::new())),
            text(30).prop_map(Value::String),
            "[a-zæøå <>/\"\\\\]{0,30}".prop_map(Value::String),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((key(), inner), 0..4)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    /// Field names: ODA-like, arbitrary Unicode (beyond U+E000 too), the
    /// timestamp and annotations.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-zæøå][a-zA-Zæøå0-9]{0,12}",
            2 => text(8),
            1 => "[\u{e000}-\u{ffff}\u{10000}-\u{10ffff}a-z]{1,3}",
            1 => Just(TIMESTAMP_FIELD.to_owned()),
            1 => "odata\\.[a-zA-Z]{0,10}",
            1 => "odata[a-z]{0,3}",
        ]
    }

    /// A record's fields in generation order, each name once; mostly flat
    /// (what ODA sends), sometimes nested.
    fn fields() -> impl Strategy<Value = Vec<(String, Value)>> {
        let value = prop_oneof![4 => leaf(), 1 => json_value()];
        proptest::collection::vec((key(), value), 0..10).prop_map(|pairs| {
            let mut seen = std::collections::HashSet::new();
            let mut unique: Vec<(String, Value)> = pairs
                .into_iter()
                .rev()
                .filter(|(k, _)| seen.insert(k.clone()))
                .collect();
            unique.reverse();
            unique
        })
    }

    fn record(fields: &[(String, Value)]) -> Map<String, Value> {
        fields.iter().cloned().collect()
    }

    /// A name the hash does not leave out.
    fn hashed_key() -> impl Strategy<Value = String> {
        key().prop_filter("a hashed field", |k| {
            k != TIMESTAMP_FIELD && !k.starts_with("odata.")
        })
    }

    #[test]
    fn the_hash_is_sha256_of_the_jcs_text_without_the_timestamp() {
        property(
            "hash::the_hash_is_sha256_of_the_jcs_text_without_the_timestamp",
            1500,
            fields(),
            |fields| {
                let record = record(&fields);
                let hash = content_hash(&record);
                prop_assert_eq!(hash.len(), 64);
                prop_assert!(
                    hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                    "{}",
                    hash
                );
                prop_assert_eq!(canonical_json(&record), reference_jcs(&record));
                prop_assert_eq!(hash, reference_hash(&record));
                Ok(())
            },
        );
    }

    #[test]
    fn key_order_does_not_matter() {
        let orders =
            fields().prop_flat_map(|fields| (Just(fields.clone()), Just(fields).prop_shuffle()));
        property(
            "hash::key_order_does_not_matter",
            1000,
            orders,
            |(fields, shuffled)| {
                let hash = content_hash(&record(&fields));
                prop_assert_eq!(content_hash(&record(&shuffled)), hash.clone());
                // Through JSON text written in the shuffled order.
                let body: Vec<String> = shuffled
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{}:{}",
                            serde_json::to_string(k).expect("key"),
                            serde_json::to_string(v).expect("value")
                        )
                    })
                    .collect();
                let parsed: Map<String, Value> =
                    serde_json::from_str(&format!("{{{}}}", body.join(","))).expect("JSON");
                prop_assert_eq!(content_hash(&parsed), hash);
                Ok(())
            },
        );
    }

    #[test]
    fn the_timestamp_value_does_not_matter() {
        property(
            "hash::the_timestamp_value_does_not_matter",
            1000,
            (fields(), json_value(), json_value()),
            |(fields, first, second)| {
                let mut without = record(&fields);
                without.remove(TIMESTAMP_FIELD);
                let mut a = without.clone();
                a.insert(TIMESTAMP_FIELD.to_owned(), first);
                let mut b = without.clone();
                b.insert(TIMESTAMP_FIELD.to_owned(), second);
                let hash = content_hash(&without);
                prop_assert_eq!(content_hash(&a), hash.clone());
                prop_assert_eq!(content_hash(&b), hash);
                Ok(())
            },
        );
    }

    #[test]
    fn null_and_empty_string_hash_differently() {
        property(
            "hash::null_and_empty_string_hash_differently",
            1000,
            (fields(), hashed_key()),
            |(fields, name)| {
                let mut null = record(&fields);
                null.insert(name.clone(), Value::Null);
                let mut empty = record(&fields);
                empty.insert(name, Value::String(String::new()));
                prop_assert_ne!(content_hash(&null), content_hash(&empty));
                Ok(())
            },
        );
    }

    #[test]
    fn any_change_of_a_hashed_field_changes_the_hash() {
        let cases = (fields(), hashed_key(), json_value(), json_value())
            // JCS writes 1 and 1.0 (or 2^53 and 2^53 + 1) alike: a change
            // is a change of the canonical text.
            .prop_filter("different values", |(_, _, a, b)| jcs(a) != jcs(b));
        property(
            "hash::any_change_of_a_hashed_field_changes_the_hash",
            1000,
            cases,
            |(fields, name, first, second)| {
                let mut a = record(&fields);
                a.insert(name.clone(), first);
                let mut b = record(&fields);
                b.insert(name.clone(), second);
                prop_assert_ne!(content_hash(&a), content_hash(&b));
                // And removing it, too.
                let mut c = record(&fields);
                c.remove(&name);
                prop_assert_ne!(content_hash(&a), content_hash(&c));
                Ok(())
            },
        );
    }
}
