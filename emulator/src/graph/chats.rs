//! Chat messages: `POST /chats/{id}/messages` (201) and `GET /chats/{id}/messages` (newest
//! first, `$top` ≤ 50, absolute `@odata.nextLink` with `$skiptoken`), also under `/me` and
//! `/users/{id}`. Members only for delegated callers; app-only callers may read
//! (`Chat.Read.All`) but not send (Graph allows that only for migration).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use base64::Engine;
use http::{Request, StatusCode};
use serde_json::{json, Value};

use super::errors::GraphError;
use super::odata::{parse_top, QueryOptions};
use super::state::Chat;
use super::{authenticate, graph_time, json_object, Call, OP_MESSAGE_LIST, OP_MESSAGE_SEND};
use crate::state::Core;

/// Largest `$top` for chat messages.
pub const MAX_TOP: u32 = 50;
/// Page size without `$top`.
pub const DEFAULT_TOP: u32 = 20;
/// Largest message body (Teams refuses messages of about 28 KB and more).
pub const MAX_CONTENT_BYTES: usize = 28 * 1024;
const BODY_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Send,
}

/// Checks permission, the chat's existence and tenant, and membership; returns the chat key.
fn authorize(
    core: &Core,
    call: &Call,
    params: &HashMap<String, String>,
    access: Access,
) -> Result<String, GraphError> {
    let c = &call.caller;
    let permitted = match (c.user, access) {
        (Some(_), Access::Send) => {
            c.has_scope(&["ChatMessage.Send", "Chat.ReadWrite", "Group.ReadWrite.All"])
        }
        (Some(_), Access::Read) => c.has_scope(&["Chat.Read", "Chat.ReadWrite"]),
        (None, Access::Send) => false,
        (None, Access::Read) => c.has_role(&["Chat.Read.All", "Chat.ReadWrite.All"]),
    };
    if !permitted {
        return Err(match (c.user, access) {
            (None, Access::Send) => GraphError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "Sending chat messages with application permissions is supported only for migration (Teamwork.Migrate.All).",
            ),
            (Some(_), Access::Send) => GraphError::access_denied("the delegated permission ChatMessage.Send or Chat.ReadWrite"),
            (Some(_), Access::Read) => GraphError::access_denied("the delegated permission Chat.Read or Chat.ReadWrite"),
            (None, Access::Read) => GraphError::access_denied("the application permission Chat.Read.All or Chat.ReadWrite.All"),
        });
    }
    // `/me/chats/…` is the signed-in user; `/users/{id}/chats/…` names a user.
    let path_user = params.get("user").map(String::as_str);
    let subject = match path_user {
        Some(key) => Some(call.owner(core, Some(key))?.object_id),
        None => None,
    };
    if let (Some(me), Some(s)) = (c.user, subject) {
        if me != s {
            return Err(GraphError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "A delegated caller can only access its own chats.",
            ));
        }
    }
    let id = params.get("chat").cloned().unwrap_or_default();
    let g = core.graph.lock(core);
    let chat = g
        .chat(&id)
        .filter(|ch| ch.tenant == c.tenant)
        .ok_or_else(|| {
            GraphError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("Chat '{id}' was not found."),
            )
        })?;
    if let Some(who) = c.user.or(subject) {
        if !chat.members.contains(&who) {
            return Err(GraphError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "The user '{who}' is not a member of the chat '{}'.",
                    chat.id
                ),
            ));
        }
    }
    Ok(id)
}

/// The message body of a send request.
fn parse_message(
    body: &serde_json::Map<String, Value>,
) -> Result<(String, String, Option<String>, String), GraphError> {
    let Some(b) = body.get("body") else {
        return Err(GraphError::bad_request(
            "The message body is required: {\"body\":{\"content\":\"…\"}}.",
        ));
    };
    let Value::Object(b) = b else {
        return Err(GraphError::bad_request(
            "The property 'body' must be an itemBody object.",
        ));
    };
    let content = match b.get("content") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(GraphError::bad_request(
                "The message body content must not be empty.",
            ))
        }
        Some(_) => {
            return Err(GraphError::bad_request(
                "The property 'content' must be a string.",
            ))
        }
    };
    if content.len() > MAX_CONTENT_BYTES {
        return Err(GraphError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!(
                "The message is too large: {} bytes, the limit is {MAX_CONTENT_BYTES}.",
                content.len()
            ),
        ));
    }
    let content_type = match b.get("contentType") {
        None | Some(Value::Null) => "text".to_string(),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("text") => "text".into(),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("html") => "html".into(),
        Some(other) => {
            return Err(GraphError::bad_request(format!(
                "Invalid contentType {other}: 'text' or 'html' is expected."
            )))
        }
    };
    let subject = match body.get("subject") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(GraphError::bad_request(
                "The property 'subject' must be a string.",
            ))
        }
    };
    let importance = match body.get("importance") {
        None | Some(Value::Null) => "normal".to_string(),
        Some(Value::String(s))
            if ["normal", "high", "urgent"].contains(&s.to_ascii_lowercase().as_str()) =>
        {
            s.to_ascii_lowercase()
        }
        Some(other) => {
            return Err(GraphError::bad_request(format!(
                "Invalid importance {other}: normal, high or urgent is expected."
            )))
        }
    };
    Ok((content, content_type, subject, importance))
}

fn context_for(call: &Call, chat: &str, what: &str) -> String {
    call.context(&format!(
        "chats('{}')/messages{what}",
        chat.replace('\'', "''")
    ))
}

