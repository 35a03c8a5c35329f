//! Microsoft Graph (`graph.microsoft.com`): online meetings gated by application access
//! policies, chat messages of Teams users, minimal users, and Graph's error shape.
//!
//! Routes, under `/v1.0` and `/beta`:
//!
//! | route | operation | file |
//! |---|---|---|
//! | `GET /users/{user}`, `GET /me` | `graph.users.get` | `users.rs` |
//! | `POST …/onlineMeetings` | `graph.onlineMeetings.create` | `meetings.rs` |
//! | `POST …/onlineMeetings/createOrGet` | `graph.onlineMeetings.createOrGet` | `meetings.rs` |
//! | `GET …/onlineMeetings?$filter=…` | `graph.onlineMeetings.list` | `meetings.rs` |
//! | `GET …/onlineMeetings/{id}` | `graph.onlineMeetings.get` | `meetings.rs` |
//! | `POST (…/)chats/{chat}/messages` | `graph.chats.messages.send` | `chats.rs` |
//! | `GET (…/)chats/{chat}/messages` | `graph.chats.messages.list` | `chats.rs` |
//!
//! `…` is `/users/{user}` (object id or UPN) or `/me`. Every request goes through
//! [`authenticate`]: a bearer token for Graph from this emulator, else 401
//! `InvalidAuthenticationToken`. Application access policies (`policies.rs`) are managed
//! through `/_emulator/teams/…` (`admin.rs`) and the `m365-emulator teams` CLI.

pub mod admin;
pub mod chats;
pub mod config;
pub mod errors;
pub mod meetings;
pub mod odata;
pub mod policies;
pub mod state;
pub mod users;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::request::Parts;
use http::{HeaderValue, Request, StatusCode};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::http::{read_body, BodyError, Outcome};
use crate::state::Core;
use crate::world::User;
use errors::{GraphError, RequestIds};

/// The token audience Graph accepts (App ID URI; the app id too).
pub const RESOURCE: &str = "https://graph.microsoft.com";
pub const RESOURCE_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

pub const OP_USER: &str = "graph.users.get";
pub const OP_MEETING_CREATE: &str = "graph.onlineMeetings.create";
pub const OP_MEETING_CREATE_OR_GET: &str = "graph.onlineMeetings.createOrGet";
pub const OP_MEETING_LIST: &str = "graph.onlineMeetings.list";
pub const OP_MEETING_GET: &str = "graph.onlineMeetings.get";
pub const OP_MESSAGE_SEND: &str = "graph.chats.messages.send";
pub const OP_MESSAGE_LIST: &str = "graph.chats.messages.list";
/// Route-level names (what fault rules match) of the routes that take GET and POST.
pub const OP_MEETINGS: &str = "graph.onlineMeetings";
pub const OP_MESSAGES: &str = "graph.chats.messages";

const VERSIONS: [&str; 2] = ["/v1.0", "/beta"];
const OWNERS: [&str; 2] = ["/users/{user}", "/me"];

pub fn router() -> Router<Arc<Core>> {
    let mut r = Router::new();
    for v in VERSIONS {
        r = r
            .route(
                &format!("{v}/users/{{user}}"),
                get(users::get).fallback(wrong_method),
            )
            .route(&format!("{v}/me"), get(users::get).fallback(wrong_method))
            .route(
                &format!("{v}/chats/{{chat}}/messages"),
                get(chats::list).post(chats::send).fallback(wrong_method),
            );
        for o in OWNERS {
            r = r
                .route(
                    &format!("{v}{o}/onlineMeetings"),
                    get(meetings::list)
                        .post(meetings::create)
                        .fallback(wrong_method),
                )
                .route(
                    &format!("{v}{o}/onlineMeetings/createOrGet"),
                    post(meetings::create_or_get).fallback(wrong_method),
                )
                .route(
                    &format!("{v}{o}/onlineMeetings/{{meeting}}"),
                    get(meetings::get).fallback(wrong_method),
                )
                .route(
                    &format!("{v}{o}/chats/{{chat}}/messages"),
                    get(chats::list).post(chats::send).fallback(wrong_method),
                );
        }
    }
    r
}

