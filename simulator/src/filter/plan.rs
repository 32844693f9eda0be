//! Index hints: which slice of an ordered index can hold the matching rows.
//!
//! A hint only has to be *sound* — it may be wider than the exact answer but
//! must never exclude a matching row — because the caller still evaluates the
//! whole filter on every row it visits. Rows whose field is null never lie in
//! a hint: a conjunct such as `id gt 10` is false for them, so an index may
//! leave nulls out.

use std::cmp::Ordering;
use std::ops::Bound;

use super::ast::{CmpOp, Expr, Func, Literal};
use crate::time::{SimTime, UNITS_PER_SECOND};

/// A key of an ordered index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RangeValue {
    Int(i64),
    DateTime(SimTime),
}

impl RangeValue {
    /// `None` across kinds, which a range never mixes.
    fn compare(self, other: RangeValue) -> Option<Ordering> {
        match (self, other) {
            (RangeValue::Int(a), RangeValue::Int(b)) => Some(a.cmp(&b)),
            (RangeValue::DateTime(a), RangeValue::DateTime(b)) => Some(a.cmp(&b)),
            _ => None,
        }
    }

    fn same_kind(self, other: RangeValue) -> bool {
        self.compare(other).is_some()
    }
}

/// Bounds on one field; both ends hold the same kind of [`RangeValue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub lower: Bound<RangeValue>,
    pub upper: Bound<RangeValue>,
}

impl Range {
    pub const UNBOUNDED: Range = Range {
        lower: Bound::Unbounded,
        upper: Bound::Unbounded,
    };

    /// True when the bounds cross (`id gt 10 and id lt 5`) or meet with an
    /// excluded end. Check it before `BTreeMap::range`, which panics on
    /// exactly such bounds.
    pub fn is_empty(&self) -> bool {
        match (self.lower, self.upper) {
            (Bound::Included(l), Bound::Included(u)) => l.compare(u) == Some(Ordering::Greater),
            (Bound::Included(l) | Bound::Excluded(l), Bound::Included(u) | Bound::Excluded(u)) => {
                matches!(l.compare(u), Some(Ordering::Greater | Ordering::Equal))
            }
            _ => false,
        }
    }

    pub fn contains(&self, value: RangeValue) -> bool {
        let above = match self.lower {
            Bound::Unbounded => true,
            Bound::Included(l) => l.compare(value).is_some_and(Ordering::is_le),
            Bound::Excluded(l) => l.compare(value).is_some_and(Ordering::is_lt),
        };
        let below = match self.upper {
            Bound::Unbounded => true,
            Bound::Included(u) => value.compare(u).is_some_and(Ordering::is_le),
            Bound::Excluded(u) => value.compare(u).is_some_and(Ordering::is_lt),
        };
        above && below
    }

    /// The smallest range holding both (for `or`).
    fn hull(self, other: Range) -> Range {
        Range {
            lower: looser(self.lower, other.lower, Ordering::Less),
            upper: looser(self.upper, other.upper, Ordering::Greater),
        }
    }
}

fn bound_value(b: Bound<RangeValue>) -> Option<RangeValue> {
    match b {
        Bound::Included(v) | Bound::Excluded(v) => Some(v),
        Bound::Unbounded => None,
    }
}

/// The tighter of two bounds at the same end: `outward` is the direction in
/// which that end widens (`Less` for a lower bound). A bound of another kind
/// is ignored, which only widens the result.
fn tighter(a: Bound<RangeValue>, b: Bound<RangeValue>, outward: Ordering) -> Bound<RangeValue> {
    let (Some(va), Some(vb)) = (bound_value(a), bound_value(b)) else {
        return if matches!(a, Bound::Unbounded) { b } else { a };
    };
    match va.compare(vb) {
        None => a,
        Some(Ordering::Equal) if matches!(a, Bound::Excluded(_)) => a,
        Some(Ordering::Equal) => b,
        Some(ord) if ord == outward => b,
        Some(_) => a,
    }
}

