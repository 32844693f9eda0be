use std::ops::Bound;

use super::*;
use crate::time::Precision;

fn t(text: &str) -> SimTime {
    SimTime::parse(text).expect("valid time")
}

/// A record as a list of (field, value); absent fields are null.
struct TestRow(Vec<(&'static str, Scalar<'static>)>);

impl Row for TestRow {
    fn get(&self, field: &str) -> Scalar<'_> {
        self.0
            .iter()
            .find(|(name, _)| *name == field)
            .map_or(Scalar::Null, |(_, v)| *v)
    }
}

fn schema(field: &str) -> Option<FieldType> {
    Some(match field {
        "id" | "typeid" | "aktørid" | "mødeid" => FieldType::Int,
        "titel" | "nummerprefix" | "lovnummer" => FieldType::Str,
        "opdateringsdato" | "slutdato" | "afgørelsesdato" => FieldType::DateTime,
        "aktiv" => FieldType::Bool,
        _ => return None,
    })
}

fn rows() -> [TestRow; 3] {
    use Scalar::*;
    [
        TestRow(vec![
            ("id", Int(1449)),
            ("typeid", Int(3)),
            (
                "titel",
                Str("Forslag til lov om forsvarssamarbejde med USA"),
            ),
            ("nummerprefix", Str("L")),
            ("opdateringsdato", DateTime(t("2025-09-09T10:15:00.123"))),
            ("slutdato", Null),
            ("aktørid", Int(158)),
            ("mødeid", Null),
            ("afgørelsesdato", DateTime(t("2014-01-03T13:10:20.757"))),
            ("lovnummer", Null),
            ("aktiv", Bool(true)),
        ]),
        TestRow(vec![
            ("id", Int(42)),
            ("typeid", Int(1)),
            ("titel", Str("Ministerens 'svar'")),
            ("nummerprefix", Str("B")),
            ("opdateringsdato", DateTime(t("2014-01-03T13:10:20.757"))),
            ("slutdato", DateTime(t("2022-11-01T00:00:00"))),
            ("aktørid", Int(7)),
            ("mødeid", Int(12)),
            ("afgørelsesdato", Null),
            ("lovnummer", Str("  L 88 ")),
            ("aktiv", Bool(false)),
        ]),
        TestRow(vec![
            ("id", Int(43)),
            ("typeid", Int(3)),
            ("titel", Str("ÆØÅ æøå")),
            ("nummerprefix", Str("")),
            ("opdateringsdato", DateTime(t("2014-01-03T13:10:20.757"))),
            ("slutdato", DateTime(t("2021-05-05T00:00:00"))),
            ("aktørid", Null),
            ("mødeid", Int(5)),
            ("afgørelsesdato", Null),
            ("lovnummer", Str("l 88")),
            ("aktiv", Null),
        ]),
    ]
}

const T: bool = true;
const F: bool = false;

