//! Reading an `/api` request: which resource it names, and the public base
//! its links are built on.

use axum::http::{HeaderMap, header};

use crate::query;

/// Decodes a path (no `+` rule in paths).
pub(super) fn decode_path(path: &str) -> Option<String> {
    query::percent_decode(&path.replace('+', "%2B")).ok()
}

/// The public base the links use, from the Host header.
pub(super) fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:8089");
    format!("http://{host}/api")
}

/// The entity set an `/api/...` path names, if any.
pub(super) fn entity_of(path: &str) -> Option<String> {
    let rest = decode_path(path.strip_prefix("/api")?.trim_start_matches('/'))?;
    match parse_resource(&rest)? {
        Resource::Collection { set }
        | Resource::Entity { set, .. }
        | Resource::Navigation { set, .. } => Some(set),
        Resource::ServiceDocument | Resource::Metadata => None,
    }
}

/// What the client asked for, once the path is read.
pub(super) enum Resource {
    ServiceDocument,
    Metadata,
    Collection { set: String },
    Entity { set: String, id: i32 },
    Navigation { set: String, id: i32, nav: String },
}

pub(super) fn parse_resource(rest: &str) -> Option<Resource> {
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Some(Resource::ServiceDocument);
    }
    if rest == "$metadata" {
        return Some(Resource::Metadata);
    }
    let (head, nav) = match rest.split_once('/') {
        Some((h, n)) => (h, Some(n)),
        None => (rest, None),
    };
    let (set, key) = match head.split_once('(') {
        Some((s, k)) => (s, Some(k.strip_suffix(')')?)),
        None => (head, None),
    };
    match (key, nav) {
        (None, None) => Some(Resource::Collection {
            set: set.to_owned(),
        }),
        (Some(k), None) => Some(Resource::Entity {
            set: set.to_owned(),
            id: k.trim().parse().ok()?,
        }),
        (Some(k), Some(n)) if !n.contains('/') => Some(Resource::Navigation {
            set: set.to_owned(),
            id: k.trim().parse().ok()?,
            nav: n.to_owned(),
        }),
        _ => None,
    }
}
