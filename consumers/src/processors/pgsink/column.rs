//! Columns: which SQL type an ODA field gets, which type a field the model
//! does not know gets from its first value, and whether a value still fits
//! the column it has (a source that changes a field's type must not stop
//! the mirror, nor be written half-way).

use chrono::NaiveDateTime;
use oda_model::entity::EdmType;
use serde_json::Value;

/// The column types the sink makes and understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SqlType {
    SmallInt,
    Integer,
    BigInt,
    Double,
    Boolean,
    /// Danish local time, as the source gives it (no offset).
    Timestamp,
    TimestampTz,
    Text,
    Jsonb,
}

impl SqlType {
    /// The type of a field of the ODA model.
    pub(crate) fn of_edm(edm: EdmType) -> Self {
        match edm {
            EdmType::Int16 => Self::SmallInt,
            EdmType::Int32 => Self::Integer,
            EdmType::Boolean => Self::Boolean,
            EdmType::DateTime => Self::Timestamp,
            EdmType::String => Self::Text,
        }
    }

    /// The type of a field the model does not know, from its first
    /// non-null value. Strings stay text (a new field that looks like a
    /// date today may not tomorrow; text never refuses one), `None` for a
    /// null: its type is decided by the first value that is not.
    pub(crate) fn infer(value: &Value) -> Option<Self> {
        match value {
            Value::Null => None,
            Value::Bool(_) => Some(Self::Boolean),
            Value::Number(n) if n.is_i64() || n.is_u64() => Some(Self::BigInt),
            Value::Number(_) => Some(Self::Double),
            Value::String(_) => Some(Self::Text),
            Value::Array(_) | Value::Object(_) => Some(Self::Jsonb),
        }
    }

    /// As `CREATE TABLE` spells it.
    pub(crate) fn sql(self) -> &'static str {
        match self {
            Self::SmallInt => "smallint",
            Self::Integer => "integer",
            Self::BigInt => "bigint",
            Self::Double => "double precision",
            Self::Boolean => "boolean",
            Self::Timestamp => "timestamp",
            Self::TimestampTz => "timestamptz",
            Self::Text => "text",
            Self::Jsonb => "jsonb",
        }
    }

    /// From `information_schema.columns.data_type`; `None` for a type the
    /// sink did not make (a column an operator added): such a column is
    /// left alone and its field kept in `_extra`.
    pub(crate) fn from_catalog(data_type: &str) -> Option<Self> {
        Some(match data_type {
            "smallint" => Self::SmallInt,
            "integer" => Self::Integer,
            "bigint" => Self::BigInt,
            "double precision" => Self::Double,
            "boolean" => Self::Boolean,
            "timestamp without time zone" => Self::Timestamp,
            "timestamp with time zone" => Self::TimestampTz,
            "text" => Self::Text,
            "jsonb" => Self::Jsonb,
            _ => return None,
        })
    }

    /// Whether `value` can be stored in a column of this type as it is.
    pub(crate) fn accepts(self, value: &Value) -> bool {
        let int_in = |lo: i64, hi: i64| value.as_i64().is_some_and(|v| (lo..=hi).contains(&v));
        match self {
            _ if value.is_null() => true,
            Self::SmallInt => int_in(i16::MIN.into(), i16::MAX.into()),
            Self::Integer => int_in(i32::MIN.into(), i32::MAX.into()),
            Self::BigInt => value.is_i64(),
            Self::Double => value.is_number(),
            Self::Boolean => value.is_boolean(),
            Self::Timestamp => value.as_str().is_some_and(is_local_timestamp),
            Self::TimestampTz => value
                .as_str()
                .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()),
            // A number or a boolean reads back as its text.
            Self::Text => value.is_string() || value.is_number() || value.is_boolean(),
            Self::Jsonb => true,
        }
    }
}

/// `2025-12-19T09:32:16.467` (and without fractions, or with a space).
fn is_local_timestamp(text: &str) -> bool {
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .any(|format| NaiveDateTime::parse_from_str(text, format).is_ok())
}

