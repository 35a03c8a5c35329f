//! The device-code flow: `POST /{tenant}/oauth2/v2.0/devicecode` (and v1 `/oauth2/devicecode`)
//! issues a device code and a user code; the user enters the code at `/devicelogin`, signs in
//! and consents (the same pages as authorize), or a test approves it through
//! `/_emulator/devicecode/approve`; the client polls the token endpoint meanwhile.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::Request;
use rand::Rng;
use serde_json::json;
use uuid::Uuid;

use super::authorize::{begin, page_response};
use super::consent;
use super::errors::AadError;
use super::flows::{
    insert_bounded, lock, random_token, AuthorizeRequest, DeviceCodeGrant, DeviceCodeState,
    FlowKind, ResponseMode, DEVICE_CODE_INTERVAL, DEVICE_CODE_LIFETIME,
};
use super::pages;
use super::token::Endpoint;
use super::{resolve_tenant, token_headers, TenantRef};
use crate::http::form::{parse_form, Form};
use crate::http::{origin, read_body, Outcome};
use crate::state::Core;

const OP: &str = "entra.devicecode";

/// A user code like Entra's: nine characters, no look-alikes.
fn user_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..9)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

pub async fn devicecode_v1(
    State(core): State<Arc<Core>>,
    Path(tenant): Path<String>,
    req: Request<Body>,
) -> Response {
    issue(core, tenant, Endpoint::V1, req).await
}

pub async fn devicecode_v2(
    State(core): State<Arc<Core>>,
    Path(tenant): Path<String>,
    req: Request<Body>,
) -> Response {
    issue(core, tenant, Endpoint::V2, req).await
}

async fn issue(
    core: Arc<Core>,
    tenant_segment: String,
    endpoint: Endpoint,
    req: Request<Body>,
) -> Response {
    let (parts, body) = req.into_parts();
    let now = core.clock.now();
    // Bad bodies get the token endpoint's answers: 413 when too large, 9002313 when unreadable.
    let form = match read_body(body, core.settings.body_limit).await {
        Ok(bytes) => match parse_form(&bytes) {
            Ok(f) => f,
            Err(e) => return AadError::new(9002313, &[&format!("{e}.")]).respond(&parts, now, OP),
        },
        Err(e) => {
            let mut err = AadError::new(9002313, &["The request body could not be read."]);
            if e == crate::http::BodyError::TooLarge {
                err = AadError::new(9002313, &["The request body is too large."]);
                err.status = http::StatusCode::PAYLOAD_TOO_LARGE;
            }
            return err.respond(&parts, now, OP);
        }
    };
    let result = (|| -> Result<(DeviceCodeGrant, Uuid), AadError> {
        let dir = core.directory();
        let tenant_ref = resolve_tenant(&dir, &tenant_segment)?;
        let client_text = form
            .non_empty("client_id")
            .ok_or_else(|| AadError::new(900144, &["client_id"]))?;
        let name = match tenant_ref {
            TenantRef::Tenant(t) => t.display_name.clone(),
            TenantRef::Alias(a) => a.to_string(),
        };
        let app = Uuid::parse_str(client_text)
            .ok()
            .and_then(|id| dir.application(&id))
            .ok_or_else(|| AadError::new(700016, &[client_text, &name]))?;
        let (oidc, scopes, resource) = match endpoint {
            Endpoint::V2 => {
                let scope = form
                    .non_empty("scope")
                    .ok_or_else(|| AadError::new(900144, &["scope"]))?;
                let (oidc, scopes) = consent::parse_scopes(&dir, app, scope)?;
                (oidc, scopes, None)
            }
            Endpoint::V1 => {
                let resource = form
                    .non_empty("resource")
                    .ok_or_else(|| AadError::new(900144, &["resource"]))?;
                let res = dir
                    .world
                    .resource(resource)
                    .ok_or_else(|| AadError::new(500011, &[resource, &name]))?;
                let declared = consent::declared_scopes(&dir, app, &res.app_id_uri);
                (
                    vec!["openid".to_string()],
                    vec![(res.app_id_uri.clone(), declared)],
                    Some(resource.to_string()),
                )
            }
        };
        Ok((
            DeviceCodeGrant {
                user_code: user_code(),
                client_id: app.client_id,
                tenant_segment: tenant_segment.clone(),
                oidc,
                scopes,
                resource,
                issued: now,
                last_poll: None,
                state: DeviceCodeState::Pending,
            },
            app.client_id,
        ))
    })();
    let (grant, client_id) = match result {
        Ok(x) => x,
        Err(e) => return e.respond(&parts, now, OP),
    };
    let device_code = random_token(48);
    let verification = format!("{}/devicelogin", origin(&parts));
    let message = format!(
        "To sign in, use a web browser to open the page {verification} and enter the code {} to authenticate.",
        grant.user_code
    );
    let lifetime = DEVICE_CODE_LIFETIME.whole_seconds();
    let interval = DEVICE_CODE_INTERVAL.whole_seconds();
    let body = match endpoint {
        Endpoint::V2 => json!({
            "user_code": grant.user_code,
            "device_code": device_code,
            "verification_uri": verification,
            "expires_in": lifetime,
            "interval": interval,
            "message": message,
        }),
        Endpoint::V1 => json!({
            "user_code": grant.user_code,
            "device_code": device_code,
            "verification_url": verification,
            "expires_in": lifetime.to_string(),
            "interval": interval.to_string(),
            "message": message,
        }),
    };
    insert_bounded(&core.flows.device_codes, device_code, grant);
    let mut resp = body.to_string().into_response();
    token_headers(resp.headers_mut(), &Uuid::new_v4().to_string(), None);
    let mut outcome = Outcome::new(OP);
    outcome.client_id = Some(client_id.to_string());
    resp.extensions_mut().insert(outcome);
    resp
}

