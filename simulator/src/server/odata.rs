//! The OData surface: collections with server paging, `$filter`,
//! `$orderby`, `$select`, `$expand`, `$inlinecount`, single entities,
//! navigation, the service document and `$metadata`, as ODA answers them.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::fault_layer::IgnoreFilter;
use super::resource::{Resource, base_url, decode_path, parse_resource};
use super::{Shared, SimState, empty, json_response, not_found_page};
use crate::metadata::metadata_xml;
use crate::query::{
    self, Plan, QueryError, QueryOptions, ResponseFormat, UnknownFieldPolicy, percent_encode,
};
use crate::store::{Row, Table};
use crate::world::World;

/// Sag views and the case types (`Sag.typeid`) each shows.
const VIEWS: &[(&str, &[i32])] = &[
    ("Almdel", &[1]),
    ("Forslag", &[3, 5]),
    ("Debat", &[6, 11]),
    ("Aktstykke", &[10]),
    // Reported empty since 2025.
    ("EUsag", &[]),
];

/// `GET /api/...`: the resource the path names, as ODA answers it.
pub(super) async fn api(
    State(state): State<Shared>,
    ignore: Option<Extension<IgnoreFilter>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    serve(&state, &uri, &headers, ignore.is_some())
}

fn serve(state: &SimState, uri: &Uri, headers: &HeaderMap, ignore_filter: bool) -> Response {
    let Some(rest) = uri.path().strip_prefix("/api") else {
        return not_found_page();
    };
    let Some(rest) = decode_path(rest.trim_start_matches('/')) else {
        return empty(StatusCode::BAD_REQUEST);
    };
    let Some(resource) = parse_resource(&rest) else {
        return not_found_page();
    };
    let base = base_url(headers);
    let options = match QueryOptions::parse(uri.query()) {
        Ok(options) => options,
        Err(_) => return empty(StatusCode::BAD_REQUEST),
    };
    if options.format == ResponseFormat::Xml {
        // Atom is not simulated; JSON is what CDC clients use.
        return empty(StatusCode::NOT_ACCEPTABLE);
    }
    let world = match state.world.read() {
        Ok(world) => world,
        Err(poisoned) => poisoned.into_inner(),
    };
    let policy = if ignore_filter || state.ignore_unknown_filter_fields {
        UnknownFieldPolicy::IgnoreFilter
    } else {
        UnknownFieldPolicy::Reject
    };
    let ctx = Ctx {
        world: &world,
        base: &base,
        page_size: state.page_size,
    };
    let result = match resource {
        Resource::ServiceDocument => Ok(service_document(&base)),
        Resource::Metadata => {
            return (
                [(header::CONTENT_TYPE, "application/xml;charset=utf-8")],
                metadata_xml(),
            )
                .into_response();
        }
        Resource::Collection { set } => ctx.collection(&set, &options, policy, ignore_filter),
        Resource::Entity { set, id } => ctx.entity(&set, id, &options),
        Resource::Navigation { set, id, nav } => {
            ctx.navigation(&set, id, &nav, &options, policy, ignore_filter)
        }
    };
    match result {
        Ok(response) => response,
        Err(ApiError::NotFound) => not_found_page(),
        Err(ApiError::KeyNotFound) => empty(StatusCode::NOT_FOUND),
        Err(ApiError::Bad(error)) => {
            tracing::debug!(%error, uri = %uri, "Answering 400.");
            empty(StatusCode::BAD_REQUEST)
        }
    }
}

enum ApiError {
    NotFound,
    KeyNotFound,
    Bad(QueryError),
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        ApiError::Bad(error)
    }
}

fn service_document(base: &str) -> Response {
    let sets: Vec<serde_json::Value> = oda_model::entity::entity_sets()
        .iter()
        .map(|s| serde_json::json!({"name": s.name, "url": s.name}))
        .collect();
    let body = serde_json::json!({"odata.metadata": format!("{base}/$metadata"), "value": sets});
    json_response(body.to_string().into_bytes())
}

struct Ctx<'a> {
    world: &'a World,
    base: &'a str,
    page_size: usize,
}

