//! Per-row evaluation: the hot path.
//!
//! Values borrow from the row and from the expression's literals, so nothing
//! is allocated per row except by `tolower`, `toupper` and `concat`.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::ast::{CmpOp, Expr, Func, Literal};
use super::{Row, Scalar};
use crate::time::SimTime;

/// Milliseconds per day, for the clock-part functions.
const MS_PER_DAY: i64 = 86_400_000;

#[derive(Debug, Clone, PartialEq)]
enum Val<'a> {
    Null,
    Int(i64),
    Bool(bool),
    Str(Cow<'a, str>),
    DateTime(SimTime),
}

impl<'a> Val<'a> {
    fn into_str(self) -> Option<Cow<'a, str>> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    fn as_int(&self) -> Option<i64> {
        match self {
            Val::Int(n) => Some(*n),
            _ => None,
        }
    }

    fn as_datetime(&self) -> Option<SimTime> {
        match self {
            Val::DateTime(t) => Some(*t),
            _ => None,
        }
    }
}

impl Expr {
    /// Whether the row matches: the filter must come out *true* (neither
    /// false nor null).
    pub fn eval(&self, row: &dyn Row) -> bool {
        self.truth(row) == Some(true)
    }

    /// Kleene logic; `None` is SQL's "unknown", which only null booleans and
    /// functions of null produce (comparisons are always true or false).
    fn truth(&self, row: &dyn Row) -> Option<bool> {
        match self {
            Expr::And { items, .. } => {
                let mut unknown = false;
                for item in items {
                    match item.truth(row) {
                        Some(false) => return Some(false),
                        Some(true) => {}
                        None => unknown = true,
                    }
                }
                (!unknown).then_some(true)
            }
            Expr::Or { items, .. } => {
                let mut unknown = false;
                for item in items {
                    match item.truth(row) {
                        Some(true) => return Some(true),
                        Some(false) => {}
                        None => unknown = true,
                    }
                }
                (!unknown).then_some(false)
            }
            Expr::Not { inner, .. } => inner.truth(row).map(|b| !b),
            Expr::Compare {
                op, left, right, ..
            } => Some(compare(*op, &left.value(row), &right.value(row))),
            Expr::Literal { .. } | Expr::Field { .. } | Expr::Call { .. } => {
                match self.value(row) {
                    Val::Bool(b) => Some(b),
                    _ => None,
                }
            }
        }
    }

    fn value<'a>(&'a self, row: &'a dyn Row) -> Val<'a> {
        match self {
            Expr::Literal { value, .. } => match value {
                Literal::Null => Val::Null,
                Literal::Int(n) => Val::Int(*n),
                Literal::Bool(b) => Val::Bool(*b),
                Literal::Str(s) => Val::Str(Cow::Borrowed(s)),
                Literal::DateTime(t) => Val::DateTime(*t),
            },
            Expr::Field { name, .. } => match row.get(name) {
                Scalar::Null => Val::Null,
                Scalar::Int(n) => Val::Int(n),
                Scalar::Bool(b) => Val::Bool(b),
                Scalar::Str(s) => Val::Str(Cow::Borrowed(s)),
                Scalar::DateTime(t) => Val::DateTime(t),
            },
            Expr::And { .. } | Expr::Or { .. } | Expr::Not { .. } | Expr::Compare { .. } => {
                self.truth(row).map_or(Val::Null, Val::Bool)
            }
            Expr::Call { func, args, .. } => call(*func, args, row).unwrap_or(Val::Null),
        }
    }
}

/// Two-valued: see the module docs for why a null side makes every operator
/// false except `eq null` / `ne`.
fn compare(op: CmpOp, left: &Val<'_>, right: &Val<'_>) -> bool {
    let ord = match (left, right) {
        (Val::Null, Val::Null) => return op == CmpOp::Eq,
        (Val::Null, _) | (_, Val::Null) => return op == CmpOp::Ne,
        (Val::Int(a), Val::Int(b)) => a.cmp(b),
        (Val::Str(a), Val::Str(b)) => a.as_ref().cmp(b.as_ref()),
        (Val::DateTime(a), Val::DateTime(b)) => a.cmp(b),
        (Val::Bool(a), Val::Bool(b)) => a.cmp(b),
        // Only reachable without validate(); no row matches a type error.
        _ => return false,
    };
    match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
    }
}

