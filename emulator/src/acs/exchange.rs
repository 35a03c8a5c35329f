//! The two Entra → ACS token exchanges (reference §1.4, §3.2, §3.4):
//!
//! - `POST /teamsUser/:exchangeAccessToken` (Custom Teams Endpoint): the caller authenticates
//!   as the resource (HMAC or Entra app token) and sends a Teams user's Entra token with the
//!   user's `appId` and `userId`; the token needs both `Teams.ManageCalls` and
//!   `Teams.ManageChats`.
//! - `POST /access/teamsExtension/:exchangeAccessToken` (Teams Phone extensibility): the
//!   Teams user's Entra token is the bearer; it needs `TeamsExtension.ManageCalls`, and the
//!   user and client must hold an assignment on the resource. Deleting the assignment revokes
//!   the tokens it allowed.
//!
//! Both ACS tokens expire with the Entra token they were exchanged for.

use axum::body::Body;
use axum::response::Response;
use http::{Request, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use super::errors::AcsError;
use super::store::TokenOwner;
use super::tokens::{expires_on, AcsClaims};
use super::{auth, Call, CoreState, IDENTITY_API_VERSIONS, TPE_API_VERSIONS};
use super::{OP_TEAMS_USER_EXCHANGE, OP_TPE_EXCHANGE};
use crate::state::Core;
use crate::tokens::ValidToken;

const ACTION: &str = ":exchangeAccessToken";
/// The delegated permissions a Custom Teams Endpoint exchange needs.
pub const TEAMS_USER_SCOPES: [&str; 2] = ["Teams.ManageCalls", "Teams.ManageChats"];
/// The delegated permission a Teams Phone extensibility exchange needs.
pub const TPE_SCOPE: &str = "TeamsExtension.ManageCalls";

fn check_action(call: &Call, segment: usize) -> Result<(), AcsError> {
    match call.segment(segment) {
        Some(a) if a == ACTION => Ok(()),
        other => Err(AcsError::not_found(format!(
            "There is no action '{}' here; the exchange is '{ACTION}'.",
            other.unwrap_or_default()
        ))),
    }
}

fn same_guid(a: &str, b: &str) -> bool {
    match (Uuid::parse_str(a.trim()), Uuid::parse_str(b.trim())) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The claims of a delegated (user) token: `oid`, `tid`, `appid`/`azp` and its scopes.
fn user_token_parts(token: &ValidToken) -> Result<(String, String, String), AcsError> {
    let oid = token.str("oid");
    let is_user = token.str("scp").is_some() && oid.is_some();
    match (is_user, oid, token.tenant(), token.client_id()) {
        (true, Some(oid), Some(tid), Some(app)) => {
            Ok((oid.to_string(), tid.to_string(), app.to_string()))
        }
        _ => Err(AcsError::denied(
            "The Entra token is not a delegated token of a Teams user (it has no 'scp' and 'oid').",
        )),
    }
}

/// `POST /teamsUser/:exchangeAccessToken` → 200 `{"token","expiresOn"}`.
pub async fn teams_user(state: CoreState, req: Request<Body>) -> Response {
    let core = state.0;
    let mut call = match Call::begin(&core, req, OP_TEAMS_USER_EXCHANGE).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let result = check_action(&call, 1)
        .and_then(|_| auth::authenticate(&core, &mut call))
        .and_then(|_| call.api_version(IDENTITY_API_VERSIONS))
        .and_then(|_| exchange_teams_user(&core, &mut call));
    super::finish(&call, result)
}

fn exchange_teams_user(core: &Core, call: &mut Call) -> Result<Response, AcsError> {
    let body = call.json_body(false)?.unwrap_or_default();
    let field = |name: &str| match body.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(AcsError::invalid(
            name,
            format!("'{name}' is required and must be a string."),
        )),
    };
    let (token, app_id, user_id) = (field("token")?, field("appId")?, field("userId")?);
    if token.trim().is_empty() {
        return Err(AcsError::denied("The Teams user's Entra token is empty."));
    }
    let entra = auth::entra_token(core, &format!("Bearer {token}"))?;
    let (oid, _tenant, appid) = user_token_parts(&entra)?;
    let scopes = entra.scopes();
    let missing: Vec<&str> = TEAMS_USER_SCOPES
        .iter()
        .copied()
        .filter(|s| !scopes.contains(s))
        .collect();
    if !missing.is_empty() {
        return Err(AcsError::denied(format!(
            "The Teams user's Entra token lacks the delegated permission(s) {}; both Teams.ManageCalls and Teams.ManageChats are required.",
            missing.join(", ")
        )));
    }
    if !same_guid(&app_id, &appid) {
        return Err(AcsError::invalid(
            "appId",
            format!("appId '{app_id}' does not match the token's client id (appid)."),
        ));
    }
    if !same_guid(&user_id, &oid) {
        return Err(AcsError::invalid(
            "userId",
            format!("userId '{user_id}' does not match the token's user (oid)."),
        ));
    }
    call.outcome.user = Some(oid.clone());
    let exp = entra_exp(&entra, call);
    let claims = AcsClaims {
        skypeid: format!("orgid:{oid}"),
        acs_scope: "voip,chat".into(),
        resource_id: call.resource.resource_id.to_string(),
        iat: call.now.unix_timestamp(),
        exp,
    };
    let acs_token = super::identity::mint(core, &claims)?;
    core.acs
        .lock()
        .record_token(&acs_token, TokenOwner::TeamsUser, exp, claims.iat);
    Ok(call.json(
        StatusCode::OK,
        json!({"token": acs_token, "expiresOn": expires_on(exp)}),
    ))
}

/// The Entra token's `exp` (the ACS token ends with it).
fn entra_exp(entra: &ValidToken, call: &Call) -> i64 {
    entra
        .claims
        .get("exp")
        .and_then(crate::jose::numeric_date)
        .map_or(call.now.unix_timestamp() + 3600, |e| e as i64)
}

/// `POST /access/teamsExtension/:exchangeAccessToken` → 200
/// `{"identity":{"id"},"accessToken":{"token","expiresOn"}}`.
pub async fn teams_extension(state: CoreState, req: Request<Body>) -> Response {
    let core = state.0;
    let mut call = match Call::begin(&core, req, OP_TPE_EXCHANGE).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let result = check_action(&call, 2).and_then(|_| exchange_tpe(&core, &mut call));
    super::finish(&call, result)
}

fn exchange_tpe(core: &Core, call: &mut Call) -> Result<Response, AcsError> {
    let auth = call
        .parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if !auth
        .split(' ')
        .next()
        .is_some_and(|s| s.eq_ignore_ascii_case("bearer"))
    {
        return Err(AcsError::denied(
            "This exchange takes the Teams user's Entra token as 'Authorization: Bearer <token>'.",
        ));
    }
    let entra = auth::entra_token(core, &auth)?;
    let (oid, tid, appid) = user_token_parts(&entra)?;
    call.outcome.tenant = Some(tid.clone());
    call.outcome.client_id = Some(appid.clone());
    call.outcome.user = Some(oid.clone());
    call.outcome.token_id = entra.str("uti").map(str::to_string);
    call.api_version(TPE_API_VERSIONS)?;
    call.json_body(true)?;
    if !entra.scopes().contains(&TPE_SCOPE) {
        return Err(AcsError::forbidden(format!(
            "The Entra token lacks the delegated permission {TPE_SCOPE}."
        )));
    }
    let (Ok(tenant), Ok(user)) = (Uuid::parse_str(&tid), Uuid::parse_str(&oid)) else {
        return Err(AcsError::denied(
            "The Entra token's tid or oid is not a GUID.",
        ));
    };
    let key = (call.resource.resource_id, tenant, user);
    let allowed = core.acs.lock().assignments.get(&key).is_some_and(|a| {
        a.principal_type.eq_ignore_ascii_case("user")
            && a.client_ids.iter().flatten().any(|c| same_guid(c, &appid))
    });
    if !allowed {
        return Err(AcsError::forbidden(format!(
            "User '{oid}' of tenant '{tid}' has no Teams Phone extensibility assignment on ACS resource '{}' for client '{appid}'.",
            call.resource.name
        )));
    }
    let exp = entra_exp(&entra, call);
    let identity = format!("8:acs:{}_{tid}_{oid}", call.resource.resource_id);
    let claims = AcsClaims {
        skypeid: identity.trim_start_matches("8:").to_string(),
        acs_scope: "voip".into(),
        resource_id: call.resource.resource_id.to_string(),
        iat: call.now.unix_timestamp(),
        exp,
    };
    let acs_token = super::identity::mint(core, &claims)?;
    core.acs
        .lock()
        .record_token(&acs_token, TokenOwner::Assignment(key), exp, claims.iat);
    Ok(call.json(
        StatusCode::OK,
        json!({"identity": {"id": identity}, "accessToken": {"token": acs_token, "expiresOn": expires_on(exp)}}),
    ))
}
