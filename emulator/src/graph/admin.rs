//! The Teams admin routes of the control plane (`/_emulator/teams/…`): application access
//! policies with the semantics of the Teams PowerShell cmdlets, the runtime knobs (propagation
//! delay, 403 text), and chats. Every route takes an optional `tenant` (query parameter or
//! body field, GUID or domain); the default is the world's first tenant.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use super::config::ChatType;
use super::errors::PolicyErrorForm;
use super::policies::{AppIdsChange, GrantTarget, PolicyError, TenantPolicyState};
use super::state::{find_user, Chat, GraphData};
use crate::admin::json_body;
use crate::http::Outcome;
use crate::ready::rfc3339;
use crate::state::Core;

pub fn router() -> Router<Arc<Core>> {
    Router::new()
        .route(
            "/_emulator/teams/applicationAccessPolicies",
            get(list_policies).post(new_policy),
        )
        .route(
            "/_emulator/teams/applicationAccessPolicies/{identity}",
            get(get_policy).patch(set_policy).delete(remove_policy),
        )
        .route(
            "/_emulator/teams/applicationAccessPolicies/{identity}/grant",
            post(grant_policy),
        )
        .route(
            "/_emulator/teams/applicationAccessPolicyAssignments/revoke",
            post(revoke_policy),
        )
        .route(
            "/_emulator/teams/settings",
            get(get_settings).patch(set_settings),
        )
        .route("/_emulator/teams/chats", get(list_chats).post(new_chat))
}

/// A control-plane error, rendered in the admin API's shape.
#[derive(Debug)]
pub struct TeamsAdminError(Box<Response>);

impl TeamsAdminError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> TeamsAdminError {
        let mut resp = (
            status,
            axum::Json(json!({"error": {"code": code, "message": message.into()}})),
        )
            .into_response();
        let mut outcome = Outcome::new("admin");
        outcome.error_code = Some(code.to_string());
        resp.extensions_mut().insert(outcome);
        TeamsAdminError(Box::new(resp))
    }

    fn bad_request(message: impl Into<String>) -> TeamsAdminError {
        TeamsAdminError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    fn not_found(message: impl Into<String>) -> TeamsAdminError {
        TeamsAdminError::new(StatusCode::NOT_FOUND, "NotFound", message)
    }
}

impl From<PolicyError> for TeamsAdminError {
    fn from(e: PolicyError) -> TeamsAdminError {
        TeamsAdminError::new(e.status, e.code, e.message)
    }
}

impl From<crate::admin::AdminError> for TeamsAdminError {
    fn from(e: crate::admin::AdminError) -> TeamsAdminError {
        TeamsAdminError(Box::new(e.into_response()))
    }
}

impl IntoResponse for TeamsAdminError {
    fn into_response(self) -> Response {
        *self.0
    }
}

type AdminResult = Result<Response, TeamsAdminError>;

fn ok(operation: &'static str, status: StatusCode, body: Value) -> AdminResult {
    let mut resp = (status, axum::Json(body)).into_response();
    resp.extensions_mut().insert(Outcome::new(operation));
    Ok(resp)
}

fn query_tenant(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case("tenant"))
        .map(|(_, v)| v.into_owned())
}

/// The tenant named by the body or the query, else the world's first.
fn tenant_id(core: &Core, body: &Value, query: Option<&str>) -> Result<Uuid, TeamsAdminError> {
    let named = match body.get("tenant") {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => query_tenant(query),
        Some(_) => return Err(TeamsAdminError::bad_request("'tenant' must be a string")),
    };
    let dir = core.directory();
    match named {
        Some(key) => dir
            .tenant(&key)
            .map(|t| t.id)
            .ok_or_else(|| TeamsAdminError::not_found(format!("no tenant '{key}'"))),
        None => dir
            .world
            .tenants
            .first()
            .map(|t| t.id)
            .ok_or_else(|| TeamsAdminError::not_found("the world has no tenant")),
    }
}

fn user_id(core: &Core, tenant: Uuid, key: &str) -> Result<Uuid, TeamsAdminError> {
    let dir = core.directory();
    dir.world
        .tenants
        .iter()
        .find(|t| t.id == tenant)
        .and_then(|t| find_user(t, key))
        .map(|u| u.object_id)
        .ok_or_else(|| TeamsAdminError::not_found(format!("no user '{key}' in tenant {tenant}")))
}

fn object(body: &Value) -> Result<(), TeamsAdminError> {
    if body.is_object() {
        Ok(())
    } else {
        Err(TeamsAdminError::bad_request(
            "a JSON object body is expected",
        ))
    }
}

