//! The requests of each scenario and the checks on their answers. A scenario is prepared once
//! ([`prepare`]: credentials, pre-signed assertion, subscription) and then hands every
//! connection its own [`Worker`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::Full;
use m365_emulator::jose::{JwsAlg, RsaSigningKey};
use m365_emulator::pki::{self, CertInfo};
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::acs_hmac::{self, AcsCredential};
use crate::args::{RunArgs, Scenario};
use crate::client::{Answer, Connection};
use crate::target::Plan;

/// The client-assertion type of private_key_jwt.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The ACS create-identity request.
pub const ACS_CREATE_IDENTITY: &str = "/identities?api-version=2023-10-01";
/// How long a pre-signed assertion is valid, and when the driver signs a new one (MSAL
/// Python signs for 10 minutes and reuses the assertion while it is valid).
const ASSERTION_LIFETIME: Duration = Duration::from_secs(600);
const ASSERTION_REUSE: Duration = Duration::from_secs(300);

/// What all workers of a run share.
pub struct Workload {
    pub scenario: Scenario,
    host: String,
    kind: Kind,
    /// Audit records received in blobs (management-drain).
    pub records: AtomicU64,
    /// The last blob received, kept for the plain `serde_json` reference.
    pub last_blob: RwLock<Option<Bytes>>,
}

enum Kind {
    /// A fixed form body posted to the token endpoint.
    TokenForm {
        path: String,
        body: Bytes,
    },
    TokenCertificate {
        path: String,
        form_head: String,
        assertions: Box<AssertionCache>,
    },
    Acs {
        credential: Box<AcsCredential>,
    },
    Drain(DrainPlan),
}

/// A signed assertion reused within its lifetime, re-signed when half of it is gone.
struct AssertionCache {
    key: RsaSigningKey,
    x5t: String,
    client_id: String,
    audience: String,
    current: RwLock<(Arc<str>, Instant)>,
}

impl AssertionCache {
    fn sign(&self) -> anyhow::Result<Arc<str>> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let header = json!({"alg": "RS256", "typ": "JWT", "x5t": self.x5t});
        let claims = json!({
            "aud": self.audience,
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": Uuid::new_v4().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME.as_secs() as i64,
        });
        Ok(self.key.sign_jwt(JwsAlg::RS256, &header, &claims)?.into())
    }

    fn get(&self) -> Arc<str> {
        {
            let cur = self.current.read().unwrap_or_else(|e| e.into_inner());
            if cur.1.elapsed() < ASSERTION_REUSE {
                return cur.0.clone();
            }
        }
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        if cur.1.elapsed() >= ASSERTION_REUSE {
            if let Ok(fresh) = self.sign() {
                *cur = (fresh, Instant::now());
            }
        }
        cur.0.clone()
    }
}

/// management-drain: the bearer token and the listing windows (one per day).
struct DrainPlan {
    bearer: String,
    listings: Vec<String>,
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// application/x-www-form-urlencoded escaping of one name or value.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn post_form(host: &str, path: &str, body: Bytes) -> Request<Full<Bytes>> {
    let mut r = Request::new(Full::new(body));
    *r.method_mut() = Method::POST;
    *r.uri_mut() = path.parse().unwrap_or_default();
    let h = r.headers_mut();
    h.insert(header::HOST, header_value(host));
    h.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    r
}

fn header_value(text: &str) -> http::HeaderValue {
    http::HeaderValue::from_str(text).unwrap_or_else(|_| http::HeaderValue::from_static(""))
}

fn client_secret_form(plan: &Plan) -> anyhow::Result<Bytes> {
    let secret = plan
        .client_secret
        .as_deref()
        .ok_or_else(|| anyhow!("token-secret needs a client secret (--client-secret)"))?;
    Ok(Bytes::from(form(&[
        ("grant_type", "client_credentials"),
        ("client_id", &plan.client_id),
        ("client_secret", secret),
        ("scope", &plan.scope),
    ])))
}

/// Fetches a token over `conn` (client secret); used to set up management-drain.
async fn fetch_token(conn: &mut Connection, plan: &Plan) -> anyhow::Result<String> {
    let req = post_form(
        &plan.endpoint.authority,
        &plan.token_path,
        client_secret_form(plan)?,
    );
    let answer = conn.send(req).await?;
    let v: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    v.get("access_token")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            anyhow!(
                "token request answered {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            )
        })
}

