//! Online meetings: create (201), createOrGet by `externalId` (201 new, 200 existing), get by
//! id, and the `$filter` lookups by join URL, join meeting id and VTC id. App-only callers need
//! the app role and an application access policy for the organizer (`policies.rs`); delegated
//! callers act for themselves with `OnlineMeetings.ReadWrite` / `OnlineMeetings.Read`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use base64::Engine;
use http::{Request, StatusCode};
use rand::Rng;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use super::errors::GraphError;
use super::odata::{parse_eq_filter, QueryOptions};
use super::state::{Chat, Meeting};
use super::{authenticate, graph_time, json_object, Call};
use super::{OP_MEETING_CREATE, OP_MEETING_CREATE_OR_GET, OP_MEETING_GET, OP_MEETING_LIST};
use crate::state::Core;
use crate::world::User;

/// Meeting bodies are small; anything larger is refused before parsing.
const BODY_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

/// Permission, organizer and access-policy checks; returns the organizer.
fn authorize(
    core: &Core,
    call: &Call,
    path_user: Option<&str>,
    access: Access,
) -> Result<User, GraphError> {
    let c = &call.caller;
    let permitted = match (c.user, access) {
        (None, Access::Write) => c.has_role(&["OnlineMeetings.ReadWrite.All"]),
        (None, Access::Read) => {
            c.has_role(&["OnlineMeetings.Read.All", "OnlineMeetings.ReadWrite.All"])
        }
        (Some(_), Access::Write) => c.has_scope(&["OnlineMeetings.ReadWrite"]),
        (Some(_), Access::Read) => {
            c.has_scope(&["OnlineMeetings.Read", "OnlineMeetings.ReadWrite"])
        }
    };
    if !permitted {
        let need = match (c.user, access) {
            (None, Access::Write) => "the application permission OnlineMeetings.ReadWrite.All",
            (None, Access::Read) => {
                "the application permission OnlineMeetings.Read.All or OnlineMeetings.ReadWrite.All"
            }
            (Some(_), Access::Write) => "the delegated permission OnlineMeetings.ReadWrite",
            (Some(_), Access::Read) => {
                "the delegated permission OnlineMeetings.Read or OnlineMeetings.ReadWrite"
            }
        };
        return Err(GraphError::access_denied(need));
    }
    let organizer = call.owner(core, path_user)?;
    match c.user {
        Some(me) if me != organizer.object_id => Err(GraphError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "A delegated caller can only access its own online meetings.",
        )),
        Some(_) => Ok(organizer),
        None => {
            let g = core.graph.lock(core);
            let allowed = g
                .policies
                .get(&c.tenant)
                .and_then(|s| s.effective(call.now))
                .is_some_and(|p| p.allows(&organizer.object_id, &c.app_id));
            if allowed {
                Ok(organizer)
            } else {
                let action = if access == Access::Write {
                    "Create"
                } else {
                    "Get"
                };
                Err(GraphError::no_access_policy(
                    g.error_form,
                    &c.app_id.to_string(),
                    &organizer.object_id.to_string(),
                    action,
                ))
            }
        }
    }
}

/// The writable properties of a create request, type-checked.
#[derive(Debug, Default)]
struct MeetingInput {
    subject: Option<String>,
    start: Option<OffsetDateTime>,
    end: Option<OffsetDateTime>,
    external_id: Option<String>,
    attendees: Vec<Value>,
    /// Other settable properties, copied onto the resource as given.
    settings: Map<String, Value>,
}

fn parse_time(field: &str, v: &Value) -> Result<Option<OffsetDateTime>, GraphError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map(Some)
            .map_err(|_| GraphError::bad_request(format!("Cannot convert the literal '{s}' to the expected type 'Edm.DateTimeOffset' of property '{field}'."))),
        _ => Err(wrong_type(field, "Edm.DateTimeOffset")),
    }
}

fn wrong_type(field: &str, ty: &str) -> GraphError {
    GraphError::bad_request(format!(
        "The property '{field}' has a value of the wrong type: '{ty}' is expected."
    ))
}

