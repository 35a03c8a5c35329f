//! OIDC discovery (v1 and v2), JWKS (v1 and v2) and MSAL's instance discovery.
//! Endpoint URLs use the origin the client called (so a client pointed at 127.0.0.1 stays
//! there); issuers are explicit and stable, never derived from the Host header.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::HeaderValue;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

use super::errors::AadError;
use super::mint::{issuer_v1, issuer_v2};
use super::{resolve_tenant, TenantRef};
use crate::http::form::parse_form;
use crate::http::{authority, host_without_port, origin, Outcome};
use crate::jose;
use crate::state::Core;

fn json_response(body: Value, operation: &'static str, tenant: Option<String>) -> Response {
    let mut resp = body.to_string().into_response();
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=86400, private"),
    );
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    let mut outcome = Outcome::new(operation);
    outcome.tenant = tenant;
    resp.extensions_mut().insert(outcome);
    resp
}

fn error_response(core: &Core, parts: &Parts, e: AadError, operation: &'static str) -> Response {
    e.respond(parts, core.clock.now(), operation)
}

/// The tenant as discovery documents show it: its GUID, or the alias with a `{tenantid}` issuer.
fn tenant_for_docs(
    core: &Core,
    segment: &str,
) -> Result<(String, String, Option<String>), AadError> {
    let dir = core.directory();
    Ok(match resolve_tenant(&dir, segment)? {
        TenantRef::Tenant(t) => (t.id.to_string(), t.id.to_string(), Some(t.id.to_string())),
        TenantRef::Alias(a) => (a.to_string(), "{tenantid}".to_string(), None),
    })
}

pub async fn openid_configuration_v2(
    State(core): State<Arc<Core>>,
    Path(segment): Path<String>,
    parts: Parts,
) -> Response {
    const OP: &str = "entra.discovery";
    let (path_tenant, issuer_tenant, tid) = match tenant_for_docs(&core, &segment) {
        Ok(t) => t,
        Err(e) => return error_response(&core, &parts, e, OP),
    };
    let base = format!("{}/{path_tenant}", origin(&parts));
    let body = json!({
        "token_endpoint": format!("{base}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer_v2(&core.settings.issuer_host, &issuer_tenant),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{base}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "kerberos_endpoint": format!("{base}/kerberos"),
        "tenant_region_scope": Value::Null,
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    });
    json_response(body, OP, tid)
}

pub async fn openid_configuration_v1(
    State(core): State<Arc<Core>>,
    Path(segment): Path<String>,
    parts: Parts,
) -> Response {
    const OP: &str = "entra.discovery";
    let (path_tenant, issuer_tenant, tid) = match tenant_for_docs(&core, &segment) {
        Ok(t) => t,
        Err(e) => return error_response(&core, &parts, e, OP),
    };
    let o = origin(&parts);
    let base = format!("{o}/{path_tenant}");
    let body = json!({
        "token_endpoint": format!("{base}/oauth2/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{o}/common/discovery/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{base}/oauth2/logout"),
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
        "scopes_supported": ["openid"],
        "issuer": issuer_v1(&issuer_tenant),
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "amr", "nonce", "email", "given_name", "family_name", "nickname"],
        "microsoft_multi_refresh_token": true,
        "check_session_iframe": format!("{base}/oauth2/checksession"),
        "userinfo_endpoint": format!("{base}/openid/userinfo"),
        "kerberos_endpoint": format!("{base}/kerberos"),
        "tenant_region_scope": Value::Null,
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
        "authorization_endpoint": format!("{base}/oauth2/authorize"),
        "device_authorization_endpoint": format!("{base}/oauth2/devicecode"),
    });
    json_response(body, OP, tid)
}

/// The JWKS; v2 keys carry an `issuer` (the `{tenantid}` placeholder: usable by any tenant).
fn jwks(core: &Core, with_issuer: bool) -> Value {
    let keys: Vec<Value> = core
        .signing
        .published(core.clock.now())
        .iter()
        .map(|k| {
            let (n, e) = rsa::RsaPublicKey::from_pkcs1_der(&k.cert.rsa_public_key)
                .map(|pk| {
                    (
                        jose::b64url(&pk.n().to_bytes_be()),
                        jose::b64url(&pk.e().to_bytes_be()),
                    )
                })
                .unwrap_or_default();
            let mut key = json!({
                "kty": "RSA",
                "use": "sig",
                "kid": k.kid,
                "x5t": k.kid,
                "n": n,
                "e": e,
                "x5c": [jose::b64std(&k.cert.der)],
            });
            if with_issuer {
                key["issuer"] = json!(issuer_v2(&core.settings.issuer_host, "{tenantid}"));
            }
            key
        })
        .collect();
    json!({ "keys": keys })
}