fn uuid_list(v: &Value, field: &str) -> Result<Vec<Uuid>, TeamsAdminError> {
    let one = |x: &Value| {
        x.as_str()
            .and_then(|s| Uuid::parse_str(s.trim()).ok())
            .ok_or_else(|| {
                TeamsAdminError::bad_request(format!(
                    "'{field}' must hold application (client) ids (GUIDs), got {x}"
                ))
            })
    };
    match v {
        Value::Null => Ok(Vec::new()),
        Value::String(_) => Ok(vec![one(v)?]),
        Value::Array(a) => a.iter().map(one).collect(),
        _ => Err(TeamsAdminError::bad_request(format!(
            "'{field}' must be a GUID or a list of GUIDs"
        ))),
    }
}

fn optional_string(body: &Value, field: &str) -> Result<Option<String>, TeamsAdminError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TeamsAdminError::bad_request(format!(
            "'{field}' must be a string"
        ))),
    }
}

/// A policy as the admin API shows it: the cmdlet's fields plus who holds it.
fn policy_json(state: &TenantPolicyState, key: &str) -> Value {
    let Some(p) = state.configured.policies.get(key) else {
        return Value::Null;
    };
    let mut v = p.to_json();
    v["grantedTo"] = json!(state.configured.assigned_users(key));
    v["global"] = json!(state.configured.global.as_deref() == Some(key));
    v
}

fn with_pending(g: &GraphData, tenant: Uuid, now: time::OffsetDateTime, mut body: Value) -> Value {
    let pending = g
        .policies
        .get(&tenant)
        .and_then(|s| s.pending_until(now))
        .map(rfc3339);
    body["effectiveAt"] = json!(pending.unwrap_or_else(|| rfc3339(now)));
    body
}

async fn list_policies(State(core): State<Arc<Core>>, RawQuery(q): RawQuery) -> AdminResult {
    let tenant = tenant_id(&core, &Value::Null, q.as_deref())?;
    let now = core.clock.now();
    let g = core.graph.lock(&core);
    let (value, global, users) = match g.policies.get(&tenant) {
        Some(s) => (
            s.configured
                .policies
                .keys()
                .map(|k| policy_json(s, k))
                .collect::<Vec<_>>(),
            s.configured.global.clone().and_then(|k| {
                s.configured
                    .policies
                    .get(&k)
                    .map(|p| format!("{}{}", super::policies::TAG, p.name))
            }),
            s.configured
                .users
                .iter()
                .map(|(u, k)| {
                    let name = s
                        .configured
                        .policies
                        .get(k)
                        .map(|p| p.name.clone())
                        .unwrap_or_default();
                    (
                        u.to_string(),
                        json!(format!("{}{name}", super::policies::TAG)),
                    )
                })
                .collect::<serde_json::Map<String, Value>>(),
        ),
        None => (Vec::new(), None, Default::default()),
    };
    let body =
        json!({"tenant": tenant, "value": value, "globalPolicy": global, "assignments": users});
    let body = with_pending(&g, tenant, now, body);
    ok("admin.teams.policies.list", StatusCode::OK, body)
}

async fn new_policy(
    State(core): State<Arc<Core>>,
    RawQuery(q): RawQuery,
    body: Body,
) -> AdminResult {
    let body = json_body(&core, body).await?;
    object(&body)?;
    let tenant = tenant_id(&core, &body, q.as_deref())?;
    let Some(identity) = body.get("identity").and_then(Value::as_str) else {
        return Err(TeamsAdminError::bad_request(
            "'identity' (the policy name) is required",
        ));
    };
    let app_ids = uuid_list(body.get("appIds").unwrap_or(&Value::Null), "appIds")?;
    let description = optional_string(&body, "description")?;
    let now = core.clock.now();
    let mut g = core.graph.lock(&core);
    let delay = g.propagation_seconds;
    let state = g.tenant_policies(tenant);
    let key = state
        .create(identity, app_ids, description, now, delay)?
        .name
        .to_ascii_lowercase();
    let out = policy_json(state, &key);
    let out = with_pending(&g, tenant, now, out);
    ok("admin.teams.policies.new", StatusCode::CREATED, out)
}

async fn get_policy(
    State(core): State<Arc<Core>>,
    Path(identity): Path<String>,
    RawQuery(q): RawQuery,
) -> AdminResult {
    let tenant = tenant_id(&core, &Value::Null, q.as_deref())?;
    let mut g = core.graph.lock(&core);
    let state = g.tenant_policies(tenant);
    let key = state.get(&identity)?.name.to_ascii_lowercase();
    let out = policy_json(state, &key);
    ok("admin.teams.policies.get", StatusCode::OK, out)
}

