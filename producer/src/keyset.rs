//! The queries the producer pages with, and the fail-closed checks of
//! what comes back.
//!
//! Every page is read by keyset, never by `$skip` (offset paging over a
//! moving set loses and duplicates rows). The change cursor is
//! `(opdateringsdato, id)`, but ODA's timestamps are SQL Server `datetime`
//! values — ticks of 1/300 s shown rounded to the millisecond — so an
//! `eq` against a shown millisecond can miss the very row it was read
//! from, and the real server is reported to mishandle a date condition
//! combined with a parenthesised `or` group. So the cursor never uses
//! `eq` and never `or`; it uses two AND-only shapes:
//!
//! - the *tie* at a shown time `T`: `opdateringsdato gt T−1ms and
//!   opdateringsdato lt T+1ms and id gt N`, ordered by id: exactly the rows
//!   shown as `T` (ticks are 3.3 ms apart), however many share it;
//! - the *advance* past `T`: `opdateringsdato ge T+1ms`, ordered by
//!   `opdateringsdato,id`.
//!
//! Each asks `$top=1000`, above the server's page size: the server then
//! cuts the page and says so with a nextLink, which tells "more" from "done"
//! without trusting any page size.

use chrono::{Duration, NaiveDateTime};
use oda_cdc_core::oda::Page;
use oda_model::odata::Query;
use oda_model::odatime::{format_literal, parse_local};
use serde_json::{Map, Value};

/// `$top` of every page request: more than any server page.
pub(crate) const REQUEST_TOP: u32 = 1000;

/// The field the change cursor follows.
pub(crate) const TIMESTAMP: &str = "opdateringsdato";

fn literal(t: NaiveDateTime) -> String {
    format!("datetime'{}'", format_literal(t))
}

/// Rows shown at exactly `at`, with an id above `after` (all when `None`).
pub(crate) fn tie_query(at: NaiveDateTime, after: Option<i64>) -> Query {
    let ms = Duration::milliseconds(1);
    let mut filter = format!(
        "{TIMESTAMP} gt {} and {TIMESTAMP} lt {}",
        literal(at - ms),
        literal(at + ms)
    );
    if let Some(id) = after {
        filter.push_str(&format!(" and id gt {id}"));
    }
    Query::default()
        .filter(filter)
        .orderby("id")
        .top(REQUEST_TOP)
}

/// Rows shown later than `at`.
pub(crate) fn advance_query(at: NaiveDateTime) -> Query {
    let filter = format!("{TIMESTAMP} ge {}", literal(at + Duration::milliseconds(1)));
    Query::default()
        .filter(filter)
        .orderby(format!("{TIMESTAMP},id"))
        .top(REQUEST_TOP)
}

/// Ids in `(after, to]`, for snapshots and reconciliation.
pub(crate) fn id_range_query(after: i64, to: i64) -> Query {
    Query::default()
        .filter(format!("id gt {after} and id le {to}"))
        .orderby("id")
        .top(REQUEST_TOP)
}

/// Ids in `(after, to]` shown at `since` or later (a backfill with
/// `--since`); the date condition is a range, never an `eq`.
pub(crate) fn id_range_since_query(after: i64, to: i64, since: NaiveDateTime) -> Query {
    let filter = format!(
        "id gt {after} and id le {to} and {TIMESTAMP} gt {}",
        literal(since - Duration::milliseconds(1))
    );
    Query::default()
        .filter(filter)
        .orderby("id")
        .top(REQUEST_TOP)
}

/// Checks that every row of a `--since` page is shown at `since` or later.
pub(crate) fn check_since(keys: &[RowKey], since: NaiveDateTime) -> Result<(), Violation> {
    for key in keys {
        if key
            .at
            .is_none_or(|t| t <= since - Duration::milliseconds(1))
        {
            return Err(Violation::OutsidePredicate {
                id: key.id,
                detail: format!(
                    "shown at {:?}, before {}",
                    key.literal,
                    format_literal(since)
                ),
            });
        }
    }
    Ok(())
}