/// `$expand` paths, at most two levels deep.
fn expand_paths(options: &QueryOptions) -> Result<Vec<Vec<String>>, QueryError> {
    let Some(text) = options.expand.as_deref() else {
        return Ok(Vec::new());
    };
    let mut paths = Vec::new();
    for item in text.split(',').map(str::trim) {
        let path: Vec<String> = item.split('/').map(|s| s.trim().to_owned()).collect();
        if item.is_empty() || path.iter().any(String::is_empty) {
            return Err(QueryError::Expand(text.to_owned()));
        }
        if path.len() > 2 {
            return Err(QueryError::Expand(format!("{item}: deeper than 2 levels")));
        }
        paths.push(path);
    }
    Ok(paths)
}

/// How a navigation property joins.
#[derive(Debug, Clone, Copy)]
enum Link {
    /// The source row holds the target's id in this field.
    One { source_field: usize },
    /// Target rows hold the source's id in this field.
    Many { target_field: usize },
}

fn resolve_link(world: &World, source: &Table, nav: &str) -> Option<(String, Link)> {
    let navigation = source.set.navigation.iter().find(|n| n.name == nav)?;
    let target = world.store.table(&navigation.target)?;
    let nav_lower = nav.to_lowercase();
    let target_lower = navigation.target.to_lowercase();
    // To one: a foreign key on the source named after the navigation or target.
    for candidate in [format!("{nav_lower}id"), format!("{target_lower}id")] {
        if let Some(i) = source.field_index(&candidate) {
            return Some((navigation.target.clone(), Link::One { source_field: i }));
        }
    }
    for (suffix, field) in [
        ("type", "typeid"),
        ("status", "statusid"),
        ("kategori", "kategoriid"),
        ("rolle", "rolleid"),
    ] {
        if target_lower.ends_with(suffix)
            && navigation.target != source.set.name
            && let Some(i) = source.field_index(field)
            && crate::generate::foreign_key_target(&source.set.name, field)
                == Some(navigation.target.as_str())
        {
            return Some((navigation.target.clone(), Link::One { source_field: i }));
        }
    }
    // To many: a foreign key on the target pointing back.
    let source_lower = source.set.name.to_lowercase();
    let mut candidates = vec![format!("{source_lower}id")];
    if nav_lower.starts_with("fra") {
        candidates.insert(0, format!("fra{source_lower}id"));
    }
    if nav_lower.starts_with("til") {
        candidates.insert(0, format!("til{source_lower}id"));
    }
    for (suffix, field) in [
        ("type", "typeid"),
        ("status", "statusid"),
        ("kategori", "kategoriid"),
        ("rolle", "rolleid"),
    ] {
        if source_lower.ends_with(suffix) {
            candidates.push(field.to_owned());
        }
    }
    for candidate in candidates {
        if let Some(i) = target.field_index(&candidate)
            && crate::generate::foreign_key_target(&navigation.target, &candidate)
                == Some(source.set.name.as_str())
        {
            return Some((navigation.target.clone(), Link::Many { target_field: i }));
        }
    }
    None
}

