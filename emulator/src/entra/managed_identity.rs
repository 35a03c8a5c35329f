//! Managed-identity token endpoints (reference §5), on both listeners (plain HTTP included):
//!
//! - **App Service / Functions**: `GET /msi/token?api-version=2019-08-01&resource=<uri>` with
//!   `X-IDENTITY-HEADER: <secret>` (the secret is [`identity_header`]). Selectors `client_id`,
//!   `principal_id` / `object_id`, `mi_res_id`. Answer
//!   `{"access_token","expires_on","resource","token_type","client_id","not_before"}`, the
//!   times as epoch-second strings.
//! - **IMDS**: `GET /metadata/identity/oauth2/token` (and with a trailing slash, as
//!   @azure/identity JS sends it) with `Metadata: true`. Selectors `client_id`, `object_id`,
//!   `msi_res_id` (`mi_res_id` also accepted). Answer `{"access_token","refresh_token":"",
//!   "expires_in","expires_on","not_before","resource","token_type","client_id",
//!   "ext_expires_in"}`, every number a string. Clients reach it through
//!   `AZURE_POD_IDENTITY_AUTHORITY_HOST={http_url}`.
//!
//! Without a selector the world's first `system` identity answers. Tokens are v1 app-only
//! tokens, as Entra issues for managed identities: `appid` = the identity's client id,
//! `appidacr` "2", `oid` = `sub` = its object id, `roles` = its app-role grants on the
//! resource, `xms_mirid` = its ARM resource id.
//!
//! # Errors (choices where the reference is unconfirmed)
//!
//! IMDS errors are `{"error","error_description"}` (confirmed shape). App Service errors carry
//! App Service's own fields `{"statusCode","message","correlationId"}` (the shape of real
//! answers such as "Unable to load the proper Managed Identity.") **and** the OAuth pair
//! `{"error","error_description"}`, so that MSAL Python (which reports `statusCode, message`),
//! msal-node (which reads either) and plain OAuth readers all show a useful message.
//!
//! | situation | App Service | IMDS |
//! |---|---|---|
//! | `X-IDENTITY-HEADER` missing ❓ | 400 `invalid_request` | — |
//! | `X-IDENTITY-HEADER` wrong ❓ | 401 `unauthorized_client` | — |
//! | `Metadata: true` missing ✅ | — | 400 `invalid_request` "Required metadata header not specified" |
//! | `api-version` missing ❓ | 400 `invalid_request` | 400 `invalid_request` |
//! | `api-version` not `2019-08-01` ❓ | 400 `invalid_request` (the 2017-09-01 protocol differs) | any value accepted |
//! | `resource` missing ❓ | 400 `invalid_request` | 400 `invalid_request` |
//! | more than one selector ❓ | 400 `invalid_request` | 400 `invalid_request` |
//! | no identity matches ✅/❓ | 400 `invalid_request` "Unable to load the proper Managed Identity." | 400 `invalid_request` "Identity not found" ✅ |
//! | unknown resource ⚠️ | 400 `invalid_resource` AADSTS500011 | 400 `invalid_resource` AADSTS500011 |
//! | method other than GET ❓ | 405 | 405 "Only GET requests are supported." |
//!
//! The real App Service reportedly answers an unknown resource with a vague 500 (a comment in
//! MSAL Python); the emulator answers 400 with Entra's AADSTS500011 text instead, which says
//! what is wrong. The journal's `error_code` is a stable name per row (`identity_header_missing`,
//! `identity_header_invalid`, `bad_request_102`, `api_version_missing`,
//! `api_version_unsupported`, `resource_missing`, `identity_selector_conflict`,
//! `identity_not_found`, `AADSTS500011`, `method_not_allowed`, `malformed_query`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::request::Parts;
use http::{HeaderValue, Request, StatusCode};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::errors::{format_timestamp, AadError};
use super::mint::{issuer_v1, MintedToken, BACKDATE};
use crate::http::form::{parse_form, Form};
use crate::http::Outcome;
use crate::jose::{self, JoseError};
use crate::signing::SigningKey;
use crate::state::{Core, Directory};
use crate::world::{ManagedIdentity, ManagedIdentityKind, Tenant};

/// The journal / fault-matching operation of both endpoints.
pub const OPERATION: &str = "entra.managed_identity";
/// The App Service endpoint (`IDENTITY_ENDPOINT` = `{http_url}/msi/token`).
pub const APP_SERVICE_PATH: &str = "/msi/token";
/// The IMDS endpoint, below `AZURE_POD_IDENTITY_AUTHORITY_HOST`.
pub const IMDS_PATH: &str = "/metadata/identity/oauth2/token";
/// The IMDS endpoint as @azure/identity (JS) calls it.
pub const IMDS_PATH_SLASH: &str = "/metadata/identity/oauth2/token/";
/// The one App Service protocol version served.
pub const APP_SERVICE_API_VERSION: &str = "2019-08-01";

