//! Office 365 Management Activity API (`manage.office.com`): subscriptions, content listing
//! with `NextPageUri` paging, content blobs of synthetic audit records, webhook validation,
//! and the AF error catalog (`errors.rs`).
//!
//! Routes, under `/api/v1.0/{tenant}/activity/feed/` and (the docs' `NextPageUri` sample uses
//! it) `/api/v1/{tenant}/activity/feed/`:
//!
//! | route | operation | file |
//! |---|---|---|
//! | `POST subscriptions/start` | `management.subscriptions.start` | `subscriptions.rs` |
//! | `POST subscriptions/stop` | `management.subscriptions.stop` | `subscriptions.rs` |
//! | `GET subscriptions/list` | `management.subscriptions.list` | `subscriptions.rs` |
//! | `GET subscriptions/content` | `management.content.list` | `content.rs` |
//! | `GET audit/{contentId}` | `management.content.get` | `content.rs` |
//! | `GET subscriptions/notifications` | `management.notifications.list` | `delivery.rs` |
//! | `GET resources/dlpSensitiveTypes` | `management.resources.dlpSensitiveTypes` | `resources.rs` |
//!
//! Every request goes through [`authorize`]: the bearer token (401 `{"Message":…}`), the URL
//! tenant (AF20013), the token's tenant (AF20010), `ActivityFeed.Read` (AF10001), and a
//! GUID `PublisherIdentifier` (AF20002). Query names are matched case-insensitively, the first
//! of duplicated parameters wins, unknown parameters are ignored.
//!
//! Webhook notifications are delivered by a background task on the emulator's clock, with
//! retries and disabling (`delivery.rs`).
//!
//! Behaviour knobs (paging, default window, window error code, long windows, `/start`
//! cooldown, throttling quota and status, stop status, late blobs, out-of-order events,
//! duplicates, backfill) live in `knobs.rs`; they come from `[server.management]` and can be
//! changed at run time through `/_emulator/management/settings`. Every authorized request
//! counts against a per-minute quota (`authorize`): the publisher's pool when the request
//! names a `PublisherIdentifier`, else the tenant's.
//!
//! Header case: the response header is set as `NextPageUri`; hyper would write it in lower
//! case on HTTP/1, so the listeners restore the exact spelling in response heads
//! (`crate::http::header_case`). HTTP/2 requires lower case.

pub mod content;
pub mod dates;
pub mod delivery;
pub mod errors;
pub mod generator;
pub mod knobs;
pub mod resources;
pub mod store;
pub mod subscriptions;
pub mod webhook;
pub mod wire;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::request::Parts;
use http::Request;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::http::Outcome;
use crate::state::Core;
use crate::tokens::ValidToken;
use errors::AfError;
use generator::{Actors, FeedConfig};
use knobs::Knobs;
use wire::ContentType;

/// The token audience the API accepts.
pub const RESOURCE: &str = "https://manage.office.com";
/// The generator's seed when no key seed is configured (the feed stays reproducible).
pub const DEFAULT_SEED: u64 = 0x4d36_3545_6d75_6c61;

pub const OP_START: &str = "management.subscriptions.start";
pub const OP_STOP: &str = "management.subscriptions.stop";
pub const OP_LIST: &str = "management.subscriptions.list";
pub const OP_CONTENT: &str = "management.content.list";
pub const OP_BLOB: &str = "management.content.get";
pub const OP_NOTIFICATIONS: &str = "management.notifications.list";
pub const OP_DLP_TYPES: &str = "management.resources.dlpSensitiveTypes";

const PREFIXES: [&str; 2] = [
    "/api/v1.0/{tenant}/activity/feed",
    "/api/v1/{tenant}/activity/feed",
];

pub fn router() -> Router<Arc<Core>> {
    let mut r = Router::new();
    for p in PREFIXES {
        r = r
            .route(
                &format!("{p}/subscriptions/start"),
                post(subscriptions::start).fallback(wrong_method),
            )
            .route(
                &format!("{p}/subscriptions/stop"),
                post(subscriptions::stop).fallback(wrong_method),
            )
            .route(
                &format!("{p}/subscriptions/list"),
                get(subscriptions::list).fallback(wrong_method),
            )
            .route(
                &format!("{p}/subscriptions/content"),
                get(content::list).fallback(wrong_method),
            )
            .route(
                &format!("{p}/subscriptions/notifications"),
                get(delivery::list).fallback(wrong_method),
            )
            .route(
                &format!("{p}/audit/{{content_id}}"),
                get(content::blob).fallback(wrong_method),
            )
            .route(
                &format!("{p}/resources/dlpSensitiveTypes"),
                get(resources::dlp_sensitive_types).fallback(wrong_method),
            );
    }
    r
}

