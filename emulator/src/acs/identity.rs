//! The Communication Identity API (reference §3.2): create an identity (optionally with a
//! token), issue a token, revoke an identity's tokens, delete the identity, and (preview)
//! read it.

use axum::body::Body;
use axum::response::Response;
use http::{Request, StatusCode};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::errors::AcsError;
use super::store::{Identity, TokenOwner};
use super::tokens::{expires_on, AcsClaims};
use super::{auth, Call, CoreState, IDENTITY_API_VERSIONS};
use super::{OP_IDENTITY_CREATE, OP_IDENTITY_ITEM, OP_IDENTITY_TOKEN};
use crate::state::Core;

/// The scopes an ACS identity token may carry.
pub const SCOPES: [&str; 5] = [
    "chat",
    "voip",
    "chat.join",
    "chat.join.limited",
    "voip.join",
];
/// Token lifetime bounds and default, in minutes.
pub const MIN_MINUTES: i64 = 60;
pub const MAX_MINUTES: i64 = 1440;

/// Authenticates and checks the api-version: the steps every identity operation shares.
async fn begin(core: &Core, req: Request<Body>, op: &'static str) -> Result<Call, Response> {
    let mut call = Call::begin(core, req, op).await?;
    if let Err(e) = auth::authenticate(core, &mut call) {
        return Err(call.fail(e));
    }
    if call.outcome.tenant.is_none() {
        call.outcome.tenant = Some(call.resource_tenant.to_string());
    }
    if let Err(e) = call.api_version(IDENTITY_API_VERSIONS) {
        return Err(call.fail(e));
    }
    Ok(call)
}

/// `POST /identities` → 201 `{"identity":{"id"},"accessToken"?:{…}}`.
pub async fn create(state: CoreState, req: Request<Body>) -> Response {
    let core = state.0;
    let call = match begin(&core, req, OP_IDENTITY_CREATE).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let result = (|| {
        let body = call.json_body(true)?;
        let request = match body {
            Some(b) if b.contains_key("createTokenWithScopes") => {
                Some(TokenRequest::parse(&b, "createTokenWithScopes")?)
            }
            Some(b) => {
                // expiresInMinutes without scopes is still validated.
                TokenRequest::minutes(&b)?;
                None
            }
            None => None,
        };
        let id = format!("8:acs:{}_{}", call.resource.resource_id, Uuid::new_v4());
        core.acs.lock().identities.insert(
            id.clone(),
            Identity {
                resource_id: call.resource.resource_id,
                created_at: call.now.unix_timestamp(),
                last_token_issued_at: None,
            },
        );
        let mut doc = json!({"identity": {"id": id}});
        if let Some(r) = request {
            doc["accessToken"] = issue(&core, &call, &id, &r)?;
        }
        Ok(call.json(StatusCode::CREATED, doc))
    })();
    super::finish(&call, result)
}

/// `GET /identities/{id}` (2025-03-02-preview) and `DELETE /identities/{id}` → 204.
pub async fn get(state: CoreState, req: Request<Body>) -> Response {
    let core = state.0;
    let call = match begin(&core, req, OP_IDENTITY_ITEM).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let result = identity_id(&call).and_then(|id| {
        let store = core.acs.lock();
        let found = store
            .identities
            .get(&id)
            .filter(|i| i.resource_id == call.resource.resource_id)
            .ok_or_else(|| unknown_identity(&id))?;
        let mut doc = json!({"id": id});
        if let Some(t) = found.last_token_issued_at {
            doc["lastTokenIssuedAt"] = json!(rfc3339(t));
        }
        Ok(call.json(StatusCode::OK, doc))
    });
    super::finish(&call, result)
}

pub async fn delete(state: CoreState, req: Request<Body>) -> Response {
    let core = state.0;
    let call = match begin(&core, req, OP_IDENTITY_ITEM).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let result = identity_id(&call).and_then(|id| {
        let mut store = core.acs.lock();
        owned(&store.identities, &id, &call)?;
        store.identities.remove(&id);
        store.revoke(&TokenOwner::Identity(id));
        Ok(call.empty(StatusCode::NO_CONTENT))
    });
    super::finish(&call, result)
}

/// `POST /identities/{id}/:issueAccessToken` → 200 `{"token","expiresOn"}`;
/// `POST /identities/{id}/:revokeAccessTokens` → 204.
pub async fn action(state: CoreState, req: Request<Body>) -> Response {
    let core = state.0;
    let call = match begin(&core, req, OP_IDENTITY_TOKEN).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let result =
        identity_id(&call).and_then(|id| match call.segment(2).unwrap_or_default().as_str() {
            ":issueAccessToken" => {
                owned(&core.acs.lock().identities, &id, &call)?;
                let body = call.json_body(false)?.unwrap_or_default();
                let r = TokenRequest::parse(&body, "scopes")?;
                let token = issue(&core, &call, &id, &r)?;
                Ok(call.json(StatusCode::OK, token))
            }
            ":revokeAccessTokens" => {
                let mut store = core.acs.lock();
                owned(&store.identities, &id, &call)?;
                store.revoke(&TokenOwner::Identity(id));
                Ok(call.empty(StatusCode::NO_CONTENT))
            }
            other => Err(AcsError::not_found(format!(
                "There is no action '{other}' on identities."
            ))),
        });
    super::finish(&call, result)
}