fn parse_input(body: &Map<String, Value>) -> Result<MeetingInput, GraphError> {
    let mut input = MeetingInput::default();
    for (k, v) in body {
        match k.as_str() {
            k if k.starts_with('@') => {}
            "subject" => match v {
                Value::String(s) => input.subject = Some(s.clone()),
                Value::Null => {}
                _ => return Err(wrong_type("subject", "Edm.String")),
            },
            "externalId" => match v {
                Value::String(s) if !s.is_empty() && s.len() <= 1024 => {
                    input.external_id = Some(s.clone())
                }
                Value::Null => {}
                _ => return Err(wrong_type("externalId", "Edm.String")),
            },
            "startDateTime" => input.start = parse_time(k, v)?,
            "endDateTime" => input.end = parse_time(k, v)?,
            "participants" => match v {
                Value::Null => {}
                Value::Object(p) => match p.get("attendees") {
                    None | Some(Value::Null) => {}
                    Some(Value::Array(a)) if a.iter().all(Value::is_object) && a.len() <= 1000 => {
                        input.attendees = a.clone()
                    }
                    Some(_) => {
                        return Err(wrong_type(
                            "participants/attendees",
                            "Collection(microsoft.graph.meetingParticipantInfo)",
                        ))
                    }
                },
                _ => {
                    return Err(wrong_type(
                        "participants",
                        "microsoft.graph.meetingParticipants",
                    ))
                }
            },
            "isEntryExitAnnounced"
            | "allowAttendeeToEnableCamera"
            | "allowAttendeeToEnableMic"
            | "allowParticipantsToChangeName"
            | "allowTeamworkReactions"
            | "recordAutomatically" => match v {
                Value::Bool(_) | Value::Null => {
                    input.settings.insert(k.clone(), v.clone());
                }
                _ => return Err(wrong_type(k, "Edm.Boolean")),
            },
            "allowedPresenters" | "allowMeetingChat" => match v {
                Value::String(_) | Value::Null => {
                    input.settings.insert(k.clone(), v.clone());
                }
                _ => return Err(wrong_type(k, "Edm.String")),
            },
            "lobbyBypassSettings" | "chatInfo" => match v {
                Value::Object(_) | Value::Null => {
                    if k == "lobbyBypassSettings" {
                        input.settings.insert(k.clone(), v.clone());
                    }
                }
                _ => return Err(wrong_type(k, "object")),
            },
            // Other properties are accepted and ignored (the emulator does not model them).
            _ => {}
        }
    }
    if input.start.is_none() && input.end.is_some() {
        return Err(GraphError::bad_request(
            "An endDateTime requires a startDateTime.",
        ));
    }
    if let (Some(s), Some(e)) = (input.start, input.end) {
        if e < s {
            return Err(GraphError::bad_request(
                "The endDateTime must not be earlier than the startDateTime.",
            ));
        }
    }
    Ok(input)
}

fn random_digits(n: usize) -> String {
    let mut rng = rand::thread_rng();
    let mut s = String::with_capacity(n);
    s.push(char::from(b'1' + rng.gen_range(0..9u8)));
    while s.len() < n {
        s.push(char::from(b'0' + rng.gen_range(0..10u8)));
    }
    s
}

fn random_passcode() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::thread_rng();
    (0..6)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

fn new_meeting(call: &Call, organizer: &User, input: MeetingInput) -> Meeting {
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    let thread_id = format!(
        "19:meeting_{}@thread.v2",
        b64.encode(Uuid::new_v4().to_string())
    );
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("1*{}*0**{thread_id}", organizer.object_id));
    let tid = call.caller.tenant;
    let oid = organizer.object_id;
    let encoded_thread = thread_id.replace(':', "%3a").replace('@', "%40");
    let join_web_url = format!(
        "https://teams.microsoft.com/l/meetup-join/{encoded_thread}/0?context=%7b%22Tid%22%3a%22{tid}%22%2c%22Oid%22%3a%22{oid}%22%7d"
    );
    let join_meeting_id = random_digits(13);
    let passcode = random_passcode();
    let vtc = random_digits(10);
    let start = input.start.unwrap_or(call.now);
    let end = input.end.unwrap_or(start + time::Duration::hours(1));
    let attendees: Vec<Value> = input
        .attendees
        .into_iter()
        .map(|mut a| {
            if let Some(o) = a.as_object_mut() {
                o.entry("role").or_insert(json!("attendee"));
                o.remove("@odata.type");
            }
            a
        })
        .collect();
    let mut resource = json!({
        "id": id,
        "creationDateTime": graph_time(call.now),
        "startDateTime": graph_time(start),
        "endDateTime": graph_time(end),
        "joinUrl": join_web_url,
        "joinWebUrl": join_web_url,
        "meetingCode": null,
        "subject": input.subject,
        "isBroadcast": false,
        "autoAdmittedUsers": "everyoneInCompany",
        "outerMeetingAutoAdmittedUsers": null,
        "isEntryExitAnnounced": true,
        "allowedPresenters": "everyone",
        "allowMeetingChat": "enabled",
        "shareMeetingChatHistoryDefault": "none",
        "allowTeamworkReactions": true,
        "allowAttendeeToEnableMic": true,
        "allowAttendeeToEnableCamera": true,
        "allowParticipantsToChangeName": false,
        "recordAutomatically": false,
        "watermarkProtection": null,
        "videoTeleconferenceId": vtc,
        "externalId": input.external_id,
        "broadcastSettings": null,
        "audioConferencing": null,
        "meetingInfo": null,
        "joinMeetingIdSettings": {
            "isPasscodeRequired": true,
            "joinMeetingId": join_meeting_id,
            "passcode": passcode,
        },
        "lobbyBypassSettings": {"scope": "organization", "isDialInBypassEnabled": false},
    });
    // Built in two steps: one json! this size exceeds the macro recursion limit.
    let rest = json!({
        "participants": {
            "organizer": {
                "upn": organizer.user_principal_name,
                "role": "presenter",
                "identity": {
                    "application": null,
                    "device": null,
                    "phone": null,
                    "user": {
                        "id": organizer.object_id,
                        "displayName": null,
                        "tenantId": tid,
                        "identityProvider": "AAD",
                    },
                },
            },
            "attendees": attendees,
            "producers": [],
            "contributors": [],
        },
        "chatInfo": {
            "threadId": thread_id,
            "messageId": "0",
            "replyChainMessageId": null,
        },
        "joinInformation": {
            "content": format!("data:text/html,{}", join_information_html(&join_web_url)),
            "contentType": "html",
        },
    });
    if let (Some(obj), Value::Object(more)) = (resource.as_object_mut(), rest) {
        obj.extend(more);
    }
    if let Some(obj) = resource.as_object_mut() {
        for (k, v) in input.settings {
            obj.insert(k, v);
        }
    }
    Meeting {
        tenant: tid,
        organizer: oid,
        id,
        external_id: resource["externalId"].as_str().map(str::to_string),
        join_web_url,
        join_meeting_id,
        video_teleconference_id: vtc,
        resource,
    }
}

