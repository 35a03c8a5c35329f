//! `POST /{tenant}/oauth2/token` (v1, `resource=`) and `POST /{tenant}/oauth2/v2.0/token`
//! (v2, `scope=`). Client credentials with a secret (body or HTTP Basic) or a certificate
//! assertion.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::request::Parts;
use http::Request;
use serde_json::json;
use uuid::Uuid;

use super::assertion::{self, AssertionContext, JWT_BEARER};
use super::errors::{AadError, ErrorContext};
use super::mint::{self, AppOnlyGrant, ClientAuth};
use super::{resolve_tenant, token_headers, TenantRef};
use crate::http::form::{parse_form, Form};
use crate::http::{origin, read_body, BodyError, Outcome};
use crate::state::{Core, Directory};
use crate::world::{Application, Resource, Tenant};

/// Which token endpoint was called: decides parameter names and response number types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    V1,
    V2,
}

pub async fn token_v1(
    State(core): State<Arc<Core>>,
    Path(tenant): Path<String>,
    req: Request<Body>,
) -> Response {
    token(core, tenant, Endpoint::V1, req).await
}

pub async fn token_v2(
    State(core): State<Arc<Core>>,
    Path(tenant): Path<String>,
    req: Request<Body>,
) -> Response {
    token(core, tenant, Endpoint::V2, req).await
}

/// Any method but POST on a token endpoint: AADSTS900561, as Entra answers.
pub async fn wrong_method(State(core): State<Arc<Core>>, req: Request<Body>) -> Response {
    let (parts, _) = req.into_parts();
    AadError::new(900561, &[parts.method.as_str()]).respond(&parts, core.clock.now(), "entra.token")
}

async fn token(
    core: Arc<Core>,
    tenant: String,
    endpoint: Endpoint,
    req: Request<Body>,
) -> Response {
    let (parts, body) = req.into_parts();
    let now = core.clock.now();
    let ctx = ErrorContext::from_parts(&parts, now);
    let request_id = ctx.client_request_id.clone();
    let mut outcome = Outcome::new("entra.token");
    let result = match read_body(body, core.settings.body_limit).await {
        Err(BodyError::TooLarge) => {
            let mut e = AadError::new(9002313, &["The request body is too large."]);
            e.status = http::StatusCode::PAYLOAD_TOO_LARGE;
            Err(e)
        }
        Err(BodyError::Broken) => Err(AadError::new(
            9002313,
            &["The request body could not be read."],
        )),
        Ok(bytes) => {
            let form = if is_form(&parts) {
                parse_form(&bytes).map_err(|e| AadError::new(9002313, &[&format!("{e}.")]))
            } else {
                // Entra reads parameters only from a form body; anything else has none.
                Ok(Form::default())
            };
            form.and_then(|form| {
                let dir = core.directory();
                issue(&core, &dir, &parts, &tenant, endpoint, &form, &mut outcome)
            })
        }
    };
    let result = match result {
        Ok(Issued::Body(body)) => Ok(body),
        Ok(Issued::AppOnly(pending)) => pending.sign(&core, &mut outcome).await,
        Err(e) => Err(e),
    };
    let mut resp = match result {
        Ok(body) => {
            let mut resp = body.to_string().into_response();
            token_headers(
                resp.headers_mut(),
                &Uuid::new_v4().to_string(),
                request_id.as_deref(),
            );
            resp
        }
        Err(e) => {
            outcome.error_code = Some(e.code_name());
            e.render(&ctx)
        }
    };
    resp.extensions_mut().insert(outcome);
    resp
}

