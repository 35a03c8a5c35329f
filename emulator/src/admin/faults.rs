//! `POST /_emulator/faults` (add a rule → `{"id": …}`), `GET` (list with counters),
//! `DELETE /_emulator/faults/{id}` (one), `DELETE /_emulator/faults` (all).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{Request, StatusCode};
use serde_json::{json, Value};

use super::{json_body, ok, AdminError};
use crate::faults::FaultSpec;
use crate::http::Outcome;
use crate::state::Core;

/// Parses one rule (errors name the field) using every service's error catalog.
pub fn parse_rule(v: Value) -> Result<FaultSpec, crate::faults::RuleError> {
    FaultSpec::from_json(v, &crate::services::known_error)
}

pub async fn add(
    State(core): State<Arc<Core>>,
    req: Request<Body>,
) -> Result<Response, AdminError> {
    let body = json_body(&core, req.into_body()).await?;
    // An array adds several rules atomically: all are validated before any is added.
    let specs = match body {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                parse_rule(v).map_err(|e| AdminError::bad_request(format!("rule [{i}]: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?,
        other => vec![parse_rule(other).map_err(|e| AdminError::bad_request(e.to_string()))?],
    };
    let single = specs.len() == 1;
    let now = core.clock.now();
    let mut ids = Vec::new();
    for spec in specs {
        match core.faults.add(spec, now) {
            Ok(id) => ids.push(id),
            Err(e) => {
                for id in &ids {
                    core.faults.remove(id);
                }
                return Err(AdminError::bad_request(e.to_string()));
            }
        }
    }
    let body = if single {
        json!({"id": ids[0]})
    } else {
        json!({"ids": ids})
    };
    Ok(ok("admin.faults.add", StatusCode::CREATED, body))
}

pub async fn list(State(core): State<Arc<Core>>) -> Response {
    ok(
        "admin.faults.list",
        StatusCode::OK,
        Value::Array(core.faults.list(core.clock.now())),
    )
}

pub async fn remove(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    if !core.faults.remove(&id) {
        return Err(AdminError::not_found(format!("no fault rule '{id}'")));
    }
    Ok(no_content("admin.faults.remove"))
}

pub async fn clear(State(core): State<Arc<Core>>) -> Response {
    core.faults.clear();
    no_content("admin.faults.clear")
}

fn no_content(op: &'static str) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.extensions_mut().insert(Outcome::new(op));
    resp
}