pub fn router() -> Router<Arc<Core>> {
    Router::new()
        .route(
            APP_SERVICE_PATH,
            get(app_service).fallback(app_service_wrong_method),
        )
        .route(IMDS_PATH, get(imds).fallback(imds_wrong_method))
        .route(IMDS_PATH_SLASH, get(imds).fallback(imds_wrong_method))
}

/// The App Service `IDENTITY_HEADER` secret: the first 32 hex digits of
/// SHA-256("m365-emulator identity header" ‖ CA certificate DER). Derived from the persistent
/// CA, so it is stable across restarts with the same state directory and needs no state of
/// its own.
///
/// ```no_run
/// # async fn demo(emulator: m365_emulator::Emulator) {
/// let secret = m365_emulator::entra::managed_identity::identity_header(emulator.core());
/// assert_eq!(secret, emulator.ready().identity_header);
/// # }
/// ```
pub fn identity_header(core: &Core) -> String {
    let mut data = b"m365-emulator identity header".to_vec();
    data.extend_from_slice(core.pki.ca_der());
    let mut hex = hex::encode(jose::sha256(&data));
    hex.truncate(32);
    hex
}

/// Which protocol a request speaks: decides header, selectors and response shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    AppService,
    Imds,
}

impl Style {
    /// Query parameters that select a user-assigned identity, with what they match.
    fn selectors(self) -> &'static [(&'static str, Selector)] {
        match self {
            Style::AppService => &[
                ("client_id", Selector::Client),
                ("principal_id", Selector::Object),
                ("object_id", Selector::Object),
                ("mi_res_id", Selector::Resource),
            ],
            Style::Imds => &[
                ("client_id", Selector::Client),
                ("object_id", Selector::Object),
                ("msi_res_id", Selector::Resource),
                ("mi_res_id", Selector::Resource),
            ],
        }
    }
}

/// What a selector parameter names: the client id, the object (principal) id, the ARM
/// resource id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Selector {
    Client,
    Object,
    Resource,
}

async fn app_service(State(core): State<Arc<Core>>, req: Request<Body>) -> Response {
    let (parts, _) = req.into_parts();
    handle(&core, Style::AppService, &parts)
}

async fn imds(State(core): State<Arc<Core>>, req: Request<Body>) -> Response {
    let (parts, _) = req.into_parts();
    handle(&core, Style::Imds, &parts)
}

async fn app_service_wrong_method(req: Request<Body>) -> Response {
    wrong_method(Style::AppService, req.method())
}

async fn imds_wrong_method(req: Request<Body>) -> Response {
    wrong_method(Style::Imds, req.method())
}

fn wrong_method(style: Style, method: &http::Method) -> Response {
    let e = MiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        error: "invalid_request",
        code: "method_not_allowed",
        message: format!("Only GET requests are supported. Received a {method} request."),
    };
    let mut outcome = Outcome::new(OPERATION);
    outcome.error_code = Some(e.code.to_string());
    let mut resp = e.render(style, &Uuid::new_v4().to_string());
    resp.headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static("GET"));
    resp.extensions_mut().insert(outcome);
    resp
}

/// A managed-identity error: status, OAuth `error`, the journal's code, the message.
#[derive(Debug, Clone, PartialEq)]
struct MiError {
    status: StatusCode,
    error: &'static str,
    code: &'static str,
    message: String,
}

impl MiError {
    fn bad_request(code: &'static str, message: impl Into<String>) -> MiError {
        MiError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            code,
            message: message.into(),
        }
    }

    /// AADSTS500011 with Entra's description tail, as IMDS passes Entra's answer through.
    fn unknown_resource(
        requested: &str,
        tenant: &Tenant,
        correlation_id: &str,
        now: OffsetDateTime,
    ) -> MiError {
        let aad = AadError::new(500011, &[requested, &tenant.display_name]);
        MiError {
            status: StatusCode::BAD_REQUEST,
            error: aad.error,
            code: "AADSTS500011",
            message: format!(
                "AADSTS{}: {}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
                aad.code,
                aad.message,
                Uuid::new_v4(),
                correlation_id,
                format_timestamp(now)
            ),
        }
    }

    fn render(&self, style: Style, correlation_id: &str) -> Response {
        let body = match style {
            Style::AppService => json!({
                "statusCode": self.status.as_u16(),
                "message": self.message,
                "correlationId": correlation_id,
                "error": self.error,
                "error_description": self.message,
            }),
            Style::Imds => json!({
                "error": self.error,
                "error_description": self.message,
            }),
        };
        json_response(self.status, &body, style, correlation_id)
    }
}

