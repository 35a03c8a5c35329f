//! Skype for Business Online Trusted Application API (`api.skypeforbusiness.com`), minimal.
//! The real service was retired on July 31, 2021; this exists for legacy clients whose
//! start-up still walks discovery → applications → application resource.
//!
//! | route | operation |
//! |---|---|
//! | `GET /platformservice/discover` | `sfb.discover` (no token needed) |
//! | `GET /platformService/v1/applications?endpointId=…` | `sfb.applications` |
//! | `GET /platformService/v1/applications/{id}?endpointId=…` | `sfb.application` |
//!
//! Paths are served in both spellings the docs use (`platformservice` and `platformService`).
//! The applications routes need an app-only token for [`RESOURCE`] (or the sandbox audience)
//! that carries an app role, from an app with a trusted endpoint registered in the world
//! (`[[teams.sfb_trusted_endpoints]]`): else 401 (no/invalid token) or 403 `ApplicationNotFound`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::request::Parts;
use http::{HeaderValue, Request, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::http::Outcome;
use crate::state::Core;

/// The documented token audience, the sandbox one, and the Skype for Business Online app id.
pub const RESOURCE: &str = "https://api.skypeforbusiness.com";
pub const SANDBOX_RESOURCE: &str = "https://noammeetings.resources.lync.com";
pub const RESOURCE_APP_ID: &str = "00000004-0000-0ff1-ce00-000000000000";

pub const OP_DISCOVER: &str = "sfb.discover";
pub const OP_APPLICATIONS: &str = "sfb.applications";
pub const OP_APPLICATION: &str = "sfb.application";

const ROOTS: [&str; 2] = ["/platformservice", "/platformService"];

pub fn router() -> Router<Arc<Core>> {
    let mut r = Router::new();
    for root in ROOTS {
        r = r
            .route(&format!("{root}/discover"), get(discover))
            .route(&format!("{root}/v1/applications"), get(applications))
            .route(&format!("{root}/v1/applications/{{app}}"), get(application));
    }
    r
}

pub fn operation(route: &str) -> Option<&'static str> {
    let rest = ROOTS.iter().find_map(|r| route.strip_prefix(r))?;
    Some(match rest {
        "/discover" => OP_DISCOVER,
        "/v1/applications" => OP_APPLICATIONS,
        "/v1/applications/{app}" => OP_APPLICATION,
        _ => return None,
    })
}

/// Fault-injectable error names (`"error": "sfb.<name>"`).
pub const FAULT_NAMES: [&str; 3] = [
    "sfb.Unauthorized",
    "sfb.ApplicationNotFound",
    "sfb.ServiceFailure",
];

pub fn parse_name(name: &str) -> Option<&'static str> {
    FAULT_NAMES
        .iter()
        .copied()
        .find(|n| n.eq_ignore_ascii_case(name))
}

/// The catalog error a fault rule names.
pub fn for_fault(name: &str) -> Option<SfbError> {
    Some(match parse_name(name)? {
        "sfb.Unauthorized" => SfbError::unauthorized("The access token is missing or invalid."),
        "sfb.ApplicationNotFound" => SfbError::application_not_found("(injected)"),
        _ => SfbError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "ServiceFailure",
            subcode: None,
            message: "The service failed to process the request.".into(),
        },
    })
}

/// An error in the platform service's shape: `{"code","subcode"?,"message"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SfbError {
    pub status: StatusCode,
    pub code: &'static str,
    pub subcode: Option<&'static str>,
    pub message: String,
}

impl SfbError {
    pub fn unauthorized(message: &str) -> SfbError {
        SfbError {
            status: StatusCode::UNAUTHORIZED,
            code: "Unauthorized",
            subcode: None,
            message: message.into(),
        }
    }

    pub fn application_not_found(endpoint: &str) -> SfbError {
        SfbError {
            status: StatusCode::FORBIDDEN,
            code: "Forbidden",
            subcode: Some("ApplicationNotFound"),
            message: format!(
                "No trusted application is registered for this app and the endpoint '{endpoint}'."
            ),
        }
    }

    fn bad_request(message: &str) -> SfbError {
        SfbError {
            status: StatusCode::BAD_REQUEST,
            code: "BadRequest",
            subcode: Some("MissingParameter"),
            message: message.into(),
        }
    }

    pub fn render(&self, mut outcome: Outcome) -> Response {
        let mut body = json!({"code": self.code, "message": self.message});
        if let Some(s) = self.subcode {
            body["subcode"] = json!(s);
        }
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = format!(
                "Bearer trusted_issuers=\"\", client_id=\"{RESOURCE_APP_ID}\", authorization_uri=\"https://login.windows.net/common/oauth2/authorize\""
            );
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
            }
        }
        outcome.error_code = Some(self.subcode.unwrap_or(self.code).to_string());
        resp.extensions_mut().insert(outcome);
        resp
    }
}

fn json_ok(body: Value, outcome: Outcome) -> Response {
    let mut resp = (StatusCode::OK, axum::Json(body)).into_response();
    resp.extensions_mut().insert(outcome);
    resp
}

/// The stable numeric application id the service hands out for an app in a tenant.
pub fn application_number(tenant: &Uuid, app: &Uuid) -> String {
    let t = tenant.as_bytes();
    let a = app.as_bytes();
    let n = u32::from_be_bytes([a[0] ^ t[0], a[1] ^ t[1], a[2] ^ t[2], a[3] ^ t[3]]) & 0x7fff_ffff;
    n.to_string()
}