/// `appIds`: a list replaces; `{"add": […], "remove": […]}` edits (`-AppIds @{Add=…}`).
fn app_ids_change(v: Option<&Value>) -> Result<AppIdsChange, TeamsAdminError> {
    let mut change = AppIdsChange::default();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, val) in m {
                match k.to_ascii_lowercase().as_str() {
                    "add" => change.add = uuid_list(val, "appIds.add")?,
                    "remove" => change.remove = uuid_list(val, "appIds.remove")?,
                    "replace" => change.replace = Some(uuid_list(val, "appIds.replace")?),
                    _ => {
                        return Err(TeamsAdminError::bad_request(format!(
                            "'appIds' takes add, remove or replace, not '{k}'"
                        )))
                    }
                }
            }
        }
        Some(other) => change.replace = Some(uuid_list(other, "appIds")?),
    }
    Ok(change)
}

async fn set_policy(
    State(core): State<Arc<Core>>,
    Path(identity): Path<String>,
    RawQuery(q): RawQuery,
    body: Body,
) -> AdminResult {
    let body = json_body(&core, body).await?;
    object(&body)?;
    let tenant = tenant_id(&core, &body, q.as_deref())?;
    let change = app_ids_change(body.get("appIds"))?;
    let description = optional_string(&body, "description")?;
    let now = core.clock.now();
    let mut g = core.graph.lock(&core);
    let delay = g.propagation_seconds;
    let state = g.tenant_policies(tenant);
    let key = state
        .set(&identity, change, description, now, delay)?
        .name
        .to_ascii_lowercase();
    let out = policy_json(state, &key);
    let out = with_pending(&g, tenant, now, out);
    ok("admin.teams.policies.set", StatusCode::OK, out)
}

async fn remove_policy(
    State(core): State<Arc<Core>>,
    Path(identity): Path<String>,
    RawQuery(q): RawQuery,
) -> AdminResult {
    let tenant = tenant_id(&core, &Value::Null, q.as_deref())?;
    let now = core.clock.now();
    let mut g = core.graph.lock(&core);
    let delay = g.propagation_seconds;
    let removed = g.tenant_policies(tenant).remove(&identity, now, delay)?;
    let out = with_pending(&g, tenant, now, json!({"removed": removed.to_json()}));
    ok("admin.teams.policies.remove", StatusCode::OK, out)
}

/// `{"userId": …}` or `{"global": true}` (exactly one).
fn grant_target(core: &Core, tenant: Uuid, body: &Value) -> Result<GrantTarget, TeamsAdminError> {
    let global = match body.get("global") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => return Err(TeamsAdminError::bad_request("'global' must be a boolean")),
    };
    let user = optional_string(body, "userId")?;
    match (user, global) {
        (Some(u), false) => Ok(GrantTarget::User(user_id(core, tenant, &u)?)),
        (None, true) => Ok(GrantTarget::Global),
        (Some(_), true) => Err(TeamsAdminError::bad_request(
            "give either 'userId' or 'global', not both",
        )),
        (None, false) => Err(TeamsAdminError::bad_request(
            "'userId' (the user, as -Identity when granting) or 'global': true is required",
        )),
    }
}

async fn grant_policy(
    State(core): State<Arc<Core>>,
    Path(identity): Path<String>,
    RawQuery(q): RawQuery,
    body: Body,
) -> AdminResult {
    let body = json_body(&core, body).await?;
    object(&body)?;
    let tenant = tenant_id(&core, &body, q.as_deref())?;
    let target = grant_target(&core, tenant, &body)?;
    let now = core.clock.now();
    let mut g = core.graph.lock(&core);
    let delay = g.propagation_seconds;
    let state = g.tenant_policies(tenant);
    state.grant(Some(&identity), target, now, delay)?;
    let key = state.get(&identity)?.name.to_ascii_lowercase();
    let out = policy_json(state, &key);
    let out = with_pending(&g, tenant, now, out);
    ok("admin.teams.policies.grant", StatusCode::OK, out)
}

async fn revoke_policy(
    State(core): State<Arc<Core>>,
    RawQuery(q): RawQuery,
    body: Body,
) -> AdminResult {
    let body = json_body(&core, body).await?;
    object(&body)?;
    let tenant = tenant_id(&core, &body, q.as_deref())?;
    let target = grant_target(&core, tenant, &body)?;
    let now = core.clock.now();
    let mut g = core.graph.lock(&core);
    let delay = g.propagation_seconds;
    g.tenant_policies(tenant).grant(None, target, now, delay)?;
    let who = match target {
        GrantTarget::User(u) => json!({"userId": u}),
        GrantTarget::Global => json!({"global": true}),
    };
    let out = with_pending(&g, tenant, now, json!({"revoked": who}));
    ok("admin.teams.policies.revoke", StatusCode::OK, out)
}

