//! The registry of services: which operation a route is, how a service renders a named error
//! or a throttling response. Shared infrastructure (journal, faults) asks here instead of
//! importing services one by one; each service keeps its own catalog.

use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode};
use serde_json::json;

use crate::acs;
use crate::entra;
use crate::faults::RequestFacts;
use crate::management;
use crate::state::Core;

/// The operation a matched route belongs to (`service.operation`).
pub fn operation_of(route: &str) -> &'static str {
    if let Some(op) = entra::operation(route) {
        return op;
    }
    if let Some(op) = management::operation(route) {
        return op;
    }
    if let Some(op) = crate::graph::operation(route) {
        return op;
    }
    if let Some(op) = crate::sfb::operation(route) {
        return op;
    }
    if let Some(op) = acs::operation(route) {
        return op;
    }
    if route.starts_with("/_emulator/") {
        return "admin";
    }
    "unrouted"
}

/// Whether some service's catalog has an error called `name`.
pub fn known_error(name: &str) -> bool {
    entra::errors::parse_name(name).is_some()
        || management::errors::parse_name(name).is_some()
        || crate::graph::errors::parse_name(name).is_some()
        || crate::sfb::parse_name(name).is_some()
        || acs::errors::parse_name(name).is_some()
}

/// Renders the named error in its service's wire shape; returns the response and the code.
pub fn named_error(
    core: &Core,
    name: &str,
    facts: &RequestFacts,
    parts: &Parts,
) -> Option<(Response, String)> {
    if facts.service == "acs" {
        if let Some(e) = acs::errors::for_fault(name) {
            return Some((e.render(), e.code.to_string()));
        }
    }
    if let Some(e) = management::errors::for_fault(
        name,
        facts.operation,
        facts.tenant_segment.as_deref(),
        parts.uri.query(),
    ) {
        return Some((e.render(core.clock.now()), e.code.to_string()));
    }
    if let Some(e) = crate::graph::errors::for_fault(name) {
        let ids = crate::graph::errors::RequestIds::new(parts, core.clock.now());
        return Some((e.render(&ids), e.code.to_string()));
    }
    if let Some(e) = crate::sfb::for_fault(name) {
        let code = e.subcode.unwrap_or(e.code).to_string();
        return Some((e.render(crate::http::Outcome::new(facts.operation)), code));
    }
    let e = entra::errors::for_fault(
        name,
        facts.client_id.as_deref(),
        facts.tenant_segment.as_deref(),
    )?;
    let resp = e.render(&entra_context(core, parts));
    Some((resp, e.code_name()))
}

fn entra_context(core: &Core, parts: &Parts) -> entra::errors::ErrorContext {
    entra::errors::ErrorContext::from_parts(parts, core.clock.now())
}

/// The service's own throttling response, with `Retry-After`.
pub fn throttled(
    core: &Core,
    facts: &RequestFacts,
    parts: &Parts,
    retry_after: u64,
) -> (Response, String) {
    let (mut resp, code) = match facts.service {
        "entra" => {
            let e = entra::errors::AadError::new(90055, &[]);
            (e.render(&entra_context(core, parts)), e.code_name())
        }
        "management" => {
            management::errors::throttled(facts.operation, parts.uri.query(), core.clock.now())
        }
        "graph" => {
            let ids = crate::graph::errors::RequestIds::new(parts, core.clock.now());
            let e = crate::graph::errors::GraphError::throttled();
            (e.render(&ids), e.code.to_string())
        }
        "acs" => acs::errors::throttled(),
        _ => {
            let body = json!({"error": {"code": "TooManyRequests", "message": "Too many requests. Retry after the time in the Retry-After header."}});
            (
                (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response(),
                "TooManyRequests".to_string(),
            )
        }
    };
    if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
        resp.headers_mut().insert(http::header::RETRY_AFTER, v);
    }
    (resp, code)
}