/// A record's id and shown timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RowKey {
    pub(crate) id: i64,
    pub(crate) literal: Option<String>,
    pub(crate) at: Option<NaiveDateTime>,
}

/// A page that breaks what was asked: the cycle stops, the cursor stays.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Violation {
    #[error("page has {rows} rows, more than the {top} asked for")]
    TooLong { rows: usize, top: u32 },
    #[error("row {index} has no integer id")]
    NoId { index: usize },
    #[error("row {id} has an unreadable opdateringsdato: {message}")]
    BadTimestamp { id: i64, message: String },
    #[error("row {id} is outside the requested range: {detail}")]
    OutsidePredicate { id: i64, detail: String },
    #[error("row {id} breaks the requested order")]
    OutOfOrder { id: i64 },
}

/// Reads a record's key fields.
pub(crate) fn row_key(index: usize, record: &Map<String, Value>) -> Result<RowKey, Violation> {
    let id = record
        .get("id")
        .and_then(Value::as_i64)
        .ok_or(Violation::NoId { index })?;
    let literal = match record.get(TIMESTAMP) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(Violation::BadTimestamp {
                id,
                message: format!("{other} is not a string"),
            });
        }
    };
    let at = match &literal {
        None => None,
        Some(l) => Some(parse_local(l).map_err(|e| Violation::BadTimestamp {
            id,
            message: e.to_string(),
        })?),
    };
    Ok(RowKey { id, literal, at })
}

/// Takes the rows that cannot be keyed at all (no integer id, a timestamp
/// that is not a string) out of `records`: they are dead-lettered one by
/// one instead of failing the page, so the entity goes on. Only the types
/// are looked at (the page checks parse the timestamps once, after), and a
/// page without such rows is left untouched.
pub(crate) fn split_malformed(
    records: &mut Vec<Map<String, Value>>,
) -> Vec<(Map<String, Value>, Violation)> {
    let problem = |index: usize, record: &Map<String, Value>| {
        let Some(id) = record.get("id").and_then(Value::as_i64) else {
            return Some(Violation::NoId { index });
        };
        match record.get(TIMESTAMP) {
            None | Some(Value::Null | Value::String(_)) => None,
            Some(other) => Some(Violation::BadTimestamp {
                id,
                message: format!("{other} is not a string"),
            }),
        }
    };
    if records
        .iter()
        .enumerate()
        .all(|(i, r)| problem(i, r).is_none())
    {
        return Vec::new();
    }
    let mut malformed = Vec::new();
    let mut index = 0;
    records.retain(|record| {
        let violation = problem(index, record);
        index += 1;
        match violation {
            Some(violation) => {
                malformed.push((record.clone(), violation));
                false
            }
            None => true,
        }
    });
    malformed
}

fn keys(page: &Page) -> Result<Vec<RowKey>, Violation> {
    if page.records.len() > REQUEST_TOP as usize {
        return Err(Violation::TooLong {
            rows: page.records.len(),
            top: REQUEST_TOP,
        });
    }
    page.records
        .iter()
        .enumerate()
        .map(|(i, r)| row_key(i, r))
        .collect()
}

/// Checks a tie page: every row shown at `at`, ids above `after`, rising.
pub(crate) fn check_tie(
    page: &Page,
    at: NaiveDateTime,
    after: Option<i64>,
) -> Result<Vec<RowKey>, Violation> {
    let keys = keys(page)?;
    let mut last = after;
    for key in &keys {
        if key.at != Some(at) {
            return Err(Violation::OutsidePredicate {
                id: key.id,
                detail: format!(
                    "shown at {:?}, asked for {}",
                    key.literal,
                    format_literal(at)
                ),
            });
        }
        if last.is_some_and(|l| key.id <= l) {
            return Err(if after.is_some_and(|a| key.id <= a) {
                Violation::OutsidePredicate {
                    id: key.id,
                    detail: format!("id not above {}", after.unwrap_or_default()),
                }
            } else {
                Violation::OutOfOrder { id: key.id }
            });
        }
        last = Some(key.id);
    }
    Ok(keys)
}

