//! Azure Communication Services (`<resource>.communication.azure.com`): HMAC-SHA256 and Entra
//! bearer authentication, Teams Phone extensibility access assignments, the Identity API and
//! the two token exchanges. Served at the root path (the SDKs allow no base path); the `Host`
//! header picks the world's ACS resource with that host name, else the first one.
//!
//! | route | operation | file |
//! |---|---|---|
//! | `POST /identities` | `acs.identities.create` | `identity.rs` |
//! | `GET`, `DELETE /identities/{id}` | `acs.identities.item` | `identity.rs` |
//! | `POST /identities/{id}/:issueAccessToken`, `…/:revokeAccessTokens` | `acs.identities.token` | `identity.rs` |
//! | `POST /teamsUser/:exchangeAccessToken` | `acs.teams_user.exchange` | `exchange.rs` |
//! | `POST /access/teamsExtension/:exchangeAccessToken` | `acs.teams_extension.exchange` | `exchange.rs` |
//! | `GET`, `PUT`, `PATCH`, `DELETE /access/teamsExtension/[tenants/{tenantId}/]assignments/{objectId}` | `acs.assignments` | `assignments.rs` |
//!
//! axum 0.8 refuses route segments that start with `:` (its old capture syntax), so the action
//! segments (`:issueAccessToken`, `:exchangeAccessToken`) are captured and compared by the
//! handlers; an unknown action gets ACS's 404.
//!
//! Admin routes (`admin.rs`): `GET /_emulator/acs/assignments`, `GET /_emulator/acs/identities`,
//! `GET /_emulator/acs/keys`, `POST /_emulator/acs/tokens/introspect`.

pub mod admin;
pub mod assignments;
pub mod auth;
pub mod errors;
pub mod exchange;
pub mod hmac;
pub mod identity;
pub mod store;
pub mod tokens;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use bytes::Bytes;
use http::request::Parts;
use http::{Request, StatusCode};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::http::{read_body, BodyError, Outcome};
use crate::state::Core;
use crate::world::AcsResource;
use errors::AcsError;

pub const OP_IDENTITY_CREATE: &str = "acs.identities.create";
pub const OP_IDENTITY_ITEM: &str = "acs.identities.item";
pub const OP_IDENTITY_TOKEN: &str = "acs.identities.token";
pub const OP_TEAMS_USER_EXCHANGE: &str = "acs.teams_user.exchange";
pub const OP_TPE_EXCHANGE: &str = "acs.teams_extension.exchange";
pub const OP_ASSIGNMENTS: &str = "acs.assignments";

/// Identity API versions (stable ones plus the preview that added `GET /identities/{id}`).
pub const IDENTITY_API_VERSIONS: &[&str] = &[
    "2021-03-07",
    "2022-06-01",
    "2022-09-01",
    "2022-10-01",
    "2023-08-01",
    "2023-10-01",
    "2025-03-02-preview",
    "2025-06-30",
];
/// Versions carrying the Teams Phone extensibility operations.
pub const TPE_API_VERSIONS: &[&str] = &["2025-03-02-preview", "2025-06-30"];
/// Default accepted skew between `x-ms-date` and the clock.
pub const DEFAULT_HMAC_SKEW_SECONDS: u64 = 300;

const ROUTE_ASSIGNMENT: &str = "/access/teamsExtension/tenants/{tenantId}/assignments/{objectId}";
const ROUTE_ASSIGNMENT_SHORT: &str = "/access/teamsExtension/assignments/{objectId}";

pub fn router() -> Router<Arc<Core>> {
    let assignment = || {
        get(assignments::get)
            .put(assignments::put)
            .patch(assignments::patch)
            .delete(assignments::delete)
            .fallback(wrong_method)
    };
    Router::new()
        .route("/identities", post(identity::create).fallback(wrong_method))
        .route(
            "/identities/{id}",
            delete(identity::delete)
                .get(identity::get)
                .fallback(wrong_method),
        )
        .route(
            "/identities/{id}/{action}",
            post(identity::action).fallback(wrong_method),
        )
        .route(
            "/teamsUser/{action}",
            post(exchange::teams_user).fallback(wrong_method),
        )
        .route(
            "/access/teamsExtension/{action}",
            post(exchange::teams_extension).fallback(wrong_method),
        )
        .route(ROUTE_ASSIGNMENT, assignment())
        .route(ROUTE_ASSIGNMENT_SHORT, assignment())
}

/// The operation name of each route (journal and fault matching use these).
pub fn operation(route: &str) -> Option<&'static str> {
    Some(match route {
        "/identities" => OP_IDENTITY_CREATE,
        "/identities/{id}" => OP_IDENTITY_ITEM,
        "/identities/{id}/{action}" => OP_IDENTITY_TOKEN,
        "/teamsUser/{action}" => OP_TEAMS_USER_EXCHANGE,
        "/access/teamsExtension/{action}" => OP_TPE_EXCHANGE,
        ROUTE_ASSIGNMENT | ROUTE_ASSIGNMENT_SHORT => OP_ASSIGNMENTS,
        _ => return None,
    })
}

async fn wrong_method(req: Request<Body>) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let op = operation(&route).unwrap_or("acs.unknown");
    AcsError::new(
        "MethodNotAllowed",
        format!("The method {} is not allowed here.", req.method()),
    )
    .respond(Outcome::new(op))
}

/// The accepted `x-ms-date` skew and whether HMAC failures carry the expected string to sign.
pub fn hmac_settings(core: &Core) -> (u64, bool) {
    let s = &core.initial_directory().world.server.acs;
    (
        s.hmac_clock_skew_seconds
            .unwrap_or(DEFAULT_HMAC_SKEW_SECONDS),
        s.expected_string_to_sign_header.unwrap_or(true),
    )
}