/// A validated token request: scopes and lifetime.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub scopes: Vec<String>,
    pub minutes: i64,
}

impl TokenRequest {
    /// Reads the scope list at `field` and `expiresInMinutes`.
    pub fn parse(body: &Map<String, Value>, field: &str) -> Result<TokenRequest, AcsError> {
        let Some(Value::Array(list)) = body.get(field) else {
            return Err(AcsError::invalid(
                field,
                format!(
                    "'{field}' is required: a list of scopes ({}).",
                    SCOPES.join(", ")
                ),
            ));
        };
        if list.is_empty() {
            return Err(AcsError::invalid(
                field,
                format!("'{field}' must name at least one scope."),
            ));
        }
        let mut scopes = Vec::new();
        for v in list {
            match v.as_str() {
                Some(s) if SCOPES.contains(&s) => {
                    if !scopes.iter().any(|x| x == s) {
                        scopes.push(s.to_string());
                    }
                }
                _ => {
                    return Err(AcsError::invalid(
                        field,
                        format!("Scope {v} is not one of {}.", SCOPES.join(", ")),
                    ))
                }
            }
        }
        Ok(TokenRequest {
            scopes,
            minutes: TokenRequest::minutes(body)?,
        })
    }

    /// `expiresInMinutes` (60–1440, default 1440).
    pub fn minutes(body: &Map<String, Value>) -> Result<i64, AcsError> {
        match body.get("expiresInMinutes") {
            None | Some(Value::Null) => Ok(MAX_MINUTES),
            Some(v) => match v.as_i64() {
                Some(m) if (MIN_MINUTES..=MAX_MINUTES).contains(&m) => Ok(m),
                _ => Err(AcsError::invalid(
                    "expiresInMinutes",
                    format!("expiresInMinutes must be an integer from {MIN_MINUTES} to {MAX_MINUTES}; got {v}."),
                )),
            },
        }
    }
}

/// Mints and records a token for identity `id`; returns `{"token","expiresOn"}`.
fn issue(core: &Core, call: &Call, id: &str, r: &TokenRequest) -> Result<Value, AcsError> {
    let iat = call.now.unix_timestamp();
    let exp = iat + r.minutes * 60;
    let claims = AcsClaims {
        skypeid: id.trim_start_matches("8:").to_string(),
        acs_scope: r.scopes.join(","),
        resource_id: call.resource.resource_id.to_string(),
        iat,
        exp,
    };
    let token = mint(core, &claims)?;
    let mut store = core.acs.lock();
    store.record_token(&token, TokenOwner::Identity(id.to_string()), exp, iat);
    if let Some(i) = store.identities.get_mut(id) {
        i.last_token_issued_at = Some(iat);
    }
    Ok(json!({"token": token, "expiresOn": expires_on(exp)}))
}

/// Signs ACS claims with the ACS key (created on first use).
pub fn mint(core: &Core, claims: &AcsClaims) -> Result<String, AcsError> {
    let key = super::admin::signing_key(core).map_err(AcsError::internal)?;
    crate::http::cpu_heavy(|| key.mint(claims))
        .map_err(|e| AcsError::internal(format!("could not sign the ACS token: {e}")))
}

/// The `{id}` path segment: `8:acs:…` (percent-decoded).
fn identity_id(call: &Call) -> Result<String, AcsError> {
    let id = call.segment(1).ok_or_else(|| {
        AcsError::invalid(
            "id",
            "The identity id in the path is not validly percent-encoded.",
        )
    })?;
    if !id.starts_with("8:acs:") || id.len() > 256 {
        return Err(AcsError::invalid(
            "id",
            format!("'{id}' is not an ACS identity id (8:acs:<resourceId>_<suffix>)."),
        ));
    }
    Ok(id)
}

fn unknown_identity(id: &str) -> AcsError {
    AcsError::not_found(format!("Identity '{id}' does not exist on this resource."))
}

/// Checks that `id` exists and belongs to the called resource.
fn owned(
    identities: &std::collections::BTreeMap<String, Identity>,
    id: &str,
    call: &Call,
) -> Result<(), AcsError> {
    identities
        .get(id)
        .filter(|i| i.resource_id == call.resource.resource_id)
        .map(|_| ())
        .ok_or_else(|| unknown_identity(id))
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