fn request(
    method: Method,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Request<Full<Bytes>> {
    let mut r = Request::new(Full::new(body));
    *r.method_mut() = method;
    *r.uri_mut() = path.parse().unwrap_or_default();
    r.headers_mut().insert(header::HOST, header_value(host));
    for (k, v) in headers {
        if let Ok(name) = http::HeaderName::from_bytes(k.as_bytes()) {
            r.headers_mut().insert(name, header_value(v));
        }
    }
    r
}

async fn admin_json(
    conn: &mut Connection,
    host: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let bytes = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    let req = request(
        method,
        host,
        path,
        &[("content-type", "application/json")],
        bytes,
    );
    let answer = conn.send(req).await?;
    if !answer.status.is_success() {
        bail!(
            "{path} answered {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
    Ok(serde_json::from_slice(&answer.body).unwrap_or(Value::Null))
}

/// `2026-11-22T03:04:05` (the Management API's documented form).
fn api_time(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    t.format(&f).unwrap_or_default()
}

/// management-drain set-up: resets the emulator, starts an Audit.General subscription,
/// advances the virtual clock by `days` so that many days of content exist, then gets a
/// token (valid at the new time) and lists one 24-hour window per day.
async fn prepare_drain(conn: &mut Connection, plan: &Plan, days: u32) -> anyhow::Result<DrainPlan> {
    let host = plan.endpoint.authority.as_str();
    let tenant_id = plan
        .tenant_id
        .clone()
        .ok_or_else(|| anyhow!("management-drain needs the tenant's GUID (use --ready-file)"))?;
    admin_json(conn, host, Method::POST, "/_emulator/reset", None).await?;
    let bearer = format!("Bearer {}", fetch_token(conn, plan).await?);
    let feed = format!("/api/v1.0/{tenant_id}/activity/feed");
    let start = request(
        Method::POST,
        host,
        &format!("{feed}/subscriptions/start?contentType=Audit.General"),
        &[("authorization", &bearer), ("content-length", "0")],
        Bytes::new(),
    );
    let answer = conn.send(start).await?;
    if !answer.status.is_success() {
        bail!(
            "subscriptions/start answered {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
    // A minute more than the days, so the last window is full.
    let advance = f64::from(days) * 86_400.0 + 60.0;
    admin_json(
        conn,
        host,
        Method::POST,
        "/_emulator/clock",
        Some(json!({"advance_seconds": advance})),
    )
    .await?;
    let clock = admin_json(conn, host, Method::GET, "/_emulator/clock", None).await?;
    let now = clock
        .get("now")
        .and_then(Value::as_str)
        .and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .ok_or_else(|| anyhow!("/_emulator/clock gave no time: {clock}"))?;
    let bearer = format!("Bearer {}", fetch_token(conn, plan).await?);
    let day = time::Duration::days(1);
    let listings = (0..days)
        .map(|d| {
            let end = now - day * d as i32;
            let start = end - day;
            format!(
                "{feed}/subscriptions/content?contentType=Audit.General&startTime={}&endTime={}",
                api_time(start),
                api_time(end)
            )
        })
        .collect();
    Ok(DrainPlan { bearer, listings })
}

/// Prepares a scenario over one connection (set-up requests are not measured).
pub async fn prepare(
    conn: &mut Connection,
    plan: &Plan,
    args: &RunArgs,
) -> anyhow::Result<Arc<Workload>> {
    let host = plan.endpoint.authority.clone();
    let kind = match args.scenario {
        Scenario::TokenSecret => Kind::TokenForm {
            path: plan.token_path.clone(),
            body: client_secret_form(plan)?,
        },
        Scenario::TokenCertificate => {
            let key_path = plan.private_key_pem.as_ref().ok_or_else(|| {
                anyhow!("token-certificate needs the client's private key (--private-key)")
            })?;
            let cert_path = plan.certificate_pem.as_ref().ok_or_else(|| {
                anyhow!("token-certificate needs the client's certificate (--certificate)")
            })?;
            let key_pem = std::fs::read_to_string(key_path)
                .with_context(|| format!("reading {}", key_path.display()))?;
            let der = pki::first_pem_block(&key_pem, "PRIVATE KEY")
                .ok_or_else(|| anyhow!("{} holds no PKCS#8 key", key_path.display()))?;
            let key = RsaSigningKey::from_pkcs8_der(&der)?;
            let cert_pem = std::fs::read_to_string(cert_path)
                .with_context(|| format!("reading {}", cert_path.display()))?;
            let cert = CertInfo::from_pem(&cert_pem, &cert_path.display().to_string())?;
            let cache = AssertionCache {
                key,
                x5t: cert.x5t(),
                client_id: plan.client_id.clone(),
                audience: format!("{}{}", plan.endpoint.base_url, plan.token_path),
                current: RwLock::new((Arc::from(""), Instant::now())),
            };
            let first = cache.sign()?;
            *cache.current.write().unwrap_or_else(|e| e.into_inner()) = (first, Instant::now());
            Kind::TokenCertificate {
                path: plan.token_path.clone(),
                form_head: form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", &plan.client_id),
                    ("scope", &plan.scope),
                    ("client_assertion_type", JWT_BEARER),
                ]),
                assertions: Box::new(cache),
            }
        }
        Scenario::AcsHmac => {
            let text = plan.acs_connection_string.as_deref().ok_or_else(|| {
                anyhow!(
                    "acs-hmac: the ready file lists no ACS resource (acs[]) and no \
                     --acs-connection-string was given: this emulator build has no ACS"
                )
            })?;
            Kind::Acs {
                credential: Box::new(
                    AcsCredential::from_connection_string(text)
                        .map_err(|e| anyhow!("acs-hmac: {e}"))?,
                ),
            }
        }
        Scenario::ManagementDrain => Kind::Drain(prepare_drain(conn, plan, args.days).await?),
    };
    Ok(Arc::new(Workload {
        scenario: args.scenario,
        host,
        kind,
        records: AtomicU64::new(0),
        last_blob: RwLock::new(None),
    }))
}

/// One connection's sequence of requests.
pub struct Worker {
    load: Arc<Workload>,
    /// management-drain: paths still to fetch (listing pages and blobs).
    queue: VecDeque<String>,
    /// management-drain: which day's window this worker lists first.
    next_listing: usize,
    last_was_blob: bool,
}

impl Workload {
    pub fn worker(self: &Arc<Self>, index: usize) -> Worker {
        Worker {
            load: self.clone(),
            queue: VecDeque::new(),
            next_listing: index,
            last_was_blob: false,
        }
    }

    /// Records per second of a plain `serde_json` serialisation of the last blob's records,
    /// measured for about `budget`: the reference for the emulator's blob serving.
    pub fn plain_serde_records_per_second(&self, budget: Duration) -> Option<f64> {
        let blob = self.last_blob.read().ok()?.clone()?;
        let records: Vec<Value> = serde_json::from_slice(&blob).ok()?;
        if records.is_empty() {
            return None;
        }
        let start = Instant::now();
        let mut rounds = 0u64;
        while start.elapsed() < budget || rounds == 0 {
            let bytes = serde_json::to_vec(std::hint::black_box(&records)).ok()?;
            std::hint::black_box(bytes);
            rounds += 1;
        }
        Some((rounds * records.len() as u64) as f64 / start.elapsed().as_secs_f64())
    }
}

/// Path and query of an absolute URL (`https://host:port/path?q` → `/path?q`).
fn path_of(url: &str) -> &str {
    match url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => url,
    }
}

/// Counts the records of a blob without parsing it: each record has one `RecordType`.
fn count_records(body: &[u8]) -> u64 {
    const NEEDLE: &[u8] = b"\"RecordType\":";
    body.windows(NEEDLE.len()).filter(|w| *w == NEEDLE).count() as u64
}

impl Worker {
    /// The next request to send.
    pub fn next_request(&mut self) -> Request<Full<Bytes>> {
        let load = self.load.clone();
        let host = load.host.as_str();
        match &load.kind {
            Kind::TokenForm { path, body } => post_form(host, path, body.clone()),
            Kind::TokenCertificate {
                path,
                form_head,
                assertions,
            } => {
                let a = assertions.get();
                let body = format!("{form_head}&client_assertion={a}");
                post_form(host, path, Bytes::from(body))
            }
            Kind::Acs { credential } => {
                let date = acs_hmac::rfc1123(OffsetDateTime::now_utc());
                let signed = credential.sign("POST", ACS_CREATE_IDENTITY, &date, b"");
                request(
                    Method::POST,
                    &credential.host,
                    ACS_CREATE_IDENTITY,
                    &[
                        ("content-type", "application/json"),
                        ("content-length", "0"),
                        ("x-ms-date", &signed.date),
                        ("x-ms-content-sha256", &signed.content_sha256),
                        ("authorization", &signed.authorization),
                    ],
                    Bytes::new(),
                )
            }
            Kind::Drain(plan) => {
                let path = match self.queue.pop_front() {
                    Some(p) => p,
                    None => {
                        let i = self.next_listing % plan.listings.len().max(1);
                        self.next_listing += 1;
                        plan.listings.get(i).cloned().unwrap_or_default()
                    }
                };
                self.last_was_blob = path.contains("/audit/");
                request(
                    Method::GET,
                    host,
                    &path,
                    &[("authorization", &plan.bearer)],
                    Bytes::new(),
                )
            }
        }
    }

    /// Checks the answer to the last request; `Err` describes what was wrong.
    pub fn check(&mut self, answer: &Answer) -> Result<(), String> {
        let load = self.load.clone();
        let unexpected = || {
            format!(
                "{} {}",
                answer.status,
                String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)])
            )
        };
        match &load.kind {
            Kind::TokenForm { .. } | Kind::TokenCertificate { .. } => {
                if answer.status != 200 || !contains(&answer.body, b"\"access_token\"") {
                    return Err(unexpected());
                }
            }
            Kind::Acs { .. } => {
                if answer.status == 404 {
                    return Err(format!(
                        "404 for POST {ACS_CREATE_IDENTITY}: this emulator build does not \
                         serve the ACS identity API ({})",
                        unexpected()
                    ));
                }
                if answer.status != 201 || !contains(&answer.body, b"\"identity\"") {
                    return Err(unexpected());
                }
            }
            Kind::Drain(_) => {
                if answer.status != 200 {
                    return Err(unexpected());
                }
                if self.last_was_blob {
                    load.records
                        .fetch_add(count_records(&answer.body), Ordering::Relaxed);
                    if let Ok(mut last) = load.last_blob.write() {
                        *last = Some(answer.body.clone());
                    }
                } else {
                    let entries: Vec<Value> =
                        serde_json::from_slice(&answer.body).map_err(|_| unexpected())?;
                    for e in &entries {
                        if let Some(uri) = e.get("contentUri").and_then(Value::as_str) {
                            self.queue.push_back(path_of(uri).to_string());
                        }
                    }
                    if let Some(next) = answer
                        .headers
                        .get("nextpageuri")
                        .and_then(|v| v.to_str().ok())
                    {
                        self.queue.push_back(path_of(next).to_string());
                    }
                }
            }
        }
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(encode("https://x/.default"), "https%3A%2F%2Fx%2F.default");
        assert_eq!(encode("a b~"), "a+b%7E");
        assert_eq!(form(&[("a", "1"), ("b", "2 3")]), "a=1&b=2+3");
    }

    #[test]
    fn paths_of_absolute_urls() {
        assert_eq!(path_of("https://127.0.0.1:1/api/x?y=1"), "/api/x?y=1");
        assert_eq!(path_of("https://h"), "/");
        assert_eq!(path_of("/already"), "/already");
    }

    #[test]
    fn records_are_counted_by_record_type() {
        let blob = br#"[{"Id":"a","RecordType":8,"X":{"Y":1}},{"Id":"b","RecordType":15}]"#;
        assert_eq!(count_records(blob), 2);
        assert_eq!(count_records(b"[]"), 0);
    }

    #[test]
    fn api_times_have_no_offset() {
        let t = time::macros::datetime!(2026-11-22 03:04:05.5 UTC);
        assert_eq!(api_time(t), "2026-11-22T03:04:05");
    }
}
