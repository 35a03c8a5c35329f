//! Token grants with a user: `authorization_code` (+ PKCE), `refresh_token` and `password`
//! (ROPC). Each issues a delegated access token for one resource, plus an id token with
//! `openid` and a refresh token with `offline_access` (v1 always returns both).

use serde_json::{json, Value};
use uuid::Uuid;

use super::authorize::client_info;
use super::consent::{self, GRAPH};
use super::errors::AadError;
use super::flows::{
    insert_bounded, lock, random_token, RefreshGrant, ScopeSet, REFRESH_INACTIVITY,
};
use super::mint::{self, ClientAuth, DelegatedGrant};
use super::token::{ClientRequest, Endpoint};
use super::TenantRef;
use crate::http::Outcome;
use crate::jose;
use crate::state::Directory;
use crate::world::{Tenant, User};

/// What the request is for, once the grant is checked.
struct Subject<'d> {
    tenant: &'d Tenant,
    user: &'d User,
    oidc: Vec<String>,
    /// Delegated scopes per resource the client may ask a token for.
    scopes: ScopeSet,
    /// v1: the resource named at authorize.
    resource: Option<String>,
    nonce: Option<String>,
}

/// The grant-specific part of the token endpoint for user grants.
pub fn issue(
    client: &ClientRequest<'_>,
    tenant_ref: TenantRef<'_>,
    endpoint: Endpoint,
    grant_type: &str,
    outcome: &mut Outcome,
) -> Result<Value, AadError> {
    let ClientRequest {
        core,
        dir,
        form,
        app,
        ..
    } = *client;
    let now = core.clock.now();
    let required = |name: &str| {
        form.non_empty(name)
            .ok_or_else(|| AadError::new(900144, &[name]))
    };
    let wrong_tenant = |t: &Tenant| matches!(tenant_ref, TenantRef::Tenant(x) if x.id != t.id);
    // What a successful answer uses up (a code or device code is single use); applied only
    // after the whole request succeeded, so a failed request changes nothing.
    let mut commit = Commit::Nothing;
    let (subject, auth) = match grant_type {
        "authorization_code" => {
            let code = required("code")?;
            let redirect_uri = required("redirect_uri")?;
            let grant = lock(&core.flows.codes)
                .get(code)
                .cloned()
                .filter(|g| g.client_id == app.client_id)
                .ok_or_else(|| AadError::new(70000, &["code"]))?;
            let (tenant, user) = user_in(dir, &grant.tenant, &grant.user)?;
            note(outcome, tenant, user);
            if wrong_tenant(tenant) {
                return Err(AadError::new(700005, &[]));
            }
            if grant.redeemed {
                return Err(AadError::new(54005, &[]));
            }
            if super::authorize::code_expired(&grant, now) {
                return Err(AadError::new(70008, &[]));
            }
            if grant.redirect_uri != redirect_uri {
                let mut e = AadError::with_message(
                    50011,
                    format!(
                        "The reply address '{redirect_uri}' does not match the reply address '{}' provided when requesting Authorization code.",
                        grant.redirect_uri
                    ),
                );
                e.error = "invalid_client";
                e.status = http::StatusCode::UNAUTHORIZED;
                return Err(e);
            }
            if let Some((challenge, method)) = &grant.code_challenge {
                let verifier = form.get("code_verifier").unwrap_or_default();
                let computed = if method == "S256" {
                    jose::b64url(&jose::sha256(verifier.as_bytes()))
                } else {
                    verifier.to_string()
                };
                if verifier.is_empty() || &computed != challenge {
                    return Err(AadError::new(501481, &[]));
                }
            }
            let auth = client.authenticate(tenant, outcome)?;
            commit = Commit::Code(code.to_string());
            let subject = Subject {
                tenant,
                user,
                oidc: grant.oidc.clone(),
                scopes: grant.scopes.clone(),
                resource: grant.resource.clone(),
                nonce: grant.nonce.clone(),
            };
            (subject, auth)
        }
        "refresh_token" => {
            let token = required("refresh_token")?;
            let grant = lock(&core.flows.refresh_tokens)
                .get(token)
                .cloned()
                .filter(|g| g.client_id == app.client_id)
                .ok_or_else(|| AadError::new(70000, &["refresh_token"]))?;
            let (tenant, user) = user_in(dir, &grant.tenant, &grant.user)?;
            note(outcome, tenant, user);
            if wrong_tenant(tenant) {
                return Err(AadError::new(70000, &["refresh_token"]));
            }
            if now - grant.last_used > REFRESH_INACTIVITY {
                let issued = super::errors::format_timestamp(grant.issued);
                return Err(AadError::new(700082, &[&issued]));
            }
            let auth = client.authenticate(tenant, outcome)?;
            if let Some(g) = lock(&core.flows.refresh_tokens).get_mut(token) {
                g.last_used = now;
            }
            let all: ScopeSet = dir
                .world
                .resources
                .iter()
                .map(|r| {
                    let granted =
                        consent::granted_scopes(dir, tenant, app, &user.object_id, &r.app_id_uri);
                    (r.app_id_uri.clone(), granted)
                })
                .filter(|(_, s)| !s.is_empty())
                .collect();
            let subject = Subject {
                tenant,
                user,
                oidc: grant.oidc.clone(),
                scopes: all,
                resource: None,
                nonce: None,
            };
            (subject, auth)
        }
        "password" => {
            let username = required("username")?;
            let password = required("password")?;
            let found = match tenant_ref {
                TenantRef::Tenant(t) => t
                    .users
                    .iter()
                    .find(|u| u.user_principal_name.eq_ignore_ascii_case(username))
                    .map(|u| (t, u)),
                TenantRef::Alias(_) => dir.world.tenants.iter().find_map(|t| {
                    t.users
                        .iter()
                        .find(|u| u.user_principal_name.eq_ignore_ascii_case(username))
                        .map(|u| (t, u))
                }),
            };
            let directory = match tenant_ref {
                TenantRef::Tenant(t) => t.display_name.clone(),
                TenantRef::Alias(_) => username.rsplit('@').next().unwrap_or_default().to_string(),
            };
            let (tenant, user) =
                found.ok_or_else(|| AadError::new(50034, &[username, &directory]))?;
            note(outcome, tenant, user);
            if user.password != password {
                return Err(AadError::new(50126, &[]));
            }
            let auth = client.authenticate(tenant, outcome)?;
            let subject = Subject {
                tenant,
                user,
                oidc: vec!["openid".into(), "profile".into(), "offline_access".into()],
                scopes: Vec::new(),
                resource: None,
                nonce: None,
            };
            (subject, auth)
        }
        "urn:ietf:params:oauth:grant-type:device_code" | "device_code" => {
            // v2 names the parameter `device_code`, v1 `code`.
            let name = if endpoint == Endpoint::V1 {
                "code"
            } else {
                "device_code"
            };
            let device_code = required(name)?;
            let (grant, tenant_id, user_id) =
                super::device_code::poll(core, device_code, &app.client_id)?;
            commit = Commit::DeviceCode(device_code.to_string());
            let (tenant, user) = user_in(dir, &tenant_id, &user_id)?;
            note(outcome, tenant, user);
            let auth = client.authenticate(tenant, outcome)?;
            let subject = Subject {
                tenant,
                user,
                oidc: grant.oidc.clone(),
                scopes: grant.scopes.clone(),
                resource: grant.resource.clone(),
                nonce: None,
            };
            (subject, auth)
        }
        other => return Err(AadError::new(70003, &[other])),
    };
    // A single-tenant app exists only in its home tenant (as for client credentials).
    let home = dir.tenant(&app.home_tenant).map(|t| t.id);
    if !app.multi_tenant && home != Some(subject.tenant.id) {
        return Err(AadError::new(
            700016,
            &[&app.client_id.to_string(), &subject.tenant.display_name],
        ));
    }
    let body = respond(client, endpoint, subject, auth, outcome)?;
    commit.apply(core)?;
    Ok(body)
}

