//! The ACS part of the control plane (`/_emulator/acs/…`):
//!
//! - `GET /_emulator/acs/assignments`: every Teams Phone extensibility assignment, with its
//!   resource;
//! - `GET /_emulator/acs/identities`: the identities the Identity API created;
//! - `GET /_emulator/acs/keys`: the JWKS of the key that signs ACS access tokens;
//! - `POST /_emulator/acs/tokens/introspect` `{"token": …}`: whether an ACS token is still good
//!   (signature, expiry on the emulator's clock, not revoked) and its claims.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};

use super::assignments::document;
use super::tokens::AcsSigningKey;
use crate::http::Outcome;
use crate::state::Core;

pub fn router() -> Router<Arc<Core>> {
    Router::new()
        .route("/_emulator/acs/assignments", get(assignments))
        .route("/_emulator/acs/identities", get(identities))
        .route("/_emulator/acs/keys", get(keys))
        .route("/_emulator/acs/tokens/introspect", post(introspect))
}

/// The ACS token-signing key, created under the state directory on first use.
pub fn signing_key(core: &Core) -> Result<Arc<AcsSigningKey>, String> {
    core.acs.key(|| {
        AcsSigningKey::load_or_create(&core.state_dir, core.pki.key_source())
            .map_err(|e| format!("the ACS signing key is unavailable: {e}"))
    })
}

fn respond(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    resp.extensions_mut().insert(Outcome::new("admin"));
    resp
}

fn resource_name(core: &Core, id: &uuid::Uuid) -> String {
    core.directory()
        .world
        .acs
        .iter()
        .find(|a| &a.resource_id == id)
        .map(|a| a.name.clone())
        .unwrap_or_default()
}

async fn assignments(State(core): State<Arc<Core>>) -> Response {
    let list: Vec<(uuid::Uuid, Value)> = core
        .acs
        .lock()
        .assignments
        .iter()
        .map(|(k, a)| (k.0, document(k, a)))
        .collect();
    let value: Vec<Value> = list
        .into_iter()
        .map(|(resource, mut doc)| {
            doc["resourceId"] = json!(resource.to_string());
            doc["resource"] = json!(resource_name(&core, &resource));
            doc
        })
        .collect();
    respond(StatusCode::OK, json!({ "value": value }))
}

async fn identities(State(core): State<Arc<Core>>) -> Response {
    let value: Vec<Value> = core
        .acs
        .lock()
        .identities
        .iter()
        .map(|(id, i)| {
            json!({
                "id": id,
                "resourceId": i.resource_id.to_string(),
                "createdAt": i.created_at,
                "lastTokenIssuedAt": i.last_token_issued_at,
            })
        })
        .collect();
    respond(StatusCode::OK, json!({ "value": value }))
}

async fn keys(State(core): State<Arc<Core>>) -> Response {
    match signing_key(&core) {
        Ok(k) => respond(StatusCode::OK, k.jwks()),
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": {"code": "InternalError", "message": e}}),
        ),
    }
}

async fn introspect(State(core): State<Arc<Core>>, body: Bytes) -> Response {
    let token = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("token").and_then(Value::as_str).map(str::to_string));
    let Some(token) = token else {
        return respond(
            StatusCode::BAD_REQUEST,
            json!({"error": {"code": "BadRequest", "message": "Send {\"token\": \"<ACS access token>\"}."}}),
        );
    };
    let key = match signing_key(&core) {
        Ok(k) => k,
        Err(e) => {
            return respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": {"code": "InternalError", "message": e}}),
            )
        }
    };
    let verdict = key.verify(&token, core.clock.unix()).and_then(|claims| {
        let digest = crate::jose::sha256(token.as_bytes());
        match core.acs.lock().tokens.get(&digest) {
            None => Err("unknown"),
            Some(t) if t.revoked => Err("revoked"),
            Some(_) => Ok(claims),
        }
    });
    let body = match verdict {
        Ok(claims) => json!({"active": true, "claims": claims}),
        Err(reason) => json!({"active": false, "reason": reason}),
    };
    respond(StatusCode::OK, body)
}