/// `sip:helpdesk@contoso.com` → `sip%3ahelpdesk%40contoso.com` (the docs' encoding).
fn encode_endpoint(endpoint: &str) -> String {
    endpoint
        .replace('%', "%25")
        .replace(':', "%3a")
        .replace('@', "%40")
        .replace('&', "%26")
        .replace(' ', "%20")
}

async fn discover(req: Request<Body>) -> Response {
    let (parts, _) = req.into_parts();
    let origin = crate::http::origin(&parts);
    let body = json!({
        "_links": {
            "self": {"href": format!("{origin}/platformservice/discover")},
            "service:applications": {"href": format!("{origin}/platformService/v1/applications")},
        }
    });
    json_ok(body, Outcome::new(OP_DISCOVER))
}

/// The caller (tenant, app) of an app-only token for the service.
fn authenticate(
    core: &Core,
    parts: &Parts,
    outcome: &mut Outcome,
) -> Result<(Uuid, Uuid), SfbError> {
    let auth = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = crate::tokens::bearer(auth)
        .and_then(|t| {
            crate::tokens::validate(core, t, &[RESOURCE, SANDBOX_RESOURCE, RESOURCE_APP_ID])
        })
        .map_err(|e| SfbError::unauthorized(&format!("The access token was refused: {e}.")))?;
    let tenant = token.tenant().and_then(|s| Uuid::parse_str(s).ok());
    let app = token.client_id().and_then(|s| Uuid::parse_str(s).ok());
    let (Some(tenant), Some(app)) = (tenant, app) else {
        return Err(SfbError::unauthorized(
            "The access token names no tenant or application.",
        ));
    };
    outcome.tenant = Some(tenant.to_string());
    outcome.client_id = Some(app.to_string());
    outcome.token_id = token.str("uti").map(str::to_string);
    if token.str("scp").is_some() || token.roles().is_empty() {
        return Err(SfbError {
            status: StatusCode::FORBIDDEN,
            code: "Forbidden",
            subcode: Some("ApplicationNotFound"),
            message: "An application-only token with an application permission of Skype for Business Online is required.".into(),
        });
    }
    Ok((tenant, app))
}

fn endpoint_param(parts: &Parts) -> Option<String> {
    form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case("endpointId"))
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The registered endpoint id (as registered) for this app, tenant and requested endpoint.
fn trusted(core: &Core, tenant: Uuid, app: Uuid, endpoint: &str) -> Option<String> {
    let dir = core.directory();
    dir.world
        .teams
        .sfb_trusted_endpoints
        .iter()
        .find(|e| {
            e.app_id == app
                && dir.world.tenant(&e.tenant).is_some_and(|t| t.id == tenant)
                && e.endpoint_id.eq_ignore_ascii_case(endpoint)
        })
        .map(|e| e.endpoint_id.clone())
}

async fn applications(State(core): State<Arc<Core>>, req: Request<Body>) -> Response {
    let (parts, _) = req.into_parts();
    let mut outcome = Outcome::new(OP_APPLICATIONS);
    let (tenant, app) = match authenticate(&core, &parts, &mut outcome) {
        Ok(c) => c,
        Err(e) => return e.render(outcome),
    };
    let Some(endpoint) = endpoint_param(&parts) else {
        return SfbError::bad_request("The endpointId query parameter is required.")
            .render(outcome);
    };
    let Some(endpoint) = trusted(&core, tenant, app, &endpoint) else {
        return SfbError::application_not_found(&endpoint).render(outcome);
    };
    let enc = encode_endpoint(&endpoint);
    let number = application_number(&tenant, &app);
    let body = json!({
        "_links": {
            "self": {"href": format!("/platformservice/v1/applications?endpointId={enc}")},
            "service:application": {"href": format!("/platformservice/v1/applications/{number}?endpointId={enc}")},
        },
        "rel": "service:applications",
    });
    json_ok(body, outcome)
}

async fn application(
    State(core): State<Arc<Core>>,
    Path(number): Path<String>,
    req: Request<Body>,
) -> Response {
    let (parts, _) = req.into_parts();
    let mut outcome = Outcome::new(OP_APPLICATION);
    let (tenant, app) = match authenticate(&core, &parts, &mut outcome) {
        Ok(c) => c,
        Err(e) => return e.render(outcome),
    };
    let Some(endpoint) = endpoint_param(&parts) else {
        return SfbError::bad_request("The endpointId query parameter is required.")
            .render(outcome);
    };
    let registered = trusted(&core, tenant, app, &endpoint)
        .filter(|_| application_number(&tenant, &app) == number);
    let Some(endpoint) = registered else {
        return SfbError::application_not_found(&endpoint).render(outcome);
    };
    let enc = encode_endpoint(&endpoint);
    let base = format!("/platformservice/v1/applications/{number}");
    let body = json!({
        "_links": {"self": {"href": format!("{base}?endpointId={enc}")}},
        "_embedded": {
            "service:communication": {
                "_links": {
                    "self": {"href": format!("{base}/communication?endpointId={endpoint}")},
                    "service:startMessaging": {"href": format!("{base}/communication/messagingInvitations?endpointId={endpoint}")},
                },
                "rel": "service:communication",
                "etag": "4294967295",
            }
        },
        "rel": "service:application",
    });
    json_ok(body, outcome)
}
