//! Consents per tenant and app: `GET /_emulator/tenants/{tenant}/consents`,
//! `POST` to grant (tenant-wide, or for one user), `DELETE …/consents/{client_id}` to revoke.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{Request, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{json_body, ok, AdminError};
use crate::entra::consent;
use crate::http::Outcome;
use crate::state::{Core, Directory};
use crate::world::Tenant;

fn tenant_of<'d>(dir: &'d Directory, key: &str) -> Result<&'d Tenant, AdminError> {
    dir.tenant(key)
        .ok_or_else(|| AdminError::not_found(format!("no tenant '{key}' in this world")))
}

fn consents_json(tenant: &Tenant, only: Option<&Uuid>) -> Value {
    let mut apps: Vec<Uuid> = tenant
        .service_principals
        .iter()
        .map(|sp| sp.app_id)
        .chain(tenant.user_consents.iter().map(|c| c.app_id))
        .filter(|id| only.is_none_or(|o| o == id))
        .collect();
    apps.sort();
    apps.dedup();
    let list: Vec<Value> = apps
        .iter()
        .map(|app| {
            let sp = tenant
                .service_principals
                .iter()
                .find(|sp| &sp.app_id == app);
            let users: Vec<Value> = tenant
                .user_consents
                .iter()
                .filter(|c| &c.app_id == app)
                .map(|c| json!({"user": c.user, "scopes": c.scopes}))
                .collect();
            json!({
                "client_id": app,
                "service_principal_id": sp.map(|sp| sp.object_id_in(&tenant.id)),
                "app_role_grants": sp.map(|sp| json!(sp.app_role_grants)).unwrap_or(json!({})),
                "delegated_grants": sp.map(|sp| json!(sp.delegated_grants)).unwrap_or(json!({})),
                "user_consents": users,
            })
        })
        .collect();
    json!({"tenant": tenant.id, "consents": list})
}

pub async fn list(
    State(core): State<Arc<Core>>,
    Path(tenant): Path<String>,
) -> Result<Response, AdminError> {
    let dir = core.directory();
    let t = tenant_of(&dir, &tenant)?;
    Ok(ok(
        "admin.consents.list",
        StatusCode::OK,
        consents_json(t, None),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantRequest {
    client_id: Uuid,
    /// Application permissions: resource App ID URI → app roles.
    app_role_grants: Option<BTreeMap<String, Vec<String>>>,
    /// Delegated permissions: resource App ID URI → scopes.
    delegated_grants: Option<BTreeMap<String, Vec<String>>>,
    /// Consent for this user (object id or UPN) only; absent = tenant-wide admin consent.
    user: Option<String>,
}

/// Grants consent. Without explicit grants, tenant-wide consent grants what the app
/// registration requires (as the admin-consent endpoint does).
pub async fn grant(
    State(core): State<Arc<Core>>,
    Path(tenant): Path<String>,
    req: Request<Body>,
) -> Result<Response, AdminError> {
    let body = json_body(&core, req.into_body()).await?;
    let g: GrantRequest = serde_json::from_value(body)
        .map_err(|e| AdminError::bad_request(format!("invalid consent: {e}")))?;
    let mut dir = core.directory_mut();
    let t = tenant_of(&dir, &tenant)?;
    let tenant_id = t.id;
    let app = dir
        .application(&g.client_id)
        .ok_or_else(|| {
            AdminError::not_found(format!("no application with client id {}", g.client_id))
        })?
        .clone();
    let home = dir.tenant(&app.home_tenant).map(|h| h.id);
    if !app.multi_tenant && home != Some(tenant_id) {
        return Err(AdminError::bad_request(format!(
            "application {} is single-tenant; it cannot be consented outside its home tenant",
            app.client_id
        )));
    }
    // Validate every named resource, role and scope before changing anything.
    let check = |map: &BTreeMap<String, Vec<String>>,
                 roles: bool|
     -> Result<Vec<(String, Vec<String>)>, AdminError> {
        map.iter()
            .map(|(uri, names)| {
                let res = dir.world.resource(uri).ok_or_else(|| {
                    AdminError::bad_request(format!("no resource '{uri}' in this world"))
                })?;
                for n in names {
                    let known = if roles {
                        res.app_roles.iter().any(|r| &r.value == n)
                    } else {
                        res.scopes.contains(n)
                    };
                    if !known {
                        let kind = if roles { "app role" } else { "scope" };
                        return Err(AdminError::bad_request(format!(
                            "resource '{uri}' has no {kind} '{n}'"
                        )));
                    }
                }
                Ok((res.app_id_uri.clone(), names.clone()))
            })
            .collect()
    };
    let roles = g
        .app_role_grants
        .as_ref()
        .map(|m| check(m, true))
        .transpose()?;
    let scopes = g
        .delegated_grants
        .as_ref()
        .map(|m| check(m, false))
        .transpose()?;
    match &g.user {
        Some(user) => {
            if roles.is_some() {
                return Err(AdminError::bad_request(
                    "`app_role_grants` cannot be given to a single user",
                ));
            }
            let t = tenant_of(&dir, &tenant)?;
            let oid = t
                .users
                .iter()
                .find(|u| {
                    u.object_id.to_string().eq_ignore_ascii_case(user)
                        || u.user_principal_name.eq_ignore_ascii_case(user)
                })
                .map(|u| u.object_id)
                .ok_or_else(|| {
                    AdminError::bad_request(format!("no user '{user}' in tenant {tenant_id}"))
                })?;
            let scopes = scopes.unwrap_or_else(|| consent::declared_scope_set(&dir, &app));
            consent::grant_user(&mut dir, &tenant_id, &oid, &app.client_id, &scopes);
        }
        None => {
            let explicit = roles.is_some() || scopes.is_some();
            let scopes = scopes.unwrap_or_else(|| {
                if explicit {
                    Vec::new()
                } else {
                    consent::declared_scope_set(&dir, &app)
                }
            });
            consent::grant_admin_with(
                &mut dir,
                &tenant_id,
                &app.client_id,
                &scopes,
                if explicit { roles } else { None },
            );
        }
    }
    let t = tenant_of(&dir, &tenant)?;
    Ok(ok(
        "admin.consents.grant",
        StatusCode::OK,
        consents_json(t, Some(&app.client_id)),
    ))
}

pub async fn revoke(
    State(core): State<Arc<Core>>,
    Path((tenant, client_id)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    let app_id = Uuid::parse_str(&client_id)
        .map_err(|_| AdminError::bad_request(format!("client id '{client_id}' is not a GUID")))?;
    let mut dir = core.directory_mut();
    let tenant_id = tenant_of(&dir, &tenant)?.id;
    if !consent::revoke(&mut dir, &tenant_id, &app_id) {
        return Err(AdminError::not_found(format!(
            "application {app_id} has no consent in tenant {tenant_id}"
        )));
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.extensions_mut()
        .insert(Outcome::new("admin.consents.revoke"));
    Ok(resp)
}
