//! ACS helpers shared by the ACS test binaries: a client signing with the connection
//! string's key, the `CommunicationErrorResponse` check, Entra tokens for the Teams users, the
//! ACS admin routes, and redaction for snapshots.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use m365_emulator::acs::hmac::{self, ConnectionString};
use m365_emulator::Emulator;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

use super::{client, read_json, CONTOSO};

pub const ADELE: &str = "adele@contoso.onmicrosoft.com";
pub const ADELE_OID: &str = "61927486-f404-463f-b72a-7aa7c4ad5433";
pub const ADELE_PASSWORD: &str = "Adele-Pass-1!";
pub const MEGAN_OID: &str = "ef262982-0ab4-4084-ad7c-898958a8f730";
pub const MAINLINE_OID: &str = "7d14015f-af3b-4f7d-af97-cdeba78b70eb";
pub const TEAMS_CLIENT: &str = "81a839dc-b25b-4552-bb03-aa9fa33cc6a0";
pub const TEAMS_PHONE_SECRET: &str = "teams-phone-secret~0123456789abcdefghij";
pub const RESOURCE_ID: &str = "40bfc917-2b6d-4d1f-ab8d-1ed911d306af";
pub const TPE: &str = "2025-06-30";
pub const SIGNED: &str = "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=";
pub const STS_HEADER: &str = "x-m365emu-expected-string-to-sign";

pub fn assignment_path(tenant: &str, object: &str) -> String {
    format!("/access/teamsExtension/tenants/{tenant}/assignments/{object}?api-version={TPE}")
}

/// An ACS client built from the ready file's connection string.
pub struct Acs {
    pub http: reqwest::Client,
    pub base: String,
    pub conn: ConnectionString,
    pub secondary: Vec<u8>,
}

/// Request headers as (name, value) pairs.
pub type Headers = Vec<(&'static str, String)>;

/// A response: status, headers, JSON body (`Null` when empty).
pub type Answer = (u16, HeaderMap, Value);

impl Acs {
    pub fn new(em: &Emulator) -> Acs {
        let ready = &em.ready().acs[0];
        let conn = ConnectionString::parse(&ready.connection_string).expect("connection string");
        assert_eq!(format!("{}/", conn.endpoint), ready.endpoint);
        let secondary = STANDARD
            .decode(&em.core().initial_directory().world.acs[0].secondary_key)
            .expect("base64");
        Acs {
            http: client(em),
            base: em.https_uri().to_string(),
            conn,
            secondary,
        }
    }

    pub async fn send(
        &self,
        method: Method,
        target: &str,
        body: &[u8],
        headers: &[(&str, String)],
    ) -> Answer {
        let mut req = self
            .http
            .request(method, format!("{}{target}", self.base))
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {status} {text:?}"))
        };
        (status, headers, body)
    }

    /// HMAC headers for `target` signed with `key` at the emulator's time.
    pub fn signed_headers(
        &self,
        em: &Emulator,
        key: &[u8],
        method: &Method,
        target: &str,
        body: &[u8],
    ) -> Vec<(&'static str, String)> {
        let s = hmac::sign_request(
            key,
            method.as_str(),
            target,
            &self.conn.host,
            em.clock().now(),
            body,
        );
        vec![
            ("x-ms-date", s.x_ms_date),
            ("x-ms-content-sha256", s.x_ms_content_sha256),
            ("authorization", s.authorization),
            ("content-type", "application/json".into()),
        ]
    }

    pub async fn hmac(&self, em: &Emulator, method: Method, target: &str, body: &Value) -> Answer {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let h = self.signed_headers(em, &self.conn.access_key, &method, target, &bytes);
        self.send(method, target, &bytes, &h).await
    }

    pub async fn bearer(&self, method: Method, target: &str, body: &Value, token: &str) -> Answer {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let h = [
            ("authorization", format!("Bearer {token}")),
            ("content-type", "application/json".into()),
        ];
        self.send(method, target, &bytes, &h).await
    }
}