/// The operation name of each route (journal and fault matching use these).
pub fn operation(route: &str) -> Option<&'static str> {
    let rest = VERSIONS.iter().find_map(|v| route.strip_prefix(v))?;
    if rest == "/me" || rest == "/users/{user}" {
        return Some(OP_USER);
    }
    let rest = OWNERS
        .iter()
        .find_map(|o| rest.strip_prefix(o))
        .unwrap_or(rest);
    Some(match rest {
        // One route, two methods: fault rules tell create from list by `method`.
        "/onlineMeetings" => OP_MEETINGS,
        "/onlineMeetings/createOrGet" => OP_MEETING_CREATE_OR_GET,
        "/onlineMeetings/{meeting}" => OP_MEETING_GET,
        "/chats/{chat}/messages" => OP_MESSAGES,
        _ => return None,
    })
}

async fn wrong_method(State(core): State<Arc<Core>>, req: Request<Body>) -> Response {
    let (parts, _) = req.into_parts();
    let ids = RequestIds::new(&parts, core.clock.now());
    GraphError::method_not_allowed(parts.method.as_str())
        .respond(&ids, Outcome::new("graph.unsupported"))
}

/// Who calls: the tenant, the client app, and for delegated tokens the signed-in user.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: Uuid,
    pub app_id: Uuid,
    /// The signed-in user (delegated tokens); `None` for app-only tokens.
    pub user: Option<Uuid>,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
}

impl Caller {
    pub fn has_role(&self, any_of: &[&str]) -> bool {
        self.roles.iter().any(|r| any_of.contains(&r.as_str()))
    }

    pub fn has_scope(&self, any_of: &[&str]) -> bool {
        self.scopes.iter().any(|s| any_of.contains(&s.as_str()))
    }
}

/// A request that passed authentication: ids for the response, the caller, the journal record.
#[derive(Debug, Clone)]
pub struct Call {
    pub ids: RequestIds,
    pub caller: Caller,
    pub now: OffsetDateTime,
    /// `scheme://authority` as the client called it (for `@odata.context` and next links).
    pub origin: String,
    /// `/v1.0` or `/beta`.
    pub version: &'static str,
    pub outcome: Outcome,
}

impl Call {
    pub fn fail(&self, e: GraphError) -> Response {
        e.respond(&self.ids, self.outcome.clone())
    }

    /// A JSON response with Graph's headers and the journal record.
    pub fn json(&self, status: StatusCode, body: Value) -> Response {
        let mut resp = (status, axum::Json(body)).into_response();
        self.ids.stamp(&mut resp);
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(
                "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8",
            ),
        );
        resp.extensions_mut().insert(self.outcome.clone());
        resp
    }

    /// `{origin}/{version}/$metadata#{what}`.
    pub fn context(&self, what: &str) -> String {
        format!("{}{}/$metadata#{what}", self.origin, self.version)
    }

    /// Resolves `/me` or `/users/{key}` to a user of the caller's tenant.
    pub fn owner(&self, core: &Core, path_user: Option<&str>) -> Result<User, GraphError> {
        let dir = core.directory();
        let tenant = dir
            .world
            .tenants
            .iter()
            .find(|t| t.id == self.caller.tenant)
            .ok_or_else(|| GraphError::unauthenticated("The token's tenant is not known."))?;
        match path_user {
            None => {
                let Some(me) = self.caller.user else {
                    return Err(GraphError::bad_request(
                        "/me request is only valid with delegated authentication flow.",
                    ));
                };
                tenant
                    .users
                    .iter()
                    .find(|u| u.object_id == me)
                    .cloned()
                    .ok_or_else(|| GraphError::user_not_found(&me.to_string()))
            }
            Some(key) => state::find_user(tenant, key)
                .cloned()
                .ok_or_else(|| GraphError::user_not_found(key)),
        }
    }
}