fn json_response(status: StatusCode, body: &Value, style: Style, correlation_id: &str) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    if style == Style::AppService {
        if let Ok(v) = HeaderValue::from_str(correlation_id) {
            h.insert("x-correlation-id", v);
        }
    }
    resp
}

fn handle(core: &Core, style: Style, parts: &Parts) -> Response {
    let now = core.clock.now();
    let correlation_id = Uuid::new_v4().to_string();
    let mut outcome = Outcome::new(OPERATION);
    let result = {
        let dir = core.directory();
        issue(core, &dir, style, parts, now, &correlation_id, &mut outcome)
    };
    let mut resp = match result {
        Ok(body) => json_response(StatusCode::OK, &body, style, &correlation_id),
        Err(e) => {
            outcome.error_code = Some(e.code.to_string());
            e.render(style, &correlation_id)
        }
    };
    resp.extensions_mut().insert(outcome);
    resp
}

fn issue(
    core: &Core,
    dir: &Directory,
    style: Style,
    parts: &Parts,
    now: OffsetDateTime,
    correlation_id: &str,
    outcome: &mut Outcome,
) -> Result<Value, MiError> {
    check_secret_header(core, style, parts)?;
    let query = parse_form(parts.uri.query().unwrap_or_default().as_bytes())
        .map_err(|e| MiError::bad_request("malformed_query", format!("{e}.")))?;
    let api_version = query.non_empty("api-version").ok_or_else(|| {
        MiError::bad_request(
            "api_version_missing",
            "Required query variable 'api-version' is missing.",
        )
    })?;
    if style == Style::AppService && api_version != APP_SERVICE_API_VERSION {
        return Err(MiError::bad_request(
            "api_version_unsupported",
            format!(
                "The api-version '{api_version}' is not supported. Supported version: '{APP_SERVICE_API_VERSION}'."
            ),
        ));
    }
    let requested = query.non_empty("resource").ok_or_else(|| {
        MiError::bad_request(
            "resource_missing",
            "Required query variable 'resource' is missing.",
        )
    })?;
    let identity = select_identity(dir, style, &query)?;
    outcome.client_id = Some(identity.client_id.to_string());
    let tenant = dir
        .tenant(&identity.tenant)
        .ok_or_else(|| not_found(style))?;
    outcome.tenant = Some(tenant.id.to_string());
    let resource = dir
        .world
        .resource(requested)
        .ok_or_else(|| MiError::unknown_resource(requested, tenant, correlation_id, now))?;
    let roles = dir
        .world
        .grants_on(&identity.app_role_grants, &resource.app_id);

    let key = core.signing.active();
    let token = mint(
        &key,
        identity,
        tenant,
        requested,
        roles,
        now,
        core.token_lifetime(dir),
    )
    .map_err(|e| MiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        error: "server_error",
        code: "signing_failed",
        message: format!("Token signing failed: {e}"),
    })?;
    outcome.token_id = Some(token.uti.clone());
    let expires_on = token.expires_on.unix_timestamp().to_string();
    let not_before = token.not_before.unix_timestamp().to_string();
    let client_id = identity.client_id.to_string();
    Ok(match style {
        Style::AppService => json!({
            "access_token": token.access_token,
            "expires_on": expires_on,
            "resource": requested,
            "token_type": "Bearer",
            "client_id": client_id,
            "not_before": not_before,
        }),
        Style::Imds => {
            let expires_in = token.expires_in(now).to_string();
            json!({
                "access_token": token.access_token,
                "refresh_token": "",
                "expires_in": expires_in,
                "expires_on": expires_on,
                "not_before": not_before,
                "resource": requested,
                "token_type": "Bearer",
                "client_id": client_id,
                "ext_expires_in": expires_in,
            })
        }
    })
}

