//! Microsoft Graph over HTTPS: online meetings gated by application access policies (per-user
//! and global grants, the per-user override, the propagation delay on the virtual clock, both
//! 403 forms), meeting lookups, chat messages with paging, and every error in Graph's shape.

mod support;

use m365_emulator::Emulator;
use reqwest::Method;
use serde_json::{json, Value};
use support::*;

const GRAPH: &str = "https://graph.microsoft.com";
const TEAMS_PHONE_SECRET: &str = "teams-phone-secret~0123456789abcdefghij";
const TEAMS_CLIENT: &str = "81a839dc-b25b-4552-bb03-aa9fa33cc6a0";
const ADELE: &str = "adele@contoso.onmicrosoft.com";
const ADELE_ID: &str = "61927486-f404-463f-b72a-7aa7c4ad5433";
const MEGAN: &str = "megan@contoso.onmicrosoft.com";
const ONE_ON_ONE: &str = "19:adele-megan_0b5c8d1e@unq.gbl.spaces";

async fn app_token(c: &reqwest::Client, e: &Emulator) -> String {
    let (status, _, body) = post_form(
        c,
        &token_url_v2(e, CONTOSO),
        &[
            ("grant_type", "client_credentials".into()),
            ("client_id", TEAMS_PHONE.into()),
            ("client_secret", TEAMS_PHONE_SECRET.into()),
            ("scope", format!("{GRAPH}/.default")),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().expect("token").to_string()
}

/// A Teams user's delegated Graph token from the public Teams client (password grant).
async fn user_token(c: &reqwest::Client, e: &Emulator, upn: &str, password: &str) -> String {
    let (status, _, body) = post_form(
        c,
        &token_url_v2(e, CONTOSO),
        &[
            ("grant_type", "password".into()),
            ("client_id", TEAMS_CLIENT.into()),
            ("username", upn.into()),
            ("password", password.into()),
            ("scope", format!("{GRAPH}/.default")),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().expect("token").to_string()
}

async fn call(
    c: &reqwest::Client,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = c.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    read_json(req.send().await.expect("request sent")).await
}

/// The control plane over plain HTTP.
async fn admin(e: &Emulator, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let c = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let mut req = c.request(method, format!("{}{path}", e.uri()));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("admin request");
    if resp.status() == reqwest::StatusCode::NO_CONTENT {
        return (204, Value::Null);
    }
    let (s, _, v) = read_json(resp).await;
    (s, v)
}

async fn admin_ok(e: &Emulator, method: Method, path: &str, body: Option<Value>) -> Value {
    let (s, v) = admin(e, method, path, body).await;
    assert!((200..300).contains(&s), "{path}: {s} {v}");
    v
}

/// An error case: snapshot name, method, URL, bearer token, JSON body, expected status.
type Case<'a> = (&'a str, Method, String, Option<&'a str>, Option<Value>, u16);

fn meetings_url(e: &Emulator, user: &str) -> String {
    format!("{}/v1.0/users/{user}/onlineMeetings", e.https_uri())
}

fn meeting_body(subject: &str) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.onlineMeeting",
        "subject": subject,
        "startDateTime": "2030-01-01T10:00:00Z",
        "endDateTime": "2030-01-01T11:00:00Z",
    })
}

/// Checks Graph's error shape (and the request-id headers), then redacts what varies.
fn graph_error(
    e: &Emulator,
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &Value,
    want: u16,
) -> Value {
    assert_eq!(status, want, "{body}");
    let err = &body["error"];
    let keys: Vec<&str> = err
        .as_object()
        .expect("error object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["code", "message", "innerError"], "{body}");
    let inner = &err["innerError"];
    let request_id = inner["request-id"].as_str().expect("request-id");
    assert!(uuid::Uuid::parse_str(request_id).is_ok(), "{body}");
    assert_eq!(header(headers, "request-id"), request_id);
    assert!(
        inner["client-request-id"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{body}"
    );
    let date = inner["date"].as_str().expect("date");
    assert_eq!(date.len(), 19, "{date}");
    let mut out = redact_origin(body, e);
    out["error"]["innerError"] =
        json!({"date": "[date]", "request-id": "[guid]", "client-request-id": "[guid]"});
    out
}

/// A created meeting with the generated values replaced.
fn redact_meeting(e: &Emulator, m: &Value) -> Value {
    let mut m = redact_origin(m, e);
    for k in [
        "id",
        "creationDateTime",
        "joinUrl",
        "joinWebUrl",
        "videoTeleconferenceId",
    ] {
        m[k] = json!(format!("[{k}]"));
    }
    m["joinMeetingIdSettings"]["joinMeetingId"] = json!("[joinMeetingId]");
    m["joinMeetingIdSettings"]["passcode"] = json!("[passcode]");
    m["chatInfo"]["threadId"] = json!("[threadId]");
    m["joinInformation"]["content"] = json!("[joinInformation]");
    m
}

#[tokio::test]
async fn meetings_follow_application_access_policies() {
    let e = start().await;
    let c = client(&e);
    let t = app_token(&c, &e).await;

    // No policy at all: the current 403 form.
    let (s, h, b) = call(
        &c,
        Method::POST,
        &meetings_url(&e, ADELE),
        Some(&t),
        Some(meeting_body("Sync")),
    )
    .await;
    insta::assert_json_snapshot!(
        "graph_error_no_access_policy",
        graph_error(&e, s, &h, &b, 403)
    );

    // The older form (seed 003), selectable.
    admin_ok(
        &e,
        Method::PATCH,
        "/_emulator/teams/settings",
        Some(json!({"accessPolicyError": "legacy"})),
    )
    .await;
    let (s, h, b) = call(
        &c,
        Method::POST,
        &meetings_url(&e, ADELE),
        Some(&t),
        Some(meeting_body("Sync")),
    )
    .await;
    let legacy = graph_error(&e, s, &h, &b, 403);
    assert_eq!(
        legacy["error"]["message"],
        format!(
            "App {TEAMS_PHONE} is not authorized to Create meeting on behalf of user {ADELE_ID}"
        )
    );
    insta::assert_json_snapshot!("graph_error_no_access_policy_legacy", legacy);
    admin_ok(
        &e,
        Method::PATCH,
        "/_emulator/teams/settings",
        Some(json!({"accessPolicyError": "current"})),
    )
    .await;

    // New-CsApplicationAccessPolicy + Grant-CsApplicationAccessPolicy -Identity adele.
    let created = admin_ok(
        &e,
        Method::POST,
        "/_emulator/teams/applicationAccessPolicies",
        Some(json!({"identity": "Test-policy", "appIds": [TEAMS_PHONE], "description": "Meetings daemon"})),
    )
    .await;
    assert_eq!(created["identity"], "Tag:Test-policy");
    admin_ok(
        &e,
        Method::POST,
        "/_emulator/teams/applicationAccessPolicies/Test-policy/grant",
        Some(json!({"userId": ADELE})),
    )
    .await;

    let (s, h, m) = call(
        &c,
        Method::POST,
        &meetings_url(&e, ADELE),
        Some(&t),
        Some(meeting_body("Sync")),
    )
    .await;
    assert_eq!(s, 201, "{m}");
    assert!(!header(&h, "request-id").is_empty());
    assert_eq!(
        m["participants"]["organizer"]["identity"]["user"]["id"],
        ADELE_ID
    );
    assert_eq!(m["startDateTime"], "2030-01-01T10:00:00.0000000Z");
    assert!(m["chatInfo"]["threadId"]
        .as_str()
        .is_some_and(|t| t.starts_with("19:meeting_") && t.ends_with("@thread.v2")));
    let passcode = m["joinMeetingIdSettings"]["passcode"]
        .as_str()
        .expect("passcode");
    assert_eq!(passcode.len(), 6);
    insta::assert_json_snapshot!("graph_meeting_created", redact_meeting(&e, &m));

    // GET by id, and the two $filter lookups.
    let id = m["id"].as_str().expect("id");
    let (s, _, got) = call(
        &c,
        Method::GET,
        &format!("{}/{id}", meetings_url(&e, ADELE_ID)),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(got["joinWebUrl"], m["joinWebUrl"]);
    let join_url = m["joinWebUrl"].as_str().expect("join url");
    let encoded: String =
        form_urlencoded::byte_serialize(format!("JoinWebUrl eq '{join_url}'").as_bytes()).collect();
    let (s, _, list) = call(
        &c,
        Method::GET,
        &format!("{}?$filter={encoded}", meetings_url(&e, ADELE)),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["value"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["value"][0]["id"], id);
    let jmid = m["joinMeetingIdSettings"]["joinMeetingId"]
        .as_str()
        .expect("jmid");
    let (s, _, list) = call(
        &c,
        Method::GET,
        &format!(
            "{}?$filter=joinMeetingIdSettings/joinMeetingId%20eq%20'{jmid}'",
            meetings_url(&e, ADELE)
        ),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(
        (s, list["value"][0]["id"].clone()),
        (200, json!(id)),
        "{list}"
    );

    // createOrGet: 201 the first time, 200 with the same meeting after.
    let url = format!("{}/createOrGet", meetings_url(&e, ADELE));
    let body = json!({"externalId": "ext-42", "subject": "Standup"});
    let (s1, _, first) = call(&c, Method::POST, &url, Some(&t), Some(body.clone())).await;
    let (s2, _, second) = call(&c, Method::POST, &url, Some(&t), Some(body)).await;
    assert_eq!((s1, s2), (201, 200), "{first} {second}");
    assert_eq!(first["id"], second["id"]);
    assert_eq!(second["externalId"], "ext-42");

    // Megan is not covered; the global grant covers her.
    let (s, h, b) = call(
        &c,
        Method::POST,
        &meetings_url(&e, MEGAN),
        Some(&t),
        Some(meeting_body("x")),
    )
    .await;
    graph_error(&e, s, &h, &b, 403);
    admin_ok(
        &e,
        Method::POST,
        "/_emulator/teams/applicationAccessPolicies/Test-policy/grant",
        Some(json!({"global": true})),
    )
    .await;
    let (s, _, b) = call(
        &c,
        Method::POST,
        &meetings_url(&e, MEGAN),
        Some(&t),
        Some(meeting_body("x")),
    )
    .await;
    assert_eq!(s, 201, "{b}");

    // A per-user policy without the app overrides the global grant (one policy per user).
    admin_ok(
        &e,
        Method::POST,
        "/_emulator/teams/applicationAccessPolicies",
        Some(json!({"identity": "Collector-only", "appIds": [COLLECTOR]})),
    )
    .await;
    admin_ok(
        &e,
        Method::POST,
        "/_emulator/teams/applicationAccessPolicies/Collector-only/grant",
        Some(json!({"userId": MEGAN})),
    )
    .await;
    let (s, h, b) = call(
        &c,
        Method::POST,
        &meetings_url(&e, MEGAN),
        Some(&t),
        Some(meeting_body("x")),
    )
    .await;
    graph_error(&e, s, &h, &b, 403);
    let (s, _, b) = call(
        &c,
        Method::POST,
        &meetings_url(&e, ADELE),
        Some(&t),
        Some(meeting_body("x")),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    // Set-CsApplicationAccessPolicy -AppIds @{Add=…} lets the app in for Megan again.
    let set = admin_ok(
        &e,
        Method::PATCH,
        "/_emulator/teams/applicationAccessPolicies/Tag:Collector-only",
        Some(json!({"appIds": {"add": [TEAMS_PHONE]}})),
    )
    .await;
    assert_eq!(set["appIds"], json!([COLLECTOR, TEAMS_PHONE]));
    let (s, _, b) = call(
        &c,
        Method::POST,
        &meetings_url(&e, MEGAN),
        Some(&t),
        Some(meeting_body("x")),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    // Unassigning (-PolicyName $null) and removing the global grant shut the door again.
    admin_ok(
        &e,
        Method::POST,
        "/_emulator/teams/applicationAccessPolicyAssignments/revoke",
        Some(json!({"userId": MEGAN})),
    )
    .await;
    admin_ok(
        &e,
        Method::POST,
        "/_emulator/teams/applicationAccessPolicyAssignments/revoke",
        Some(json!({"global": true})),
    )
    .await;
    let (s, h, b) = call(
        &c,
        Method::POST,
        &meetings_url(&e, MEGAN),
        Some(&t),
        Some(meeting_body("x")),
    )
    .await;
    graph_error(&e, s, &h, &b, 403);

    let listed = admin_ok(
        &e,
        Method::GET,
        "/_emulator/teams/applicationAccessPolicies",
        None,
    )
    .await;
    assert_eq!(
        listed["value"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    assert_eq!(listed["globalPolicy"], Value::Null);
    assert_eq!(listed["assignments"][ADELE_ID], "Tag:Test-policy");
}

#[tokio::test]
async fn policy_changes_take_effect_after_the_propagation_delay() {
    let e = start().await;
    let c = client(&e);
    admin_ok(
        &e,
        Method::POST,
        "/_emulator/clock",
        Some(json!({"freeze": true})),
    )
    .await;
    admin_ok(
        &e,
        Method::PATCH,
        "/_emulator/teams/settings",
        Some(json!({"policyPropagationSeconds": 1800})),
    )
    .await;
    let t = app_token(&c, &e).await;
    admin_ok(
        &e,
        Method::POST,
        "/_emulator/teams/applicationAccessPolicies",
        Some(json!({"identity": "Test-policy", "appIds": [TEAMS_PHONE]})),
    )
    .await;
    let granted = admin_ok(
        &e,
        Method::POST,
        "/_emulator/teams/applicationAccessPolicies/Test-policy/grant",
        Some(json!({"userId": ADELE_ID})),
    )
    .await;
    let now = admin_ok(&e, Method::GET, "/_emulator/clock", None).await;
    assert_ne!(
        granted["effectiveAt"], now["now"],
        "the grant is pending: {granted}"
    );

    let (s, _, b) = call(
        &c,
        Method::POST,
        &meetings_url(&e, ADELE),
        Some(&t),
        Some(meeting_body("early")),
    )
    .await;
    assert_eq!(s, 403, "{b}");
    admin_ok(
        &e,
        Method::POST,
        "/_emulator/clock",
        Some(json!({"advance_seconds": 1799})),
    )
    .await;
    let (s, _, b) = call(
        &c,
        Method::POST,
        &meetings_url(&e, ADELE),
        Some(&t),
        Some(meeting_body("early")),
    )
    .await;
    assert_eq!(s, 403, "still propagating after 1799 s: {b}");
    admin_ok(
        &e,
        Method::POST,
        "/_emulator/clock",
        Some(json!({"advance_seconds": 1})),
    )
    .await;
    let (s, _, b) = call(
        &c,
        Method::POST,
        &meetings_url(&e, ADELE),
        Some(&t),
        Some(meeting_body("on time")),
    )
    .await;
    assert_eq!(s, 201, "in effect after 1800 s: {b}");

    // A reset forgets policies and knobs.
    admin_ok(&e, Method::POST, "/_emulator/reset", None).await;
    let settings = admin_ok(&e, Method::GET, "/_emulator/teams/settings", None).await;
    assert_eq!(
        settings,
        json!({"policyPropagationSeconds": 0, "accessPolicyError": "current"})
    );
    let listed = admin_ok(
        &e,
        Method::GET,
        "/_emulator/teams/applicationAccessPolicies",
        None,
    )
    .await;
    assert_eq!(listed["value"], json!([]));
}

#[tokio::test]
async fn meeting_errors_have_graphs_shape() {
    let e = start().await;
    let c = client(&e);
    let t = app_token(&c, &e).await;
    admin_ok(
        &e,
        Method::POST,
        "/_emulator/teams/applicationAccessPolicies",
        Some(json!({"identity": "P", "appIds": [TEAMS_PHONE]})),
    )
    .await;
    admin_ok(
        &e,
        Method::POST,
        "/_emulator/teams/applicationAccessPolicies/P/grant",
        Some(json!({"global": true})),
    )
    .await;
    let adele = meetings_url(&e, ADELE);
    let manage = secret_token(&c, &e, CONTOSO).await;
    let delegated = user_token(&c, &e, ADELE, "Adele-Pass-1!").await;
    let cases: Vec<Case> = vec![
        (
            "graph_error_no_token",
            Method::POST,
            adele.clone(),
            None,
            Some(meeting_body("x")),
            401,
        ),
        (
            "graph_error_wrong_audience",
            Method::POST,
            adele.clone(),
            Some(&manage),
            Some(meeting_body("x")),
            401,
        ),
        (
            "graph_error_delegated_without_scope",
            Method::POST,
            format!("{}/v1.0/me/onlineMeetings", e.https_uri()),
            Some(&delegated),
            Some(meeting_body("x")),
            403,
        ),
        (
            "graph_error_me_with_app_token",
            Method::POST,
            format!("{}/v1.0/me/onlineMeetings", e.https_uri()),
            Some(&t),
            Some(meeting_body("x")),
            400,
        ),
        (
            "graph_error_unknown_user",
            Method::POST,
            meetings_url(&e, "nobody@contoso.onmicrosoft.com"),
            Some(&t),
            Some(meeting_body("x")),
            404,
        ),
        (
            "graph_error_end_before_start",
            Method::POST,
            adele.clone(),
            Some(&t),
            Some(
                json!({"startDateTime": "2030-01-01T10:00:00Z", "endDateTime": "2030-01-01T09:00:00Z"}),
            ),
            400,
        ),
        (
            "graph_error_end_without_start",
            Method::POST,
            adele.clone(),
            Some(&t),
            Some(json!({"endDateTime": "2030-01-01T09:00:00Z"})),
            400,
        ),
        (
            "graph_error_subject_wrong_type",
            Method::POST,
            adele.clone(),
            Some(&t),
            Some(json!({"subject": 5})),
            400,
        ),
        (
            "graph_error_bad_datetime",
            Method::POST,
            adele.clone(),
            Some(&t),
            Some(json!({"startDateTime": "tomorrow"})),
            400,
        ),
        (
            "graph_error_body_not_object",
            Method::POST,
            adele.clone(),
            Some(&t),
            Some(json!(["x"])),
            400,
        ),
        (
            "graph_error_create_or_get_without_external_id",
            Method::POST,
            format!("{adele}/createOrGet"),
            Some(&t),
            Some(json!({"subject": "x"})),
            400,
        ),
        (
            "graph_error_unknown_meeting",
            Method::GET,
            format!("{adele}/MSpub3RoZXJl"),
            Some(&t),
            None,
            404,
        ),
        (
            "graph_error_list_without_filter",
            Method::GET,
            adele.clone(),
            Some(&t),
            None,
            400,
        ),
        (
            "graph_error_malformed_filter",
            Method::GET,
            format!("{adele}?$filter=JoinWebUrl%20eq%20'unterminated"),
            Some(&t),
            None,
            400,
        ),
        (
            "graph_error_unsupported_filter_property",
            Method::GET,
            format!("{adele}?$filter=subject%20eq%20'x'"),
            Some(&t),
            None,
            400,
        ),
        (
            "graph_error_method_not_allowed",
            Method::DELETE,
            adele.clone(),
            Some(&t),
            None,
            405,
        ),
    ];
    for (name, method, url, token, body, want) in cases {
        let (s, h, b) = call(&c, method, &url, token, body).await;
        insta::assert_json_snapshot!(name, graph_error(&e, s, &h, &b, want));
    }
    // Bad requests changed nothing: the only meeting lookup finds nothing.
    let (s, _, list) = call(
        &c,
        Method::GET,
        &format!("{adele}?$filter=VideoTeleconferenceId%20eq%20'1'"),
        Some(&t),
        None,
    )
    .await;
    assert_eq!((s, list["value"].clone()), (200, json!([])));
    // A broken JSON body.
    let resp = c
        .post(&adele)
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("sent");
    let (s, h, b) = read_json(resp).await;
    insta::assert_json_snapshot!("graph_error_invalid_json", graph_error(&e, s, &h, &b, 400));
    // The caller's client-request-id comes back.
    let resp = c
        .get(&adele)
        .bearer_auth(&t)
        .header("client-request-id", "my-correlation")
        .send()
        .await
        .expect("sent");
    let (_, h, b) = read_json(resp).await;
    assert_eq!(
        b["error"]["innerError"]["client-request-id"],
        "my-correlation"
    );
    assert_eq!(header(&h, "client-request-id"), "my-correlation");
}

#[tokio::test]
async fn throttling_faults_answer_in_graphs_shape_with_retry_after() {
    let e = start().await;
    let c = client(&e);
    let t = app_token(&c, &e).await;
    admin_ok(
        &e,
        Method::POST,
        "/_emulator/faults",
        Some(json!({"match": {"service": "graph"}, "action": {"rate_limit": {"burst": 1, "per_second": 0.001}}})),
    )
    .await;
    let url = format!("{}/v1.0/users/{ADELE}", e.https_uri());
    let (s, _, b) = call(&c, Method::GET, &url, Some(&t), None).await;
    assert_eq!(s, 200, "{b}");
    let (s, h, b) = call(&c, Method::GET, &url, Some(&t), None).await;
    assert!(header(&h, "retry-after")
        .parse::<u64>()
        .is_ok_and(|n| n >= 1));
    insta::assert_json_snapshot!("graph_error_throttled", graph_error(&e, s, &h, &b, 429));
    admin_ok(&e, Method::DELETE, "/_emulator/faults", None).await;
    // A named catalog error through the fault header.
    let resp = c
        .get(&url)
        .bearer_auth(&t)
        .header("x-m365emu-fault", "graph.ServiceUnavailable")
        .send()
        .await
        .expect("sent");
    let (s, h, b) = read_json(resp).await;
    insta::assert_json_snapshot!(
        "graph_error_fault_service_unavailable",
        graph_error(&e, s, &h, &b, 503)
    );
}

#[tokio::test]
async fn users_resolve_by_upn_and_id() {
    let e = start().await;
    let c = client(&e);
    let t = app_token(&c, &e).await;
    let (s, _, u) = call(
        &c,
        Method::GET,
        &format!("{}/v1.0/users/{ADELE}", e.https_uri()),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(s, 200, "{u}");
    insta::assert_json_snapshot!("graph_user", redact_origin(&u, &e));
    let me = user_token(&c, &e, MEGAN, "Megan-Pass-1!").await;
    let (s, _, u) = call(
        &c,
        Method::GET,
        &format!("{}/beta/me", e.https_uri()),
        Some(&me),
        None,
    )
    .await;
    assert_eq!(
        (s, u["userPrincipalName"].clone()),
        (200, json!(MEGAN)),
        "{u}"
    );
}

fn chat_messages_url(e: &Emulator, chat: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(chat.as_bytes()).collect();
    format!("{}/v1.0/chats/{encoded}/messages", e.https_uri())
}

#[tokio::test]
async fn chat_messages_send_and_page_newest_first() {
    let e = start().await;
    let c = client(&e);
    let adele = user_token(&c, &e, ADELE, "Adele-Pass-1!").await;
    let url = chat_messages_url(&e, ONE_ON_ONE);
    assert!(
        url.contains("19%3Aadele-megan_0b5c8d1e%40unq.gbl.spaces"),
        "{url}"
    );
    let mut sent = Vec::new();
    for i in 1..=3 {
        let (s, _, m) = call(
            &c,
            Method::POST,
            &url,
            Some(&adele),
            Some(json!({"body": {"content": format!("Hello {i}")}})),
        )
        .await;
        assert_eq!(s, 201, "{m}");
        if i == 1 {
            let mut r = redact_origin(&m, &e);
            for k in ["id", "etag", "createdDateTime", "lastModifiedDateTime"] {
                r[k] = json!(format!("[{k}]"));
            }
            insta::assert_json_snapshot!("graph_chat_message", r);
        }
        sent.push(m["id"].as_str().expect("id").to_string());
    }
    // Megan pages through two at a time, newest first, following the absolute nextLink.
    let megan = user_token(&c, &e, MEGAN, "Megan-Pass-1!").await;
    let me_url = format!(
        "{}/v1.0/me/chats/{}/messages?$top=2",
        e.https_uri(),
        form_urlencoded::byte_serialize(ONE_ON_ONE.as_bytes()).collect::<String>()
    );
    let (s, _, page1) = call(&c, Method::GET, &me_url, Some(&megan), None).await;
    assert_eq!(s, 200, "{page1}");
    let ids = |p: &Value| {
        p["value"]
            .as_array()
            .expect("value")
            .iter()
            .map(|m| m["id"].as_str().expect("id").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&page1), [sent[2].clone(), sent[1].clone()]);
    let next = page1["@odata.nextLink"].as_str().expect("nextLink");
    assert!(
        next.starts_with(&format!("{}/v1.0/me/chats/", e.https_uri()))
            && next.contains("$skiptoken="),
        "{next}"
    );
    let (s, _, page2) = call(&c, Method::GET, next, Some(&megan), None).await;
    assert_eq!(s, 200, "{page2}");
    assert_eq!(ids(&page2), [sent[0].clone()]);
    assert!(page2.get("@odata.nextLink").is_none(), "{page2}");
    assert_eq!(
        page2["value"][0]["body"],
        json!({"contentType": "text", "content": "Hello 1"})
    );
    // The same through /users/{id}/chats/….
    let (s, _, b) = call(
        &c,
        Method::GET,
        &format!(
            "{}/v1.0/users/{MEGAN}/chats/{}/messages?$top=50",
            e.https_uri(),
            form_urlencoded::byte_serialize(ONE_ON_ONE.as_bytes()).collect::<String>()
        ),
        Some(&megan),
        None,
    )
    .await;
    assert_eq!((s, ids(&b).len()), (200, 3), "{b}");
}

#[tokio::test]
async fn chat_errors_have_graphs_shape() {
    let e = start().await;
    let c = client(&e);
    let adele = user_token(&c, &e, ADELE, "Adele-Pass-1!").await;
    let admin_user = user_token(&c, &e, "admin@contoso.onmicrosoft.com", "Admin-Pass-1!").await;
    let app = app_token(&c, &e).await;
    let url = chat_messages_url(&e, ONE_ON_ONE);
    let hello = || Some(json!({"body": {"content": "hi"}}));
    let cases: Vec<Case> = vec![
        (
            "graph_error_chat_non_member",
            Method::POST,
            url.clone(),
            Some(&admin_user),
            hello(),
            403,
        ),
        (
            "graph_error_chat_non_member_read",
            Method::GET,
            url.clone(),
            Some(&admin_user),
            None,
            403,
        ),
        (
            "graph_error_chat_app_send",
            Method::POST,
            url.clone(),
            Some(&app),
            hello(),
            403,
        ),
        (
            "graph_error_chat_unknown",
            Method::POST,
            chat_messages_url(&e, "19:nope@thread.v2"),
            Some(&adele),
            hello(),
            404,
        ),
        (
            "graph_error_chat_top_too_large",
            Method::GET,
            format!("{url}?$top=51"),
            Some(&adele),
            None,
            400,
        ),
        (
            "graph_error_chat_top_not_a_number",
            Method::GET,
            format!("{url}?$top=two"),
            Some(&adele),
            None,
            400,
        ),
        (
            "graph_error_chat_bad_skiptoken",
            Method::GET,
            format!("{url}?$skiptoken=%%%"),
            Some(&adele),
            None,
            400,
        ),
        (
            "graph_error_chat_empty_content",
            Method::POST,
            url.clone(),
            Some(&adele),
            Some(json!({"body": {"content": " "}})),
            400,
        ),
        (
            "graph_error_chat_no_body",
            Method::POST,
            url.clone(),
            Some(&adele),
            Some(json!({"subject": "x"})),
            400,
        ),
        (
            "graph_error_chat_content_wrong_type",
            Method::POST,
            url.clone(),
            Some(&adele),
            Some(json!({"body": {"content": 1}})),
            400,
        ),
        (
            "graph_error_chat_bad_content_type",
            Method::POST,
            url.clone(),
            Some(&adele),
            Some(json!({"body": {"content": "x", "contentType": "markdown"}})),
            400,
        ),
        (
            "graph_error_chat_oversized",
            Method::POST,
            url.clone(),
            Some(&adele),
            Some(json!({"body": {"content": "x".repeat(30_000)}})),
            413,
        ),
        (
            "graph_error_chat_other_user_path",
            Method::GET,
            format!(
                "{}/v1.0/users/{MEGAN}/chats/{}/messages",
                e.https_uri(),
                form_urlencoded::byte_serialize(ONE_ON_ONE.as_bytes()).collect::<String>()
            ),
            Some(&adele),
            None,
            403,
        ),
    ];
    for (name, method, u, token, body, want) in cases {
        let (s, h, b) = call(&c, method, &u, token, body).await;
        insta::assert_json_snapshot!(name, graph_error(&e, s, &h, &b, want));
    }
    // None of that stored a message.
    let (s, _, b) = call(&c, Method::GET, &url, Some(&adele), None).await;
    assert_eq!((s, b["value"].clone()), (200, json!([])), "{b}");
}

#[tokio::test]
async fn meeting_chats_and_admin_chats_take_messages() {
    let e = start().await;
    let c = client(&e);
    let app = app_token(&c, &e).await;
    admin_ok(
        &e,
        Method::POST,
        "/_emulator/teams/applicationAccessPolicies",
        Some(json!({"identity": "P", "appIds": [TEAMS_PHONE]})),
    )
    .await;
    admin_ok(
        &e,
        Method::POST,
        "/_emulator/teams/applicationAccessPolicies/P/grant",
        Some(json!({"global": true})),
    )
    .await;
    let body = json!({"subject": "Review", "participants": {"attendees": [{"upn": MEGAN, "identity": {"user": {"id": "ef262982-0ab4-4084-ad7c-898958a8f730"}}}]}});
    let (s, _, m) = call(
        &c,
        Method::POST,
        &meetings_url(&e, ADELE),
        Some(&app),
        Some(body),
    )
    .await;
    assert_eq!(s, 201, "{m}");
    let thread = m["chatInfo"]["threadId"].as_str().expect("thread");
    let megan = user_token(&c, &e, MEGAN, "Megan-Pass-1!").await;
    let (s, _, b) = call(
        &c,
        Method::POST,
        &chat_messages_url(&e, thread),
        Some(&megan),
        Some(json!({"body": {"content": "<b>hi</b>", "contentType": "html"}})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["chatId"], thread);

    let created = admin_ok(
        &e,
        Method::POST,
        "/_emulator/teams/chats",
        Some(json!({"chatType": "group", "topic": "Ops", "members": [ADELE, "admin@contoso.onmicrosoft.com"]})),
    )
    .await;
    let id = created["id"].as_str().expect("id");
    let adele = user_token(&c, &e, ADELE, "Adele-Pass-1!").await;
    let (s, _, b) = call(
        &c,
        Method::POST,
        &chat_messages_url(&e, id),
        Some(&adele),
        Some(json!({"body": {"content": "hello ops"}})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, _, b) = call(
        &c,
        Method::POST,
        &chat_messages_url(&e, id),
        Some(&megan),
        Some(json!({"body": {"content": "me too"}})),
    )
    .await;
    assert_eq!(s, 403, "{b}");
}

#[tokio::test]
async fn admin_policy_errors() {
    let e = start().await;
    let p = "/_emulator/teams/applicationAccessPolicies";
    admin_ok(
        &e,
        Method::POST,
        p,
        Some(json!({"identity": "Test-policy", "appIds": [TEAMS_PHONE]})),
    )
    .await;
    let cases: Vec<(&str, Method, String, Option<Value>, u16)> = vec![
        (
            "teams_admin_error_duplicate",
            Method::POST,
            p.into(),
            Some(json!({"identity": "test-policy"})),
            409,
        ),
        (
            "teams_admin_error_bad_app_id",
            Method::POST,
            p.into(),
            Some(json!({"identity": "X", "appIds": ["not-a-guid"]})),
            400,
        ),
        (
            "teams_admin_error_no_identity",
            Method::POST,
            p.into(),
            Some(json!({"appIds": []})),
            400,
        ),
        (
            "teams_admin_error_bad_name",
            Method::POST,
            p.into(),
            Some(json!({"identity": "a/b"})),
            400,
        ),
        (
            "teams_admin_error_unknown_policy",
            Method::GET,
            format!("{p}/Nope"),
            None,
            404,
        ),
        (
            "teams_admin_error_grant_unknown_policy",
            Method::POST,
            format!("{p}/Nope/grant"),
            Some(json!({"global": true})),
            404,
        ),
        (
            "teams_admin_error_grant_unknown_user",
            Method::POST,
            format!("{p}/Test-policy/grant"),
            Some(json!({"userId": "nobody@contoso.onmicrosoft.com"})),
            404,
        ),
        (
            "teams_admin_error_grant_both",
            Method::POST,
            format!("{p}/Test-policy/grant"),
            Some(json!({"userId": ADELE, "global": true})),
            400,
        ),
        (
            "teams_admin_error_grant_neither",
            Method::POST,
            format!("{p}/Test-policy/grant"),
            Some(json!({})),
            400,
        ),
        (
            "teams_admin_error_unknown_tenant",
            Method::GET,
            format!("{p}?tenant=nowhere.example"),
            None,
            404,
        ),
        (
            "teams_admin_error_bad_settings",
            Method::PATCH,
            "/_emulator/teams/settings".into(),
            Some(json!({"accessPolicyError": "loud"})),
            400,
        ),
        (
            "teams_admin_error_chat_one_on_one_size",
            Method::POST,
            "/_emulator/teams/chats".into(),
            Some(json!({"chatType": "oneOnOne", "members": [ADELE]})),
            400,
        ),
    ];
    for (name, method, path, body, want) in cases {
        let (s, b) = admin(&e, method, &path, body).await;
        assert_eq!(s, want, "{name}: {b}");
        insta::assert_json_snapshot!(name, b);
    }
    let got = admin_ok(&e, Method::GET, &format!("{p}/Test-policy"), None).await;
    insta::assert_json_snapshot!("teams_admin_policy", got);
    let removed = admin_ok(&e, Method::DELETE, &format!("{p}/Tag:Test-policy"), None).await;
    assert_eq!(removed["removed"]["name"], "Test-policy");
    let (s, _) = admin(&e, Method::GET, &format!("{p}/Test-policy"), None).await;
    assert_eq!(s, 404);
}