fn join_information_html(url: &str) -> String {
    let html = format!("<div><a href=\"{url}\">Join Microsoft Teams Meeting</a></div>");
    form_urlencoded::byte_serialize(html.as_bytes()).collect()
}

/// The meeting chat, with the organizer and the attendees who are users of the tenant.
fn meeting_chat(core: &Core, m: &Meeting, now: OffsetDateTime, subject: Option<String>) -> Chat {
    let mut members = vec![m.organizer];
    let dir = core.directory();
    if let Some(t) = dir.world.tenants.iter().find(|t| t.id == m.tenant) {
        if let Some(attendees) = m.resource["participants"]["attendees"].as_array() {
            for a in attendees {
                let key = a["identity"]["user"]["id"]
                    .as_str()
                    .or_else(|| a["upn"].as_str());
                if let Some(u) = key.and_then(|k| super::state::find_user(t, k)) {
                    if !members.contains(&u.object_id) {
                        members.push(u.object_id);
                    }
                }
            }
        }
    }
    Chat {
        tenant: m.tenant,
        id: m.resource["chatInfo"]["threadId"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        chat_type: super::config::ChatType::Meeting,
        topic: subject,
        members,
        created: now,
        messages: Vec::new(),
        last_message_id: 0,
    }
}

fn with_context(call: &Call, organizer: &User, resource: &Value) -> Value {
    let mut out = json!({
        "@odata.context": call.context(&format!("users('{}')/onlineMeetings/$entity", organizer.object_id)),
    });
    if let (Some(o), Some(r)) = (out.as_object_mut(), resource.as_object()) {
        for (k, v) in r {
            o.insert(k.clone(), v.clone());
        }
    }
    out
}

fn path_user(params: &HashMap<String, String>) -> Option<&str> {
    params.get("user").map(String::as_str)
}

pub async fn create(
    State(core): State<Arc<Core>>,
    Path(params): Path<HashMap<String, String>>,
    req: Request<Body>,
) -> Response {
    store(core, params, req, false).await
}

pub async fn create_or_get(
    State(core): State<Arc<Core>>,
    Path(params): Path<HashMap<String, String>>,
    req: Request<Body>,
) -> Response {
    store(core, params, req, true).await
}

async fn store(
    core: Arc<Core>,
    params: HashMap<String, String>,
    req: Request<Body>,
    by_external_id: bool,
) -> Response {
    let (parts, body) = req.into_parts();
    let op = if by_external_id {
        OP_MEETING_CREATE_OR_GET
    } else {
        OP_MEETING_CREATE
    };
    let call = match authenticate(&core, &parts, op) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let organizer = match authorize(&core, &call, path_user(&params), Access::Write) {
        Ok(u) => u,
        Err(e) => return call.fail(e),
    };
    let input = match json_object(&core, body, BODY_LIMIT)
        .await
        .and_then(|b| parse_input(&b))
    {
        Ok(i) => i,
        Err(e) => return call.fail(e),
    };
    if by_external_id && input.external_id.is_none() {
        return call.fail(GraphError::bad_request(
            "The externalId property is required.",
        ));
    }
    let subject = input.subject.clone();
    let mut g = core.graph.lock(&core);
    if by_external_id {
        let existing = g.meetings.iter().find(|m| {
            m.tenant == call.caller.tenant
                && m.organizer == organizer.object_id
                && m.external_id == input.external_id
        });
        if let Some(m) = existing {
            let body = with_context(&call, &organizer, &m.resource);
            return call.json(StatusCode::OK, body);
        }
    }
    let meeting = new_meeting(&call, &organizer, input);
    let chat = meeting_chat(&core, &meeting, call.now, subject);
    g.chats.insert(chat.id.to_ascii_lowercase(), chat);
    let body = with_context(&call, &organizer, &meeting.resource);
    g.meetings.push(meeting);
    drop(g);
    call.json(StatusCode::CREATED, body)
}

pub async fn get(
    State(core): State<Arc<Core>>,
    Path(params): Path<HashMap<String, String>>,
    req: Request<Body>,
) -> Response {
    let (parts, _) = req.into_parts();
    let call = match authenticate(&core, &parts, OP_MEETING_GET) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let organizer = match authorize(&core, &call, path_user(&params), Access::Read) {
        Ok(u) => u,
        Err(e) => return call.fail(e),
    };
    let id = params
        .get("meeting")
        .map(String::as_str)
        .unwrap_or_default();
    let g = core.graph.lock(&core);
    let found = g
        .meetings
        .iter()
        .find(|m| {
            m.tenant == call.caller.tenant && m.organizer == organizer.object_id && m.id == id
        })
        .map(|m| with_context(&call, &organizer, &m.resource));
    drop(g);
    match found {
        Some(body) => call.json(StatusCode::OK, body),
        None => call.fail(GraphError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("The online meeting '{id}' was not found."),
        )),
    }
}