fn settings_json(g: &GraphData) -> Value {
    json!({"policyPropagationSeconds": g.propagation_seconds, "accessPolicyError": g.error_form})
}

async fn get_settings(State(core): State<Arc<Core>>) -> AdminResult {
    let g = core.graph.lock(&core);
    ok("admin.teams.settings", StatusCode::OK, settings_json(&g))
}

async fn set_settings(State(core): State<Arc<Core>>, body: Body) -> AdminResult {
    let body = json_body(&core, body).await?;
    object(&body)?;
    let delay = match body.get("policyPropagationSeconds") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().filter(|n| *n <= 86_400).ok_or_else(|| {
            TeamsAdminError::bad_request(
                "'policyPropagationSeconds' must be an integer in 0..=86400",
            )
        })?),
    };
    let form = match body.get("accessPolicyError") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            serde_json::from_value::<PolicyErrorForm>(v.clone()).map_err(|_| {
                TeamsAdminError::bad_request(
                    "'accessPolicyError' must be \"current\" or \"legacy\"",
                )
            })?,
        ),
    };
    let mut g = core.graph.lock(&core);
    if let Some(d) = delay {
        g.propagation_seconds = d;
    }
    if let Some(f) = form {
        g.error_form = f;
    }
    ok("admin.teams.settings", StatusCode::OK, settings_json(&g))
}

fn chat_json(c: &Chat) -> Value {
    json!({
        "id": c.id,
        "tenantId": c.tenant,
        "chatType": c.chat_type.as_str(),
        "topic": c.topic,
        "members": c.members,
        "messageCount": c.messages.len(),
    })
}

async fn list_chats(State(core): State<Arc<Core>>, RawQuery(q): RawQuery) -> AdminResult {
    let tenant = tenant_id(&core, &Value::Null, q.as_deref())?;
    let g = core.graph.lock(&core);
    let value: Vec<Value> = g
        .chats
        .values()
        .filter(|c| c.tenant == tenant)
        .map(chat_json)
        .collect();
    ok(
        "admin.teams.chats.list",
        StatusCode::OK,
        json!({"value": value}),
    )
}

async fn new_chat(State(core): State<Arc<Core>>, RawQuery(q): RawQuery, body: Body) -> AdminResult {
    let body = json_body(&core, body).await?;
    object(&body)?;
    let tenant = tenant_id(&core, &body, q.as_deref())?;
    let chat_type = match body.get("chatType") {
        None | Some(Value::Null) => ChatType::Group,
        Some(v) => match serde_json::from_value::<ChatType>(v.clone()) {
            Ok(ChatType::Meeting) | Err(_) => {
                return Err(TeamsAdminError::bad_request("'chatType' must be \"oneOnOne\" or \"group\" (meeting chats come with online meetings)"))
            }
            Ok(t) => t,
        },
    };
    let Some(Value::Array(raw_members)) = body.get("members") else {
        return Err(TeamsAdminError::bad_request(
            "'members' (user ids or UPNs) is required",
        ));
    };
    let mut members = Vec::new();
    for m in raw_members {
        let key = m
            .as_str()
            .ok_or_else(|| TeamsAdminError::bad_request("'members' must hold strings"))?;
        let id = user_id(&core, tenant, key)?;
        if !members.contains(&id) {
            members.push(id);
        }
    }
    if members.is_empty() || (chat_type == ChatType::OneOnOne && members.len() != 2) {
        return Err(TeamsAdminError::bad_request(
            "a oneOnOne chat has two members, a group chat at least one",
        ));
    }
    let id = match optional_string(&body, "id")? {
        Some(id) if !id.trim().is_empty() && id.len() <= 400 && !id.contains('/') => id,
        Some(_) => {
            return Err(TeamsAdminError::bad_request(
                "'id' must be a non-empty chat id without '/'",
            ))
        }
        None => format!("19:{}@thread.v2", Uuid::new_v4().simple()),
    };
    let topic = optional_string(&body, "topic")?;
    let now = core.clock.now();
    let mut g = core.graph.lock(&core);
    if g.chat(&id).is_some() {
        return Err(TeamsAdminError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("a chat '{id}' exists already"),
        ));
    }
    let chat = Chat {
        tenant,
        id: id.clone(),
        chat_type,
        topic,
        members,
        created: now,
        messages: Vec::new(),
        last_message_id: 0,
    };
    let out = chat_json(&chat);
    g.chats.insert(id.to_ascii_lowercase(), chat);
    ok("admin.teams.chats.new", StatusCode::CREATED, out)
}