/// Marks an approved device code redeemed; false if it is not (or no longer) approved.
pub fn settle_redeemed(core: &Core, device_code: &str) -> bool {
    let mut codes = lock(&core.flows.device_codes);
    match codes.get_mut(device_code) {
        Some(g) if matches!(g.state, DeviceCodeState::Approved(..)) => {
            g.state = DeviceCodeState::Redeemed;
            true
        }
        _ => false,
    }
}

/// Moves a pending device code to `to`; false if it is unknown, expired or already settled.
pub fn settle(core: &Core, device_code: &str, to: DeviceCodeState) -> bool {
    let now = core.clock.now();
    let mut codes = lock(&core.flows.device_codes);
    match codes.get_mut(device_code) {
        Some(g)
            if g.state == DeviceCodeState::Pending && now - g.issued <= DEVICE_CODE_LIFETIME =>
        {
            g.state = to;
            true
        }
        _ => false,
    }
}

fn find_by_user_code(core: &Core, user_code: &str) -> Option<(String, DeviceCodeGrant)> {
    let wanted: String = user_code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_uppercase();
    lock(&core.flows.device_codes)
        .iter()
        .find(|(_, g)| g.user_code == wanted)
        .map(|(k, g)| (k.clone(), g.clone()))
}

fn code_entry_page(error: Option<&str>) -> Response {
    let error = error
        .map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, pages::escape(e)))
        .unwrap_or_default();
    page_response(pages::frame(
        "Enter code",
        &format!(
            r#"<h1>Enter code</h1><p>Enter the code displayed on your app or device.</p>{error}
<form method="post" action="/devicelogin"><label for="otc">Code</label>
<input type="text" id="otc" name="otc" autocomplete="off" required autofocus>
<div class="actions"><button type="submit" class="primary" id="idSIButton9">Next</button></div></form>"#
        ),
    ))
}

/// `GET /devicelogin`: the code entry page.
pub async fn devicelogin_page() -> Response {
    code_entry_page(None)
}

