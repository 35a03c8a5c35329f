//! Bounded retries that respect what the service asks for.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};

/// Attempts per request (the first one included).
pub const MAX_ATTEMPTS: u32 = 5;
/// The first backoff for answers without `Retry-After`; doubled per attempt.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest `Retry-After` honoured; beyond it the request gives up.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// A whole response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// `error.code` of a JSON error body (Entra's `error` string, AF and Graph codes).
    pub fn error_code(&self) -> Option<String> {
        let v = self.json()?;
        match &v["error"] {
            serde_json::Value::String(s) => Some(
                v["error_codes"][0]
                    .as_u64()
                    .map_or_else(|| s.clone(), |c| format!("AADSTS{c}")),
            ),
            e => e["code"].as_str().map(str::to_string),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// A final non-2xx answer of `service` as an error: the service's code (`HTTP<status>`
    /// when it gave none) and its message (`error.message`, or ASP.NET's `Message`).
    pub fn error(&self, service: &'static str) -> crate::ClientError {
        let body = self.json().unwrap_or_default();
        crate::ClientError::Service {
            service,
            status: self.status.as_u16(),
            code: self
                .error_code()
                .unwrap_or_else(|| format!("HTTP{}", self.status.as_u16())),
            message: body["error"]["message"]
                .as_str()
                .or(body["Message"].as_str())
                .unwrap_or_default()
                .to_string(),
        }
    }
}

/// Whether an answer is worth another attempt: 429, 5xx, and the Management API's AF429,
/// which it sends with status 403.
fn retryable(reply: &Reply) -> bool {
    reply.status == StatusCode::TOO_MANY_REQUESTS
        || reply.status.is_server_error()
        || (reply.status == StatusCode::FORBIDDEN && reply.error_code().as_deref() == Some("AF429"))
}

/// Sends the request built by `build`, retrying throttling answers after `Retry-After` (or the
/// backoff) and server errors after an exponential backoff. Other 4xx answers, including
/// 401 and 403, are returned at once: retrying them cannot help.
pub async fn send(build: impl Fn() -> RequestBuilder) -> Result<Reply, reqwest::Error> {
    let mut attempt = 1;
    loop {
        let resp = build().send().await?;
        let reply = Reply {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp.bytes().await?.to_vec(),
        };
        if !retryable(&reply) || attempt >= MAX_ATTEMPTS {
            return Ok(reply);
        }
        let wait = match retry_after(&reply.headers) {
            Some(w) if w > MAX_RETRY_AFTER => return Ok(reply),
            Some(w) => w,
            None => FIRST_BACKOFF * 2u32.pow(attempt - 1),
        };
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by these services).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}
