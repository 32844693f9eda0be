//! The parsed form of a filter.
//!
//! Every node keeps the byte offset of the token that introduced it, so that
//! [`Expr::validate`] can point at the offending part of the text.

use std::fmt;

use crate::time::SimTime;

/// A parsed filter.
///
/// `and`/`or` chains are n-ary rather than nested pairs: a long
/// `id eq 1 or id eq 2 or …` from a client then costs no recursion depth,
/// so neither evaluation nor dropping it can exhaust the stack.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal {
        value: Literal,
        pos: usize,
    },
    Field {
        name: String,
        pos: usize,
    },
    /// `pos` is that of the first `and`.
    And {
        items: Vec<Expr>,
        pos: usize,
    },
    /// `pos` is that of the first `or`.
    Or {
        items: Vec<Expr>,
        pos: usize,
    },
    Not {
        inner: Box<Expr>,
        pos: usize,
    },
    /// `pos` is that of the operator.
    Compare {
        op: CmpOp,
        left: Box<Expr>,
        right: Box<Expr>,
        pos: usize,
    },
    /// Arity is checked by the parser, so evaluation may rely on it.
    Call {
        func: Func,
        args: Vec<Expr>,
        pos: usize,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Int(i64),
    Bool(bool),
    Str(String),
    DateTime(SimTime),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    pub fn from_keyword(word: &str) -> Option<Self> {
        Some(match word {
            "eq" => CmpOp::Eq,
            "ne" => CmpOp::Ne,
            "gt" => CmpOp::Gt,
            "ge" => CmpOp::Ge,
            "lt" => CmpOp::Lt,
            "le" => CmpOp::Le,
            _ => return None,
        })
    }

    pub fn keyword(self) -> &'static str {
        match self {
            CmpOp::Eq => "eq",
            CmpOp::Ne => "ne",
            CmpOp::Gt => "gt",
            CmpOp::Ge => "ge",
            CmpOp::Lt => "lt",
            CmpOp::Le => "le",
        }
    }

    /// The operator that says the same with the operands swapped
    /// (`5 lt id` is `id gt 5`).
    pub fn flipped(self) -> Self {
        match self {
            CmpOp::Eq => CmpOp::Eq,
            CmpOp::Ne => CmpOp::Ne,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
        }
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// The canonical functions supported. Anything else is rejected at parse
/// time rather than silently evaluated as false.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Func {
    /// `substringof(needle, haystack)`: OData 3's argument order.
    SubstringOf,
    StartsWith,
    EndsWith,
    IndexOf,
    Substring,
    Concat,
    Length,
    ToLower,
    ToUpper,
    Trim,
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

impl Func {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "substringof" => Func::SubstringOf,
            "startswith" => Func::StartsWith,
            "endswith" => Func::EndsWith,
            "indexof" => Func::IndexOf,
            "substring" => Func::Substring,
            "concat" => Func::Concat,
            "length" => Func::Length,
            "tolower" => Func::ToLower,
            "toupper" => Func::ToUpper,
            "trim" => Func::Trim,
            "year" => Func::Year,
            "month" => Func::Month,
            "day" => Func::Day,
            "hour" => Func::Hour,
            "minute" => Func::Minute,
            "second" => Func::Second,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Func::SubstringOf => "substringof",
            Func::StartsWith => "startswith",
            Func::EndsWith => "endswith",
            Func::IndexOf => "indexof",
            Func::Substring => "substring",
            Func::Concat => "concat",
            Func::Length => "length",
            Func::ToLower => "tolower",
            Func::ToUpper => "toupper",
            Func::Trim => "trim",
            Func::Year => "year",
            Func::Month => "month",
            Func::Day => "day",
            Func::Hour => "hour",
            Func::Minute => "minute",
            Func::Second => "second",
        }
    }

    /// Inclusive bounds on the argument count, and their wording for errors.
    pub(super) fn arity(self) -> (usize, usize, &'static str) {
        match self {
            Func::SubstringOf
            | Func::StartsWith
            | Func::EndsWith
            | Func::IndexOf
            | Func::Concat => (2, 2, "2"),
            Func::Substring => (2, 3, "2 or 3"),
            Func::Length
            | Func::ToLower
            | Func::ToUpper
            | Func::Trim
            | Func::Year
            | Func::Month
            | Func::Day
            | Func::Hour
            | Func::Minute
            | Func::Second => (1, 1, "1"),
        }
    }
}

impl fmt::Display for Func {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Expr {
    /// The byte offset reported for errors about this node.
    pub fn pos(&self) -> usize {
        match self {
            Expr::Literal { pos, .. }
            | Expr::Field { pos, .. }
            | Expr::And { pos, .. }
            | Expr::Or { pos, .. }
            | Expr::Not { pos, .. }
            | Expr::Compare { pos, .. }
            | Expr::Call { pos, .. } => *pos,
        }
    }

    /// Every field name the expression mentions, once each, in order of first
    /// mention (for "unknown field" handling: the server answers 400, or — in
    /// a quirk mode — ignores the whole filter).
    pub fn fields(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        self.visit_fields(&mut |name, _| {
            if !out.contains(&name) {
                out.push(name);
            }
        });
        out
    }

    pub(super) fn visit_fields<'a>(&'a self, f: &mut dyn FnMut(&'a str, usize)) {
        match self {
            Expr::Literal { .. } => {}
            Expr::Field { name, pos } => f(name, *pos),
            Expr::And { items, .. } | Expr::Or { items, .. } | Expr::Call { args: items, .. } => {
                for item in items {
                    item.visit_fields(f);
                }
            }
            Expr::Not { inner, .. } => inner.visit_fields(f),
            Expr::Compare { left, right, .. } => {
                left.visit_fields(f);
                right.visit_fields(f);
            }
        }
    }
}
