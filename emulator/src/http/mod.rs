//! Listeners (HTTPS and plain HTTP, HTTP/1.1 and HTTP/2) and the plumbing every service
//! shares: connection facts, the request origin, bounded body reading, and the outcome record
//! a handler leaves on its response for the journal.

pub mod form;
pub mod header_case;
pub mod listener;

use std::net::SocketAddr;

use axum::body::Body;
use bytes::Bytes;
use http::request::Parts;
use http_body_util::BodyExt;

/// Facts about the connection a request arrived on, inserted by the listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub scheme: Scheme,
    pub local: SocketAddr,
    pub peer: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The authority the client addressed: the `Host` header (HTTP/1.1) or the URI authority
/// (HTTP/2), else the local socket address.
pub fn authority(parts: &Parts) -> String {
    if let Some(a) = parts.uri.authority() {
        return a.as_str().to_string();
    }
    if let Some(h) = parts
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
    {
        if !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()) {
            return h.to_string();
        }
    }
    parts
        .extensions
        .get::<ConnInfo>()
        .map(|c| c.local.to_string())
        .unwrap_or_else(|| "localhost".into())
}

/// `scheme://authority` of the request, e.g. `https://127.0.0.1:8443`.
pub fn origin(parts: &Parts) -> String {
    let scheme = parts
        .extensions
        .get::<ConnInfo>()
        .map_or(Scheme::Https, |c| c.scheme);
    format!("{}://{}", scheme.as_str(), authority(parts))
}

/// The host part of the authority, without port.
pub fn host_without_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    Broken,
}

/// Reads a request body up to `limit` bytes.
/// Runs CPU-heavy work (an RSA signature, a large blob) that sits inside a request handler.
/// On a multi-threaded runtime the worker's other tasks move to another thread meanwhile
/// (`block_in_place`), so reading and answering other connections goes on: the emulator
/// runs fewer async workers than CPUs (see `main.rs`), and one of them stalled for a
/// millisecond would stall every connection it serves. For work that allocates megabytes use
/// [`crate::cpu_pool::CpuPool::run`] instead: every thread that ends up running it keeps its
/// own malloc arena. Elsewhere (single-threaded test runtimes, plain threads) it just runs
/// `work`.
pub fn cpu_heavy<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(BodyError::TooLarge)
        }
        Err(_) => Err(BodyError::Broken),
    }
}

/// What a handler did, left as a response extension for the journal and tests.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// `service.operation`, e.g. `entra.token`.
    pub operation: &'static str,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub user: Option<String>,
    /// The `uti` of an issued or presented token.
    pub token_id: Option<String>,
    /// The service error code, e.g. `AADSTS7000215`.
    pub error_code: Option<String>,
    /// For token requests: the decoded client-assertion header and claims (no signature).
    pub assertion: Option<Box<serde_json::value::RawValue>>,
}

impl Outcome {
    pub fn new(operation: &'static str) -> Outcome {
        Outcome {
            operation,
            ..Default::default()
        }
    }
}

/// Strict percent-decoding of a path segment (`%24` → `$`, `+` stays `+`); `None` on a
/// malformed escape or non-UTF-8 bytes. Shared by the services' path parsers.
pub fn decode_path_segment(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
