//! Delegated permissions: parsing requested scopes, checking what a tenant (admin consent) or
//! a user granted, and recording new consents. Admin consent also creates the app's service
//! principal in the tenant with the app roles it requires.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::errors::AadError;
use super::flows::ScopeSet;
use crate::state::Directory;
use crate::world::{Application, ServicePrincipal, Tenant, UserConsent};

/// OpenID Connect scopes: always granted (they only shape the id token and refresh token).
pub const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// The resource bare scope names belong to.
pub const GRAPH: &str = "https://graph.microsoft.com";

/// Splits a v2 `scope` parameter into OIDC scopes and per-resource delegated scopes.
/// `{resource}/.default` stands for every scope the app declares for that resource.
pub fn parse_scopes(
    dir: &Directory,
    app: &Application,
    scope: &str,
) -> Result<(Vec<String>, ScopeSet), AadError> {
    let mut oidc = Vec::new();
    let mut set: ScopeSet = Vec::new();
    for s in scope.split_whitespace() {
        if OIDC_SCOPES.contains(&s) {
            if !oidc.iter().any(|o| o == s) {
                oidc.push(s.to_string());
            }
            continue;
        }
        let (resource_text, name) = match s.rsplit_once('/') {
            Some((r, n)) if r.contains(':') => (r, n),
            _ => (GRAPH, s),
        };
        let resource = dir
            .world
            .resource(resource_text)
            .ok_or_else(|| AadError::new(500011, &[resource_text, "the directory"]))?;
        let names: Vec<String> = if name == ".default" {
            declared_scopes(dir, app, &resource.app_id_uri)
        } else if resource.scopes.iter().any(|x| x == name) {
            vec![name.to_string()]
        } else {
            return Err(AadError::new(70011, &[s]));
        };
        let entry = match set.iter_mut().find(|(uri, _)| uri == &resource.app_id_uri) {
            Some(e) => e,
            None => {
                set.push((resource.app_id_uri.clone(), Vec::new()));
                let last = set.len() - 1;
                &mut set[last]
            }
        };
        for n in names {
            if !entry.1.contains(&n) {
                entry.1.push(n);
            }
        }
    }
    Ok((oidc, set))
}

/// The delegated scopes the app registration declares for a resource (static consent, v1 and
/// `/.default`).
pub fn declared_scopes(dir: &Directory, app: &Application, resource_uri: &str) -> Vec<String> {
    app.required_resource_access
        .iter()
        .filter(|r| {
            dir.world
                .resource(&r.resource)
                .is_some_and(|x| x.app_id_uri == resource_uri)
        })
        .flat_map(|r| {
            r.scopes
                .iter()
                .filter(|s| !OIDC_SCOPES.contains(&s.as_str()))
                .cloned()
        })
        .collect()
}

/// Every delegated scope the registration declares, per resource (legacy admin consent and
/// consents granted "as the registration requires").
pub fn declared_scope_set(dir: &Directory, app: &Application) -> ScopeSet {
    app.required_resource_access
        .iter()
        .filter_map(|r| dir.world.resource(&r.resource))
        .map(|res| {
            (
                res.app_id_uri.clone(),
                declared_scopes(dir, app, &res.app_id_uri),
            )
        })
        .collect()
}

/// Scopes a user may not consent to alone.
pub fn needs_admin(scope: &str) -> bool {
    scope.ends_with(".All")
}

/// Delegated scopes of `resource_uri` granted to the app for this user (tenant-wide or own).
pub fn granted_scopes(
    dir: &Directory,
    tenant: &Tenant,
    app: &Application,
    user: &Uuid,
    resource_uri: &str,
) -> Vec<String> {
    let Some(resource) = dir.world.resource(resource_uri) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    if let Some(sp) = tenant
        .service_principals
        .iter()
        .find(|sp| sp.app_id == app.client_id)
    {
        out.extend(dir.world.grants_on(&sp.delegated_grants, &resource.app_id));
    }
    for uc in tenant
        .user_consents
        .iter()
        .filter(|c| c.app_id == app.client_id && &c.user == user)
    {
        out.extend(dir.world.grants_on(&uc.scopes, &resource.app_id));
    }
    out.sort();
    out.dedup();
    out
}