/// Checks an advance page: every row later than `at`, in `(time, id)` order.
pub(crate) fn check_advance(page: &Page, at: NaiveDateTime) -> Result<Vec<RowKey>, Violation> {
    let keys = keys(page)?;
    let mut last: Option<(NaiveDateTime, i64)> = None;
    for key in &keys {
        let Some(t) = key.at else {
            return Err(Violation::OutsidePredicate {
                id: key.id,
                detail: "null opdateringsdato in a date range".into(),
            });
        };
        if t <= at {
            return Err(Violation::OutsidePredicate {
                id: key.id,
                detail: format!(
                    "shown at {:?}, not after {}",
                    key.literal,
                    format_literal(at)
                ),
            });
        }
        if last.is_some_and(|l| (t, key.id) <= l) {
            return Err(Violation::OutOfOrder { id: key.id });
        }
        last = Some((t, key.id));
    }
    Ok(keys)
}

/// Checks an id-range page: ids in `(after, to]`, rising.
pub(crate) fn check_id_range(page: &Page, after: i64, to: i64) -> Result<Vec<RowKey>, Violation> {
    let keys = keys(page)?;
    let mut last = after;
    for key in &keys {
        if key.id <= after || key.id > to {
            return Err(Violation::OutsidePredicate {
                id: key.id,
                detail: format!("id outside ({after}, {to}]"),
            });
        }
        if key.id <= last {
            return Err(Violation::OutOfOrder { id: key.id });
        }
        last = key.id;
    }
    Ok(keys)
}