/// A single-use grant to mark as used once its tokens are issued.
enum Commit {
    Nothing,
    Code(String),
    DeviceCode(String),
}

impl Commit {
    /// Marks the grant used; if a concurrent request used it first, this one fails (54005).
    fn apply(self, core: &crate::state::Core) -> Result<(), AadError> {
        match self {
            Commit::Nothing => Ok(()),
            Commit::Code(code) => match lock(&core.flows.codes).get_mut(&code) {
                Some(g) if !g.redeemed => {
                    g.redeemed = true;
                    Ok(())
                }
                _ => Err(AadError::new(54005, &[])),
            },
            Commit::DeviceCode(dc) => {
                if super::device_code::settle_redeemed(core, &dc) {
                    Ok(())
                } else {
                    Err(AadError::new(54005, &[]))
                }
            }
        }
    }
}

/// Records who the request is about in the journal, as soon as it is known.
fn note(outcome: &mut Outcome, tenant: &Tenant, user: &User) {
    outcome.tenant = Some(tenant.id.to_string());
    outcome.user = Some(user.object_id.to_string());
}

fn user_in<'d>(
    dir: &'d Directory,
    tenant: &Uuid,
    user: &Uuid,
) -> Result<(&'d Tenant, &'d User), AadError> {
    let t = dir
        .world
        .tenants
        .iter()
        .find(|t| &t.id == tenant)
        .ok_or_else(|| AadError::new(90002, &[&tenant.to_string()]))?;
    let u = t
        .users
        .iter()
        .find(|u| &u.object_id == user)
        .ok_or_else(|| AadError::new(70000, &["user"]))?;
    Ok((t, u))
}