/// What the user would still have to consent to.
pub fn missing(
    dir: &Directory,
    tenant: &Tenant,
    app: &Application,
    user: &Uuid,
    wanted: &ScopeSet,
) -> ScopeSet {
    wanted
        .iter()
        .filter_map(|(uri, scopes)| {
            let have = granted_scopes(dir, tenant, app, user, uri);
            let lacking: Vec<String> = scopes
                .iter()
                .filter(|s| !have.contains(s))
                .cloned()
                .collect();
            (!lacking.is_empty()).then(|| (uri.clone(), lacking))
        })
        .collect()
}

fn merge(into: &mut BTreeMap<String, Vec<String>>, uri: &str, scopes: &[String]) {
    let list = into.entry(uri.to_string()).or_default();
    for s in scopes {
        if !list.contains(s) {
            list.push(s.clone());
        }
    }
}

/// Records a user's own consent.
pub fn grant_user(
    dir: &mut Directory,
    tenant_id: &Uuid,
    user: &Uuid,
    app_id: &Uuid,
    scopes: &ScopeSet,
) {
    let Some(tenant) = dir.world.tenants.iter_mut().find(|t| &t.id == tenant_id) else {
        return;
    };
    let idx = match tenant
        .user_consents
        .iter()
        .position(|c| &c.user == user && &c.app_id == app_id)
    {
        Some(i) => i,
        None => {
            tenant.user_consents.push(UserConsent {
                user: *user,
                app_id: *app_id,
                scopes: BTreeMap::new(),
            });
            tenant.user_consents.len() - 1
        }
    };
    for (uri, s) in scopes {
        merge(&mut tenant.user_consents[idx].scopes, uri, s);
    }
    // Consent by any user creates the app's service principal in the tenant.
    if !tenant
        .service_principals
        .iter()
        .any(|sp| &sp.app_id == app_id)
    {
        tenant.service_principals.push(ServicePrincipal {
            app_id: *app_id,
            object_id: None,
            app_role_grants: BTreeMap::new(),
            delegated_grants: BTreeMap::new(),
        });
    }
}

/// Records tenant-wide admin consent: creates the service principal if needed, grants the
/// delegated scopes for all users and the app roles the registration requires.
pub fn grant_admin(
    dir: &mut Directory,
    tenant_id: &Uuid,
    app_id: &Uuid,
    scopes: &ScopeSet,
) -> Option<ServicePrincipal> {
    grant_admin_with(dir, tenant_id, app_id, scopes, None)
}

/// Like [`grant_admin`], with explicit app roles instead of the registration's.
pub fn grant_admin_with(
    dir: &mut Directory,
    tenant_id: &Uuid,
    app_id: &Uuid,
    scopes: &ScopeSet,
    roles: Option<Vec<(String, Vec<String>)>>,
) -> Option<ServicePrincipal> {
    let app = dir.world.application(app_id)?.clone();
    let roles = roles.unwrap_or_else(|| {
        app.required_resource_access
            .iter()
            .filter(|rra| !rra.app_roles.is_empty())
            .filter_map(|rra| {
                Some((
                    dir.world.resource(&rra.resource)?.app_id_uri.clone(),
                    rra.app_roles.clone(),
                ))
            })
            .collect()
    });
    let tenant = dir.world.tenants.iter_mut().find(|t| &t.id == tenant_id)?;
    let idx = match tenant
        .service_principals
        .iter()
        .position(|sp| &sp.app_id == app_id)
    {
        Some(i) => i,
        None => {
            tenant.service_principals.push(ServicePrincipal {
                app_id: *app_id,
                object_id: None,
                app_role_grants: BTreeMap::new(),
                delegated_grants: BTreeMap::new(),
            });
            tenant.service_principals.len() - 1
        }
    };
    let sp = &mut tenant.service_principals[idx];
    for (uri, s) in scopes {
        merge(&mut sp.delegated_grants, uri, s);
    }
    for (uri, r) in &roles {
        merge(&mut sp.app_role_grants, uri, r);
    }
    Some(sp.clone())
}

/// Removes an app's consents in a tenant (service principal and user grants). The home
/// tenant keeps its implicit service principal.
pub fn revoke(dir: &mut Directory, tenant_id: &Uuid, app_id: &Uuid) -> bool {
    let Some(tenant) = dir.world.tenants.iter_mut().find(|t| &t.id == tenant_id) else {
        return false;
    };
    let before = tenant.service_principals.len() + tenant.user_consents.len();
    tenant.service_principals.retain(|sp| &sp.app_id != app_id);
    tenant.user_consents.retain(|c| &c.app_id != app_id);
    before != tenant.service_principals.len() + tenant.user_consents.len()
}