/// (filter, whether each of the three rows matches).
const CASES: &[(&str, [bool; 3])] = &[
    // Every comparison operator on integers.
    ("id gt 123", [T, F, F]),
    ("id eq 42", [F, T, F]),
    ("id ne 42", [T, F, T]),
    ("id ge 43", [T, F, T]),
    ("id lt 43", [F, T, F]),
    ("id le 43", [F, T, T]),
    ("id gt -1", [T, T, T]),
    ("-5 lt id", [T, T, T]),
    ("1449 eq id", [T, F, F]),
    ("id eq 42L", [F, T, F]),
    // Real client filters (ODA_API.md §5).
    ("typeid eq 3 and id eq 1449", [T, F, F]),
    ("typeid eq 1 or typeid eq 3", [T, T, T]),
    ("nummerprefix eq 'L' or nummerprefix eq 'B'", [T, T, F]),
    ("substringof('forsvarssamarbejde', titel)", [T, F, F]),
    ("substringof('forsvarssamarbejde',titel) eq true", [T, F, F]),
    ("substringof('x',titel) eq true", [F, F, F]),
    (
        "year(opdateringsdato) eq 2025 and month(opdateringsdato) eq 9 and day(opdateringsdato) eq 9",
        [T, F, F],
    ),
    (
        "slutdato eq null or slutdato ge datetime'2022-11-01T00:00:00'",
        [T, T, F],
    ),
    (
        "opdateringsdato gt datetime'2014-01-03T13:10:20.757' or \
         (opdateringsdato eq datetime'2014-01-03T13:10:20.757' and id gt 42)",
        [T, F, T],
    ),
    ("aktørid eq 158", [T, F, F]),
    ("mødeid eq 12", [F, T, F]),
    (
        "opdateringsdato ge datetime'2026-10-01T12:46:51'",
        [F, F, F],
    ),
    // Functions.
    ("substringof('x',titel) eq false", [T, T, T]),
    ("not substringof('forsvarssamarbejde', titel)", [F, T, T]),
    ("substringof('svar', titel) and id eq 42", [F, T, F]),
    ("startswith(titel,'Forslag')", [T, F, F]),
    ("startswith(titel,'forslag')", [F, F, F]),
    ("endswith(titel,'USA')", [T, F, F]),
    ("endswith(titel, 'æøå') eq true", [F, F, T]),
    ("trim(lovnummer) eq 'L 88'", [F, T, F]),
    ("toupper(lovnummer) eq 'L 88'", [F, F, T]),
    ("tolower(trim(lovnummer)) eq 'l 88'", [F, T, T]),
    ("length(lovnummer) eq 7", [F, T, F]),
    ("length(titel) eq 7", [F, F, T]),
    ("tolower(titel) eq 'æøå æøå'", [F, F, T]),
    ("toupper(titel) eq 'ÆØÅ ÆØÅ'", [F, F, T]),
    ("indexof(titel, 'æ') eq 4", [F, F, T]),
    ("indexof(titel,'zzz') eq -1", [T, T, T]),
    ("substring(titel, 4) eq 'æøå'", [F, F, T]),
    ("substring(titel, 0, 3) eq 'ÆØÅ'", [F, F, T]),
    ("substring(titel, 100) eq ''", [T, T, T]),
    ("substring(titel, -2, 1) eq 'Æ'", [F, F, T]),
    ("concat(nummerprefix, ' 88') eq 'B 88'", [F, T, F]),
    ("year(afgørelsesdato) eq 2014", [T, F, F]),
    (
        "month(afgørelsesdato) eq 1 and day(afgørelsesdato) eq 3",
        [T, F, F],
    ),
    (
        "hour(opdateringsdato) eq 10 and minute(opdateringsdato) eq 15 and second(opdateringsdato) eq 0",
        [T, F, F],
    ),
    (
        "hour(opdateringsdato) eq 13 and second(opdateringsdato) eq 20",
        [F, T, T],
    ),
    // Null semantics: comparisons are true or false, never unknown.
    ("slutdato eq null", [T, F, F]),
    ("slutdato ne null", [F, T, T]),
    ("null eq slutdato", [T, F, F]),
    ("slutdato gt null", [F, F, F]),
    ("slutdato lt datetime'2030-01-01T00:00'", [F, T, T]),
    ("not (slutdato lt datetime'2030-01-01T00:00')", [T, F, F]),
    ("mødeid gt 5", [F, T, F]),
    ("not (mødeid gt 5)", [T, F, T]),
    ("mødeid ne 5", [T, T, F]),
    ("not (year(afgørelsesdato) eq 2014)", [F, T, T]),
    ("null eq null", [T, T, T]),
    ("null ne null", [F, F, F]),
    ("trim(lovnummer) eq null", [T, F, F]),
    ("substringof('L', lovnummer)", [F, T, F]),
    ("not substringof('L', lovnummer)", [F, F, T]),
    // Booleans, including a nullable boolean field (Kleene and/or/not).
    ("aktiv", [T, F, F]),
    ("not aktiv", [F, T, F]),
    ("aktiv eq true", [T, F, F]),
    ("aktiv eq false", [F, T, F]),
    ("aktiv ne true", [F, T, T]),
    ("aktiv eq null", [F, F, T]),
    ("aktiv gt false", [T, F, F]),
    ("not aktiv or id eq 43", [F, T, T]),
    ("not aktiv and id eq 43", [F, F, F]),
    ("true", [T, T, T]),
    ("false", [F, F, F]),
    ("true and id eq 42", [F, T, F]),
    ("false or id eq 42", [F, T, F]),
    // Precedence: not > comparison > and > or; parentheses override.
    ("id eq 42 or typeid eq 3 and id eq 1449", [T, T, F]),
    ("(id eq 42 or typeid eq 3) and id eq 1449", [T, F, F]),
    ("(id eq 42 or typeid eq 3) and id ne 1449", [F, T, T]),
    ("not aktiv eq true", [F, T, F]),
    ("not (aktiv eq true)", [F, T, T]),
    ("not not (id eq 42)", [F, T, F]),
    ("not (id eq 42 or id eq 43)", [T, F, F]),
    ("((((id eq 42))))", [F, T, F]),
    ("(id eq 42) eq true", [F, T, F]),
    // Strings: escaped quotes, ordinal and case-sensitive comparison.
    ("titel eq 'Ministerens ''svar'''", [F, T, F]),
    ("substringof('''', titel)", [F, T, F]),
    ("nummerprefix eq 'l'", [F, F, F]),
    ("nummerprefix gt 'A'", [T, T, F]),
    ("nummerprefix lt 'a'", [T, T, T]),
    ("titel gt 'Z'", [F, F, T]),
    ("nummerprefix eq ''", [F, F, T]),
    // Datetime literals with 0–3 fraction digits.
    (
        "opdateringsdato eq datetime'2014-01-03T13:10:20.757'",
        [F, T, T],
    ),
    (
        "opdateringsdato gt datetime'2014-01-03T13:10:20.75'",
        [T, T, T],
    ),
    (
        "opdateringsdato lt datetime'2014-01-03T13:10:20.8'",
        [F, T, T],
    ),
    (
        "opdateringsdato gt datetime'2014-01-03T13:10:20'",
        [T, T, T],
    ),
    ("opdateringsdato lt datetime'2014-01-03T13:11'", [F, T, T]),
    (
        "opdateringsdato eq datetime'2025-09-09T10:15:00.123'",
        [T, F, F],
    ),
    (
        "opdateringsdato eq datetime'2025-09-09T10:15:00.12'",
        [F, F, F],
    ),
    ("datetime'2020-01-01T00:00' lt opdateringsdato", [T, F, F]),
    (
        "opdateringsdato ge datetime'2014-01-03T00:00:00' and opdateringsdato le datetime'2014-01-03T23:59:59'",
        [F, T, T],
    ),
    // Whitespace of any amount, and none around parentheses.
    ("  id   gt\t123  ", [T, F, F]),
    ("(id eq 42)and(typeid eq 1)", [F, T, F]),
    ("substringof( 'svar''' , titel )", [F, T, F]),
];

