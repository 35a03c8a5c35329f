//! The fault layer: runs after routing (so the operation is known) and before the handler,
//! so an injected error never half-applies a request.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, RawPathParams, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::request::Parts;
use http::{HeaderName, HeaderValue, Request, StatusCode};
use rand::Rng;
use serde_json::json;
use tokio_stream::StreamExt;

use super::rules::{ConnectionFault, DelaySpec, FaultAction};
use super::{RequestFacts, FAULT_HEADER};
use crate::http::form::parse_form;
use crate::http::{read_body, Outcome};
use crate::journal::AppliedFault;
use crate::state::Core;

/// Tells the listener to close the connection instead of answering.
#[derive(Debug, Clone, Copy)]
pub struct AbortConnection(pub ConnectionFault);

pub async fn layer(State(core): State<Arc<Core>>, req: Request<Body>, next: Next) -> Response {
    let header_fault = req
        .headers()
        .get(FAULT_HEADER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string());
    if header_fault.is_none() && core.faults.is_empty() {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let (facts, body) = gather_facts(&core, &mut parts, body).await;
    let now = core.clock.now();
    let (label, action, rule) = match header_fault {
        Some(name) => {
            let action = FaultAction::Error(super::rules::ErrorAction {
                error: name.clone(),
                headers: Default::default(),
            });
            (format!("header:{name}"), action, None)
        }
        None => match core.faults.evaluate(&facts, now) {
            Some(rule) => (rule.id.clone(), rule.spec.action.clone(), Some(rule)),
            None => return next.run(Request::from_parts(parts, body)).await,
        },
    };
    let mut outcome = Outcome::new(facts.operation);
    outcome.tenant = facts.tenant_id.clone().or(facts.tenant_segment.clone());
    outcome.client_id = facts.client_id.clone();
    let mut resp = match action {
        FaultAction::Error(e) => {
            match crate::services::named_error(&core, &e.error, &facts, &parts) {
                Some((mut resp, code)) => {
                    add_headers(&mut resp, &e.headers);
                    outcome.error_code = Some(code);
                    resp.extensions_mut().insert(outcome);
                    resp
                }
                None => {
                    let body = json!({"error": {"code": "BadFaultHeader", "message": format!("'{}' is not in any service's error catalog (header {FAULT_HEADER})", e.error)}});
                    outcome.error_code = Some("BadFaultHeader".into());
                    let mut resp = (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
                    resp.extensions_mut().insert(outcome);
                    resp
                }
            }
        }
        FaultAction::Raw(raw) => {
            let status =
                StatusCode::from_u16(raw.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = match &raw.body {
                None => status.into_response(),
                Some(serde_json::Value::String(text)) => (status, text.clone()).into_response(),
                Some(v) => (status, axum::Json(v.clone())).into_response(),
            };
            add_headers(&mut resp, &raw.headers);
            outcome.error_code = Some(raw.status.to_string());
            resp.extensions_mut().insert(outcome);
            resp
        }
        FaultAction::Delay(d) => {
            let ms = match d.delay_ms {
                DelaySpec::Fixed(ms) => ms,
                DelaySpec::Uniform { min, max } => rand::thread_rng().gen_range(min..=max),
            };
            tokio::time::sleep(Duration::from_millis(ms)).await;
            next.run(Request::from_parts(parts, body)).await
        }
        FaultAction::Connection(c) => {
            let mut resp = StatusCode::OK.into_response();
            resp.extensions_mut().insert(AbortConnection(c.connection));
            resp.extensions_mut().insert(outcome);
            resp
        }
        FaultAction::SlowBody(s) => {
            let resp = next.run(Request::from_parts(parts, body)).await;
            slow_down(resp, s.slow_body.bytes_per_second).await
        }
        FaultAction::RateLimit(_) => {
            let retry = rule
                .as_ref()
                .map_or(1, |r| r.retry_after(&facts.bucket_key()));
            let (mut resp, code) = crate::services::throttled(&core, &facts, &parts, retry);
            outcome.error_code = Some(code);
            resp.extensions_mut().insert(outcome);
            resp
        }
    };
    resp.extensions_mut().insert(AppliedFault(label));
    resp
}

fn add_headers(resp: &mut Response, headers: &std::collections::BTreeMap<String, String>) {
    for (k, v) in headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v))
        {
            resp.headers_mut().insert(name, value);
        }
    }
}

/// Re-sends the response body in ten chunks a second at the given rate.
async fn slow_down(resp: Response, bytes_per_second: u64) -> Response {
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = read_body(body, usize::MAX).await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let chunk = (bytes_per_second / 10).max(1) as usize;
    let chunks: Vec<Result<bytes::Bytes, std::convert::Infallible>> = bytes
        .chunks(chunk)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let stream = tokio_stream::iter(chunks).throttle(Duration::from_millis(100));
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Operation, tenant and client id of a request, before its handler runs. The body is read
/// (bounded) only for forms, to find `client_id`, and handed back intact.
async fn gather_facts(core: &Core, parts: &mut Parts, body: Body) -> (RequestFacts, Body) {
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let operation = crate::services::operation_of(&route);
    let service = operation.split('.').next().unwrap_or_default();
    let tenant_segment = tenant_param(parts).await;
    let tenant_id = tenant_segment
        .as_ref()
        .and_then(|t| core.directory().tenant(t).map(|t| t.id.to_string()));
    let is_form = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    // Peek only at forms of a declared, acceptable length, so that an oversized or unsized
    // body reaches the handler untouched and gets the handler's own error (413 and so on).
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let peekable = is_form && declared.is_some_and(|n| n <= core.settings.body_limit);
    let (mut client_id, body) = if peekable {
        match read_body(body, core.settings.body_limit).await {
            Ok(bytes) => {
                let id = parse_form(&bytes)
                    .ok()
                    .and_then(|f| f.non_empty("client_id").map(str::to_string));
                (id, Body::from(bytes))
            }
            // The connection broke mid-body: the handler sees an empty body and says so.
            Err(_) => (None, Body::empty()),
        }
    } else {
        (None, body)
    };
    if client_id.is_none() {
        client_id = client_from_headers(parts);
    }
    let facts = RequestFacts {
        service,
        operation,
        tenant_segment,
        tenant_id,
        client_id,
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        headers: parts.headers.clone(),
        host: crate::http::host_without_port(&crate::http::authority(parts)).to_ascii_lowercase(),
    };
    (facts, body)
}

async fn tenant_param(parts: &mut Parts) -> Option<String> {
    let params =
        <RawPathParams as axum::extract::FromRequestParts<()>>::from_request_parts(parts, &())
            .await
            .ok()?;
    params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("tenant") || k.eq_ignore_ascii_case("tenantId"))
        .map(|(_, v)| v.to_string())
}

/// The client id from HTTP Basic auth, a bearer token's `appid`/`azp`, or the query.
fn client_from_headers(parts: &Parts) -> Option<String> {
    let auth = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some((scheme, value)) = auth.and_then(|a| a.split_once(' ')) {
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value.trim())
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            return text.split_once(':').map(|(id, _)| id.to_string());
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            let jws = crate::jose::parse_compact(value.trim()).ok()?;
            return ["appid", "azp"].iter().find_map(|k| {
                jws.claims
                    .get(*k)
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            });
        }
    }
    let q = parse_form(parts.uri.query()?.as_bytes()).ok()?;
    q.non_empty("client_id").map(str::to_string)
}