/// More rows follow this page: the server cut it, or it is full.
pub(crate) fn has_more(page: &Page) -> bool {
    page.next_link.is_some() || page.records.len() >= REQUEST_TOP as usize
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn page(rows: Value) -> Page {
        Page {
            records: rows
                .as_array()
                .expect("array")
                .iter()
                .map(|r| r.as_object().expect("object").clone())
                .collect(),
            count: None,
            next_link: None,
        }
    }

    fn t(s: &str) -> NaiveDateTime {
        parse_local(s).expect("valid")
    }

    #[test]
    fn queries_use_ranges_not_eq_and_no_or() {
        let q = tie_query(t("2014-01-03T13:10:20.757"), Some(42));
        assert_eq!(
            q.filter.as_deref(),
            Some(
                "opdateringsdato gt datetime'2014-01-03T13:10:20.756' and opdateringsdato lt datetime'2014-01-03T13:10:20.758' and id gt 42"
            )
        );
        assert_eq!(q.orderby.as_deref(), Some("id"));
        let q = advance_query(t("2014-01-03T13:10:20.757"));
        assert_eq!(
            q.filter.as_deref(),
            Some("opdateringsdato ge datetime'2014-01-03T13:10:20.758'")
        );
        assert_eq!(q.orderby.as_deref(), Some("opdateringsdato,id"));
        for q in [
            tie_query(t("2020-01-01T00:00:00"), None),
            advance_query(t("2020-01-01T00:00:00")),
        ] {
            let f = q.filter.unwrap_or_default();
            assert!(!f.contains(" eq ") && !f.contains(" or "), "{f}");
        }
    }

    #[test]
    fn tie_pages_must_stay_on_their_time() {
        let at = t("2020-01-01T10:00:00.123");
        let good = page(
            json!([{"id": 5, "opdateringsdato": "2020-01-01T10:00:00.123"}, {"id": 9, "opdateringsdato": "2020-01-01T10:00:00.123"}]),
        );
        assert_eq!(check_tie(&good, at, Some(4)).expect("valid").len(), 2);
        let ignored_filter = page(json!([{"id": 1, "opdateringsdato": "2014-01-01T00:00:00"}]));
        assert!(matches!(
            check_tie(&ignored_filter, at, None),
            Err(Violation::OutsidePredicate { .. })
        ));
        let below = page(json!([{"id": 3, "opdateringsdato": "2020-01-01T10:00:00.123"}]));
        assert!(matches!(
            check_tie(&below, at, Some(4)),
            Err(Violation::OutsidePredicate { .. })
        ));
        let unordered = page(
            json!([{"id": 9, "opdateringsdato": "2020-01-01T10:00:00.123"}, {"id": 5, "opdateringsdato": "2020-01-01T10:00:00.123"}]),
        );
        assert!(matches!(
            check_tie(&unordered, at, None),
            Err(Violation::OutOfOrder { id: 5 })
        ));
    }

    #[test]
    fn advance_pages_must_be_later_and_ordered() {
        let at = t("2020-01-01T10:00:00");
        let good = page(json!([
            {"id": 9, "opdateringsdato": "2020-01-01T10:00:00.003"},
            {"id": 2, "opdateringsdato": "2020-01-01T10:00:01"},
            {"id": 3, "opdateringsdato": "2020-01-01T10:00:01"}
        ]));
        assert_eq!(check_advance(&good, at).expect("valid").len(), 3);
        let stale = page(json!([{"id": 1, "opdateringsdato": "2020-01-01T10:00:00"}]));
        assert!(check_advance(&stale, at).is_err());
        let unordered = page(json!([
            {"id": 2, "opdateringsdato": "2020-01-01T10:00:02"},
            {"id": 3, "opdateringsdato": "2020-01-01T10:00:01"}
        ]));
        assert!(matches!(
            check_advance(&unordered, at),
            Err(Violation::OutOfOrder { id: 3 })
        ));
        let null = page(json!([{"id": 2, "opdateringsdato": null}]));
        assert!(check_advance(&null, at).is_err());
    }

    #[test]
    fn since_pages_use_a_range_and_refuse_older_rows() {
        let since = t("2020-01-01T10:00:00.757");
        let q = id_range_since_query(5, 50, since);
        assert_eq!(
            q.filter.as_deref(),
            Some("id gt 5 and id le 50 and opdateringsdato gt datetime'2020-01-01T10:00:00.756'")
        );
        let fresh = check_id_range(
            &page(json!([{"id": 6, "opdateringsdato": "2020-01-01T10:00:00.757"}])),
            5,
            50,
        )
        .expect("valid");
        assert!(check_since(&fresh, since).is_ok());
        let stale = check_id_range(
            &page(json!([{"id": 6, "opdateringsdato": "2020-01-01T10:00:00.753"}])),
            5,
            50,
        )
        .expect("valid");
        assert!(check_since(&stale, since).is_err());
    }

    #[test]
    fn id_pages_stay_in_range_and_long_pages_are_refused() {
        let good = page(json!([{"id": 11}, {"id": 12}]));
        assert!(check_id_range(&good, 10, 20).is_ok());
        assert!(check_id_range(&page(json!([{"id": 21}])), 10, 20).is_err());
        let rows: Vec<Value> = (0..=REQUEST_TOP).map(|i| json!({"id": i + 1})).collect();
        let long = page(Value::Array(rows));
        assert!(matches!(
            check_id_range(&long, 0, 5000),
            Err(Violation::TooLong { .. })
        ));
    }

    #[test]
    fn rows_without_a_key_are_split_off_the_rest_stays_in_order() {
        let mut records: Vec<Map<String, Value>> = [
            json!({"id": 1, "opdateringsdato": "2026-01-01T10:00:00"}),
            json!({"opdateringsdato": "2026-01-01T10:00:00"}),
            json!({"id": 3, "opdateringsdato": 20260101}),
            json!({"id": 4, "opdateringsdato": null}),
        ]
        .into_iter()
        .filter_map(|v| v.as_object().cloned())
        .collect();
        let malformed = split_malformed(&mut records);
        let ids: Vec<_> = records.iter().map(|r| r["id"].clone()).collect();
        assert_eq!(ids, [json!(1), json!(4)]);
        assert!(matches!(malformed[0].1, Violation::NoId { index: 1 }));
        assert!(matches!(
            malformed[1].1,
            Violation::BadTimestamp { id: 3, .. }
        ));
    }
}