pub async fn send(
    State(core): State<Arc<Core>>,
    Path(params): Path<HashMap<String, String>>,
    req: Request<Body>,
) -> Response {
    let (parts, body) = req.into_parts();
    let call = match authenticate(&core, &parts, OP_MESSAGE_SEND) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let key = match authorize(&core, &call, &params, Access::Send) {
        Ok(k) => k,
        Err(e) => return call.fail(e),
    };
    let parsed = json_object(&core, body, BODY_LIMIT)
        .await
        .and_then(|b| parse_message(&b));
    let (content, content_type, subject, importance) = match parsed {
        Ok(p) => p,
        Err(e) => return call.fail(e),
    };
    let sender = call.caller.user.unwrap_or_default();
    let display_name = core
        .directory()
        .world
        .tenants
        .iter()
        .find(|t| t.id == call.caller.tenant)
        .and_then(|t| t.users.iter().find(|u| u.object_id == sender))
        .map(|u| u.display_name.clone());
    let mut g = core.graph.lock(&core);
    let Some(chat) = g.chat_mut(&key) else {
        return call.fail(GraphError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("Chat '{key}' was not found."),
        ));
    };
    let now_ms = (call.now.unix_timestamp_nanos() / 1_000_000) as i64;
    let id = now_ms.max(chat.last_message_id + 1);
    chat.last_message_id = id;
    let message = json!({
        "id": id.to_string(),
        "replyToId": null,
        "etag": id.to_string(),
        "messageType": "message",
        "createdDateTime": graph_time(call.now),
        "lastModifiedDateTime": graph_time(call.now),
        "lastEditedDateTime": null,
        "deletedDateTime": null,
        "subject": subject,
        "summary": null,
        "chatId": chat.id,
        "importance": importance,
        "locale": "en-us",
        "webUrl": null,
        "channelIdentity": null,
        "policyViolation": null,
        "eventDetail": null,
        "from": {
            "application": null,
            "device": null,
            "user": {
                "@odata.type": "#microsoft.graph.teamworkUserIdentity",
                "id": sender,
                "displayName": display_name,
                "userIdentityType": "aadUser",
                "tenantId": call.caller.tenant,
            },
        },
        "body": {"contentType": content_type, "content": content},
        "attachments": [],
        "mentions": [],
        "reactions": [],
        "messageHistory": [],
    });
    chat.messages.push(message.clone());
    let chat_id = chat.id.clone();
    drop(g);
    let mut out = json!({"@odata.context": context_for(&call, &chat_id, "/$entity")});
    if let (Some(o), Some(m)) = (out.as_object_mut(), message.as_object()) {
        o.extend(m.clone());
    }
    call.json(StatusCode::CREATED, out)
}

/// `$skiptoken`: the id of the last message already returned (opaque to clients).
pub fn encode_skiptoken(before_id: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("before:{before_id}"))
}

pub fn decode_skiptoken(token: &str) -> Option<i64> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix("before:")?.parse().ok()
}

/// One page, newest first: messages older than `before`, at most `top`, and whether more remain.
pub fn page(chat: &Chat, before: Option<i64>, top: u32) -> (Vec<Value>, Option<i64>) {
    let id_of = |m: &Value| {
        m["id"]
            .as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let older: Vec<&Value> = chat
        .messages
        .iter()
        .rev()
        .filter(|m| before.is_none_or(|b| id_of(m) < b))
        .collect();
    let take = (top as usize).min(older.len());
    let page: Vec<Value> = older[..take].iter().map(|m| (*m).clone()).collect();
    let next = (older.len() > take)
        .then(|| page.last().map(id_of))
        .flatten();
    (page, next)
}

pub async fn list(
    State(core): State<Arc<Core>>,
    Path(params): Path<HashMap<String, String>>,
    req: Request<Body>,
) -> Response {
    let (parts, _) = req.into_parts();
    let call = match authenticate(&core, &parts, OP_MESSAGE_LIST) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let options = QueryOptions::parse(parts.uri.query());
    let top = match options.top.as_deref().map(|t| parse_top(t, MAX_TOP)) {
        None => DEFAULT_TOP,
        Some(Ok(n)) => n,
        Some(Err(e)) => return call.fail(e),
    };
    if options.filter.is_some() {
        return call.fail(GraphError::bad_request(
            "Invalid filter clause: the emulator does not support $filter on chat messages.",
        ));
    }
    let before = match options.skiptoken.as_deref().map(decode_skiptoken) {
        None => None,
        Some(Some(b)) => Some(b),
        Some(None) => return call.fail(GraphError::bad_request("The $skiptoken is invalid.")),
    };
    let key = match authorize(&core, &call, &params, Access::Read) {
        Ok(k) => k,
        Err(e) => return call.fail(e),
    };
    let g = core.graph.lock(&core);
    let Some(chat) = g.chat(&key) else {
        return call.fail(GraphError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("Chat '{key}' was not found."),
        ));
    };
    let (value, next) = page(chat, before, top);
    let chat_id = chat.id.clone();
    drop(g);
    let mut body = json!({
        "@odata.context": context_for(&call, &chat_id, ""),
        "@odata.count": value.len(),
    });
    if let Some(n) = next {
        body["@odata.nextLink"] = json!(format!(
            "{}{}?$top={top}&$skiptoken={}",
            call.origin,
            parts.uri.path(),
            encode_skiptoken(n)
        ));
    }
    body["value"] = json!(value);
    call.json(StatusCode::OK, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skiptokens_round_trip_and_reject_garbage() {
        assert_eq!(
            decode_skiptoken(&encode_skiptoken(1_700_000_000_123)),
            Some(1_700_000_000_123)
        );
        assert_eq!(decode_skiptoken("!!"), None);
        assert_eq!(decode_skiptoken(""), None);
    }
}