fn is_form(parts: &Parts) -> bool {
    parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// `Authorization: Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
fn basic_credentials(parts: &Parts) -> Option<(String, String)> {
    let value = parts
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    // RFC 6749 §2.3.1 form-encodes both parts; a part that does not decode is used as sent
    // (a wrong secret then gets 7000215, not a misleading "no credential").
    let decode =
        |part: &str| crate::http::form::percent_decode(part).unwrap_or_else(|| part.to_string());
    let (id, secret) = (decode(id), decode(secret));
    Some((id, secret))
}

fn issue(
    core: &Core,
    dir: &Directory,
    parts: &Parts,
    tenant_segment: &str,
    endpoint: Endpoint,
    form: &Form,
    outcome: &mut Outcome,
) -> Result<Issued, AadError> {
    let now = core.clock.now();
    let tenant_ref = resolve_tenant(dir, tenant_segment)?;
    let grant_type = form
        .non_empty("grant_type")
        .ok_or_else(|| AadError::new(900144, &["grant_type"]))?;
    let user_grant = matches!(
        grant_type,
        "authorization_code"
            | "refresh_token"
            | "password"
            | "urn:ietf:params:oauth:grant-type:device_code"
            | "device_code"
    );
    if grant_type != "client_credentials" && !user_grant {
        return Err(AadError::new(70003, &[grant_type]));
    }
    let basic = basic_credentials(parts);
    let client_id_text = form
        .non_empty("client_id")
        .map(str::to_string)
        .or_else(|| basic.as_ref().map(|(id, _)| id.clone()))
        .ok_or_else(|| AadError::new(900144, &["client_id"]))?;
    outcome.client_id = Some(client_id_text.clone());
    let directory_name = match tenant_ref {
        TenantRef::Tenant(t) => t.display_name.clone(),
        TenantRef::Alias(a) => a.to_string(),
    };
    let not_found = || AadError::new(700016, &[&client_id_text, &directory_name]);
    let app = Uuid::parse_str(&client_id_text)
        .ok()
        .and_then(|id| dir.application(&id))
        .ok_or_else(not_found)?;
    if matches!(tenant_ref, TenantRef::Alias(_)) && !app.multi_tenant {
        return Err(AadError::new(
            50194,
            &[&app.client_id.to_string(), &app.display_name],
        ));
    }
    let client = ClientRequest {
        core,
        dir,
        parts,
        tenant_segment,
        form,
        basic: basic.as_ref(),
        app,
    };
    if user_grant {
        return super::user_grants::issue(&client, tenant_ref, endpoint, grant_type, outcome)
            .map(Issued::Body);
    }

    let tenant: &Tenant = match tenant_ref {
        TenantRef::Alias(alias) => {
            if alias != "organizations" {
                return Err(AadError::new(9001023, &[]));
            }
            // Client credentials on /organizations act in the app's home tenant.
            dir.tenant(&app.home_tenant).ok_or_else(not_found)?
        }
        TenantRef::Tenant(t) => t,
    };
    outcome.tenant = Some(tenant.id.to_string());
    let home = dir.tenant(&app.home_tenant).map(|h| h.id);
    if !app.multi_tenant && home != Some(tenant.id) {
        return Err(not_found());
    }
    let sp = dir.service_principal(tenant, app).ok_or_else(not_found)?;

    let auth = client.authenticate(tenant, outcome)?;
    if auth == ClientAuth::Public {
        // Client credentials need a credential; public clients have none.
        return Err(AadError::new(7000218, &[]));
    }
    let (resource, requested) = requested_resource(dir, tenant, endpoint, form)?;

    let roles = dir.world.grants_on(&sp.app_role_grants, &resource.app_id);
    let grant = AppOnlyGrant {
        tenant,
        app,
        service_principal: sp.object_id_in(&tenant.id),
        resource,
        requested_resource: &requested,
        roles,
        auth,
    };
    let key = core.signing.active();
    let recipe = mint::AppOnlyRecipe::new(
        &key,
        &grant,
        core.token_lifetime(dir),
        &core.settings.issuer_host,
    );
    Ok(Issued::AppOnly(Box::new(PendingAppOnly {
        recipe,
        key,
        now,
        endpoint,
        requested,
    })))
}

/// What a valid token request comes to: a response body, or an app-only token still to sign.
enum Issued {
    Body(serde_json::Value),
    AppOnly(Box<PendingAppOnly>),
}

/// A client-credentials grant that passed every check; only its signature is missing.
struct PendingAppOnly {
    recipe: mint::AppOnlyRecipe,
    key: Arc<crate::signing::SigningKey>,
    now: time::OffsetDateTime,
    endpoint: Endpoint,
    requested: String,
}

impl PendingAppOnly {
    /// A token signed ahead when one is ready, else one signed now (in arrival order).
    async fn sign(
        self: Box<Self>,
        core: &Core,
        outcome: &mut Outcome,
    ) -> Result<serde_json::Value, AadError> {
        let PendingAppOnly {
            recipe,
            key,
            now,
            endpoint,
            requested,
        } = *self;
        let token = match core.presign.take(&recipe, &key, now) {
            Some(token) => token,
            None => core.cpu_pool.mint(recipe, key, now).await.map_err(|e| {
                AadError::with_message(9002313, format!("Token signing failed: {e}"))
            })?,
        };
        outcome.token_id = Some(token.uti.clone());
        let expires_in = token.expires_in(now);
        Ok(match endpoint {
            Endpoint::V2 => json!({
                "token_type": "Bearer",
                "expires_in": expires_in,
                "ext_expires_in": expires_in,
                "access_token": token.access_token,
            }),
            Endpoint::V1 => json!({
                "token_type": "Bearer",
                "expires_in": expires_in.to_string(),
                "ext_expires_in": expires_in.to_string(),
                "expires_on": token.expires_on.unix_timestamp().to_string(),
                "not_before": token.not_before.unix_timestamp().to_string(),
                "resource": requested,
                "access_token": token.access_token,
            }),
        })
    }
}

/// A token request's client and what authenticating it needs.
#[derive(Clone, Copy)]
pub struct ClientRequest<'a> {
    pub core: &'a Core,
    pub dir: &'a Directory,
    pub parts: &'a Parts,
    /// The `{tenant}` segment as posted to (it is part of the assertion audience).
    pub tenant_segment: &'a str,
    pub form: &'a Form,
    pub basic: Option<&'a (String, String)>,
    pub app: &'a Application,
}

