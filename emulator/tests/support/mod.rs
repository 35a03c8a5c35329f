//! Helpers shared by the black-box tests: starting an emulator, an HTTPS client that trusts its
//! CA, client assertions signed with the generated certificate keys, independent verification
//! of issued tokens (jsonwebtoken against the published JWKS), and snapshot redaction.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod acs;
pub mod management;
pub mod python;

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use m365_emulator::jose::{JwsAlg, RsaSigningKey};
use m365_emulator::pki::{first_pem_block, CertInfo};
use m365_emulator::Emulator;
use serde_json::{json, Value};

pub const CONTOSO: &str = "ca62b0eb-5136-43d1-8c4a-815e98e86782";
pub const CONTOSO_DOMAIN: &str = "contoso.onmicrosoft.com";
pub const FABRIKAM: &str = "1533f1c2-b4dd-43b9-9e79-8b9a549207f0";
/// Contoso's multi-tenant audit collector (secret + certificate), consented in both tenants.
pub const COLLECTOR: &str = "b78eacce-6d2d-401c-8e4f-c3fa7b1760ac";
pub const COLLECTOR_SECRET: &str = "collector-secret~0123456789abcdefghijkl";
pub const COLLECTOR_EXPIRED_SECRET: &str = "collector-expired-secret~abcdefghijklmnop";
/// Contoso's single-tenant Teams-phone backend.
pub const TEAMS_PHONE: &str = "06336e1e-f137-4f2b-8f1d-05d79d2b72e2";
pub const MANAGE: &str = "https://manage.office.com";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Upper bound for any single HTTP exchange.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for an emulator start (the first seeded start generates RSA keys).
pub const START_TIMEOUT: Duration = Duration::from_secs(180);

/// Serialises starts so that parallel tests do not all generate the same seeded keys at once
/// (the seed's keys are memoised in-process: only the first start pays for them).
static START_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An emulator with the default world, keys from seed 42, free ports, a temporary state dir.
pub async fn start() -> Emulator {
    start_with(Emulator::builder().key_seed(42)).await
}

pub async fn start_with(builder: m365_emulator::EmulatorBuilder) -> Emulator {
    let _guard = START_LOCK.lock().await;
    tokio::time::timeout(START_TIMEOUT, builder.start())
        .await
        .expect("the emulator starts in time")
        .expect("the emulator starts")
}

/// An HTTPS client that trusts only the emulator's CA.
pub fn client(emulator: &Emulator) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(emulator.ca_pem().as_bytes()).expect("CA PEM");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(HTTP_TIMEOUT)
        .no_proxy()
        .build()
        .expect("reqwest client")
}

pub fn token_url_v2(emulator: &Emulator, tenant: &str) -> String {
    format!("{}/{tenant}/oauth2/v2.0/token", emulator.https_uri())
}

pub fn token_url_v1(emulator: &Emulator, tenant: &str) -> String {
    format!("{}/{tenant}/oauth2/token", emulator.https_uri())
}

/// A client-credentials form with the collector's secret for the Management API.
pub fn secret_form_v2(client_id: &str, secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "client_credentials".to_string()),
        ("client_id", client_id.to_string()),
        ("client_secret", secret.to_string()),
        ("scope", format!("{MANAGE}/.default")),
    ]
}

pub fn assertion_form_v2(client_id: &str, assertion: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "client_credentials".to_string()),
        ("client_id", client_id.to_string()),
        ("client_assertion_type", JWT_BEARER.to_string()),
        ("client_assertion", assertion.to_string()),
        ("scope", format!("{MANAGE}/.default")),
    ]
}

/// POSTs a form and returns status, headers and the JSON body.
pub async fn post_form(
    client: &reqwest::Client,
    url: &str,
    form: &[(&str, String)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = client
        .post(url)
        .form(form)
        .send()
        .await
        .expect("request sent");
    read_json(resp).await
}

pub async fn read_json(resp: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("response body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): status {status}, {text:?}"));
    (status, headers, body)
}

pub async fn get_json(
    client: &reqwest::Client,
    url: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = client.get(url).send().await.expect("request sent");
    read_json(resp).await
}

/// A `client_credentials` token for the collector with its secret (v2 endpoint).
pub async fn secret_token(client: &reqwest::Client, emulator: &Emulator, tenant: &str) -> String {
    secret_token_reply(client, emulator, tenant).await.0
}