impl Ctx<'_> {
    fn table(&self, set: &str) -> Result<(&Table, Option<&'static [i32]>), ApiError> {
        if oda_model::entity::NOT_SERVED.contains(&set) {
            return Err(ApiError::NotFound);
        }
        if let Some((_, types)) = VIEWS.iter().find(|(name, _)| *name == set) {
            let table = self.world.store.table("Sag").ok_or(ApiError::NotFound)?;
            return Ok((table, Some(types)));
        }
        let table = self.world.store.table(set).ok_or(ApiError::NotFound)?;
        Ok((table, None))
    }

    fn metadata_link(&self, set: &str, options: &QueryOptions, element: bool) -> String {
        let mut link = format!("{}/$metadata#{set}", self.base);
        if element {
            link.push_str("/@Element");
        }
        if let Some(select) = &options.select {
            link.push_str("&$select=");
            link.push_str(select);
        }
        link
    }

    fn next_link(&self, path: &str, options: &QueryOptions) -> String {
        let mut parts = Vec::new();
        for (key, value) in &options.pairs {
            match key.as_str() {
                "$skip" => {}
                "$top" => {
                    let top = options.top.unwrap_or(0).saturating_sub(self.page_size);
                    parts.push(format!("$top={top}"));
                }
                _ => parts.push(format!("{}={}", encode_key(key), percent_encode(value))),
            }
        }
        parts.push(format!("$skip={}", options.skip + self.page_size));
        format!("{}/{}?{}", self.base, path, parts.join("&"))
    }

    fn collection(
        &self,
        set: &str,
        options: &QueryOptions,
        policy: UnknownFieldPolicy,
        ignore_filter: bool,
    ) -> Result<Response, ApiError> {
        let (table, view) = self.table(set)?;
        let plan = self.plan(table, options, policy, ignore_filter)?;
        let expands = expand_paths(options)?;
        self.check_expands(table, &expands)?;
        let typeid = table.field_index("typeid");
        let view_filter = view.map(|types| {
            move |row: &Row| match (typeid, types) {
                (Some(i), types) => {
                    matches!(row.cells[i], crate::store::Cell::Int(t) if types.contains(&t))
                }
                (None, _) => false,
            }
        });
        let extra: Option<&(dyn Fn(&Row) -> bool + Sync)> = view_filter
            .as_ref()
            .map(|f| f as &(dyn Fn(&Row) -> bool + Sync));
        let page = query::run_page(&plan, table, options, self.page_size, extra);
        let mut body = Vec::with_capacity(256 + page.rows.len() * 512);
        body.extend_from_slice(b"{\"odata.metadata\":");
        write_str(&mut body, &self.metadata_link(set, options, false));
        if let Some(count) = page.count {
            body.extend_from_slice(b",\"odata.count\":");
            write_str(&mut body, &count.to_string());
        }
        body.extend_from_slice(b",\"value\":[");
        for (i, (_, row)) in page.rows.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            self.write_row(table, row, plan.select.as_deref(), &expands, &mut body)?;
        }
        body.push(b']');
        if page.truncated {
            body.extend_from_slice(b",\"odata.nextLink\":");
            write_str(&mut body, &self.next_link(&percent_encode(set), options));
        }
        body.push(b'}');
        Ok(json_response(body))
    }

    fn plan(
        &self,
        table: &Table,
        options: &QueryOptions,
        policy: UnknownFieldPolicy,
        ignore_filter: bool,
    ) -> Result<Plan, QueryError> {
        if ignore_filter {
            let mut unfiltered = options.clone();
            unfiltered.filter = None;
            return Plan::new(table, &unfiltered, policy);
        }
        Plan::new(table, options, policy)
    }

    fn check_expands(&self, table: &Table, expands: &[Vec<String>]) -> Result<(), ApiError> {
        for path in expands {
            let (target, _) = resolve_link(self.world, table, &path[0])
                .ok_or_else(|| QueryError::Expand(path[0].clone()))?;
            if let Some(second) = path.get(1) {
                let target = self.world.store.table(&target).ok_or(ApiError::NotFound)?;
                resolve_link(self.world, target, second)
                    .ok_or_else(|| QueryError::Expand(second.clone()))?;
            }
        }
        Ok(())
    }

    fn write_row(
        &self,
        table: &Table,
        row: &Row,
        select: Option<&[usize]>,
        expands: &[Vec<String>],
        out: &mut Vec<u8>,
    ) -> Result<(), ApiError> {
        table.write_row(row, select, out);
        if expands.is_empty() {
            return Ok(());
        }
        // Reopen the object to append the expanded navigation properties.
        out.pop();
        let mut heads: Vec<&str> = expands.iter().map(|p| p[0].as_str()).collect();
        heads.dedup();
        for head in heads {
            let nested: Vec<Vec<String>> = expands
                .iter()
                .filter(|p| p[0] == head && p.len() > 1)
                .map(|p| p[1..].to_vec())
                .collect();
            let (target_name, link) = resolve_link(self.world, table, head)
                .ok_or_else(|| QueryError::Expand(head.to_owned()))?;
            let target = self
                .world
                .store
                .table(&target_name)
                .ok_or(ApiError::NotFound)?;
            out.push(b',');
            write_str(out, head);
            out.push(b':');
            match link {
                Link::One { source_field } => match row.cells[source_field] {
                    crate::store::Cell::Int(id) => match target.get(id) {
                        Some(child) => self.write_row(target, child, None, &nested, out)?,
                        None => out.extend_from_slice(b"null"),
                    },
                    _ => out.extend_from_slice(b"null"),
                },
                Link::Many { target_field } => {
                    let id = match row.cells.first() {
                        Some(crate::store::Cell::Int(id)) => *id,
                        _ => 0,
                    };
                    let mut children = target.iter().filter(|(_, child)| {
                        child.cells[target_field] == crate::store::Cell::Int(id)
                    });
                    out.push(b'[');
                    let mut written = 0;
                    for (_, child) in children.by_ref().take(self.page_size) {
                        if written > 0 {
                            out.push(b',');
                        }
                        self.write_row(target, child, None, &nested, out)?;
                        written += 1;
                    }
                    out.push(b']');
                    if written == self.page_size && children.next().is_some() {
                        out.push(b',');
                        write_str(out, &format!("{head}@odata.nextLink"));
                        out.push(b':');
                        let link = format!(
                            "{}/{}({id})/{}?$skip={}",
                            self.base,
                            percent_encode(&table.set.name),
                            percent_encode(head),
                            self.page_size
                        );
                        write_str(out, &link);
                    }
                }
            }
        }
        out.push(b'}');
        Ok(())
    }

    fn entity(&self, set: &str, id: i32, options: &QueryOptions) -> Result<Response, ApiError> {
        let (table, view) = self.table(set)?;
        let row = table.get(id).ok_or(ApiError::KeyNotFound)?;
        if let Some(types) = view {
            let typeid = table.field_index("typeid");
            let visible = typeid.is_some_and(
                |i| matches!(row.cells[i], crate::store::Cell::Int(t) if types.contains(&t)),
            );
            if !visible {
                return Err(ApiError::KeyNotFound);
            }
        }
        let plan = Plan::new(table, options, UnknownFieldPolicy::Reject)?;
        let expands = expand_paths(options)?;
        self.check_expands(table, &expands)?;
        let mut object = Vec::new();
        self.write_row(table, row, plan.select.as_deref(), &expands, &mut object)?;
        let mut body = Vec::with_capacity(object.len() + 128);
        body.extend_from_slice(b"{\"odata.metadata\":");
        write_str(&mut body, &self.metadata_link(set, options, true));
        if object.len() > 2 {
            body.push(b',');
            body.extend_from_slice(&object[1..]);
        } else {
            body.push(b'}');
        }
        Ok(json_response(body))
    }

    fn navigation(
        &self,
        set: &str,
        id: i32,
        nav: &str,
        options: &QueryOptions,
        policy: UnknownFieldPolicy,
        ignore_filter: bool,
    ) -> Result<Response, ApiError> {
        let (table, _) = self.table(set)?;
        let row = table.get(id).ok_or(ApiError::KeyNotFound)?;
        let (target_name, link) = resolve_link(self.world, table, nav).ok_or(ApiError::NotFound)?;
        let target = self
            .world
            .store
            .table(&target_name)
            .ok_or(ApiError::NotFound)?;
        match link {
            Link::One { source_field } => match row.cells[source_field] {
                crate::store::Cell::Int(child) => self.entity(&target_name, child, options),
                _ => Err(ApiError::KeyNotFound),
            },
            Link::Many { target_field } => {
                let plan = self.plan(target, options, policy, ignore_filter)?;
                let expands = expand_paths(options)?;
                self.check_expands(target, &expands)?;
                let only_children =
                    move |child: &Row| child.cells[target_field] == crate::store::Cell::Int(id);
                let page =
                    query::run_page(&plan, target, options, self.page_size, Some(&only_children));
                let mut body = Vec::new();
                body.extend_from_slice(b"{\"odata.metadata\":");
                write_str(&mut body, &self.metadata_link(&target_name, options, false));
                if let Some(count) = page.count {
                    body.extend_from_slice(b",\"odata.count\":");
                    write_str(&mut body, &count.to_string());
                }
                body.extend_from_slice(b",\"value\":[");
                for (i, (_, child)) in page.rows.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    self.write_row(target, child, plan.select.as_deref(), &expands, &mut body)?;
                }
                body.push(b']');
                if page.truncated {
                    let path = format!("{}({id})/{}", percent_encode(set), percent_encode(nav));
                    body.extend_from_slice(b",\"odata.nextLink\":");
                    write_str(&mut body, &self.next_link(&path, options));
                }
                body.push(b'}');
                Ok(json_response(body))
            }
        }
    }
}

/// Query keys keep a literal `$`, the rest is escaped like values.
fn encode_key(key: &str) -> String {
    match key.strip_prefix('$') {
        Some(rest) => format!("${}", percent_encode(rest)),
        None => percent_encode(key),
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}
