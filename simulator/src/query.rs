//! OData query options: parsing, planning and running them over a table.
//!
//! The planner serves the two orders a change-capture client pages
//! through from an index — `$orderby=opdateringsdato,id` over the time
//! index and `$orderby=id` over the id index — and falls back to a sort for
//! anything else. The whole filter is evaluated on every row either way;
//! the index only narrows where to look.

use std::cmp::Ordering;
use std::ops::Bound;

use crate::filter::{self, Expr, RangeValue};
use crate::store::{Cell, Row, RowView, Table};
use crate::time::SimTime;

/// Why a query is malformed (HTTP 400 with an empty body, as ODA answers).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QueryError {
    #[error("malformed query string")]
    Encoding,
    #[error("unknown query option {0}")]
    UnknownOption(String),
    #[error("option {0} given twice")]
    Duplicate(String),
    #[error("bad value for {option}: {value}")]
    BadValue { option: String, value: String },
    #[error("bad $filter: {0}")]
    Filter(#[from] filter::FilterError),
    #[error("unknown field {0}")]
    UnknownField(String),
    #[error("bad $expand: {0}")]
    Expand(String),
}

/// Response format asked for with `$format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseFormat {
    #[default]
    Json,
    Xml,
}

/// The query options of one request, decoded.
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    pub filter: Option<String>,
    pub orderby: Option<String>,
    pub select: Option<String>,
    pub expand: Option<String>,
    pub skip: usize,
    pub top: Option<usize>,
    pub inlinecount: bool,
    pub format: ResponseFormat,
    /// Every option in the order sent, decoded, for building nextLinks.
    pub pairs: Vec<(String, String)>,
}

const OPTIONS: &[&str] = &[
    "$filter",
    "$orderby",
    "$select",
    "$expand",
    "$skip",
    "$top",
    "$inlinecount",
    "$format",
];

impl QueryOptions {
    /// Parses a raw query string (`a=b&c=d`, percent-encoded).
    pub fn parse(raw: Option<&str>) -> Result<Self, QueryError> {
        let mut options = QueryOptions::default();
        let Some(raw) = raw else {
            return Ok(options);
        };
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            let key = percent_decode(key)?;
            let value = percent_decode(value)?;
            if !key.starts_with('$') {
                // Custom parameters are ignored by the server, but kept in links.
                options.pairs.push((key, value));
                continue;
            }
            if !OPTIONS.contains(&key.as_str()) {
                return Err(QueryError::UnknownOption(key));
            }
            if options.pairs.iter().any(|(k, _)| *k == key) {
                return Err(QueryError::Duplicate(key));
            }
            let bad = || QueryError::BadValue {
                option: key.clone(),
                value: value.clone(),
            };
            match key.as_str() {
                "$filter" => options.filter = Some(value.clone()),
                "$orderby" => options.orderby = Some(value.clone()),
                "$select" => options.select = Some(value.clone()),
                "$expand" => options.expand = Some(value.clone()),
                "$skip" => options.skip = value.trim().parse().map_err(|_| bad())?,
                "$top" => options.top = Some(value.trim().parse().map_err(|_| bad())?),
                "$inlinecount" => {
                    options.inlinecount = match value.as_str() {
                        "allpages" => true,
                        "none" => false,
                        _ => return Err(bad()),
                    }
                }
                "$format" => {
                    options.format = match value.as_str() {
                        "json" | "application/json" => ResponseFormat::Json,
                        "xml" | "atom" | "application/atom+xml" => ResponseFormat::Xml,
                        _ => return Err(bad()),
                    }
                }
                _ => return Err(QueryError::UnknownOption(key)),
            }
            options.pairs.push((key, value));
        }
        Ok(options)
    }
}

/// Decodes `%XX` escapes (UTF-8) and `+` as a space, as ASP.NET does.
pub fn percent_decode(text: &str) -> Result<String, QueryError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(QueryError::Encoding)?;
                let hex = std::str::from_utf8(hex).map_err(|_| QueryError::Encoding)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| QueryError::Encoding)?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| QueryError::Encoding)
}

pub use oda_model::odata::escape_data_string as percent_encode;

/// One `$orderby` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    pub field: usize,
    pub descending: bool,
}

/// A query checked against a table and ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub filter: Option<Expr>,
    pub order: Vec<SortKey>,
    pub select: Option<Vec<usize>>,
}

/// How unknown fields in `$filter` are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownFieldPolicy {
    /// HTTP 400, as OData servers normally answer.
    Reject,
    /// The reported ODA quirk: the whole filter is ignored.
    IgnoreFilter,
}

