//! The control plane under `/_emulator/`: health, the world, reset, application key
//! credentials (manifest `keyCredentials` format) and signing-key rotation.
//! JSON in, JSON out; errors are `{"error":{"code":…,"message":…}}` with a 4xx.

pub mod clock;
pub mod consents;
pub mod entra;
pub mod faults;
pub mod journal;
pub mod management;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use base64::Engine;
use http::{Request, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use time::Duration;
use uuid::Uuid;

use crate::http::{read_body, BodyError, Outcome};
use crate::pki::CertInfo;
use crate::state::{key_id_for, Core, CredentialOrigin, RegisteredCertificate};

pub fn router() -> Router<Arc<Core>> {
    Router::new()
        .route("/_emulator/health", get(health))
        .route("/_emulator/world", get(world))
        .route("/_emulator/reset", post(reset))
        .route("/_emulator/clock", get(clock::get).post(clock::change))
        .route(
            "/_emulator/journal",
            get(journal::list).delete(journal::clear),
        )
        .route(
            "/_emulator/faults",
            get(faults::list).post(faults::add).delete(faults::clear),
        )
        .route("/_emulator/faults/{id}", delete(faults::remove))
        .route("/_emulator/journal/stream", get(journal::stream))
        .route(
            "/_emulator/entra/settings",
            get(entra::get_settings).patch(entra::patch_settings),
        )
        .route(
            "/_emulator/management/settings",
            get(management::get_settings).patch(management::patch_settings),
        )
        .route(
            "/_emulator/management/{tenant}/subscriptions",
            get(management::list_subscriptions),
        )
        .route(
            "/_emulator/management/{tenant}/subscriptions/disable",
            post(management::disable_subscription),
        )
        .route(
            "/_emulator/management/{tenant}/records",
            get(management::list_records).post(management::add_records),
        )
        .route("/_emulator/keys", get(list_keys))
        .route(
            "/_emulator/tenants/{tenant}/consents",
            get(consents::list).post(consents::grant),
        )
        .route(
            "/_emulator/tenants/{tenant}/consents/{client_id}",
            delete(consents::revoke),
        )
        .route("/_emulator/tokens/introspect", post(introspect))
        .route("/_emulator/devicecode/approve", post(approve_device_code))
        .route("/_emulator/keys/rotate", post(rotate_keys))
        .route(
            "/_emulator/applications/{client_id}/keyCredentials",
            get(list_key_credentials).post(add_key_credentials),
        )
        .route(
            "/_emulator/applications/{client_id}/keyCredentials/{key_id}",
            delete(delete_key_credential),
        )
        .merge(crate::graph::admin::router())
        .layer(axum::middleware::from_fn(guard))
}

/// The control plane changes what the emulator accepts (keys, consents, faults), so web pages
/// must not drive it: cross-site browser requests (a foreign `Origin`, `Sec-Fetch-Site`) and
/// host names other than localhost or an IP address (DNS rebinding) get a 403. Scripts and
/// tools (curl, SDK test harnesses) send neither and are unaffected.
async fn guard(req: Request<Body>, next: axum::middleware::Next) -> Response {
    let (parts, body) = req.into_parts();
    let own_origin = crate::http::origin(&parts);
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
    };
    let foreign_origin = header("origin").is_some_and(|o| o != own_origin.to_ascii_lowercase());
    let cross_site =
        header("sec-fetch-site").is_some_and(|s| s == "cross-site" || s == "same-site");
    let authority = crate::http::authority(&parts);
    let host = crate::http::host_without_port(&authority).to_ascii_lowercase();
    let local_name = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok();
    if foreign_origin || cross_site || !local_name {
        let why = if local_name {
            "cross-site requests to the control plane are refused"
        } else {
            "the control plane answers only to localhost or an IP address"
        };
        return AdminError {
            status: StatusCode::FORBIDDEN,
            code: "Forbidden",
            message: why.to_string(),
        }
        .into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

/// An admin API error.
#[derive(Debug)]
pub struct AdminError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl AdminError {
    pub fn bad_request(message: impl Into<String>) -> AdminError {
        AdminError {
            status: StatusCode::BAD_REQUEST,
            code: "BadRequest",
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> AdminError {
        AdminError {
            status: StatusCode::NOT_FOUND,
            code: "NotFound",
            message: message.into(),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            axum::Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response();
        let mut outcome = Outcome::new("admin");
        outcome.error_code = Some(self.code.to_string());
        resp.extensions_mut().insert(outcome);
        resp
    }
}

pub(crate) fn ok(operation: &'static str, status: StatusCode, body: Value) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    resp.extensions_mut().insert(Outcome::new(operation));
    resp
}

/// Reads a JSON body; an empty body is `null`.
pub async fn json_body(core: &Core, body: Body) -> Result<Value, AdminError> {
    let bytes = match read_body(body, core.settings.body_limit).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return Err(AdminError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "PayloadTooLarge",
                message: format!("the body is larger than {} bytes", core.settings.body_limit),
            })
        }
        Err(BodyError::Broken) => {
            return Err(AdminError::bad_request("the body could not be read"))
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| AdminError::bad_request(format!("the body is not valid JSON: {e}")))
}

async fn health(State(core): State<Arc<Core>>) -> Response {
    ok(
        "admin.health",
        StatusCode::OK,
        json!({"status": "ok", "version": env!("CARGO_PKG_VERSION"), "now": crate::ready::rfc3339(core.clock.now())}),
    )
}

async fn world(State(core): State<Arc<Core>>) -> Response {
    let dir = core.directory();
    let mut world = serde_json::to_value(&dir.world).unwrap_or(Value::Null);
    let creds: serde_json::Map<String, Value> = dir
        .certificates
        .iter()
        .map(|(id, list)| {
            (
                id.to_string(),
                json!(list.iter().map(key_credential_json).collect::<Vec<_>>()),
            )
        })
        .collect();
    world["key_credentials"] = Value::Object(creds);
    ok("admin.world", StatusCode::OK, world)
}

async fn reset(State(core): State<Arc<Core>>) -> Response {
    core.reset();
    ok("admin.reset", StatusCode::OK, json!({"reset": true}))
}

async fn list_keys(State(core): State<Arc<Core>>) -> Response {
    ok("admin.keys.list", StatusCode::OK, keys_json(&core))
}

fn keys_json(core: &Core) -> Value {
    let active = core.signing.active().kid.clone();
    let keys: Vec<Value> = core
        .signing
        .published(core.clock.now())
        .iter()
        .map(|k| {
            json!({
                "kid": k.kid,
                "active": k.kid == active,
                "retire_at": k.retire_at.map(crate::ready::rfc3339),
                "thumbprint_sha1": k.cert.sha1_hex(),
            })
        })
        .collect();
    json!({"active_kid": active, "keys": keys})
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    /// How long the previous key stays in the JWKS (default one day).
    overlap_seconds: Option<i64>,
}

async fn rotate_keys(
    State(core): State<Arc<Core>>,
    req: Request<Body>,
) -> Result<Response, AdminError> {
    let body = json_body(&core, req.into_body()).await?;
    let rotate: RotateRequest = if body.is_null() {
        RotateRequest {
            overlap_seconds: None,
        }
    } else {
        serde_json::from_value(body)
            .map_err(|e| AdminError::bad_request(format!("invalid rotate request: {e}")))?
    };
    let overlap = rotate.overlap_seconds.unwrap_or(86_400);
    if !(0..=365 * 86_400).contains(&overlap) {
        return Err(AdminError::bad_request(
            "`overlap_seconds` must be between 0 and 31536000",
        ));
    }
    let now = core.clock.now();
    let core2 = core.clone();
    tokio::task::spawn_blocking(move || core2.signing.rotate(now, Duration::seconds(overlap)))
        .await
        .map_err(|e| AdminError::bad_request(format!("rotation failed: {e}")))?
        .map_err(|e| AdminError::bad_request(format!("rotation failed: {e}")))?;
    Ok(ok("admin.keys.rotate", StatusCode::OK, keys_json(&core)))
}

fn key_credential_json(c: &RegisteredCertificate) -> Value {
    json!({
        "customKeyIdentifier": base64::engine::general_purpose::STANDARD.encode(c.info.sha1),
        "keyId": c.key_id,
        "displayName": c.display_name,
        "type": "AsymmetricX509Cert",
        "usage": "Verify",
        "startDateTime": crate::ready::rfc3339(c.info.not_before),
        "endDateTime": crate::ready::rfc3339(c.info.not_after),
        "thumbprint_sha1": c.info.sha1_hex(),
        "thumbprint_sha256": c.info.sha256_hex(),
        "origin": c.origin,
    })
}

fn parse_client_id(text: &str) -> Result<Uuid, AdminError> {
    Uuid::parse_str(text)
        .map_err(|_| AdminError::bad_request(format!("client id '{text}' is not a GUID")))
}

async fn list_key_credentials(
    State(core): State<Arc<Core>>,
    Path(client_id): Path<String>,
) -> Result<Response, AdminError> {
    let id = parse_client_id(&client_id)?;
    let dir = core.directory();
    if dir.application(&id).is_none() {
        return Err(AdminError::not_found(format!(
            "no application with client id {id}"
        )));
    }
    let list: Vec<Value> = dir
        .certificates_of(&id)
        .iter()
        .map(key_credential_json)
        .collect();
    Ok(ok(
        "admin.key_credentials.list",
        StatusCode::OK,
        json!({"keyCredentials": list}),
    ))
}

/// One entry of the manifest's `keyCredentials`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestKeyCredential {
    custom_key_identifier: Option<String>,
    key_id: Option<Uuid>,
    #[serde(rename = "type")]
    kind: String,
    usage: String,
    value: String,
    display_name: Option<String>,
}

/// Validates one manifest entry completely before anything is stored.
fn parse_manifest_entry(
    i: usize,
    v: Value,
    client_id: &Uuid,
) -> Result<RegisteredCertificate, AdminError> {
    let at = |field: &str| format!("keyCredentials[{i}].{field}");
    let entry: ManifestKeyCredential = serde_json::from_value(v)
        .map_err(|e| AdminError::bad_request(format!("keyCredentials[{i}]: {e}")))?;
    if entry.kind != "AsymmetricX509Cert" {
        return Err(AdminError::bad_request(format!(
            "`{}` must be \"AsymmetricX509Cert\"",
            at("type")
        )));
    }
    if entry.usage != "Verify" {
        return Err(AdminError::bad_request(format!(
            "`{}` must be \"Verify\"",
            at("usage")
        )));
    }
    let info = if entry.value.contains("-----BEGIN") {
        CertInfo::from_pem(&entry.value, &at("value"))
    } else {
        let cleaned: String = entry.value.chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(cleaned)
            .map_err(|_| AdminError::bad_request(format!("`{}` is not base64 DER", at("value"))))?;
        CertInfo::from_der(&der, &at("value"))
    }
    .map_err(|e| AdminError::bad_request(format!("`{}`: {e}", at("value"))))?;
    if info.rsa_public_key.is_empty() {
        return Err(AdminError::bad_request(format!(
            "`{}` must hold an RSA certificate",
            at("value")
        )));
    }
    if let Some(ck) = &entry.custom_key_identifier {
        let given = base64::engine::general_purpose::STANDARD.decode(ck).ok();
        let matches =
            given.as_deref() == Some(&info.sha1[..]) || ck.eq_ignore_ascii_case(&info.sha1_hex());
        if !matches {
            return Err(AdminError::bad_request(format!(
                "`{}` does not match the certificate's SHA-1 thumbprint {}",
                at("customKeyIdentifier"),
                info.sha1_hex()
            )));
        }
    }
    Ok(RegisteredCertificate {
        key_id: entry.key_id.unwrap_or_else(|| key_id_for(client_id, &info)),
        display_name: entry
            .display_name
            .unwrap_or_else(|| format!("CN={}", info.subject)),
        info,
        files: None,
        origin: CredentialOrigin::AdminApi,
    })
}

async fn add_key_credentials(
    State(core): State<Arc<Core>>,
    Path(client_id): Path<String>,
    req: Request<Body>,
) -> Result<Response, AdminError> {
    let id = parse_client_id(&client_id)?;
    let body = json_body(&core, req.into_body()).await?;
    let entries = match body {
        Value::Object(mut m) if m.contains_key("keyCredentials") => {
            match m.remove("keyCredentials") {
                Some(Value::Array(a)) => a,
                _ => return Err(AdminError::bad_request("`keyCredentials` must be an array")),
            }
        }
        Value::Object(m) => vec![Value::Object(m)],
        Value::Array(a) => a,
        _ => {
            return Err(AdminError::bad_request(
                "expected a keyCredentials object or array",
            ))
        }
    };
    if entries.is_empty() {
        return Err(AdminError::bad_request("`keyCredentials` is empty"));
    }
    let parsed = entries
        .into_iter()
        .enumerate()
        .map(|(i, v)| parse_manifest_entry(i, v, &id))
        .collect::<Result<Vec<_>, _>>()?;
    let mut dir = core.directory_mut();
    if dir.application(&id).is_none() {
        return Err(AdminError::not_found(format!(
            "no application with client id {id}"
        )));
    }
    let list = dir.certificates.entry(id).or_default();
    for cred in parsed {
        // Re-registering the same certificate is a no-op, as uploading it twice in the portal.
        if !list.iter().any(|c| c.info.sha1 == cred.info.sha1) {
            list.push(cred);
        }
    }
    let out: Vec<Value> = list.iter().map(key_credential_json).collect();
    Ok(ok(
        "admin.key_credentials.add",
        StatusCode::OK,
        json!({"keyCredentials": out}),
    ))
}

async fn delete_key_credential(
    State(core): State<Arc<Core>>,
    Path((client_id, key_id)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    let id = parse_client_id(&client_id)?;
    let key_id = Uuid::parse_str(&key_id)
        .map_err(|_| AdminError::bad_request(format!("key id '{key_id}' is not a GUID")))?;
    let mut dir = core.directory_mut();
    let list = dir
        .certificates
        .get_mut(&id)
        .ok_or_else(|| AdminError::not_found(format!("no application with client id {id}")))?;
    let before = list.len();
    list.retain(|c| c.key_id != key_id);
    if list.len() == before {
        return Err(AdminError::not_found(format!(
            "application {id} has no key credential {key_id}"
        )));
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.extensions_mut()
        .insert(Outcome::new("admin.key_credentials.delete"));
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IntrospectRequest {
    token: String,
    /// Accepted audiences (App ID URIs or app ids); absent = any.
    #[serde(default)]
    audience: Vec<String>,
}

/// `POST /_emulator/tokens/introspect`: does this emulator accept the token right now, and
/// if not, why? (The same validator every service uses.)
async fn introspect(
    State(core): State<Arc<Core>>,
    req: Request<Body>,
) -> Result<Response, AdminError> {
    let body = json_body(&core, req.into_body()).await?;
    let ask: IntrospectRequest = serde_json::from_value(body)
        .map_err(|e| AdminError::bad_request(format!("invalid introspection request: {e}")))?;
    let audiences: Vec<&str> = ask.audience.iter().map(String::as_str).collect();
    let body = match crate::tokens::validate(&core, &ask.token, &audiences) {
        Ok(t) => json!({"active": true, "claims": t.claims}),
        Err(e) => json!({"active": false, "reason": e.reason(), "message": e.to_string()}),
    };
    Ok(ok("admin.tokens.introspect", StatusCode::OK, body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceApproval {
    user_code: String,
    /// UPN or object id of the user who approves.
    user: Option<String>,
    /// `approve` (default) or `decline`.
    #[serde(default)]
    decision: Option<String>,
}

/// `POST /_emulator/devicecode/approve`: the headless counterpart of `/devicelogin`.
async fn approve_device_code(
    State(core): State<Arc<Core>>,
    req: Request<Body>,
) -> Result<Response, AdminError> {
    let body = json_body(&core, req.into_body()).await?;
    let a: DeviceApproval = serde_json::from_value(body)
        .map_err(|e| AdminError::bad_request(format!("invalid approval: {e}")))?;
    let decline = match a.decision.as_deref() {
        None | Some("approve") => false,
        Some("decline") => true,
        Some(other) => {
            return Err(AdminError::bad_request(format!(
                "`decision` must be approve or decline, not '{other}'"
            )))
        }
    };
    let user = match (&a.user, decline) {
        (Some(u), _) => u.clone(),
        (None, true) => String::new(),
        (None, false) => return Err(AdminError::bad_request("`user` is required to approve")),
    };
    crate::entra::device_code::approve(&core, &a.user_code, &user, decline)
        .map_err(AdminError::bad_request)?;
    let decision = if decline { "decline" } else { "approve" };
    Ok(ok(
        "admin.devicecode.approve",
        StatusCode::OK,
        json!({"user_code": a.user_code, "decision": decision}),
    ))
}
