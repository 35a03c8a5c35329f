//! Entra ID (Azure AD): token endpoints (v1 and v2), client-assertion validation, access-token
//! minting, OIDC discovery, JWKS and instance discovery, with Entra's error catalog.

pub mod assertion;
pub mod authorize;
pub mod consent;
pub mod device_code;
pub mod discovery;
pub mod errors;
pub mod flows;
pub mod managed_identity;
pub mod mint;
pub mod pages;
pub mod presign;
pub mod token;
pub mod user_grants;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use http::{HeaderMap, HeaderValue};
use uuid::Uuid;

use crate::state::{Core, Directory};
use crate::world::{is_dns_name, Tenant};
use errors::{header_value, AadError};

pub fn router() -> Router<Arc<Core>> {
    Router::new()
        .route(
            "/{tenant}/oauth2/token",
            post(token::token_v1).fallback(token::wrong_method),
        )
        .route(
            "/{tenant}/oauth2/v2.0/token",
            post(token::token_v2).fallback(token::wrong_method),
        )
        .route(
            "/{tenant}/.well-known/openid-configuration",
            get(discovery::openid_configuration_v1),
        )
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(discovery::openid_configuration_v2),
        )
        .route("/{tenant}/discovery/keys", get(discovery::jwks_v1))
        .route("/{tenant}/discovery/v2.0/keys", get(discovery::jwks_v2))
        .route(
            "/{tenant}/discovery/instance",
            get(discovery::instance_discovery),
        )
        .route("/{tenant}/oauth2/authorize", get(authorize::authorize_v1))
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            get(authorize::authorize_v2),
        )
        .route(
            "/{tenant}/v2.0/adminconsent",
            get(authorize::admin_consent_v2),
        )
        .route(
            "/{tenant}/adminconsent",
            get(authorize::admin_consent_legacy),
        )
        .route("/{tenant}/userrealm/{username}", get(discovery::user_realm))
        .route(
            "/{tenant}/oauth2/devicecode",
            post(device_code::devicecode_v1),
        )
        .route(
            "/{tenant}/oauth2/v2.0/devicecode",
            post(device_code::devicecode_v2),
        )
        .route(
            "/devicelogin",
            get(device_code::devicelogin_page).post(device_code::devicelogin_submit),
        )
        .route("/{tenant}/login", post(authorize::login))
        .route("/{tenant}/consent", post(authorize::consent_decision))
        .merge(managed_identity::router())
}

/// The operation name of each route (journal and fault matching use these).
pub fn operation(route: &str) -> Option<&'static str> {
    Some(match route {
        "/{tenant}/oauth2/token" | "/{tenant}/oauth2/v2.0/token" => "entra.token",
        "/{tenant}/.well-known/openid-configuration"
        | "/{tenant}/v2.0/.well-known/openid-configuration" => "entra.discovery",
        "/{tenant}/discovery/keys" | "/{tenant}/discovery/v2.0/keys" => "entra.keys",
        "/{tenant}/oauth2/authorize"
        | "/{tenant}/oauth2/v2.0/authorize"
        | "/{tenant}/v2.0/adminconsent"
        | "/{tenant}/adminconsent"
        | "/{tenant}/login"
        | "/{tenant}/consent" => "entra.authorize",
        "/{tenant}/discovery/instance" => "entra.instance_discovery",
        "/{tenant}/userrealm/{username}" => "entra.user_realm",
        "/{tenant}/oauth2/devicecode" | "/{tenant}/oauth2/v2.0/devicecode" | "/devicelogin" => {
            "entra.devicecode"
        }
        "/msi/token" | "/metadata/identity/oauth2/token" | "/metadata/identity/oauth2/token/" => {
            "entra.managed_identity"
        }
        _ => return None,
    })
}

/// The `{tenant}` path segment, resolved.
#[derive(Debug, Clone, Copy)]
pub enum TenantRef<'a> {
    Tenant(&'a Tenant),
    /// `common`, `organizations` or `consumers` (lower-case).
    Alias(&'static str),
}

/// Resolves a `{tenant}` segment: an alias, a GUID or a domain of a world tenant.
pub fn resolve_tenant<'d>(dir: &'d Directory, segment: &str) -> Result<TenantRef<'d>, AadError> {
    for alias in ["common", "organizations", "consumers"] {
        if segment.eq_ignore_ascii_case(alias) {
            return Ok(TenantRef::Alias(alias));
        }
    }
    if let Ok(id) = Uuid::parse_str(segment) {
        if id.is_nil() {
            return Err(AadError::with_message(
                90002,
                format!("Requested tenant identifier '{segment}' is not valid. Tenant identifiers may not be an empty GUID."),
            ));
        }
    } else if !is_dns_name(segment) {
        return Err(AadError::new(900023, &[segment]));
    }
    dir.tenant(segment)
        .map(TenantRef::Tenant)
        .ok_or_else(|| AadError::new(90002, &[segment]))
}

/// Headers Entra puts on token and error responses.
pub fn token_headers(h: &mut HeaderMap, trace_id: &str, client_request_id: Option<&str>) {
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    h.insert(http::header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(http::header::EXPIRES, HeaderValue::from_static("-1"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "strict-transport-security",
        HeaderValue::from_static("max-age=31536000; includeSubDomains"),
    );
    h.insert("x-ms-request-id", header_value(trace_id));
    h.insert(
        "x-ms-ests-server",
        HeaderValue::from_static("m365-emulator"),
    );
    if let Some(id) = client_request_id {
        h.insert("client-request-id", header_value(id));
    }
}

/// The `client-request-id` a client sent (header, or MSAL Node's query/body copies).
pub fn client_request_id(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let from_header = headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    from_header
        .or_else(|| {
            let q = crate::http::form::parse_form(query?.as_bytes()).ok()?;
            q.get("client-request-id").map(str::to_string)
        })
        .filter(|id| Uuid::parse_str(id).is_ok())
}