impl Plan {
    pub fn new(
        table: &Table,
        options: &QueryOptions,
        policy: UnknownFieldPolicy,
    ) -> Result<Self, QueryError> {
        let lookup = |name: &str| table.field_type(name);
        let filter = match options.filter.as_deref() {
            None => None,
            Some(text) => {
                let expr = filter::parse(text)?;
                let unknown = expr
                    .fields()
                    .into_iter()
                    .find(|f| lookup(f).is_none())
                    .map(str::to_owned);
                match (unknown, policy) {
                    (Some(_), UnknownFieldPolicy::IgnoreFilter) => None,
                    (Some(field), UnknownFieldPolicy::Reject) => {
                        return Err(QueryError::UnknownField(field));
                    }
                    (None, _) => {
                        expr.validate(&lookup)?;
                        Some(expr)
                    }
                }
            }
        };
        let id = table
            .field_index("id")
            .ok_or_else(|| QueryError::UnknownField("id".into()))?;
        let mut order = Vec::new();
        if let Some(text) = options.orderby.as_deref() {
            for item in text.split(',') {
                let mut words = item.split_whitespace();
                let name = words.next().ok_or_else(|| QueryError::BadValue {
                    option: "$orderby".into(),
                    value: text.into(),
                })?;
                let descending = match words.next() {
                    None | Some("asc") => false,
                    Some("desc") => true,
                    Some(_) => {
                        return Err(QueryError::BadValue {
                            option: "$orderby".into(),
                            value: text.into(),
                        });
                    }
                };
                if words.next().is_some() {
                    return Err(QueryError::BadValue {
                        option: "$orderby".into(),
                        value: text.into(),
                    });
                }
                let field = table
                    .field_index(name)
                    .ok_or_else(|| QueryError::UnknownField(name.to_owned()))?;
                order.push(SortKey { field, descending });
            }
        }
        // Web API OData appends the key so paging has a stable order.
        if !order.iter().any(|k| k.field == id) {
            order.push(SortKey {
                field: id,
                descending: false,
            });
        }
        let select = match options.select.as_deref() {
            None => None,
            Some(text) if text.trim() == "*" => None,
            Some(text) => {
                let mut indices = Vec::new();
                for name in text.split(',').map(str::trim) {
                    let i = table
                        .field_index(name)
                        .ok_or_else(|| QueryError::UnknownField(name.to_owned()))?;
                    if !indices.contains(&i) {
                        indices.push(i);
                    }
                }
                Some(indices)
            }
        };
        Ok(Self {
            filter,
            order,
            select,
        })
    }

    fn matches(&self, table: &Table, row: &Row) -> bool {
        match &self.filter {
            None => true,
            Some(expr) => expr.eval(&RowView { table, row }),
        }
    }

    /// Iterates matching rows in the plan's order.
    pub fn rows<'t>(
        &'t self,
        table: &'t Table,
        extra: Option<&'t (dyn Fn(&Row) -> bool + Sync)>,
    ) -> Box<dyn Iterator<Item = (i32, &'t Row)> + 't> {
        let keep = move |row: &Row| self.matches(table, row) && extra.is_none_or(|f| f(row));
        let id = table.field_index("id");
        let ts = table.field_index(oda_model::hash::TIMESTAMP_FIELD);
        let by = |field: Option<usize>, key: &SortKey| Some(key.field) == field;
        match self.order.as_slice() {
            [k] if by(id, k) => {
                let Some(range) = self.id_range() else {
                    return Box::new(std::iter::empty());
                };
                if k.descending {
                    Box::new(table.range_by_id(range).rev().filter(move |(_, r)| keep(r)))
                } else {
                    Box::new(table.range_by_id(range).filter(move |(_, r)| keep(r)))
                }
            }
            [t, k]
                if by(ts, t)
                    && by(id, k)
                    && !t.descending
                    && !k.descending
                    && !self.timestamp_nullable(table) =>
            {
                let Some(range) = self.time_range() else {
                    return Box::new(std::iter::empty());
                };
                Box::new(table.range_by_time(range).filter(move |(_, r)| keep(r)))
            }
            _ => {
                let mut rows: Vec<(i32, &Row)> = table.iter().filter(|(_, r)| keep(r)).collect();
                rows.sort_by(|a, b| compare(&self.order, a.1, b.1));
                Box::new(rows.into_iter())
            }
        }
    }

    /// Null timestamps sort first in SQL Server, and the time index holds
    /// none, so such sets are sorted the slow way.
    fn timestamp_nullable(&self, table: &Table) -> bool {
        table.set.has_nullable_timestamp()
    }

    /// The id slice to visit; `None` when no row can match.
    fn id_range(&self) -> Option<(Bound<i32>, Bound<i32>)> {
        let Some(range) = self.filter.as_ref().and_then(|f| f.range_hull_on("id")) else {
            return Some((Bound::Unbounded, Bound::Unbounded));
        };
        if range.is_empty() {
            return None;
        }
        let conv = |b: Bound<RangeValue>| match b {
            Bound::Included(RangeValue::Int(v)) => Bound::Included(v),
            Bound::Excluded(RangeValue::Int(v)) => Bound::Excluded(v),
            _ => Bound::Unbounded,
        };
        narrow_to_i32(conv(range.lower), conv(range.upper))
    }

    /// The time slice to visit; `None` when no row can match.
    fn time_range(&self) -> Option<(Bound<SimTime>, Bound<SimTime>)> {
        let field = oda_model::hash::TIMESTAMP_FIELD;
        let Some(range) = self.filter.as_ref().and_then(|f| f.range_hull_on(field)) else {
            return Some((Bound::Unbounded, Bound::Unbounded));
        };
        if range.is_empty() {
            return None;
        }
        let conv = |b: Bound<RangeValue>| match b {
            Bound::Included(RangeValue::DateTime(t)) => Bound::Included(t),
            Bound::Excluded(RangeValue::DateTime(t)) => Bound::Excluded(t),
            _ => Bound::Unbounded,
        };
        Some((conv(range.lower), conv(range.upper)))
    }
}