/// The looser of two bounds at the same end (see [`tighter`]).
fn looser(a: Bound<RangeValue>, b: Bound<RangeValue>, outward: Ordering) -> Bound<RangeValue> {
    let (Some(va), Some(vb)) = (bound_value(a), bound_value(b)) else {
        return Bound::Unbounded;
    };
    match va.compare(vb) {
        None => Bound::Unbounded,
        Some(Ordering::Equal) if matches!(a, Bound::Included(_)) => a,
        Some(Ordering::Equal) => b,
        Some(ord) if ord == outward => a,
        Some(_) => b,
    }
}

/// `year(f)`, `month(f)` or `day(f)` of the planned field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Year,
    Month,
    Day,
}

/// What the conjuncts seen so far say about the field.
#[derive(Debug, Default)]
struct Acc {
    lower: Option<Bound<RangeValue>>,
    upper: Option<Bound<RangeValue>>,
    year: Option<i64>,
    month: Option<i64>,
    day: Option<i64>,
}

impl Acc {
    fn kind_fits(&self, value: RangeValue) -> bool {
        [self.lower, self.upper]
            .into_iter()
            .flatten()
            .filter_map(bound_value)
            .all(|v| v.same_kind(value))
    }

    fn intersect(&mut self, range: Range) {
        let values = [range.lower, range.upper]
            .into_iter()
            .filter_map(bound_value);
        if !values.clone().all(|v| self.kind_fits(v)) {
            return;
        }
        if values.count() == 0 {
            return;
        }
        let lower = self.lower.unwrap_or(Bound::Unbounded);
        let upper = self.upper.unwrap_or(Bound::Unbounded);
        self.lower = Some(tighter(lower, range.lower, Ordering::Less));
        self.upper = Some(tighter(upper, range.upper, Ordering::Greater));
    }

    fn compare(&mut self, op: CmpOp, value: RangeValue) {
        let (lower, upper) = match op {
            CmpOp::Eq => (Bound::Included(value), Bound::Included(value)),
            CmpOp::Gt => (Bound::Excluded(value), Bound::Unbounded),
            CmpOp::Ge => (Bound::Included(value), Bound::Unbounded),
            CmpOp::Lt => (Bound::Unbounded, Bound::Excluded(value)),
            CmpOp::Le => (Bound::Unbounded, Bound::Included(value)),
            CmpOp::Ne => return,
        };
        self.intersect(Range { lower, upper });
    }

    fn date_part(&mut self, part: Part, op: CmpOp, n: i64) {
        match (part, op) {
            (Part::Year, CmpOp::Eq) => {
                self.year.get_or_insert(n);
            }
            (Part::Month, CmpOp::Eq) => {
                self.month.get_or_insert(n);
            }
            (Part::Day, CmpOp::Eq) => {
                self.day.get_or_insert(n);
            }
            (Part::Year, _) => {
                // year(f) gt 2020 is f ≥ start of 2021, and so on.
                let (year, op) = match op {
                    CmpOp::Gt => (n.checked_add(1), CmpOp::Ge),
                    CmpOp::Le => (n.checked_add(1), CmpOp::Lt),
                    other => (Some(n), other),
                };
                if let Some(start) = year.and_then(|y| day_start(y, 1, 1)) {
                    self.compare(op, RangeValue::DateTime(shown_boundary(start)));
                }
            }
            _ => {}
        }
    }

    fn finish(mut self) -> Option<Range> {
        if let Some(range) = self.calendar_range() {
            self.intersect(range);
        }
        let range = Range {
            lower: self.lower.unwrap_or(Bound::Unbounded),
            upper: self.upper.unwrap_or(Bound::Unbounded),
        };
        (range != Range::UNBOUNDED).then_some(range)
    }