/// One request on its way through a handler: the resource it addressed, its raw parts and
/// body, the clock reading, and the journal record.
#[derive(Debug)]
pub struct Call {
    pub resource: AcsResource,
    /// The tenant (GUID) owning the resource.
    pub resource_tenant: Uuid,
    pub parts: Parts,
    pub body: Bytes,
    pub now: OffsetDateTime,
    pub outcome: Outcome,
}

impl Call {
    /// Reads the body (bounded) and selects the ACS resource by the `Host` header.
    pub async fn begin(
        core: &Core,
        req: Request<Body>,
        operation: &'static str,
    ) -> Result<Call, Response> {
        let outcome = Outcome::new(operation);
        let (parts, body) = req.into_parts();
        let body = match read_body(body, core.settings.body_limit).await {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                let e = AcsError::new(
                    "RequestEntityTooLarge",
                    format!(
                        "The request body is larger than {} bytes.",
                        core.settings.body_limit
                    ),
                );
                return Err(e.respond(outcome));
            }
            Err(BodyError::Broken) => {
                let e = AcsError::new("InvalidRequestBody", "The request body could not be read.");
                return Err(e.respond(outcome));
            }
        };
        let authority = crate::http::authority(&parts);
        let host = crate::http::host_without_port(&authority);
        let dir = core.directory();
        let resource = dir
            .world
            .acs
            .iter()
            .find(|a| a.host.eq_ignore_ascii_case(host))
            .or_else(|| dir.world.acs.first())
            .cloned();
        let Some(resource) = resource else {
            let e = AcsError::not_found("This emulator's world declares no ACS resource.");
            return Err(e.respond(outcome));
        };
        let resource_tenant = dir
            .tenant(&resource.tenant)
            .map(|t| t.id)
            .unwrap_or_default();
        drop(dir);
        Ok(Call {
            resource,
            resource_tenant,
            parts,
            body,
            now: core.clock.now(),
            outcome,
        })
    }

    /// Renders `e` with this call's journal record.
    pub fn fail(&self, e: AcsError) -> Response {
        e.respond(self.outcome.clone())
    }

    /// A JSON response with this call's journal record.
    pub fn json(&self, status: StatusCode, body: Value) -> Response {
        let mut resp = (status, axum::Json(body)).into_response();
        resp.extensions_mut().insert(self.outcome.clone());
        resp
    }

    /// An empty response (204) with this call's journal record.
    pub fn empty(&self, status: StatusCode) -> Response {
        let mut resp = status.into_response();
        resp.extensions_mut().insert(self.outcome.clone());
        resp
    }

    /// The first value of a query parameter (name case-insensitive).
    pub fn query(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.parts.uri.query().unwrap_or_default().as_bytes())
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.into_owned())
    }

    /// Checks `api-version` against `known`.
    pub fn api_version(&self, known: &[&str]) -> Result<String, AcsError> {
        let v = self.query("api-version").unwrap_or_default();
        if v.trim().is_empty() {
            return Err(AcsError::new(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            ));
        }
        if !known.contains(&v.as_str()) {
            return Err(AcsError::new(
                "UnsupportedApiVersion",
                format!(
                    "The HTTP resource that matches the request URI does not support the API version '{v}'. Supported versions: {}.",
                    known.join(", ")
                ),
            ));
        }
        Ok(v)
    }

    /// The body as a JSON object; an empty body is `None` when `optional`.
    pub fn json_body(
        &self,
        optional: bool,
    ) -> Result<Option<serde_json::Map<String, Value>>, AcsError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            if optional {
                return Ok(None);
            }
            return Err(AcsError::new(
                "InvalidRequestBody",
                "The request body is empty; a JSON object is required.",
            ));
        }
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(m)) => Ok(Some(m)),
            Ok(_) => Err(AcsError::new(
                "InvalidRequestBody",
                "The request body must be a JSON object.",
            )),
            Err(e) => Err(AcsError::new(
                "InvalidRequestBody",
                format!("The request body is not valid JSON: {e}."),
            )),
        }
    }

    /// Path segment `index` (0 = the first after `/`), percent-decoded; `None` when absent or
    /// badly encoded.
    pub fn segment(&self, index: usize) -> Option<String> {
        let raw = self.parts.uri.path().split('/').nth(index + 1)?;
        percent_decode(raw)
    }
}

pub use crate::http::decode_path_segment as percent_decode;

/// Runs a handler body that returns `Result<Response, AcsError>` and renders the error.
pub fn finish(call: &Call, result: Result<Response, AcsError>) -> Response {
    result.unwrap_or_else(|e| call.fail(e))
}

/// The state extractor every handler uses.
pub type CoreState = State<Arc<Core>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_an_operation() {
        for r in [
            "/identities",
            "/identities/{id}",
            "/identities/{id}/{action}",
            "/teamsUser/{action}",
            "/access/teamsExtension/{action}",
            ROUTE_ASSIGNMENT,
            ROUTE_ASSIGNMENT_SHORT,
        ] {
            assert!(operation(r).is_some(), "{r}");
        }
        assert_eq!(operation("/{tenant}/oauth2/token"), None);
    }

    #[test]
    fn percent_decoding_is_strict() {
        assert_eq!(percent_decode("8%3Aacs%3Ax").as_deref(), Some("8:acs:x"));
        assert_eq!(percent_decode("%3"), None);
        assert_eq!(percent_decode("%+1"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