/// The operation name of each route (journal and fault matching use these).
pub fn operation(route: &str) -> Option<&'static str> {
    let rest = PREFIXES.iter().find_map(|p| route.strip_prefix(p))?;
    Some(match rest {
        "/subscriptions/start" => OP_START,
        "/subscriptions/stop" => OP_STOP,
        "/subscriptions/list" => OP_LIST,
        "/subscriptions/content" => OP_CONTENT,
        "/audit/{content_id}" => OP_BLOB,
        "/subscriptions/notifications" => OP_NOTIFICATIONS,
        "/resources/dlpSensitiveTypes" => OP_DLP_TYPES,
        _ => return None,
    })
}

async fn wrong_method(State(core): State<Arc<Core>>, req: Request<Body>) -> Response {
    errors::method_not_allowed(req.method().as_str(), core.clock.now())
}

/// The query string, names lower-cased, values decoded (`+` is a space). Lenient, like
/// ASP.NET: a malformed escape stays literal.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        Query {
            pairs: form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
                .collect(),
        }
    }

    /// The first value of `name` (lower-case), treating an empty value as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An authorized request: who calls, for which tenant, with what parameters.
#[derive(Debug)]
pub struct Call {
    pub operation: &'static str,
    pub tenant: Uuid,
    pub token: ValidToken,
    pub query: Query,
    pub publisher: Option<Uuid>,
    pub now: OffsetDateTime,
    /// `scheme://authority` the client called (for `contentUri` and `NextPageUri`).
    pub origin: String,
    /// The token names another tenant and the URL's tenant is not in the world: `/start`
    /// answers with the mangled "Tenant … does not exist" error (wazuh#19252), every other
    /// operation already got AF20010.
    pub unknown_tenant: bool,
    outcome: Outcome,
}

impl Call {
    /// The journal record for this call.
    pub fn outcome(&self) -> Outcome {
        self.outcome.clone()
    }

    pub fn fail(&self, e: AfError) -> Response {
        e.respond(self.now, self.outcome())
    }

    /// Roles (application tokens) and scopes (delegated tokens) the token carries.
    pub fn permissions(&self) -> Vec<&str> {
        let mut p = self.token.roles();
        p.extend(self.token.scopes());
        p
    }

    pub fn has_permission(&self, name: &str) -> bool {
        self.permissions().contains(&name)
    }

    /// AF10001 with the token's permissions in the parentheses.
    pub fn missing_permission(&self) -> AfError {
        AfError::new("AF10001", &[&self.permissions().join(",")])
    }

    /// The `contentType` parameter: the caller's text and the content type it names.
    pub fn content_type(&self) -> Result<(&str, ContentType), AfError> {
        let raw = self
            .query
            .get("contenttype")
            .ok_or_else(|| AfError::new("AF20001", &["contentType"]))?;
        let ct = ContentType::parse(raw).ok_or_else(|| AfError::new("AF20020", &[]))?;
        if let Some(role) = ct.extra_role() {
            if !self.has_permission(role) {
                return Err(self.missing_permission());
            }
        }
        Ok((raw, ct))
    }

    /// AF429 for this call: the configured status; with 429 a `Retry-After` of `wait` seconds.
    pub fn throttled(&self, k: &Knobs, wait: u64) -> Response {
        let method = errors::throttled_method(self.operation);
        let mut e = AfError::new("AF429", &[method, &self.publisher_text()]);
        e.status = k.throttle_status;
        let mut resp = self.fail(e);
        if k.throttle_status == http::StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(wait));
        }
        resp
    }

    pub fn publisher_text(&self) -> String {
        self.publisher
            .map_or_else(|| errors::NO_PUBLISHER.to_string(), |p| p.to_string())
    }
}

/// The `{tenant}` segment of a Management API path (`/api/{version}/{tenant}/…`).
fn tenant_segment(parts: &Parts) -> String {
    let raw = parts.uri.path().split('/').nth(3).unwrap_or_default();
    percent_decode(raw).unwrap_or_else(|| raw.to_string())
}

pub use crate::http::decode_path_segment as percent_decode;

/// A tenant GUID as .NET parses one (hyphenated, plain or braced; not `urn:uuid:`).
fn parse_guid(text: &str) -> Option<Uuid> {
    if text.len() > 38 || text.starts_with("urn:") {
        return None;
    }
    Uuid::parse_str(text).ok()
}

/// A request refused before its handler's own checks (the response is ready).
#[derive(Debug)]
pub struct Refused(Box<Response>);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl From<Response> for Refused {
    fn from(r: Response) -> Refused {
        Refused(Box::new(r))
    }
}