/// Checks the `CommunicationErrorResponse` shape and status; returns the body for a snapshot.
pub fn acs_error(answer: &Answer, status: u16, code: &str) -> Value {
    let (s, h, b) = answer;
    assert_eq!(*s, status, "{b}");
    assert_eq!(b["error"]["code"], code, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{b}"
    );
    let keys: Vec<&String> = b["error"]
        .as_object()
        .expect("error object")
        .keys()
        .collect();
    assert!(
        keys.iter()
            .all(|k| ["code", "message", "target"].contains(&k.as_str())),
        "{b}"
    );
    assert!(
        h.get("content-type")
            .is_some_and(|v| v == "application/json"),
        "{h:?}"
    );
    b.clone()
}

/// A v2 client-credentials or password-grant token.
pub async fn entra_token(http: &reqwest::Client, em: &Emulator, form: &[(&str, &str)]) -> String {
    let resp = http
        .post(format!("{}/{CONTOSO}/oauth2/v2.0/token", em.https_uri()))
        .form(form)
        .send()
        .await
        .expect("token request");
    let (s, _, b) = read_json(resp).await;
    assert_eq!(s, 200, "{b}");
    b["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

pub async fn adele_token(http: &reqwest::Client, em: &Emulator, scope: &str) -> String {
    entra_token(
        http,
        em,
        &[
            ("grant_type", "password"),
            ("client_id", TEAMS_CLIENT),
            ("username", ADELE),
            ("password", ADELE_PASSWORD),
            ("scope", scope),
        ],
    )
    .await
}

pub fn claims_of(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .expect("b64"),
    )
    .expect("json")
}

pub async fn introspect(acs: &Acs, token: &str) -> Value {
    let resp = acs
        .http
        .post(format!("{}/_emulator/acs/tokens/introspect", acs.base))
        .json(&json!({ "token": token }))
        .send()
        .await
        .expect("introspect");
    read_json(resp).await.2
}

pub async fn admin_list(acs: &Acs, what: &str) -> Value {
    let resp = acs
        .http
        .get(format!("{}/_emulator/acs/{what}", acs.base))
        .send()
        .await
        .expect("admin");
    read_json(resp).await.2["value"].clone()
}

/// Seed 001's lifecycle with `call` doing the authentication.
/// Replaces the emulator's authority (its port varies) by `emulator`.
pub fn redact_host(v: Value, acs: &Acs) -> Value {
    serde_json::from_str(&v.to_string().replace(&acs.conn.host, "emulator")).expect("JSON")
}

/// Replaces RFC 1123 dates in a message by a placeholder.
pub fn redact_dates(mut v: Value) -> Value {
    if let Some(m) = v["error"]["message"].as_str() {
        let mut out = String::new();
        for (i, part) in m.split('\'').enumerate() {
            if i > 0 {
                out.push('\'');
            }
            out.push_str(if part.ends_with(" GMT") {
                "[date]"
            } else {
                part
            });
        }
        v["error"]["message"] = json!(out);
    }
    v
}

/// Verifies an ACS token against the published ACS key with jsonwebtoken.
pub async fn verify_acs_token(acs: &Acs, token: &str) -> Value {
    let resp = acs
        .http
        .get(format!("{}/_emulator/acs/keys", acs.base))
        .send()
        .await
        .expect("keys");
    let jwks = read_json(resp).await.2;
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwks["keys"][0].clone()).expect("jwk");
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("key");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.validate_aud = false;
    v.required_spec_claims.clear();
    v.validate_exp = false;
    let data = jsonwebtoken::decode::<Value>(token, &key, &v).expect("signature verifies");
    assert_eq!(data.header.kid.as_deref(), jwks["keys"][0]["kid"].as_str());
    data.claims
}

/// The claims of an ACS token with the volatile values replaced.
pub fn redact_acs_claims(mut c: Value) -> Value {
    let iat = c["iat"].as_i64().expect("iat");
    assert_eq!(c["csi"], iat.to_string());
    let lifetime = c["exp"].as_i64().expect("exp") - iat;
    c["iat"] = json!("[iat]");
    c["csi"] = json!("[iat]");
    c["exp"] = json!(format!("[iat + {lifetime}]"));
    if let Some(id) = c["skypeid"].as_str() {
        if let Some((prefix, _)) = id.rsplit_once('_') {
            if prefix == format!("acs:{RESOURCE_ID}") {
                c["skypeid"] = json!(format!("{prefix}_[suffix]"));
            }
        }
    }
    c
}