/// Brings i64 bounds into the i32 id space; `None` when nothing is left
/// (so `BTreeMap::range` never sees crossing bounds).
fn narrow_to_i32(lower: Bound<i64>, upper: Bound<i64>) -> Option<(Bound<i32>, Bound<i32>)> {
    let min = i64::from(i32::MIN);
    let max = i64::from(i32::MAX);
    // Inclusive integer limits of the slice.
    let lo = match lower {
        Bound::Included(v) => v,
        Bound::Excluded(v) => v.saturating_add(1),
        Bound::Unbounded => min,
    }
    .max(min);
    let hi = match upper {
        Bound::Included(v) => v,
        Bound::Excluded(v) => v.saturating_sub(1),
        Bound::Unbounded => max,
    }
    .min(max);
    if lo > hi {
        return None;
    }
    let lo = i32::try_from(lo).ok()?;
    let hi = i32::try_from(hi).ok()?;
    Some((Bound::Included(lo), Bound::Included(hi)))
}

fn compare(order: &[SortKey], a: &Row, b: &Row) -> Ordering {
    for key in order {
        let ord = compare_cells(&a.cells[key.field], &b.cells[key.field]);
        let ord = if key.descending { ord.reverse() } else { ord };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

/// SQL Server's order: NULL first, then values.
fn compare_cells(a: &Cell, b: &Cell) -> Ordering {
    match (a, b) {
        (Cell::Null, Cell::Null) => Ordering::Equal,
        (Cell::Null, _) => Ordering::Less,
        (_, Cell::Null) => Ordering::Greater,
        (Cell::Int(x), Cell::Int(y)) => x.cmp(y),
        (Cell::Bool(x), Cell::Bool(y)) => x.cmp(y),
        (Cell::Str(x), Cell::Str(y)) => x.cmp(y),
        (Cell::Time(x), Cell::Time(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

/// One page of a collection response.
#[derive(Debug)]
pub struct PageResult<'t> {
    pub rows: Vec<(i32, &'t Row)>,
    /// Rows matching the filter, when `$inlinecount=allpages`.
    pub count: Option<usize>,
    /// The server cut the result: a nextLink follows.
    pub truncated: bool,
}

/// Runs a plan with `$skip`/`$top` and the server page size.
pub fn run_page<'t>(
    plan: &'t Plan,
    table: &'t Table,
    options: &QueryOptions,
    page_size: usize,
    extra: Option<&'t (dyn Fn(&Row) -> bool + Sync)>,
) -> PageResult<'t> {
    let wanted = options.top.unwrap_or(usize::MAX);
    let limit = wanted.min(page_size);
    let mut iter = plan.rows(table, extra).skip(options.skip);
    let rows: Vec<(i32, &Row)> = iter.by_ref().take(limit).collect();
    // Only a result cut by the page size gets a nextLink; a $top at or
    // below the page size never does.
    let truncated = wanted > page_size && rows.len() == limit && iter.next().is_some();
    let count = options.inlinecount.then(|| plan.rows(table, extra).count());
    PageResult {
        rows,
        count,
        truncated,
    }
}
