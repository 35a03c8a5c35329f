//! `GET /_emulator/journal` (filters: service, operation, tenant, client_id, host, status,
//! since, limit), `DELETE /_emulator/journal`, and `GET /_emulator/journal/stream` (NDJSON, live).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use super::{ok, AdminError};
use crate::http::form::parse_form;
use crate::journal::JournalQuery;
use crate::state::Core;

fn parse_query(raw: Option<&str>) -> Result<JournalQuery, AdminError> {
    let form = parse_form(raw.unwrap_or_default().as_bytes())
        .map_err(|e| AdminError::bad_request(e.to_string()))?;
    let mut q = JournalQuery::default();
    for (k, v) in &form.fields {
        match k.as_str() {
            "service" => q.service = Some(v.clone()),
            "operation" => q.operation = Some(v.clone()),
            "tenant" => q.tenant = Some(v.clone()),
            "client_id" => q.client_id = Some(v.clone()),
            "host" => q.host = Some(v.clone()),
            "status" => {
                q.status = Some(v.parse().map_err(|_| {
                    AdminError::bad_request(format!(
                        "`status` must be an HTTP status code, not '{v}'"
                    ))
                })?)
            }
            "since" => {
                q.since = Some(
                    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                        .map_err(|_| {
                            AdminError::bad_request(format!(
                                "`since` must be an RFC 3339 time, not '{v}'"
                            ))
                        })?,
                )
            }
            "limit" => {
                q.limit = Some(v.parse().map_err(|_| {
                    AdminError::bad_request(format!(
                        "`limit` must be a non-negative integer, not '{v}'"
                    ))
                })?)
            }
            other => {
                return Err(AdminError::bad_request(format!(
                    "unknown journal filter `{other}`"
                )))
            }
        }
    }
    Ok(q)
}

pub async fn list(
    State(core): State<Arc<Core>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, AdminError> {
    let q = parse_query(raw.as_deref())?;
    let entries = core.journal.query(&q);
    let body = serde_json::to_value(entries.iter().map(|e| e.as_ref()).collect::<Vec<_>>())
        .unwrap_or_default();
    Ok(ok("admin.journal", StatusCode::OK, body))
}

pub async fn clear(State(core): State<Arc<Core>>) -> Response {
    core.journal.clear();
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.extensions_mut()
        .insert(crate::http::Outcome::new("admin.journal.clear"));
    resp
}

/// Newline-delimited JSON of entries recorded from now on, matching the same filters.
pub async fn stream(
    State(core): State<Arc<Core>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, AdminError> {
    let q = parse_query(raw.as_deref())?;
    let live = BroadcastStream::new(core.journal.subscribe()).filter_map(move |item| match item {
        Ok(entry) if q.matches(&entry) => {
            let mut line = serde_json::to_vec(entry.as_ref()).unwrap_or_default();
            line.push(b'\n');
            Some(Ok::<_, std::convert::Infallible>(bytes::Bytes::from(line)))
        }
        Ok(_) => None,
        // A lagging reader is told how many entries it missed, then continues.
        Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
            Some(Ok(bytes::Bytes::from(format!("{{\"lagged\":{n}}}\n"))))
        }
    });
    let mut resp = Response::new(Body::from_stream(live));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    Ok(resp)
}