/// [`secret_token`] with the whole response body.
pub async fn secret_token_reply(
    client: &reqwest::Client,
    emulator: &Emulator,
    tenant: &str,
) -> (String, Value) {
    let (status, _, body) = post_form(
        client,
        &token_url_v2(emulator, tenant),
        &secret_form_v2(COLLECTOR, COLLECTOR_SECRET),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    (token, body)
}

/// A generated app certificate with its private key, read from the files the ready info names.
pub struct AppCredential {
    pub client_id: String,
    pub cert: CertInfo,
    pub key: RsaSigningKey,
    pub certificate_pem: String,
}

impl AppCredential {
    /// The certificate credential of `client_id` as the ready info lists it.
    pub fn load(emulator: &Emulator, client_id: &str) -> AppCredential {
        let app = emulator
            .ready()
            .tenants
            .iter()
            .flat_map(|t| t.applications.iter())
            .find(|a| a.client_id == client_id)
            .unwrap_or_else(|| panic!("the ready info lists {client_id}"));
        let cert_path = app
            .certificate_pem_path
            .as_ref()
            .expect("certificate_pem_path");
        let key_path = app
            .private_key_pem_path
            .as_ref()
            .expect("private_key_pem_path");
        let certificate_pem = std::fs::read_to_string(cert_path).expect("certificate PEM");
        let key_pem = std::fs::read_to_string(key_path).expect("private key PEM");
        let cert = CertInfo::from_pem(&certificate_pem, "test certificate").expect("cert");
        assert_eq!(
            Some(cert.sha1_hex()),
            app.thumbprint_sha1,
            "ready thumbprint matches the certificate file"
        );
        let der = first_pem_block(&key_pem, "PRIVATE KEY").expect("PKCS#8 block");
        let key = RsaSigningKey::from_pkcs8_der(&der).expect("RSA key");
        AppCredential {
            client_id: client_id.to_string(),
            cert,
            key,
            certificate_pem,
        }
    }

    /// `x5t` as MSAL Python sends it: base64url SHA-1 **with** `=` padding.
    pub fn x5t_padded(&self) -> String {
        URL_SAFE.encode(self.cert.sha1)
    }

    pub fn x5t(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.cert.sha1)
    }

    pub fn x5t_s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.cert.sha256)
    }

    /// The certificate as an `x5c` entry (standard base64 DER).
    pub fn x5c(&self) -> String {
        STANDARD.encode(&self.cert.der)
    }

    pub fn sign(&self, alg: JwsAlg, header: &Value, claims: &Value) -> String {
        self.key.sign_jwt(alg, header, claims).expect("signing")
    }

    /// An assertion shaped like MSAL Python's (azure-identity's certificate credential):
    /// RS256, padded `x5t`, fractional float `exp`/`iat`, no `nbf`.
    pub fn msal_python_assertion(&self, iss: &str, aud: &str, now_unix: i64) -> String {
        let iat = now_unix as f64 + 0.126_628_2;
        let header = json!({"alg": "RS256", "typ": "JWT", "x5t": self.x5t_padded()});
        let claims = json!({
            "aud": aud,
            "iss": iss,
            "sub": iss,
            "exp": iat + 600.0,
            "iat": iat,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        self.sign(JwsAlg::RS256, &header, &claims)
    }

    /// An assertion shaped like MSAL Node's with a SHA-256 thumbprint and the chain:
    /// PS256, `x5t#S256`, `x5c`, integer `nbf`/`iat`/`exp`.
    pub fn msal_node_assertion(&self, iss: &str, aud: &str, now_unix: i64) -> String {
        let header = json!({
            "alg": "PS256",
            "typ": "JWT",
            "x5t#S256": self.x5t_s256(),
            "x5c": [self.x5c()],
        });
        let claims = json!({
            "aud": aud,
            "exp": now_unix + 600,
            "iss": iss,
            "sub": iss,
            "nbf": now_unix,
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": now_unix,
        });
        self.sign(JwsAlg::PS256, &header, &claims)
    }
}

/// The v2 JWKS of the running emulator.
pub async fn jwks(client: &reqwest::Client, emulator: &Emulator) -> Value {
    let (status, _, body) = get_json(
        client,
        &format!("{}/common/discovery/v2.0/keys", emulator.https_uri()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

pub fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("keys array")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_string())
        .collect()
}

/// Verifies an access token with jsonwebtoken (an implementation independent of the
/// emulator's) against the JWKS key its `kid` names: RS256 signature, `aud`, `iss`, `exp`,
/// `nbf`. Returns the header and claims.
pub fn verify_token(
    token: &str,
    jwks: &Value,
    aud: &str,
    iss: &str,
) -> Result<(jsonwebtoken::Header, Value), String> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    let header = jsonwebtoken::decode_header(token).map_err(|e| format!("header: {e}"))?;
    let kid = header.kid.clone().ok_or("the token has no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .ok_or("the JWKS has no keys array")?
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .ok_or_else(|| format!("kid {kid} is not in the JWKS"))?;
    let key = DecodingKey::from_rsa_components(
        jwk["n"].as_str().ok_or("no n")?,
        jwk["e"].as_str().ok_or("no e")?,
    )
    .map_err(|e| format!("JWKS key: {e}"))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[aud]);
    validation.set_issuer(&[iss]);
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "nbf", "iat", "aud", "iss", "sub"]);
    let data = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map_err(|e| format!("verification: {e}"))?;
    Ok((data.header, data.claims))
}