pub async fn jwks_v1(
    State(core): State<Arc<Core>>,
    Path(segment): Path<String>,
    parts: Parts,
) -> Response {
    match tenant_for_docs(&core, &segment) {
        Ok((_, _, tid)) => json_response(jwks(&core, false), "entra.keys", tid),
        Err(e) => error_response(&core, &parts, e, "entra.keys"),
    }
}

pub async fn jwks_v2(
    State(core): State<Arc<Core>>,
    Path(segment): Path<String>,
    parts: Parts,
) -> Response {
    match tenant_for_docs(&core, &segment) {
        Ok((_, _, tid)) => json_response(jwks(&core, true), "entra.keys", tid),
        Err(e) => error_response(&core, &parts, e, "entra.keys"),
    }
}

/// Hosts that answer as Microsoft's public cloud (the emulator serves them in proxy mode).
const PUBLIC_CLOUD_ALIASES: [&str; 4] = [
    "login.microsoftonline.com",
    "login.windows.net",
    "login.microsoft.com",
    "sts.windows.net",
];

/// `GET /common/discovery/instance?api-version=1.1&authorization_endpoint=https://{host}/{t}/oauth2/v2.0/authorize`
pub async fn instance_discovery(
    State(core): State<Arc<Core>>,
    Path(_segment): Path<String>,
    parts: Parts,
) -> Response {
    const OP: &str = "entra.instance_discovery";
    let query = parts.uri.query().unwrap_or_default();
    let form = parse_form(query.as_bytes()).unwrap_or_default();
    let own = authority(&parts);
    let own_host = host_without_port(&own).to_ascii_lowercase();
    let Some(endpoint) = form.non_empty("authorization_endpoint") else {
        return error_response(
            &core,
            &parts,
            AadError::with_message(
                900144,
                "The request must contain the following query parameter: 'authorization_endpoint'.",
            ),
            OP,
        );
    };
    // https://{authority}/{tenant}/oauth2/...
    let parsed = endpoint
        .strip_prefix("https://")
        .and_then(|rest| rest.split_once('/'))
        .and_then(|(auth, path)| Some((auth, path.split('/').next().filter(|t| !t.is_empty())?)));
    let Some((asked_authority, tenant)) = parsed else {
        return error_response(&core, &parts, AadError::new(50049, &[]), OP);
    };
    let asked_host = host_without_port(asked_authority).to_ascii_lowercase();
    let known = asked_authority.eq_ignore_ascii_case(&own)
        || asked_host == own_host
        || matches!(asked_host.as_str(), "localhost" | "127.0.0.1" | "::1")
        || PUBLIC_CLOUD_ALIASES.contains(&asked_host.as_str());
    if !known {
        return error_response(&core, &parts, AadError::new(50049, &[]), OP);
    }
    let mut aliases = vec![asked_authority.to_string()];
    let mut preferred_cache = asked_authority.to_string();
    if PUBLIC_CLOUD_ALIASES.contains(&asked_host.as_str()) {
        aliases = PUBLIC_CLOUD_ALIASES.iter().map(|s| s.to_string()).collect();
        // As the real service answers: network via login.microsoftonline.com, cache key login.windows.net.
        preferred_cache = "login.windows.net".to_string();
    }
    let body = json!({
        "tenant_discovery_endpoint": format!("https://{asked_authority}/{tenant}/v2.0/.well-known/openid-configuration"),
        "api-version": form.get("api-version").unwrap_or("1.1"),
        "metadata": [
            {"preferred_network": aliases[0], "preferred_cache": preferred_cache, "aliases": aliases},
        ],
    });
    json_response(body, OP, None)
}

/// `GET /common/userrealm/{username}?api-version=1.0`: MSAL's user-realm discovery before
/// ROPC. World users are cloud-only (`Managed`); unknown domains are `Unknown`.
pub async fn user_realm(
    State(core): State<Arc<Core>>,
    Path((_segment, username)): Path<(String, String)>,
) -> Response {
    const OP: &str = "entra.user_realm";
    let domain = username.rsplit('@').next().unwrap_or_default().to_string();
    let known = core.directory().tenant(&domain).map(|t| t.domain.clone());
    let body = match known {
        Some(domain_name) => json!({
            "ver": "1.0",
            "account_type": "Managed",
            "domain_name": domain_name,
            "cloud_instance_name": "microsoftonline.com",
            "cloud_audience_urn": "urn:federation:MicrosoftOnline",
        }),
        None => json!({
            "ver": "1.0",
            "account_type": "Unknown",
            "cloud_instance_name": "microsoftonline.com",
        }),
    };
    json_response(body, OP, None)
}