/// `POST /devicelogin`: a user code was entered; continue with sign-in and consent.
pub async fn devicelogin_submit(State(core): State<Arc<Core>>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let form = match read_body(body, 16 * 1024).await {
        Ok(b) => parse_form(&b).unwrap_or_default(),
        Err(_) => Form::default(),
    };
    let now = core.clock.now();
    let entered = form.get("otc").unwrap_or_default().to_string();
    let Some((device_code, grant)) = find_by_user_code(&core, &entered) else {
        return code_entry_page(Some("That code didn't work. Check the code and try again."));
    };
    if grant.state != DeviceCodeState::Pending || now - grant.issued > DEVICE_CODE_LIFETIME {
        return code_entry_page(Some(
            "That code has expired or was already used. Get a new code from your device.",
        ));
    }
    let request = AuthorizeRequest {
        kind: FlowKind::DeviceCode,
        tenant_segment: grant.tenant_segment.clone(),
        client_id: grant.client_id,
        redirect_uri: String::new(),
        response_mode: ResponseMode::Query,
        state: None,
        nonce: None,
        prompt: Some("login".into()),
        login_hint: None,
        code_challenge: None,
        scope_text: String::new(),
        oidc: grant.oidc.clone(),
        scopes: grant.scopes.clone(),
        resource: grant.resource.clone(),
        client_info: false,
        device_code: Some(device_code),
    };
    begin(&core, &parts, &grant.tenant_segment, request)
}

/// The admin API's approval: `user` (UPN or object id) signs in and consents, or declines.
pub fn approve(core: &Core, user_code: &str, user: &str, decline: bool) -> Result<(), String> {
    let (device_code, grant) = find_by_user_code(core, user_code)
        .ok_or_else(|| format!("no device code with user code '{user_code}'"))?;
    if decline {
        return if settle(core, &device_code, DeviceCodeState::Declined) {
            Ok(())
        } else {
            Err("the device code is expired or already settled".into())
        };
    }
    let (tenant, oid) = {
        let dir = core.directory();
        let (t, u) = dir
            .world
            .tenants
            .iter()
            .find_map(|t| {
                t.users
                    .iter()
                    .find(|u| {
                        u.user_principal_name.eq_ignore_ascii_case(user)
                            || u.object_id.to_string() == user
                    })
                    .map(|u| (t, u))
            })
            .ok_or_else(|| format!("no user '{user}' in this world"))?;
        if let Ok(TenantRef::Tenant(want)) = resolve_tenant(&dir, &grant.tenant_segment) {
            if want.id != t.id {
                return Err(format!("user '{user}' is not in tenant {}", want.id));
            }
        }
        (t.id, u.object_id)
    };
    if !settle(core, &device_code, DeviceCodeState::Approved(tenant, oid)) {
        return Err("the device code is expired or already settled".into());
    }
    let mut dir = core.directory_mut();
    consent::grant_user(&mut dir, &tenant, &oid, &grant.client_id, &grant.scopes);
    Ok(())
}

/// Token-endpoint check of a polled device code: the approving user, or the polling error.
pub fn poll(
    core: &Core,
    device_code: &str,
    client_id: &Uuid,
) -> Result<(DeviceCodeGrant, Uuid, Uuid), AadError> {
    let now = core.clock.now();
    let mut codes = lock(&core.flows.device_codes);
    let g = codes
        .get_mut(device_code)
        .filter(|g| &g.client_id == client_id)
        .ok_or_else(|| AadError::new(70000, &["device_code"]))?;
    if now - g.issued > DEVICE_CODE_LIFETIME {
        return Err(AadError::new(70020, &[]));
    }
    let too_fast = g.last_poll.is_some_and(|t| now - t < DEVICE_CODE_INTERVAL);
    g.last_poll = Some(now);
    match g.state {
        DeviceCodeState::Pending if too_fast => {
            let mut e = AadError::new(70016, &[]);
            e.error = "slow_down";
            e.message = "OAuth 2.0 device flow error. The client is polling too fast; wait the interval before polling again.".into();
            Err(e)
        }
        DeviceCodeState::Pending => Err(AadError::new(70016, &[])),
        DeviceCodeState::Declined => {
            let mut e = AadError::new(65004, &[]);
            e.error = "authorization_declined";
            Err(e)
        }
        DeviceCodeState::Redeemed => Err(AadError::new(54005, &[])),
        // Marked redeemed by `settle_redeemed` once the tokens are issued.
        DeviceCodeState::Approved(tenant, user) => Ok((g.clone(), tenant, user)),
    }
}