    /// The year, month or day pinned down by `year(f) eq …` with optional
    /// `month(f) eq …` and `day(f) eq …` (a month or day alone spans years).
    /// A date that does not exist falls back to the coarser period, which is
    /// still sound.
    fn calendar_range(&self) -> Option<Range> {
        let year = self.year?;
        let day = self.month.zip(self.day).and_then(|(month, day)| {
            let start = day_start(year, month, day)?;
            Some((start, Some(SimTime(start.0 + 86_400 * UNITS_PER_SECOND))))
        });
        let month = || {
            let month = self.month?;
            let next = if month == 12 {
                day_start(year + 1, 1, 1)
            } else {
                day_start(year, month + 1, 1)
            };
            Some((day_start(year, month, 1)?, next))
        };
        let whole_year = || Some((day_start(year, 1, 1)?, day_start(year + 1, 1, 1)));
        let (start, end) = day.or_else(month).or_else(whole_year)?;
        Some(Range {
            lower: Bound::Included(RangeValue::DateTime(shown_boundary(start))),
            upper: end.map_or(Bound::Unbounded, |end| {
                Bound::Excluded(RangeValue::DateTime(shown_boundary(end)))
            }),
        })
    }
}

/// Midnight starting a calendar day, if the day exists.
fn day_start(year: i64, month: i64, day: i64) -> Option<SimTime> {
    if !(0..=9999).contains(&year) || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    SimTime::parse(&format!("{year:04}-{month:02}-{day:02}T00:00"))
}

/// The first stored value that `year()` & co. place at or after `t`: they
/// read the value rounded to the millisecond, so one unit before a midnight
/// already shows as that midnight.
fn shown_boundary(t: SimTime) -> SimTime {
    SimTime(t.0 - 1)
}

impl Expr {
    /// The tightest range on `field` implied by the expression's top-level
    /// `and` conjuncts — comparisons of `field` with an integer or datetime
    /// literal (either operand order), plus `year(field)` comparisons with
    /// optional `month`/`day` equalities — or `None` if the conjuncts do not
    /// constrain it (an `or` at the top, no mention, …). `not` is never
    /// looked through: `not (id gt 5)` also matches a null `id`, which no
    /// range holds.
    pub fn range_on(&self, field: &str) -> Option<Range> {
        self.constraint(field, false)
    }

    /// Like [`Expr::range_on`], but also looks through `or`: the hull of the
    /// branches' ranges when every branch constrains the field. This plans
    /// the keyset shape `t gt X or (t eq X and id gt N)` as `t ≥ X`.
    pub fn range_hull_on(&self, field: &str) -> Option<Range> {
        self.constraint(field, true)
    }

    fn constraint(&self, field: &str, through_or: bool) -> Option<Range> {
        let mut acc = Acc::default();
        self.feed(field, through_or, &mut acc);
        acc.finish()
    }

    fn feed(&self, field: &str, through_or: bool, acc: &mut Acc) {
        match self {
            Expr::And { items, .. } => {
                for item in items {
                    item.feed(field, through_or, acc);
                }
            }
            Expr::Or { items, .. } if through_or => {
                let mut hull: Option<Range> = None;
                for item in items {
                    let Some(range) = item.constraint(field, through_or) else {
                        return;
                    };
                    hull = Some(hull.map_or(range, |h| h.hull(range)));
                }
                if let Some(range) = hull {
                    acc.intersect(range);
                }
            }
            Expr::Compare {
                op, left, right, ..
            } => {
                let (op, subject, literal) = match (&**left, &**right) {
                    (subject, Expr::Literal { value, .. }) => (*op, subject, value),
                    (Expr::Literal { value, .. }, subject) => (op.flipped(), subject, value),
                    _ => return,
                };
                match (subject, literal) {
                    (Expr::Field { name, .. }, Literal::Int(n)) if name == field => {
                        acc.compare(op, RangeValue::Int(*n));
                    }
                    (Expr::Field { name, .. }, Literal::DateTime(t)) if name == field => {
                        acc.compare(op, RangeValue::DateTime(*t));
                    }
                    (Expr::Call { func, args, .. }, Literal::Int(n)) => {
                        let part = match func {
                            Func::Year => Part::Year,
                            Func::Month => Part::Month,
                            Func::Day => Part::Day,
                            _ => return,
                        };
                        if let [Expr::Field { name, .. }] = args.as_slice()
                            && name == field
                        {
                            acc.date_part(part, op, *n);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}
