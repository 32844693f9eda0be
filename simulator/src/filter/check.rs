//! Type checking against an entity set's schema, done once per request so
//! that evaluation never meets a type error.

use super::ast::{Expr, Func, Literal};
use super::{FieldType, FilterError};

/// The static type of a sub-expression; `None` is the `null` literal, which
/// fits anywhere.
type Ty = Option<FieldType>;

fn name(ty: Ty) -> String {
    ty.map_or_else(|| "null".to_owned(), |t| t.to_string())
}

fn mismatch(pos: usize, message: String) -> FilterError {
    FilterError::TypeMismatch { pos, message }
}

impl Expr {
    /// Checks field names and operand types against a schema. Unknown fields
    /// are reported before any type error, so the answer about a field does
    /// not depend on where in the filter it appears.
    pub fn validate(&self, lookup: &dyn Fn(&str) -> Option<FieldType>) -> Result<(), FilterError> {
        let mut unknown = None;
        self.visit_fields(&mut |field, pos| {
            if unknown.is_none() && lookup(field).is_none() {
                unknown = Some(FilterError::UnknownField {
                    pos,
                    name: field.to_owned(),
                });
            }
        });
        if let Some(err) = unknown {
            return Err(err);
        }
        match self.type_of(lookup)? {
            None | Some(FieldType::Bool) => Ok(()),
            Some(other) => Err(mismatch(
                self.pos(),
                format!("a filter must be a boolean expression, not {other}"),
            )),
        }
    }

    fn type_of(&self, lookup: &dyn Fn(&str) -> Option<FieldType>) -> Result<Ty, FilterError> {
        Ok(match self {
            Expr::Literal { value, .. } => match value {
                Literal::Null => None,
                Literal::Int(_) => Some(FieldType::Int),
                Literal::Bool(_) => Some(FieldType::Bool),
                Literal::Str(_) => Some(FieldType::Str),
                Literal::DateTime(_) => Some(FieldType::DateTime),
            },
            Expr::Field { name, pos } => {
                Some(lookup(name).ok_or_else(|| FilterError::UnknownField {
                    pos: *pos,
                    name: name.clone(),
                })?)
            }
            Expr::And { items, .. } | Expr::Or { items, .. } => {
                let word = if matches!(self, Expr::And { .. }) {
                    "and"
                } else {
                    "or"
                };
                for item in items {
                    item.expect_bool(lookup, word)?;
                }
                Some(FieldType::Bool)
            }
            Expr::Not { inner, .. } => {
                inner.expect_bool(lookup, "not")?;
                Some(FieldType::Bool)
            }
            Expr::Compare {
                op,
                left,
                right,
                pos,
            } => {
                // Every operator takes two operands of one type (booleans
                // order false < true), or null on either side.
                let (l, r) = (left.type_of(lookup)?, right.type_of(lookup)?);
                let fits = match (l, r) {
                    (None, _) | (_, None) => true,
                    (Some(a), Some(b)) => a == b,
                };
                if !fits {
                    return Err(mismatch(
                        *pos,
                        format!("cannot compare {} with {} using '{op}'", name(l), name(r)),
                    ));
                }
                Some(FieldType::Bool)
            }
            Expr::Call { func, args, pos } => {
                let (params, result) = signature(*func);
                for (i, (arg, want)) in args.iter().zip(params).enumerate() {
                    let got = arg.type_of(lookup)?;
                    if got.is_some_and(|got| got != *want) {
                        return Err(mismatch(
                            arg.pos(),
                            format!(
                                "argument {} of {func} must be {want}, not {}",
                                i + 1,
                                name(got)
                            ),
                        ));
                    }
                }
                if args.len() > params.len() {
                    // The parser enforces arity; this only guards hand-built trees.
                    return Err(mismatch(*pos, format!("too many arguments to {func}")));
                }
                Some(result)
            }
        })
    }

    fn expect_bool(
        &self,
        lookup: &dyn Fn(&str) -> Option<FieldType>,
        context: &str,
    ) -> Result<(), FilterError> {
        match self.type_of(lookup)? {
            None | Some(FieldType::Bool) => Ok(()),
            Some(other) => Err(mismatch(
                self.pos(),
                format!("the operand of '{context}' must be boolean, not {other}"),
            )),
        }
    }
}

/// Parameter types (the longest form) and result type of each function.
fn signature(func: Func) -> (&'static [FieldType], FieldType) {
    use FieldType::{Bool, DateTime, Int, Str};
    match func {
        Func::SubstringOf | Func::StartsWith | Func::EndsWith => (&[Str, Str], Bool),
        Func::IndexOf => (&[Str, Str], Int),
        Func::Substring => (&[Str, Int, Int], Str),
        Func::Concat => (&[Str, Str], Str),
        Func::Length => (&[Str], Int),
        Func::ToLower | Func::ToUpper | Func::Trim => (&[Str], Str),
        Func::Year | Func::Month | Func::Day | Func::Hour | Func::Minute | Func::Second => {
            (&[DateTime], Int)
        }
    }
}