/// What a `$filter` on online meetings selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeetingFilter {
    JoinWebUrl(String),
    JoinMeetingId(String),
    VideoTeleconferenceId(String),
}

/// Parses the `$filter` forms the online-meeting docs give.
pub fn parse_meeting_filter(text: &str) -> Result<MeetingFilter, GraphError> {
    let f = parse_eq_filter(text)?;
    let p = f.property.to_ascii_lowercase();
    Ok(match p.as_str() {
        "joinweburl" => MeetingFilter::JoinWebUrl(f.value),
        "joinmeetingidsettings/joinmeetingid" => MeetingFilter::JoinMeetingId(f.value),
        "videoteleconferenceid" => MeetingFilter::VideoTeleconferenceId(f.value),
        _ => {
            return Err(GraphError::bad_request(format!(
                "Invalid filter clause: the property '{}' cannot be used to filter online meetings (use JoinWebUrl, joinMeetingIdSettings/joinMeetingId or VideoTeleconferenceId).",
                f.property
            )))
        }
    })
}

fn same_url(a: &str, b: &str) -> bool {
    let decode = |s: &str| crate::http::decode_path_segment(s).unwrap_or_else(|| s.to_string());
    a == b || decode(a).eq_ignore_ascii_case(&decode(b))
}

pub async fn list(
    State(core): State<Arc<Core>>,
    Path(params): Path<HashMap<String, String>>,
    req: Request<Body>,
) -> Response {
    let (parts, _) = req.into_parts();
    let call = match authenticate(&core, &parts, OP_MEETING_LIST) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let options = QueryOptions::parse(parts.uri.query());
    let filter =
        match options.filter.as_deref().map(parse_meeting_filter) {
            Some(Ok(f)) => f,
            Some(Err(e)) => return call.fail(e),
            None => return call.fail(GraphError::bad_request(
                "Filter expression expected - /onlineMeetings?$filter={ParameterName} eq '{id}'.",
            )),
        };
    let organizer = match authorize(&core, &call, path_user(&params), Access::Read) {
        Ok(u) => u,
        Err(e) => return call.fail(e),
    };
    let g = core.graph.lock(&core);
    let value: Vec<Value> = g
        .meetings
        .iter()
        .filter(|m| m.tenant == call.caller.tenant && m.organizer == organizer.object_id)
        .filter(|m| match &filter {
            MeetingFilter::JoinWebUrl(u) => same_url(&m.join_web_url, u),
            MeetingFilter::JoinMeetingId(id) => &m.join_meeting_id == id,
            MeetingFilter::VideoTeleconferenceId(id) => &m.video_teleconference_id == id,
        })
        .map(|m| m.resource.clone())
        .collect();
    drop(g);
    let body = json!({
        "@odata.context": call.context(&format!("users('{}')/onlineMeetings", organizer.object_id)),
        "value": value,
    });
    call.json(StatusCode::OK, body)
}