/// `None` when an argument is null (or, unvalidated, of the wrong type):
/// functions of null are null.
fn call<'a>(func: Func, args: &'a [Expr], row: &'a dyn Row) -> Option<Val<'a>> {
    let arg = |i: usize| args.get(i).map_or(Val::Null, |e| e.value(row));
    let text = |i: usize| arg(i).into_str();
    let clock = |i: usize| {
        arg(i)
            .as_datetime()
            .map(|t| t.display_millis().rem_euclid(MS_PER_DAY) / 1000)
    };
    Some(match func {
        Func::SubstringOf => {
            let needle = text(0)?;
            Val::Bool(text(1)?.contains(needle.as_ref()))
        }
        Func::StartsWith => {
            let s = text(0)?;
            Val::Bool(s.starts_with(text(1)?.as_ref()))
        }
        Func::EndsWith => {
            let s = text(0)?;
            Val::Bool(s.ends_with(text(1)?.as_ref()))
        }
        Func::IndexOf => {
            let s = text(0)?;
            let needle = text(1)?;
            Val::Int(match s.find(needle.as_ref()) {
                Some(byte) => char_count(s.get(..byte).unwrap_or_default()),
                None => -1,
            })
        }
        Func::Substring => {
            let s = text(0)?;
            let start = arg(1).as_int()?;
            let len = match args.get(2) {
                Some(e) => Some(e.value(row).as_int()?),
                None => None,
            };
            Val::Str(map_str(s, |s| char_slice(s, start, len)))
        }
        Func::Concat => {
            let mut s = text(0)?.into_owned();
            s.push_str(&text(1)?);
            Val::Str(Cow::Owned(s))
        }
        Func::Length => Val::Int(char_count(&text(0)?)),
        Func::ToLower => Val::Str(Cow::Owned(text(0)?.to_lowercase())),
        Func::ToUpper => Val::Str(Cow::Owned(text(0)?.to_uppercase())),
        Func::Trim => Val::Str(map_str(text(0)?, str::trim)),
        Func::Year => Val::Int(arg(0).as_datetime()?.year()),
        Func::Month => Val::Int(arg(0).as_datetime()?.month()),
        Func::Day => Val::Int(arg(0).as_datetime()?.day()),
        Func::Hour => Val::Int(clock(0)? / 3600),
        Func::Minute => Val::Int(clock(0)? % 3600 / 60),
        Func::Second => Val::Int(clock(0)? % 60),
    })
}

fn char_count(s: &str) -> i64 {
    i64::try_from(s.chars().count()).unwrap_or(i64::MAX)
}

/// Narrows a string without copying it when it is borrowed.
fn map_str<'a>(s: Cow<'a, str>, f: impl FnOnce(&str) -> &str) -> Cow<'a, str> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(f(b)),
        Cow::Owned(o) => Cow::Owned(f(&o).to_owned()),
    }
}

/// OData's `substring` in characters, clamped like SQL Server's SUBSTRING
/// instead of failing like .NET's: out-of-range positions give less text.
fn char_slice(s: &str, start: i64, len: Option<i64>) -> &str {
    let byte_at = |s: &str, chars: i64| -> usize {
        usize::try_from(chars)
            .ok()
            .and_then(|n| s.char_indices().nth(n))
            .map_or(s.len(), |(b, _)| b)
    };
    let from = byte_at(s, start.max(0));
    let rest = s.get(from..).unwrap_or_default();
    match len {
        None => rest,
        Some(len) => rest.get(..byte_at(rest, len.max(0))).unwrap_or_default(),
    }
}