impl ClientRequest<'_> {
    /// Checks the client's secret or certificate assertion for a request in `tenant`.
    pub fn authenticate(
        &self,
        tenant: &Tenant,
        outcome: &mut Outcome,
    ) -> Result<ClientAuth, AadError> {
        authenticate(
            self.core,
            self.dir,
            self.parts,
            self.tenant_segment,
            tenant,
            self.app,
            self.form,
            self.basic,
            outcome,
        )
    }
}

/// Checks the client's secret or certificate assertion.
#[allow(clippy::too_many_arguments)]
fn authenticate(
    core: &Core,
    dir: &Directory,
    parts: &Parts,
    tenant_segment: &str,
    tenant: &Tenant,
    app: &Application,
    form: &Form,
    basic: Option<&(String, String)>,
    outcome: &mut Outcome,
) -> Result<ClientAuth, AadError> {
    let now = core.clock.now();
    let secret = form
        .non_empty("client_secret")
        .map(str::to_string)
        .or_else(|| basic.map(|(_, s)| s.clone()));
    let assertion = form.non_empty("client_assertion");
    if app.public_client && (secret.is_some() || assertion.is_some()) {
        return Err(AadError::new(700025, &[]));
    }
    if let Some(assertion) = assertion {
        let parsed = crate::jose::parse_compact(assertion);
        outcome.assertion = parsed.as_ref().ok().and_then(assertion::describe);
        if form.get("client_assertion_type") != Some(JWT_BEARER) {
            return Err(AadError::new(900144, &["client_assertion_type"]));
        }
        let audiences = accepted_audiences(parts, tenant_segment, tenant);
        let ctx = AssertionContext {
            client_id: &app.client_id,
            certificates: dir.certificates_of(&app.client_id),
            audiences: &audiences,
            now,
            skew: core.settings.clock_skew,
            verified: Some(&core.assertion_signatures),
        };
        assertion::validate_parsed(parsed, &ctx)?;
        return Ok(ClientAuth::Certificate);
    }
    let Some(secret) = secret else {
        if app.public_client {
            return Ok(ClientAuth::Public);
        }
        return Err(AadError::new(7000218, &[]));
    };
    let client = app.client_id.to_string();
    let matching = app
        .secrets
        .iter()
        .find(|s| crate::jose::constant_time_eq(s.value.as_bytes(), secret.as_bytes()));
    match matching {
        None => Err(AadError::new(7000215, &[&client])),
        Some(s) if s.expires.is_some_and(|e| e <= now) => Err(AadError::new(7000222, &[&client])),
        Some(_) => Ok(ClientAuth::Secret),
    }
}

/// The token-endpoint URL the request was posted to, with the tenant segment as sent and, as
/// an emulator convenience, as the tenant's GUID or any of its domains.
fn accepted_audiences(parts: &Parts, tenant_segment: &str, tenant: &Tenant) -> Vec<String> {
    let base = origin(parts);
    let path = parts.uri.path();
    let rest = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let id = tenant.id.to_string();
    std::iter::once(tenant_segment)
        .chain([id.as_str(), tenant.domain.as_str()])
        .chain(tenant.extra_domains.iter().map(String::as_str))
        .map(|t| format!("{base}/{t}/{rest}"))
        .collect()
}

/// The resource of the request: v1 `resource=`, v2 `scope={resource}/.default`.
fn requested_resource<'d>(
    dir: &'d Directory,
    tenant: &Tenant,
    endpoint: Endpoint,
    form: &Form,
) -> Result<(&'d Resource, String), AadError> {
    let requested = match endpoint {
        Endpoint::V1 => form
            .non_empty("resource")
            .ok_or_else(|| AadError::new(900144, &["resource"]))?
            .to_string(),
        Endpoint::V2 => {
            let scope = form
                .non_empty("scope")
                .ok_or_else(|| AadError::new(900144, &["scope"]))?;
            let mut resources = Vec::new();
            for s in scope.split_whitespace() {
                let Some(res) = s.strip_suffix("/.default") else {
                    return Err(AadError::new(1002012, &[s]));
                };
                if !resources.contains(&res) {
                    resources.push(res);
                }
            }
            match resources.as_slice() {
                [one] if !one.is_empty() => one.to_string(),
                _ => return Err(AadError::new(70011, &[scope])),
            }
        }
    };
    let resource = dir
        .world
        .resource(&requested)
        .ok_or_else(|| AadError::new(500011, &[&requested, &tenant.display_name]))?;
    Ok((resource, requested))
}
