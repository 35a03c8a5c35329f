//! The request journal: every request on every listener, with the operation it was routed to,
//! the identity it resolved, the error code it produced and the fault applied. A bounded ring
//! buffer (oldest entries fall out) plus a broadcast channel for live streaming. Recording is
//! a short critical section and never waits on readers.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::middleware::Next;
use axum::response::Response;
use http::Request;
use serde::Serialize;
use serde_json::value::RawValue;
use time::OffsetDateTime;
use tokio::sync::broadcast;

use crate::http::{authority, Outcome};
use crate::state::Core;

/// Default number of entries kept.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// Headers whose values never enter the journal.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "x-identity-header",
    "secret",
    "x-ms-content-sha256-secret",
    "ocp-apim-subscription-key",
    "proxy-authorization",
    "x-ms-authorization-auxiliary",
];
/// Query parameters whose values never enter the journal.
const SECRET_PARAMS: &[&str] = &[
    "client_secret",
    "password",
    "code",
    "assertion",
    "access_token",
    "id_token_hint",
    "sig",
    "refresh_token",
    "client_assertion",
    "accesskey",
];

#[derive(Debug, Clone, Serialize)]
pub struct JournalEntry {
    pub id: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub method: String,
    pub host: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: RecordedHeaders,
    pub body_size: Option<u64>,
    pub service: String,
    pub operation: String,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub user: Option<String>,
    pub token_id: Option<String>,
    pub status: u16,
    pub error_code: Option<String>,
    pub fault: Option<String>,
    /// Decoded client-assertion header and claims (never the signature), kept as JSON text:
    /// a parsed tree costs several times the memory, and nothing reads it but the API.
    pub assertion: Option<Box<RawValue>>,
    pub duration_ms: f64,
}

/// The request headers of an entry, in arrival order, secrets redacted; serialized as a JSON
/// object like a map. A plain list, because a hash map per entry costs a ring of 10,000
/// entries megabytes.
#[derive(Debug, Clone, Default)]
pub struct RecordedHeaders(Vec<(String, String)>);

impl RecordedHeaders {
    /// The headers with the values of credentials (and anything named like a key) redacted.
    pub fn redacted(headers: &http::HeaderMap) -> RecordedHeaders {
        RecordedHeaders(
            headers
                .iter()
                .map(|(k, v)| {
                    let name = k.as_str();
                    let value = if SECRET_HEADERS.contains(&name) || name.contains("key") {
                        "[redacted]".to_string()
                    } else {
                        String::from_utf8_lossy(v.as_bytes()).into_owned()
                    };
                    (name.to_string(), value)
                })
                .collect(),
        )
    }