/// The raw JSON of a JWT's header, exactly as encoded (no library defaults added).
pub fn raw_header(token: &str) -> Value {
    let seg = token.split('.').next().expect("header segment");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(seg).expect("base64url header"))
        .expect("header JSON")
}

/// Replaces the emulator's origin (and bare authority) by stable placeholders.
pub fn redact_origin(value: &Value, emulator: &Emulator) -> Value {
    let authority = emulator
        .https_uri()
        .strip_prefix("https://")
        .expect("https URL")
        .to_string();
    let text = value
        .to_string()
        .replace(emulator.https_uri(), "https://emulator")
        .replace(&authority, "emulator");
    serde_json::from_str(&text).expect("still JSON")
}

pub fn header<'h>(headers: &'h reqwest::header::HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("header {name} is present"))
        .to_str()
        .expect("ASCII header")
}

/// Entra's token-endpoint headers (success and error alike).
pub fn assert_token_headers(headers: &reqwest::header::HeaderMap) {
    assert_eq!(
        header(headers, "content-type"),
        "application/json; charset=utf-8"
    );
    assert_eq!(header(headers, "cache-control"), "no-store, no-cache");
    assert_eq!(header(headers, "pragma"), "no-cache");
    assert_eq!(header(headers, "expires"), "-1");
    assert_eq!(header(headers, "x-content-type-options"), "nosniff");
}

/// Checks an Entra error envelope completely and returns it redacted for a snapshot:
/// `error_description` keeps its first line (the tail is checked here), the trace id,
/// correlation id and timestamp become placeholders, the origin becomes `https://emulator`.
pub fn check_error(
    emulator: &Emulator,
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &Value,
    expected_status: u16,
    code: u32,
) -> Value {
    assert_eq!(status, expected_status, "status for AADSTS{code}: {body}");
    assert_token_headers(headers);
    assert_eq!(body["error_codes"], json!([code]), "{body}");
    let obj = body.as_object().expect("error object");
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "error",
            "error_description",
            "error_codes",
            "timestamp",
            "trace_id",
            "correlation_id",
            "error_uri"
        ],
        "{body}"
    );
    let trace_id = body["trace_id"].as_str().expect("trace_id");
    let correlation_id = body["correlation_id"].as_str().expect("correlation_id");
    let timestamp = body["timestamp"].as_str().expect("timestamp");
    uuid::Uuid::parse_str(trace_id).expect("trace_id is a GUID");
    uuid::Uuid::parse_str(correlation_id).expect("correlation_id is a GUID");
    let ts_format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    time::PrimitiveDateTime::parse(timestamp, &ts_format).expect("timestamp YYYY-MM-DD HH:MM:SSZ");
    assert_eq!(header(headers, "x-ms-request-id"), trace_id);
    assert_eq!(
        body["error_uri"],
        format!("{}/error?code={code}", emulator.https_uri()),
    );
    let description = body["error_description"]
        .as_str()
        .expect("error_description");
    let (first, tail) = description
        .split_once("\r\nTrace ID: ")
        .expect("description has a Trace ID tail");
    assert!(
        first.starts_with(&format!("AADSTS{code}: ")),
        "description starts with the code: {first}"
    );
    assert_eq!(
        tail,
        format!("{trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}")
    );
    let mut redacted = body.clone();
    redacted["error_description"] = json!(first);
    redacted["trace_id"] = json!("[trace_id]");
    redacted["correlation_id"] = json!("[correlation_id]");
    redacted["timestamp"] = json!("[timestamp]");
    redact_origin(&redacted, emulator)
}

/// Like [`client`], but never follows redirects: the user flows assert on the 302s themselves
/// (`Location` with the code or the error), and carry the session cookie by hand.
pub fn client_no_redirects(emulator: &Emulator) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(emulator.ca_pem().as_bytes()).expect("CA PEM");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(HTTP_TIMEOUT)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

/// The value of a page's hidden input (`flow`, `csrf`, …); panics with the page if absent.
pub fn hidden_field(html: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no hidden field {name} in {html}"))
        + marker.len();
    html[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_string()
}
