//! The OData 3.0 `$filter` subset that ODA's clients send (ODA_API.md §5).
//!
//! The text is parsed once into an [`Expr`], checked once against the entity
//! set's schema with [`Expr::validate`], and then evaluated per row with
//! [`Expr::eval`]; type errors therefore surface as one HTTP 400 before any
//! row is read instead of as a per-row surprise.
//!
//! # Semantics
//!
//! The real server is ASP.NET Web API OData over SQL Server, which gives
//! filters C#'s lifted-operator meaning, so this module does the same:
//!
//! * **Comparisons are two-valued.** `f eq null` holds iff `f` is null,
//!   `f ne null` iff it is not, and `null eq null` holds. Every other
//!   comparison with a null side (`gt ge lt le`, or `eq`/`ne` against a
//!   non-null value) is simply *false* — never "unknown". Hence
//!   `not (x gt 5)` *matches* a row whose `x` is null, and
//!   `x ne 5` matches it too.
//! * **Null still propagates through functions and boolean fields.**
//!   `substringof('x', f)` with a null `f` is null, as is a null boolean
//!   field; `and`/`or`/`not` treat null as "unknown" (Kleene logic, like C#'s
//!   `bool?`), and a row is returned only when the whole filter is *true*.
//!   So `not substringof('x', f)` does not match a null `f`, but
//!   `substringof('x', f) eq false` does not either (a comparison with null).
//! * **Strings compare ordinally and case-sensitively**, by Unicode code point
//!   (which for UTF-8 is plain byte order): `'B' lt 'a'`, `'Å' gt 'Z'`. The
//!   real database most likely uses a case-insensitive Danish collation; the
//!   simulator deliberately stays with the simpler, predictable rule.
//! * **Date-times** compare as [`SimTime`] values, so a literal in
//!   milliseconds against a stored SQL Server tick behaves as on the real
//!   server (see [`crate::time`]). `year()`, `month()` … read the value as
//!   SQL Server shows it, rounded to the millisecond.
//! * String functions count characters, not bytes (`length('mødeid')` is 6),
//!   and `indexof`/`substring` positions are 0-based as in OData 3.
//! * Comparison operators do not chain: `a eq 1 eq 2` is a syntax error
//!   (OData would read `(a eq 1) eq 2`, which no client means); parenthesise
//!   to compare a comparison.
//! * Keywords, function names and field names are case-sensitive.
//!
//! [`Expr::eval`] assumes [`Expr::validate`] accepted the expression; an
//! unvalidated type mismatch evaluates as a false comparison, never a panic.

mod ast;
mod check;
mod eval;
mod lexer;
mod parser;
mod plan;
#[cfg(test)]
mod tests;

use std::fmt;

use crate::time::SimTime;

pub use ast::{CmpOp, Expr, Func, Literal};
pub use plan::{Range, RangeValue};

/// Parses a `$filter` value (already percent-decoded).
pub fn parse(text: &str) -> Result<Expr, FilterError> {
    parser::parse(text)
}

/// Why a filter was rejected. Every variant maps to HTTP 400; `pos` is a byte
/// offset into the filter text so a log line can point at the culprit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("syntax error at {pos}: {message}")]
    Syntax { pos: usize, message: String },
    #[error("unknown function '{name}' at {pos}")]
    UnknownFunction { pos: usize, name: String },
    #[error("function '{name}' at {pos} takes {expected} argument(s), not {found}")]
    Arity {
        pos: usize,
        name: String,
        expected: &'static str,
        found: usize,
    },
    /// Kept apart from the other errors because the server may be configured
    /// to mimic ODA's reported quirk of ignoring such a filter altogether.
    #[error("unknown field '{name}' at {pos}")]
    UnknownField { pos: usize, name: String },
    #[error("type mismatch at {pos}: {message}")]
    TypeMismatch { pos: usize, message: String },
}

impl FilterError {
    pub fn pos(&self) -> usize {
        match self {
            FilterError::Syntax { pos, .. }
            | FilterError::UnknownFunction { pos, .. }
            | FilterError::Arity { pos, .. }
            | FilterError::UnknownField { pos, .. }
            | FilterError::TypeMismatch { pos, .. } => *pos,
        }
    }
}

/// A value the row hands to the evaluator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Int(i64),
    Bool(bool),
    Str(&'a str),
    DateTime(SimTime),
}

/// The declared type of a field, for validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Int,
    Bool,
    Str,
    DateTime,
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldType::Int => "integer",
            FieldType::Bool => "boolean",
            FieldType::Str => "string",
            FieldType::DateTime => "datetime",
        })
    }
}

/// Read access to one record. The evaluator only asks for fields that
/// [`Expr::validate`] accepted; an absent value is [`Scalar::Null`].
pub trait Row {
    fn get(&self, field: &str) -> Scalar<'_>;
}