/// A name as SQL quotes it: ODA's names keep their letters (`mødeid`).
pub(crate) fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The columns the sink adds to every table, after the source's fields.
pub(crate) mod meta {
    /// Fields no column holds yet (a new field seen only as null so far,
    /// or one whose column an operator made with a type the sink does not
    /// write): nothing the source sends is dropped.
    pub(crate) const EXTRA: &str = "_extra";
    /// The source's `opdateringsdato`, in UTC.
    pub(crate) const CHANGED_UTC: &str = "_changed_utc";
    /// When the producer saw the change (the event's `ts_ms`).
    pub(crate) const EVENT_TS: &str = "_event_ts";
    /// `r`, `c` or `u`: the last operation applied.
    pub(crate) const OP: &str = "_op";
    /// Where the row's last change was read: partition and offset.
    pub(crate) const PARTITION: &str = "_partition";
    pub(crate) const OFFSET: &str = "_offset";

    /// Every meta column with its type.
    pub(crate) const COLUMNS: &[(&str, &str)] = &[
        (EXTRA, "jsonb NOT NULL DEFAULT '{}'"),
        (CHANGED_UTC, "timestamptz"),
        (EVENT_TS, "timestamptz NOT NULL"),
        (OP, "text NOT NULL"),
        (PARTITION, "integer NOT NULL"),
        (OFFSET, "bigint NOT NULL"),
    ];

    pub(crate) fn is_meta(name: &str) -> bool {
        name.starts_with('_')
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn model_types_map_to_their_columns() {
        assert_eq!(SqlType::of_edm(EdmType::Int16).sql(), "smallint");
        assert_eq!(SqlType::of_edm(EdmType::DateTime).sql(), "timestamp");
        for t in [
            SqlType::SmallInt,
            SqlType::Integer,
            SqlType::BigInt,
            SqlType::Double,
            SqlType::Boolean,
            SqlType::Timestamp,
            SqlType::TimestampTz,
            SqlType::Text,
            SqlType::Jsonb,
        ] {
            let catalog = match t {
                SqlType::Timestamp => "timestamp without time zone",
                SqlType::TimestampTz => "timestamp with time zone",
                other => other.sql(),
            };
            assert_eq!(SqlType::from_catalog(catalog), Some(t));
        }
        assert_eq!(SqlType::from_catalog("numeric"), None);
    }

    #[test]
    fn new_fields_take_their_type_from_the_first_value_that_is_not_null() {
        assert_eq!(SqlType::infer(&json!(null)), None);
        assert_eq!(SqlType::infer(&json!(3)), Some(SqlType::BigInt));
        assert_eq!(SqlType::infer(&json!(3.5)), Some(SqlType::Double));
        assert_eq!(
            SqlType::infer(&json!("2025-01-01T00:00:00")),
            Some(SqlType::Text)
        );
        assert_eq!(SqlType::infer(&json!({"a": 1})), Some(SqlType::Jsonb));
    }

    #[test]
    fn a_value_of_another_type_does_not_fit() {
        assert!(SqlType::Integer.accepts(&json!(12)));
        assert!(SqlType::Integer.accepts(&json!(null)));
        assert!(!SqlType::Integer.accepts(&json!("12")));
        assert!(!SqlType::SmallInt.accepts(&json!(70_000)));
        assert!(SqlType::Timestamp.accepts(&json!("2025-12-19T09:32:16.467")));
        assert!(SqlType::Timestamp.accepts(&json!("2025-12-19T09:32:16")));
        assert!(!SqlType::Timestamp.accepts(&json!("yesterday")));
        assert!(SqlType::Text.accepts(&json!(5)));
        assert!(!SqlType::Text.accepts(&json!([1])));
        assert!(!SqlType::Boolean.accepts(&json!(1)));
    }

    #[test]
    fn names_are_quoted_with_their_letters() {
        assert_eq!(quoted("mødeid"), "\"mødeid\"");
        assert_eq!(quoted("a\"b"), "\"a\"\"b\"");
    }
}