/// App Service: `X-IDENTITY-HEADER` must be the secret. IMDS: `Metadata: true`.
fn check_secret_header(core: &Core, style: Style, parts: &Parts) -> Result<(), MiError> {
    match style {
        Style::AppService => {
            let sent = parts
                .headers
                .get("x-identity-header")
                .map(|v| v.as_bytes())
                .filter(|v| !v.is_empty());
            let Some(sent) = sent else {
                return Err(MiError::bad_request(
                    "identity_header_missing",
                    "Required header 'X-IDENTITY-HEADER' not specified.",
                ));
            };
            if !crate::jose::constant_time_eq(sent, identity_header(core).as_bytes()) {
                return Err(MiError {
                    status: StatusCode::UNAUTHORIZED,
                    error: "unauthorized_client",
                    code: "identity_header_invalid",
                    message: "The 'X-IDENTITY-HEADER' header does not match IDENTITY_HEADER."
                        .into(),
                });
            }
            Ok(())
        }
        Style::Imds => {
            let ok = parts
                .headers
                .get("metadata")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
            if ok {
                Ok(())
            } else {
                Err(MiError::bad_request(
                    "bad_request_102",
                    "Required metadata header not specified",
                ))
            }
        }
    }
}

fn not_found(style: Style) -> MiError {
    MiError::bad_request(
        "identity_not_found",
        match style {
            Style::AppService => "Unable to load the proper Managed Identity.",
            Style::Imds => "Identity not found",
        },
    )
}

/// The identity the query selects; without a selector, the first system-assigned one.
fn select_identity<'d>(
    dir: &'d Directory,
    style: Style,
    query: &Form,
) -> Result<&'d ManagedIdentity, MiError> {
    let given: Vec<(&str, Selector, &str)> = style
        .selectors()
        .iter()
        .filter_map(|(name, sel)| query.non_empty(name).map(|v| (*name, *sel, v.trim())))
        .collect();
    let identities = &dir.world.managed_identities;
    let found = match given.as_slice() {
        [] => identities
            .iter()
            .find(|mi| mi.kind == ManagedIdentityKind::System),
        [(_, sel, value)] => {
            let id = Uuid::parse_str(value).ok();
            identities.iter().find(|mi| match sel {
                Selector::Client => id == Some(mi.client_id),
                Selector::Object => id == Some(mi.object_id),
                Selector::Resource => mi.resource_id.as_deref().is_some_and(|r| {
                    r.trim_end_matches('/')
                        .eq_ignore_ascii_case(value.trim_end_matches('/'))
                }),
            })
        }
        many => {
            let names: Vec<&str> = many.iter().map(|(n, _, _)| *n).collect();
            return Err(MiError::bad_request(
                "identity_selector_conflict",
                format!(
                    "Only one of the parameters {} may be specified; the request has {}.",
                    style
                        .selectors()
                        .iter()
                        .map(|(n, _)| format!("'{n}'"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    names
                        .iter()
                        .map(|n| format!("'{n}'"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            ));
        }
    };
    found.ok_or_else(|| not_found(style))
}

/// A v1 app-only access token for a managed identity (reference §3.2 claim set; `appidacr`
/// "2" as for every managed identity; `xms_mirid` its ARM resource id).
fn mint(
    key: &SigningKey,
    identity: &ManagedIdentity,
    tenant: &Tenant,
    requested_resource: &str,
    roles: Vec<String>,
    now: OffsetDateTime,
    lifetime: Duration,
) -> Result<MintedToken, JoseError> {
    let iat = now - BACKDATE;
    let exp = now + lifetime;
    let uti = super::mint::opaque(16);
    let tid = tenant.id.to_string();
    let oid = identity.object_id.to_string();
    let iss = issuer_v1(&tid);
    let mut c = super::mint::base_claims(json!(requested_resource), iss.clone(), iat, exp);
    let mut put = |k: &str, v: Value| {
        c.insert(k.to_string(), v);
    };
    put("aio", json!(super::mint::opaque(48)));
    put("appid", json!(identity.client_id.to_string()));
    put("appidacr", json!("2"));
    put("idp", json!(iss));
    put("idtyp", json!("app"));
    put("oid", json!(oid));
    put("rh", json!(format!("0.A{}.", super::mint::opaque(40))));
    if !roles.is_empty() {
        put("roles", json!(roles));
    }
    put("sub", json!(oid));
    put("tid", json!(tid));
    put("uti", json!(uti));
    put("ver", json!("1.0"));
    if let Some(rid) = &identity.resource_id {
        put("xms_mirid", json!(rid));
    }
    crate::http::cpu_heavy(|| super::mint::seal(key, &c, 1, uti, iat, exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_name_the_documented_parameters() {
        let names = |s: Style| s.selectors().iter().map(|(n, _)| *n).collect::<Vec<_>>();
        assert_eq!(
            names(Style::AppService),
            ["client_id", "principal_id", "object_id", "mi_res_id"]
        );
        assert_eq!(
            names(Style::Imds),
            ["client_id", "object_id", "msi_res_id", "mi_res_id"]
        );
    }
}