/// Checks the token, the tenant and `PublisherIdentifier` (in that order).
pub fn authorize(core: &Core, parts: &Parts, operation: &'static str) -> Result<Call, Refused> {
    let now = core.clock.now();
    let segment = tenant_segment(parts);
    let mut outcome = Outcome::new(operation);
    outcome.tenant = Some(segment.clone());
    let auth = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = match crate::tokens::bearer(auth)
        .and_then(|t| crate::tokens::validate(core, t, &[RESOURCE]))
    {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!("management: token refused: {e}");
            return Err(errors::denied(now, outcome).into());
        }
    };
    outcome.client_id = token.client_id().map(str::to_string);
    outcome.token_id = token.str("uti").map(str::to_string);
    let fail = |e: AfError, o: &Outcome| Err(Refused::from(e.respond(now, o.clone())));
    let Some(tenant) = parse_guid(&segment) else {
        return fail(AfError::new("AF20013", &[&segment]), &outcome);
    };
    let tid = token.tenant().unwrap_or_default().to_string();
    let mut unknown_tenant = false;
    if Uuid::parse_str(&tid).ok() != Some(tenant) {
        let known = core.directory().tenant(&tenant.to_string()).is_some();
        if known || operation != OP_START {
            return fail(AfError::new("AF20010", &[&segment, &tid]), &outcome);
        }
        unknown_tenant = true;
    }
    let query = Query::parse(parts.uri.query());
    let mut call = Call {
        operation,
        tenant,
        token,
        publisher: None,
        now,
        origin: crate::http::origin(parts),
        unknown_tenant,
        outcome,
        query,
    };
    if !call.has_permission(wire::READ) {
        return Err(call.fail(call.missing_permission()).into());
    }
    for v in call.query.all("publisheridentifier") {
        if v.trim().is_empty() {
            continue;
        }
        match Uuid::parse_str(v.trim()) {
            Ok(p) => {
                call.publisher.get_or_insert(p);
            }
            Err(_) => {
                let e = AfError::new("AF20002", &["PublisherIdentifier", "guid"]);
                return Err(call.fail(e).into());
            }
        }
    }
    let k = knobs(core);
    let pool = call
        .publisher
        .map_or(store::Pool::Tenant(call.tenant), store::Pool::Publisher);
    if let Err(wait) = core.management.take_quota(pool, k.throttle_per_minute, now) {
        return Err(call.throttled(&k, wait).into());
    }
    Ok(call)
}

/// The knobs in force (world section + run-time settings), with defaults applied.
pub fn knobs(core: &Core) -> Knobs {
    let world = &core.initial_directory().world.server.management;
    Knobs::resolve(
        &core.management.settings(world),
        core.settings.key_seed.unwrap_or(DEFAULT_SEED),
    )
}

/// The generator's configuration: the key seed (or a fixed one) and the volume/shape knobs.
pub fn feed_config(core: &Core) -> FeedConfig {
    knobs(core).feed
}

/// The tenant's actors, from the world as loaded (so a blob never changes under a client).
pub fn actors(core: &Core, tenant: Uuid) -> Option<Actors> {
    let initial = core.initial_directory();
    if let Some(t) = initial.world.tenant(&tenant.to_string()) {
        return Some(Actors::from_world(&initial.world, t));
    }
    let dir = core.directory();
    let t = dir.world.tenant(&tenant.to_string())?;
    Some(Actors::from_world(&dir.world, t))
}

/// The webhook client: the emulator's CA plus the world's extra CA file.
pub fn webhook_client(core: &Core) -> Result<reqwest::Client, String> {
    core.management.webhook_client(|| {
        let mut pems = vec![core.pki.ca_pem().to_string()];
        if let Some(path) = &core
            .initial_directory()
            .world
            .server
            .management
            .webhook_ca_file
        {
            pems.push(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            );
        }
        webhook::build_client(&pems)
    })
}

/// A 200 with a compact JSON body and the service's headers.
pub fn ok_json(call: &Call, body: String) -> Response {
    let mut resp = errors::json_response(http::StatusCode::OK, body, call.now);
    resp.extensions_mut().insert(call.outcome());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_for_both_prefixes() {
        assert_eq!(
            operation("/api/v1.0/{tenant}/activity/feed/subscriptions/start"),
            Some(OP_START)
        );
        assert_eq!(
            operation("/api/v1/{tenant}/activity/feed/audit/{content_id}"),
            Some(OP_BLOB)
        );
        assert_eq!(operation("/{tenant}/oauth2/token"), None);
    }

    #[test]
    fn query_names_are_case_insensitive_and_first_wins() {
        let q = Query::parse(Some("ContentType=a&CONTENTTYPE=b&startTime=&x=%ZZ"));
        assert_eq!(q.get("contenttype"), Some("a"));
        assert_eq!(q.get("starttime"), None);
        assert_eq!(q.get("x"), Some("%ZZ"));
    }

    #[test]
    fn percent_decoding_is_strict() {
        assert_eq!(percent_decode("a%24b").as_deref(), Some("a$b"));
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(percent_decode("a%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