    /// The first value of `name` (lower case, as recorded).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Serialize for RecordedHeaders {
    /// A repeated header keeps its last value, as the map this replaced did.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if !self.0[i + 1..].iter().any(|(later, _)| later == k) {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

/// Filters of `GET /_emulator/journal`.
#[derive(Debug, Default, Clone)]
pub struct JournalQuery {
    pub service: Option<String>,
    pub operation: Option<String>,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub status: Option<u16>,
    pub since: Option<OffsetDateTime>,
    pub limit: Option<usize>,
    /// The host the client addressed, without port (e.g. `manage.office.com` in proxy mode).
    pub host: Option<String>,
}

impl JournalQuery {
    pub fn matches(&self, e: &JournalEntry) -> bool {
        let eq = |want: &Option<String>, have: &Option<String>| {
            want.as_ref()
                .is_none_or(|w| have.as_ref().is_some_and(|h| h.eq_ignore_ascii_case(w)))
        };
        self.service
            .as_ref()
            .is_none_or(|s| s.eq_ignore_ascii_case(&e.service))
            && self
                .operation
                .as_ref()
                .is_none_or(|o| o.eq_ignore_ascii_case(&e.operation))
            && eq(&self.tenant, &e.tenant)
            && eq(&self.client_id, &e.client_id)
            && self
                .host
                .as_ref()
                .is_none_or(|h| crate::http::host_without_port(&e.host).eq_ignore_ascii_case(h))
            && self.status.is_none_or(|s| s == e.status)
            && self.since.is_none_or(|t| e.time >= t)
    }
}

#[derive(Debug)]
pub struct Journal {
    entries: Mutex<VecDeque<Arc<JournalEntry>>>,
    capacity: usize,
    next_id: AtomicU64,
    live: broadcast::Sender<Arc<JournalEntry>>,
}

impl Default for Journal {
    fn default() -> Self {
        Journal::with_capacity(DEFAULT_CAPACITY)
    }
}

impl Journal {
    pub fn with_capacity(capacity: usize) -> Journal {
        let (live, _) = broadcast::channel(1024);
        Journal {
            entries: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity: capacity.max(1),
            next_id: AtomicU64::new(1),
            live,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn record(&self, mut entry: JournalEntry) {
        entry.id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(entry);
        {
            let mut q = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() >= self.capacity {
                q.pop_front();
            }
            q.push_back(entry.clone());
        }
        // No subscribers is fine; slow subscribers lag and are told so, never block us.
        let _ = self.live.send(entry);
    }

    /// Matching entries, oldest first; `limit` keeps the newest N.
    pub fn query(&self, q: &JournalQuery) -> Vec<Arc<JournalEntry>> {
        let all = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Arc<JournalEntry>> =
            all.iter().filter(|e| q.matches(e)).cloned().collect();
        if let Some(limit) = q.limit {
            let skip = out.len().saturating_sub(limit);
            out.drain(..skip);
        }
        out
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<JournalEntry>> {
        self.live.subscribe()
    }
}

/// Compares the decoded name, so `client%5Fsecret` is redacted too.
fn is_secret_param(raw_name: &str) -> bool {
    let decoded = crate::http::form::parse_form(raw_name.as_bytes())
        .ok()
        .and_then(|f| f.fields.into_iter().next().map(|(k, _)| k))
        .unwrap_or_else(|| raw_name.to_string());
    SECRET_PARAMS
        .iter()
        .any(|s| decoded.eq_ignore_ascii_case(s))
}

fn redacted_query(query: Option<&str>) -> Option<String> {
    let q = query?;
    Some(
        q.split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_param(k) => format!("{k}=[redacted]"),
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&"),
    )
}

/// The journal layer: wraps every routed request.
pub async fn layer(State(core): State<Arc<Core>>, req: Request<Body>, next: Next) -> Response {
    let started = Instant::now();
    let time = core.clock.now();
    let (parts, body) = req.into_parts();
    let method = parts.method.to_string();
    let host = authority(&parts);
    let path = parts.uri.path().to_string();
    let query = redacted_query(parts.uri.query());
    let headers = RecordedHeaders::redacted(&parts.headers);
    let body_size = http_body::Body::size_hint(&body).exact().or_else(|| {
        parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
    });
    let skip = path == "/_emulator/journal" || path == "/_emulator/journal/stream";
    let response = next.run(Request::from_parts(parts, body)).await;
    if skip {
        return response;
    }
    let outcome = response
        .extensions()
        .get::<Outcome>()
        .cloned()
        .unwrap_or_else(|| Outcome::new("unrouted"));
    let fault = response
        .extensions()
        .get::<AppliedFault>()
        .map(|f| f.0.clone());
    let service = outcome
        .operation
        .split('.')
        .next()
        .unwrap_or_default()
        .to_string();
    core.journal.record(JournalEntry {
        id: 0,
        time,
        method,
        host,
        path,
        query,
        headers,
        body_size,
        service,
        operation: outcome.operation.to_string(),
        tenant: outcome.tenant,
        client_id: outcome.client_id,
        user: outcome.user,
        token_id: outcome.token_id,
        status: response.status().as_u16(),
        error_code: outcome.error_code,
        fault,
        assertion: outcome.assertion,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    });
    response
}

/// A response extension naming the fault rule that produced (or changed) the response.
#[derive(Debug, Clone)]
pub struct AppliedFault(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(op: &str, status: u16) -> JournalEntry {
        JournalEntry {
            id: 0,
            time: OffsetDateTime::now_utc(),
            method: "POST".into(),
            host: "h".into(),
            path: "/".into(),
            query: None,
            headers: RecordedHeaders::default(),
            body_size: None,
            service: op.split('.').next().unwrap_or_default().into(),
            operation: op.into(),
            tenant: None,
            client_id: Some("C".into()),
            user: None,
            token_id: None,
            status,
            error_code: None,
            fault: None,
            assertion: None,
            duration_ms: 0.0,
        }
    }

    #[test]
    fn recorded_headers_redact_secrets_and_serialize_as_a_map() {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "Bearer abc".parse().expect("value"));
        h.insert("x-api-key", "k".parse().expect("value"));
        h.insert("user-agent", "msal".parse().expect("value"));
        h.append("accept", "a/1".parse().expect("value"));
        h.append("accept", "a/2".parse().expect("value"));
        let r = RecordedHeaders::redacted(&h);
        assert_eq!(r.get("Authorization"), Some("[redacted]"));
        assert_eq!(r.get("x-api-key"), Some("[redacted]"));
        assert_eq!(r.get("user-agent"), Some("msal"));
        assert_eq!(r.get("cookie"), None);
        let json = serde_json::to_value(&r).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({
                "authorization": "[redacted]",
                "x-api-key": "[redacted]",
                "user-agent": "msal",
                "accept": "a/2",
            })
        );
    }

    #[test]
    fn ring_bound_holds_and_limit_keeps_newest() {
        let j = Journal::with_capacity(3);
        for i in 0..5 {
            j.record(entry(
                if i % 2 == 0 {
                    "entra.token"
                } else {
                    "admin.reset"
                },
                200,
            ));
        }
        assert_eq!(j.len(), 3);
        let all = j.query(&JournalQuery::default());
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), vec![3, 4, 5]);
        let q = JournalQuery {
            operation: Some("entra.token".into()),
            limit: Some(1),
            client_id: Some("c".into()),
            ..Default::default()
        };
        assert_eq!(
            j.query(&q).iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![5]
        );
    }

    #[test]
    fn secret_query_parameters_are_redacted() {
        assert_eq!(
            redacted_query(Some("a=1&client_secret=s3cr3t&Code=x")).as_deref(),
            Some("a=1&client_secret=[redacted]&Code=[redacted]")
        );
        assert_eq!(
            redacted_query(Some("client%5Fsecret=s&x=1")).as_deref(),
            Some("client%5Fsecret=[redacted]&x=1")
        );
    }
}