/// Picks the resource and scopes of this token, checks consent, mints and renders.
fn respond(
    client: &ClientRequest<'_>,
    endpoint: Endpoint,
    subject: Subject<'_>,
    auth: ClientAuth,
    outcome: &mut Outcome,
) -> Result<Value, AadError> {
    let ClientRequest {
        core,
        dir,
        form,
        app,
        ..
    } = *client;
    let now = core.clock.now();
    let Subject {
        tenant,
        user,
        mut oidc,
        scopes: allowed,
        resource: authorize_resource,
        nonce,
    } = subject;
    // Which resource and scopes this token is for.
    let (requested_resource, wanted): (String, Vec<String>) = match endpoint {
        Endpoint::V1 => {
            let asked = form.non_empty("resource").map(str::to_string);
            // Authorize and token requests must name the same resource when both do.
            let same = |a: &str, b: &str| {
                dir.world.resource(a).map(|r| r.app_id) == dir.world.resource(b).map(|r| r.app_id)
            };
            if let (Some(a), Some(b)) = (&asked, &authorize_resource) {
                if !same(a, b) {
                    return Err(AadError::new(70000, &["resource"]));
                }
            }
            let resource = asked
                .or(authorize_resource)
                .ok_or_else(|| AadError::new(900144, &["resource"]))?;
            let res = dir
                .world
                .resource(&resource)
                .ok_or_else(|| AadError::new(500011, &[&resource, &tenant.display_name]))?;
            // v1 is static consent: the token carries what was granted; nothing granted is 65001.
            let granted: Vec<String> =
                consent::granted_scopes(dir, tenant, app, &user.object_id, &res.app_id_uri)
                    .into_iter()
                    .filter(|s| !consent::OIDC_SCOPES.contains(&s.as_str()))
                    .collect();
            if granted.is_empty() {
                return Err(AadError::new(
                    65001,
                    &[&app.client_id.to_string(), &app.display_name],
                ));
            }
            (resource, granted)
        }
        Endpoint::V2 => {
            let (asked_oidc, asked) = match form.non_empty("scope") {
                Some(scope) => consent::parse_scopes(dir, app, scope)?,
                None => (Vec::new(), Vec::new()),
            };
            for o in asked_oidc {
                if !oidc.contains(&o) {
                    oidc.push(o);
                }
            }
            let first = asked
                .first()
                .cloned()
                .or_else(|| allowed.first().cloned())
                .unwrap_or_else(|| (GRAPH.to_string(), Vec::new()));
            if asked.len() > 1 {
                let names: Vec<String> = asked.iter().map(|(u, _)| u.clone()).collect();
                return Err(AadError::with_message(
                    70011,
                    format!("The provided value for the input parameter 'scope' is not valid. One or more scopes in '{}' are not compatible with each other.", names.join(" ")),
                ));
            }
            first
        }
    };
    let resource = dir
        .world
        .resource(&requested_resource)
        .ok_or_else(|| AadError::new(500011, &[&requested_resource, &tenant.display_name]))?;
    let granted = consent::granted_scopes(dir, tenant, app, &user.object_id, &resource.app_id_uri);
    let lacking: Vec<&String> = wanted.iter().filter(|s| !granted.contains(s)).collect();
    if !lacking.is_empty() || dir.service_principal(tenant, app).is_none() {
        return Err(AadError::new(
            65001,
            &[&app.client_id.to_string(), &app.display_name],
        ));
    }
    let resource_scopes = |list: Vec<String>| -> Vec<String> {
        list.into_iter()
            .filter(|s| !consent::OIDC_SCOPES.contains(&s.as_str()))
            .collect()
    };
    let scp: Vec<String> = if wanted.is_empty() {
        resource_scopes(granted)
    } else {
        resource_scopes(wanted)
    };
    if scp.is_empty() {
        return Err(AadError::new(
            65001,
            &[&app.client_id.to_string(), &app.display_name],
        ));
    }
    let grant = DelegatedGrant {
        tenant,
        app,
        user,
        resource,
        requested_resource: &requested_resource,
        scopes: scp.clone(),
        auth,
        nonce: nonce.as_deref(),
    };
    let key = core.signing.active();
    let settings = &core.settings;
    let sign_err = |e: crate::jose::JoseError| {
        AadError::with_message(9002313, format!("Token signing failed: {e}"))
    };
    let v1 = endpoint == Endpoint::V1;
    let wants_id_token = v1 || oidc.iter().any(|o| o == "openid");
    // One or two RSA signatures.
    let (token, id_token) = crate::http::cpu_heavy(|| {
        let token = mint::mint_delegated(
            &key,
            &grant,
            now,
            core.token_lifetime(client.dir),
            &settings.issuer_host,
        )
        .map_err(sign_err)?;
        let id_token = if wants_id_token {
            Some(
                mint::mint_id_token(&key, &grant, !v1, now, &settings.issuer_host)
                    .map_err(sign_err)?,
            )
        } else {
            None
        };
        Ok::<_, AadError>((token, id_token))
    })?;
    outcome.token_id = Some(token.uti.clone());
    let refresh_token = (v1 || oidc.iter().any(|o| o == "offline_access")).then(|| {
        let rt = random_token(64);
        insert_bounded(
            &core.flows.refresh_tokens,
            rt.clone(),
            RefreshGrant {
                client_id: app.client_id,
                tenant: tenant.id,
                user: user.object_id,
                oidc: oidc.clone(),
                issued: now,
                last_used: now,
            },
        );
        rt
    });
    let expires_in = token.expires_in(now);
    let scope_text = {
        let mut out: Vec<String> = scp
            .iter()
            .map(|s| {
                if resource.app_id_uri == GRAPH {
                    s.clone()
                } else {
                    format!("{}/{s}", resource.app_id_uri)
                }
            })
            .collect();
        out.extend(
            oidc.iter()
                .filter(|o| o.as_str() != "offline_access")
                .cloned(),
        );
        out.join(" ")
    };
    let mut body = if v1 {
        json!({
            "token_type": "Bearer",
            "scope": scp.join(" "),
            "expires_in": expires_in.to_string(),
            "ext_expires_in": expires_in.to_string(),
            "expires_on": token.expires_on.unix_timestamp().to_string(),
            "not_before": token.not_before.unix_timestamp().to_string(),
            "resource": requested_resource,
            "access_token": token.access_token,
        })
    } else {
        json!({
            "token_type": "Bearer",
            "scope": scope_text,
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": token.access_token,
        })
    };
    if let Some(rt) = refresh_token {
        body["refresh_token"] = json!(rt);
    }
    if let Some(id) = id_token {
        body["id_token"] = json!(id);
    }
    if form.get("client_info") == Some("1") {
        body["client_info"] = json!(client_info(&user.object_id, &tenant.id));
    }
    Ok(body)
}