#[test]
fn table_of_filters_parses_validates_and_evaluates() {
    let rows = rows();
    for (filter, expected) in CASES {
        let expr = parse(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
        expr.validate(&schema)
            .unwrap_or_else(|e| panic!("{filter}: {e}"));
        let got = rows.each_ref().map(|row| expr.eval(row));
        assert_eq!(&got, expected, "{filter}");
    }
}

#[test]
fn parse_builds_the_expected_tree() {
    let expr = parse("id gt 10 and not aktiv").expect("parses");
    let expected = Expr::And {
        items: vec![
            Expr::Compare {
                op: CmpOp::Gt,
                left: Box::new(Expr::Field {
                    name: "id".into(),
                    pos: 0,
                }),
                right: Box::new(Expr::Literal {
                    value: Literal::Int(10),
                    pos: 6,
                }),
                pos: 3,
            },
            Expr::Not {
                inner: Box::new(Expr::Field {
                    name: "aktiv".into(),
                    pos: 17,
                }),
                pos: 13,
            },
        ],
        pos: 9,
    };
    assert_eq!(expr, expected);

    let expr = parse("titel eq 'it''s' or x eq datetime'2014-01-03T13:10:20.7'").expect("parses");
    let Expr::Or { items, .. } = expr else {
        panic!("or expected");
    };
    assert!(matches!(
        &items[0],
        Expr::Compare { right, .. } if **right == Expr::Literal { value: Literal::Str("it's".into()), pos: 9 }
    ));
    assert!(matches!(
        &items[1],
        Expr::Compare { right, .. }
            if **right == Expr::Literal { value: Literal::DateTime(t("2014-01-03T13:10:20.700")), pos: 25 }
    ));
}

#[test]
fn and_or_chains_are_flat() {
    let expr = parse("id eq 1 and id eq 2 and id eq 3 or id eq 4").expect("parses");
    let Expr::Or { items, .. } = &expr else {
        panic!("or expected");
    };
    assert_eq!(items.len(), 2);
    assert!(matches!(&items[0], Expr::And { items, .. } if items.len() == 3));
}

#[test]
fn datetime_literals_take_zero_to_three_fraction_digits() {
    for (literal, expected) in [
        ("2014-01-03T13:10", "2014-01-03T13:10:00.000"),
        ("2014-01-03T13:10:20", "2014-01-03T13:10:20.000"),
        ("2014-01-03T13:10:20.7", "2014-01-03T13:10:20.700"),
        ("2014-01-03T13:10:20.75", "2014-01-03T13:10:20.750"),
        ("2014-01-03T13:10:20.757", "2014-01-03T13:10:20.757"),
    ] {
        let expr = parse(&format!("opdateringsdato eq datetime'{literal}'")).expect("parses");
        let row = TestRow(vec![("opdateringsdato", Scalar::DateTime(t(expected)))]);
        assert!(expr.eval(&row), "{literal}");
        let later = TestRow(vec![(
            "opdateringsdato",
            Scalar::DateTime(t(expected).plus_millis(1)),
        )]);
        assert!(!expr.eval(&later), "{literal}");
    }
}

#[test]
fn a_sql_server_tick_misses_its_millisecond_literal_as_on_the_real_server() {
    let stored = Precision::SqlServer.quantize(t("2014-01-03T13:10:20.757"));
    let row = TestRow(vec![("opdateringsdato", Scalar::DateTime(stored))]);
    let matches = |filter: &str| parse(filter).expect("parses").eval(&row);
    assert!(!matches(
        "opdateringsdato eq datetime'2014-01-03T13:10:20.757'"
    ));
    assert!(!matches(
        "opdateringsdato ge datetime'2014-01-03T13:10:20.757'"
    ));
    assert!(matches(
        "opdateringsdato gt datetime'2014-01-03T13:10:20.756'"
    ));
    assert!(matches(
        "opdateringsdato lt datetime'2014-01-03T13:10:20.757'"
    ));
    assert!(matches(
        "year(opdateringsdato) eq 2014 and second(opdateringsdato) eq 20"
    ));
}

#[test]
fn malformed_filters_are_errors_not_panics() {
    let deep_parens = format!("{}id eq 1{}", "(".repeat(5000), ")".repeat(5000));
    let deep_nots = format!("{}aktiv", "not ".repeat(5000));
    let deep_calls = format!("{}titel{}", "trim(".repeat(5000), ")".repeat(5000));
    let cases: Vec<&str> = vec![
        "",
        "   ",
        "id eq",
        "eq 5",
        "id eq 5 eq 6",
        "id eq 5 ne true",
        "id lt 5 gt 2",
        "(id eq 5",
        "((id eq 5)",
        "id eq 5)",
        "()",
        "id eq 5 x",
        "id eq 5 and",
        "id eq 5 and and typeid eq 3",
        "or id eq 5",
        "not",
        "id eq 5 not",
        "titel eq 'abc",
        "titel eq 'it''s",
        "opdateringsdato gt datetime'2014-01-03'",
        "opdateringsdato gt datetime'2014-01-03T13:10:20.1234'",
        "opdateringsdato gt datetime'2014-01-03T25:00'",
        "opdateringsdato gt datetime'2014-01-03T13:10:20.757Z'",
        "opdateringsdato gt datetime'2014-01-03T13:10:20",
        "opdateringsdato gt datetimeoffset'2014-01-03T13:10:20Z'",
        "id eq guid'0000'",
        "id gt 1.5",
        "id gt 1e5",
        "id gt 99999999999999999999",
        "id gt 5x",
        "id gt 123and typeid eq 3",
        "id eq - 5",
        "id eq 5 - 3",
        "id EQ 5",
        "id eq 5 AND typeid eq 3",
        "id eq 5 && typeid eq 3",
        "id = 5",
        "Afstemning/any()",
        "Sag/titel eq 'x'",
        "substringof('x',titel,)",
        "substringof('x' titel)",
        "substringof(,titel)",
        "substringof('x',titel",
        "titel eq \"x\"",
        &deep_parens,
        &deep_nots,
        &deep_calls,
    ];
    for filter in cases {
        match parse(filter) {
            Err(FilterError::Syntax { .. }) => {}
            other => panic!("{filter:.60}: expected a syntax error, got {other:?}"),
        }
    }
}

#[test]
fn unknown_functions_and_wrong_arity_have_their_own_errors() {
    assert_eq!(
        parse("id eq 1 and foo(titel)"),
        Err(FilterError::UnknownFunction {
            pos: 12,
            name: "foo".into()
        })
    );
    assert!(matches!(
        parse("SubstringOf('x', titel)"),
        Err(FilterError::UnknownFunction { .. })
    ));
    for (filter, found) in [
        ("substringof('x')", 1),
        ("year(opdateringsdato, id) eq 1", 2),
        ("length() eq 0", 0),
        ("startswith(titel, 'a', 'b')", 3),
        ("substring(titel)", 1),
    ] {
        match parse(filter) {
            Err(FilterError::Arity {
                found: f, pos: 0, ..
            }) => assert_eq!(f, found, "{filter}"),
            other => panic!("{filter}: expected an arity error, got {other:?}"),
        }
    }
}

#[test]
fn syntax_errors_point_at_the_culprit() {
    let pos = |filter: &str| parse(filter).expect_err("invalid").pos();
    assert_eq!(pos(""), 0);
    assert_eq!(pos("id eq 5)"), 7);
    assert_eq!(pos("id eq 5 eq 6"), 8);
    assert_eq!(pos("id eq"), 5);
    assert_eq!(pos("titel eq 'abc"), 9);
    assert_eq!(pos("x gt datetime'2014'"), 5);
    assert_eq!(pos("(id eq 5"), 8);
    // Byte offsets: "mødeid" is 7 bytes.
    assert_eq!(pos("mødeid eq 5 %"), 13);
    let message = parse("id eq 5 eq 6").expect_err("invalid").to_string();
    assert!(
        message.contains("'eq' cannot follow a comparison"),
        "{message}"
    );
}

#[test]
fn very_long_flat_chains_parse_and_evaluate() {
    let filter = vec!["id eq 1"; 20_000].join(" or ") + " or id eq 42";
    let expr = parse(&filter).expect("parses");
    expr.validate(&schema).expect("valid");
    let [_, b, c] = rows();
    assert!(expr.eval(&b));
    assert!(!expr.eval(&c));
}

#[test]
fn validate_rejects_unknown_fields_first() {
    assert_eq!(
        parse("nosuchfield eq 1").expect("parses").validate(&schema),
        Err(FilterError::UnknownField {
            pos: 0,
            name: "nosuchfield".into()
        })
    );
    assert_eq!(
        parse("id eq 1 and (nosuch eq 'x' or other eq 2)")
            .expect("parses")
            .validate(&schema),
        Err(FilterError::UnknownField {
            pos: 13,
            name: "nosuch".into()
        })
    );
    // The unknown field wins over an earlier type error.
    assert!(matches!(
        parse("id eq 'x' and year(nosuch) eq 1")
            .expect("parses")
            .validate(&schema),
        Err(FilterError::UnknownField { name, .. }) if name == "nosuch"
    ));
    // Case-sensitive names.
    assert!(matches!(
        parse("ID eq 1").expect("parses").validate(&schema),
        Err(FilterError::UnknownField { .. })
    ));
}

#[test]
fn validate_rejects_type_mismatches() {
    for (filter, pos) in [
        ("id eq 'x'", 3),
        ("'x' eq id", 4),
        ("opdateringsdato gt 5", 16),
        ("titel gt datetime'2020-01-01T00:00'", 6),
        ("aktiv eq 1", 6),
        ("length(titel) eq 'x'", 14),
        ("year(titel) eq 2020", 5),
        ("substringof(id, titel)", 12),
        ("startswith(titel, 5)", 18),
        ("substring(titel, '1')", 17),
        ("id", 0),
        ("titel", 0),
        ("5", 0),
        ("trim(titel)", 0),
        ("not id eq 42", 4),
        ("id eq 1 and 5", 12),
        ("id eq 1 or titel", 11),
    ] {
        match parse(filter).expect("parses").validate(&schema) {
            Err(FilterError::TypeMismatch { pos: p, .. }) => assert_eq!(p, pos, "{filter}"),
            other => panic!("{filter}: expected a type mismatch, got {other:?}"),
        }
    }
    let message = parse("id eq 'x'")
        .expect("parses")
        .validate(&schema)
        .expect_err("mismatch")
        .to_string();
    assert_eq!(
        message,
        "type mismatch at 3: cannot compare integer with string using 'eq'"
    );
}

#[test]
fn unvalidated_type_mismatches_evaluate_as_false() {
    let [a, ..] = rows();
    for filter in [
        "id eq 'x'",
        "id ne 'x'",
        "year(titel) eq 2020",
        "id",
        "not (id eq 'x')",
    ] {
        let expr = parse(filter).expect("parses");
        let _ = expr.eval(&a);
    }
    assert!(!parse("id eq 'x'").expect("parses").eval(&a));
    assert!(!parse("id ne 'x'").expect("parses").eval(&a));
    assert!(!parse("id").expect("parses").eval(&a));
}

#[test]
fn fields_lists_each_name_once_in_order() {
    let expr = parse(
        "id eq 1 and (titel eq 'x' or id eq 2) and year(opdateringsdato) eq 2025 and not aktørid eq null",
    )
    .expect("parses");
    assert_eq!(expr.fields(), ["id", "titel", "opdateringsdato", "aktørid"]);
    assert!(parse("true").expect("parses").fields().is_empty());
}

fn int_range(lower: Bound<i64>, upper: Bound<i64>) -> Option<Range> {
    Some(Range {
        lower: lower.map(RangeValue::Int),
        upper: upper.map(RangeValue::Int),
    })
}

fn time_range(lower: Bound<&str>, upper: Bound<&str>) -> Option<Range> {
    Some(Range {
        lower: lower.map(|s| RangeValue::DateTime(t(s))),
        upper: upper.map(|s| RangeValue::DateTime(t(s))),
    })
}

#[test]
fn range_on_uses_top_level_conjuncts() {
    use Bound::{Excluded, Included, Unbounded};
    let range = |filter: &str, field: &str| parse(filter).expect("parses").range_on(field);

    assert_eq!(range("id gt 10", "id"), int_range(Excluded(10), Unbounded));
    let window = "opdateringsdato ge datetime'2014-01-03T13:10:20.757' and \
                  opdateringsdato lt datetime'2014-01-04T00:00' and typeid eq 3";
    assert_eq!(
        range(window, "opdateringsdato"),
        time_range(
            Included("2014-01-03T13:10:20.757"),
            Excluded("2014-01-04T00:00")
        )
    );
    assert_eq!(range(window, "typeid"), int_range(Included(3), Included(3)));
    assert_eq!(range(window, "id"), None);
    assert_eq!(
        range(
            "datetime'2026-10-01T12:46:51' le opdateringsdato",
            "opdateringsdato"
        ),
        time_range(Included("2026-10-01T12:46:51"), Unbounded)
    );
    assert_eq!(range("10 gt id", "id"), int_range(Unbounded, Excluded(10)));
    assert_eq!(range("id lt 5 or id gt 10", "id"), None);
    assert_eq!(range("typeid eq 1 or typeid eq 3", "typeid"), None);
    assert_eq!(range("not (id gt 5)", "id"), None);
    assert_eq!(range("id ne 5", "id"), None);
    assert_eq!(range("id eq null", "id"), None);
    assert_eq!(range("id gt typeid", "id"), None);
    assert_eq!(range("typeid eq 3", "id"), None);
    assert_eq!(
        range("id gt 5 and titel eq 'x'", "id"),
        int_range(Excluded(5), Unbounded)
    );
    assert_eq!(
        range("(id gt 10 and id ge 10) and (id le 20 and id lt 20)", "id"),
        int_range(Excluded(10), Excluded(20))
    );
    assert_eq!(
        range("id ge 10 and id gt 10 and id lt 20 and id le 20", "id"),
        int_range(Excluded(10), Excluded(20))
    );
    assert_eq!(
        range("id eq 5 and id gt 3 and id le 9", "id"),
        int_range(Included(5), Included(5))
    );
    // The keyset shape is an `or` at the top: range_on gives up …
    let keyset = "opdateringsdato gt datetime'2014-01-03T13:10:20.757' or \
                  (opdateringsdato eq datetime'2014-01-03T13:10:20.757' and id gt 42)";
    assert_eq!(range(keyset, "opdateringsdato"), None);
    // … but an `and` next to it still counts.
    assert_eq!(
        range(&format!("typeid eq 3 and ({keyset})"), "typeid"),
        int_range(Included(3), Included(3))
    );
}

#[test]
fn crossing_bounds_give_an_empty_range() {
    let range = |filter: &str| {
        parse(filter)
            .expect("parses")
            .range_on("id")
            .expect("constrained")
    };
    assert!(range("id gt 10 and id lt 5").is_empty());
    assert!(range("id gt 10 and id le 10").is_empty());
    assert!(range("id eq 3 and id eq 4").is_empty());
    assert!(!range("id ge 10 and id le 10").is_empty());
    assert!(!range("id gt 10").is_empty());
}

#[test]
fn range_hull_on_looks_through_or() {
    use Bound::{Excluded, Included, Unbounded};
    let hull = |filter: &str, field: &str| parse(filter).expect("parses").range_hull_on(field);
    let keyset = "opdateringsdato gt datetime'2014-01-03T13:10:20.757' or \
                  (opdateringsdato eq datetime'2014-01-03T13:10:20.757' and id gt 42)";
    assert_eq!(
        hull(keyset, "opdateringsdato"),
        time_range(Included("2014-01-03T13:10:20.757"), Unbounded)
    );
    assert_eq!(hull(keyset, "id"), None);
    assert_eq!(
        hull(&format!("typeid eq 3 and ({keyset})"), "opdateringsdato"),
        time_range(Included("2014-01-03T13:10:20.757"), Unbounded)
    );
    assert_eq!(
        hull("typeid eq 1 or typeid eq 3", "typeid"),
        int_range(Included(1), Included(3))
    );
    assert_eq!(
        hull("id gt 1 and id lt 9 or id gt 3 and id le 12", "id"),
        int_range(Excluded(1), Included(12))
    );
    assert_eq!(hull("id lt 5 or id gt 10", "id"), None);
    assert_eq!(hull("id gt 5 or titel eq 'x'", "id"), None);
    assert_eq!(
        hull(
            "slutdato eq null or slutdato ge datetime'2022-11-01T00:00:00'",
            "slutdato"
        ),
        None
    );
}

#[test]
fn date_parts_plan_as_calendar_ranges() {
    use Bound::{Excluded, Included, Unbounded};
    let range = |filter: &str| parse(filter).expect("parses").range_on("opdateringsdato");
    // year() reads the value rounded to the millisecond, so the range starts
    // one 1/3000 s unit before midnight.
    let shown = |s: &str| RangeValue::DateTime(SimTime(t(s).0 - 1));
    let between = |from: &str, to: &str| {
        Some(Range {
            lower: Included(shown(from)),
            upper: Excluded(shown(to)),
        })
    };
    assert_eq!(
        range(
            "year(opdateringsdato) eq 2025 and month(opdateringsdato) eq 9 and day(opdateringsdato) eq 9"
        ),
        between("2025-09-09T00:00", "2025-09-10T00:00")
    );
    assert_eq!(
        range("year(opdateringsdato) eq 2025 and month(opdateringsdato) eq 12"),
        between("2025-12-01T00:00", "2026-01-01T00:00")
    );
    assert_eq!(
        range("2025 eq year(opdateringsdato)"),
        between("2025-01-01T00:00", "2026-01-01T00:00")
    );
    assert_eq!(
        range("year(opdateringsdato) gt 2020"),
        Some(Range {
            lower: Included(shown("2021-01-01T00:00")),
            upper: Unbounded
        })
    );
    assert_eq!(range("month(opdateringsdato) eq 9"), None);
    // An impossible date falls back to the coarser range, which is still sound.
    assert_eq!(
        range(
            "year(opdateringsdato) eq 2025 and month(opdateringsdato) eq 2 and day(opdateringsdato) eq 30"
        ),
        between("2025-02-01T00:00", "2025-03-01T00:00")
    );
    assert_eq!(
        range("year(opdateringsdato) eq 2025 and month(opdateringsdato) eq 13"),
        between("2025-01-01T00:00", "2026-01-01T00:00")
    );
}

/// Brute force: whenever a row matches, its value lies in the hint.
#[test]
fn range_hints_never_exclude_a_matching_row() {
    let ops = ["eq", "ne", "gt", "ge", "lt", "le"];
    let mut atoms = Vec::new();
    for op in ops {
        for k in -1..=1 {
            atoms.push(format!("id {op} {k}"));
            atoms.push(format!("{k} {op} id"));
        }
    }
    atoms.push("id eq null".to_owned());
    atoms.push("typeid eq 1".to_owned());
    let values: Vec<Option<i64>> = vec![None, Some(-3), Some(-1), Some(0), Some(1), Some(2)];
    let mut filters = Vec::new();
    for a in &atoms {
        filters.push(a.clone());
        filters.push(format!("not ({a})"));
        for b in &atoms {
            filters.push(format!("{a} and {b}"));
            filters.push(format!("{a} or {b}"));
            filters.push(format!("{a} and not ({b})"));
            filters.push(format!("({a} or {b}) and id ge 0"));
        }
    }
    for filter in &filters {
        let expr = parse(filter).expect("parses");
        for plan in [expr.range_on("id"), expr.range_hull_on("id")] {
            let Some(range) = plan else { continue };
            assert_ne!(range, Range::UNBOUNDED, "{filter}");
            for value in &values {
                for typeid in [0, 1] {
                    let row = TestRow(vec![
                        ("id", value.map_or(Scalar::Null, Scalar::Int)),
                        ("typeid", Scalar::Int(typeid)),
                    ]);
                    if expr.eval(&row) {
                        let v = value.expect("a null never matches a hinted filter");
                        assert!(
                            range.contains(RangeValue::Int(v)),
                            "{filter}: {v} outside {range:?}"
                        );
                        assert!(!range.is_empty(), "{filter}");
                    }
                }
            }
        }
    }
}

#[test]
fn calendar_hints_hold_at_the_boundaries() {
    let base = [
        "2024-12-31T23:59:59.999",
        "2025-01-01T00:00",
        "2025-09-08T23:59:59.998",
        "2025-09-09T00:00",
        "2025-09-09T23:59:59.999",
        "2025-09-10T00:00",
        "2025-12-31T23:59:59.999",
        "2026-01-01T00:00",
    ];
    let mut times = Vec::new();
    for b in base {
        for delta in -4..=4 {
            times.push(SimTime(t(b).0 + delta));
        }
    }
    for filter in [
        "year(opdateringsdato) eq 2025",
        "year(opdateringsdato) ne 2025",
        "year(opdateringsdato) gt 2024",
        "year(opdateringsdato) ge 2025",
        "year(opdateringsdato) lt 2025",
        "year(opdateringsdato) le 2025",
        "2025 lt year(opdateringsdato)",
        "year(opdateringsdato) eq 2025 and month(opdateringsdato) eq 9",
        "year(opdateringsdato) eq 2025 and month(opdateringsdato) eq 12",
        "year(opdateringsdato) eq 2025 and month(opdateringsdato) eq 9 and day(opdateringsdato) eq 9",
        "year(opdateringsdato) eq 2025 and day(opdateringsdato) eq 10",
    ] {
        let expr = parse(filter).expect("parses");
        let range = expr.range_on("opdateringsdato");
        let mut inside = 0;
        let mut matching = 0;
        for &time in &times {
            let row = TestRow(vec![("opdateringsdato", Scalar::DateTime(time))]);
            let contained = range.is_none_or(|r| r.contains(RangeValue::DateTime(time)));
            if expr.eval(&row) {
                matching += 1;
                assert!(contained, "{filter}: {time:?} outside {range:?}");
            }
            inside += usize::from(contained);
        }
        // Tight, too: on these samples the hint holds exactly the matches,
        // except where it is deliberately coarser (ne; day without month).
        if !filter.contains(" ne ") && !filter.contains("day(opdateringsdato) eq 10") {
            assert_eq!(inside, matching, "{filter}");
        }
    }
}