/// The API version prefix of a request path.
fn version_of(parts: &Parts) -> &'static str {
    if parts.uri.path().starts_with("/beta") {
        "/beta"
    } else {
        "/v1.0"
    }
}

/// Checks the bearer token (signature, issuer, lifetime, audience = Graph).
/// The error is the finished 401 response (boxed: a `Response` is large).
pub fn authenticate(
    core: &Core,
    parts: &Parts,
    operation: &'static str,
) -> Result<Call, Box<Response>> {
    let now = core.clock.now();
    let ids = RequestIds::new(parts, now);
    let mut outcome = Outcome::new(operation);
    let auth = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = crate::tokens::bearer(auth)
        .and_then(|t| crate::tokens::validate(core, t, &[RESOURCE, RESOURCE_APP_ID]));
    let token = match token {
        Ok(t) => t,
        Err(e) => {
            use crate::tokens::TokenError as T;
            let err = match e {
                T::Missing => GraphError::missing_token(),
                T::Expired(_) => {
                    GraphError::unauthenticated("Lifetime validation failed, the token is expired.")
                }
                T::NotYetValid(_) => GraphError::unauthenticated(
                    "Lifetime validation failed, the token is not yet valid.",
                ),
                T::WrongAudience(_) => GraphError::unauthenticated("Invalid audience."),
                T::WrongIssuer(_) => GraphError::unauthenticated("Invalid issuer."),
                T::BadSignature | T::UnknownKey(_) => {
                    GraphError::unauthenticated("Signature validation failed.")
                }
                T::Malformed => GraphError::unauthenticated("IDX14100: JWT is not well formed."),
            };
            let mut resp = err.respond(&ids, outcome);
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\""),
            );
            return Err(Box::new(resp));
        }
    };
    let parse = |v: Option<&str>| v.and_then(|s| Uuid::parse_str(s).ok());
    let (Some(tenant), Some(app_id)) = (parse(token.tenant()), parse(token.client_id())) else {
        let e = GraphError::unauthenticated("The token has no tenant or client.");
        return Err(Box::new(e.respond(&ids, outcome)));
    };
    let scopes: Vec<String> = token.scopes().into_iter().map(str::to_string).collect();
    let user = if token.str("scp").is_some() {
        parse(token.str("oid"))
    } else {
        None
    };
    outcome.tenant = Some(tenant.to_string());
    outcome.client_id = Some(app_id.to_string());
    outcome.user = user.map(|u| u.to_string());
    outcome.token_id = token.str("uti").map(str::to_string);
    let caller = Caller {
        tenant,
        app_id,
        user,
        roles: token.roles().into_iter().map(str::to_string).collect(),
        scopes,
    };
    Ok(Call {
        ids,
        caller,
        now,
        origin: crate::http::origin(parts),
        version: version_of(parts),
        outcome,
    })
}

/// Reads a JSON object body (`@odata.type` and other annotations are the handler's to ignore).
pub async fn json_object(
    core: &Core,
    body: Body,
    limit: usize,
) -> Result<serde_json::Map<String, Value>, GraphError> {
    let limit = limit.min(core.settings.body_limit);
    let bytes = match read_body(body, limit).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return Err(GraphError::too_large(limit)),
        Err(BodyError::Broken) => {
            return Err(GraphError::bad_request(
                "The request body could not be read.",
            ))
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(GraphError::bad_request(
            "Empty Payload. JSON content expected.",
        ));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(GraphError::bad_request(
            "Invalid request body: a JSON object is expected.",
        )),
        Err(e) => Err(GraphError::bad_request(format!(
            "Unable to read JSON request payload: {e}"
        ))),
    }
}

/// RFC 3339 with seven fractional digits and `Z`, as Graph writes times.
pub fn graph_time(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:7]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_default()
}
