//! Microsoft Graph: online meetings under application access policies (the Teams Phone
//! Backend, app-only), and chat messages as a Teams user (the Teams Client, delegated by the
//! password grant).
//!
//! Policy propagation plays out on the emulator's virtual clock; Retry-After waits are real
//! time, so they are kept at one or two seconds.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, Result};
use m365_emulator::ready::{ReadyApplication, ReadyUser};
use m365_reference_client::auth::{Credential, TokenClient};
use m365_reference_client::graph::Graph;
use reqwest::Method;
use serde_json::{json, Value};

use super::{bounded_attempts, gaps, time_of, waits_before_each_retry};
use crate::runner::{ClientRun, Cred, Ctx};
use crate::scenario;
use crate::scenario::{summarize, Check, Scenario};
use crate::target::TENANT;

/// The Contoso Teams Phone Backend (app-only Graph meetings, with a secret).
const BACKEND: &str = "06336e1e-f137-4f2b-8f1d-05d79d2b72e2";
/// The Contoso Teams Client (public: Teams users sign in to it).
const TEAMS_CLIENT: &str = "81a839dc-b25b-4552-bb03-aa9fa33cc6a0";
const ADELE: &str = "adele@contoso.onmicrosoft.com";
const MEGAN: &str = "megan@contoso.onmicrosoft.com";
const POLICY: &str = "Conformance-meetings";
/// The real service: "changes … can take up to 30 minutes to take effect".
const PROPAGATION_SECONDS: u64 = 1800;

pub fn scenarios() -> Vec<Scenario> {
    vec![
        scenario!("GRAPH-MEETING-001", "graph", "graph-meeting", "Creates an online meeting for a user its application access policy covers", "https://learn.microsoft.com/graph/api/application-post-onlinemeetings", meeting_created, mutants: [("--graph-me", "one POST"), ("--graph-wrong-scope", "reports the meeting Graph created")]),
        scenario!("GRAPH-MEETING-002", "graph", "graph-meeting", "Uses createOrGet with an externalId: a second run finds the meeting instead of duplicating it", "https://learn.microsoft.com/graph/api/onlinemeeting-createorget", create_or_get, mutants: [("", "finds the same meeting"), ("", "createOrGet"), ("", "one meeting is created"), ("--graph-wrong-scope", "the first run creates")]),
        scenario!("GRAPH-POLICY-001", "graph", "graph-meeting", "Reports the 403 of a missing application access policy (Forbidden) without retrying it", "https://learn.microsoft.com/graph/cloud-communication-online-meeting-application-access-policy", missing_policy_reported, mutants: [("", "instead of reporting a meeting"), ("", "reports Forbidden"), ("--hot-retry --raise", "not retried")]),
        scenario!("GRAPH-POLICY-002", "graph", "graph-meeting", "Reports a granted policy that has not propagated yet, and succeeds in a later run once it has", "../shared/reference/acs-graph.md §4", policy_propagation, mutants: [("", "before the policy has propagated"), ("--hot-retry --raise", "not retried"), ("--graph-wrong-scope", "once the policy has propagated")]),
        scenario!("GRAPH-CHAT-001", "graph", "graph-chat", "Posts a chat message as a Teams user with a delegated token (password grant)", "https://learn.microsoft.com/graph/api/chat-post-messages", chat_message_sent, mutants: [("--chat-app-only", "delegated token of the Teams user"), ("--graph-wrong-scope", "reports the id Graph gave it")]),
        scenario!("GRAPH-PAGE-001", "graph", "graph-chat", "Follows @odata.nextLink through every page of chat messages", "https://learn.microsoft.com/graph/paging", follows_next_link, mutants: [("", "every message of the chat"), ("--rebuild-next-link", "as given"), ("--rebuild-next-link", "each page is requested once"), ("--rebuild-next-link", "no message is reported twice")]),
        scenario!("GRAPH-TOKEN-001", "graph", "graph-chat", "Uses a token for Graph (not the Management API's) and reuses it across calls", "https://learn.microsoft.com/entra/identity-platform/msal-acquire-cache-tokens", graph_token_reused, mutants: [("", "one token request serves"), ("--graph-wrong-scope", "a token for https://graph.microsoft.com"), ("--graph-wrong-scope", "posts and lists")]),
        scenario!("GRAPH-THROTTLE-001", "graph", "graph-meeting", "Honours Retry-After on a Graph 429", "https://learn.microsoft.com/graph/throttling", retry_after_honoured, mutants: [("", "Retry-After"), ("", "after being throttled")]),
        scenario!("GRAPH-THROTTLE-002", "graph", "graph-meeting", "Gives up after a bounded number of attempts when Graph keeps answering 429", "https://learn.microsoft.com/graph/throttling#best-practices-to-handle-throttling", gives_up_when_throttled, mutants: [("--hot-retry --raise", "a bounded number of attempts"), ("", "reports TooManyRequests")]),
        scenario!("GRAPH-RETRY-001", "graph", "graph-meeting", "Retries a Graph 503 and 504 with a backoff", "https://learn.microsoft.com/graph/errors", retries_server_errors, mutants: [("", "after a 503 and a 504"), ("--hot-retry", "waits before each retry")]),
        scenario!("GRAPH-RETRY-002", "graph", "graph-meeting", "Gives up cleanly when Graph keeps answering 503", "https://learn.microsoft.com/graph/errors", gives_up_on_server_errors, mutants: [("--hot-retry --raise", "a bounded number of attempts"), ("", "reports ServiceNotAvailable")]),
    ]
}

// ---- the world -------------------------------------------------------------------------------

fn application<'t>(ctx: &'t Ctx<'_>, client_id: &str) -> Result<&'t ReadyApplication> {
    ctx.target
        .tenant()?
        .applications
        .iter()
        .find(|a| a.client_id == client_id)
        .ok_or_else(|| anyhow!("the default world's application {client_id} is missing"))
}

fn user<'t>(ctx: &'t Ctx<'_>, upn: &str) -> Result<&'t ReadyUser> {
    ctx.target
        .tenant()?
        .users
        .iter()
        .find(|u| u.user_principal_name == upn)
        .ok_or_else(|| anyhow!("the default world's user {upn} is missing"))
}

fn graph_url(ctx: &Ctx<'_>) -> String {
    format!("{}/v1.0", ctx.target.base())
}

/// The reference library's token client for the backend (app-only; ground truth).
fn backend_tokens(ctx: &Ctx<'_>) -> Result<TokenClient> {
    let app = application(ctx, BACKEND)?;
    let secret = app
        .client_secret
        .clone()
        .ok_or_else(|| anyhow!("{BACKEND} has no secret"))?;
    Ok(TokenClient::new(
        ctx.target.http.clone(),
        ctx.target.base(),
        TENANT,
        BACKEND,
        Credential::Secret(secret),
    ))
}

/// The reference library's token client for a Teams user (setup and ground truth).
fn user_tokens(ctx: &Ctx<'_>, upn: &str) -> Result<TokenClient> {
    let u = user(ctx, upn)?;
    Ok(TokenClient::new(
        ctx.target.http.clone(),
        ctx.target.base(),
        TENANT,
        TEAMS_CLIENT,
        Credential::Password {
            username: upn.to_string(),
            password: u.password.clone(),
        },
    ))
}

// ---- setup -----------------------------------------------------------------------------------

/// `New-CsApplicationAccessPolicy` for the backend, then `Grant-…` to `upn`.
async fn grant_policy(ctx: &Ctx<'_>, upn: &str) -> Result<Value> {
    ctx.target
        .admin(
            Method::POST,
            &format!("teams/applicationAccessPolicies?tenant={TENANT}"),
            Some(
                json!({"identity": POLICY, "appIds": [BACKEND], "description": "m365-conformance"}),
            ),
        )
        .await?;
    ctx.target
        .admin(
            Method::POST,
            &format!("teams/applicationAccessPolicies/{POLICY}/grant?tenant={TENANT}"),
            Some(json!({"userId": upn})),
        )
        .await
}

/// A new group chat of Adele and Megan; its id.
async fn new_chat(ctx: &Ctx<'_>, topic: &str) -> Result<String> {
    let chat = ctx
        .target
        .admin(
            Method::POST,
            &format!("teams/chats?tenant={TENANT}"),
            Some(json!({"chatType": "group", "topic": topic, "members": [ADELE, MEGAN]})),
        )
        .await?;
    chat["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("the new chat has no id: {chat}"))
}

/// Megan posts `n` messages into `chat` (through the reference library); their ids. The
/// journal is cleared afterwards, so that it holds only what the client does.
async fn seed_messages(ctx: &Ctx<'_>, chat: &str, n: usize) -> Result<BTreeSet<String>> {
    let tokens = user_tokens(ctx, MEGAN)?;
    let graph = Graph::new(ctx.target.http.clone(), &tokens, &graph_url(ctx));
    let mut ids = BTreeSet::new();
    for i in 1..=n {
        let m = graph.send_message(chat, &format!("Message {i}")).await?;
        ids.insert(m["id"].as_str().unwrap_or_default().to_string());
    }
    ctx.target.admin(Method::DELETE, "journal", None).await?;
    Ok(ids)
}

// ---- client runs -----------------------------------------------------------------------------

/// `graph-meeting` as the backend, for Adele.
async fn meeting_run(ctx: &Ctx<'_>, external_id: Option<&str>) -> Result<ClientRun> {
    let backend = application(ctx, BACKEND)?;
    let adele = user(ctx, ADELE)?;
    let mut extra = vec![
        ("M365_GRAPH_USER_ID", adele.object_id.clone()),
        ("M365_GRAPH_MEETING_SUBJECT", "m365-conformance".to_string()),
    ];
    if let Some(x) = external_id {
        extra.push(("M365_GRAPH_MEETING_EXTERNAL_ID", x.to_string()));
    }
    ctx.run_client_as(backend, "graph-meeting", Cred::Secret, &extra)
        .await
}

/// `graph-chat` as a Teams user through the Teams Client.
async fn chat_run(ctx: &Ctx<'_>, upn: &str, chat: &str, send: Option<&str>) -> Result<ClientRun> {
    let client = application(ctx, TEAMS_CLIENT)?;
    let u = user(ctx, upn)?;
    let mut extra = vec![
        ("M365_GRAPH_CHAT_ID", chat.to_string()),
        ("AZURE_USERNAME", upn.to_string()),
        ("AZURE_PASSWORD", u.password.clone()),
    ];
    if let Some(text) = send {
        extra.push(("M365_GRAPH_CHAT_SEND", text.to_string()));
    }
    ctx.run_client_as(client, "graph-chat", Cred::Public, &extra)
        .await
}

// ---- evidence --------------------------------------------------------------------------------

fn graph_requests(journal: &[Value]) -> Vec<&Value> {
    journal.iter().filter(|e| e["service"] == "graph").collect()
}

/// Meeting creations (create and createOrGet; a faulted request carries the route's name).
fn meeting_posts(journal: &[Value]) -> Vec<&Value> {
    graph_requests(journal)
        .into_iter()
        .filter(|e| {
            e["method"] == "POST"
                && e["operation"]
                    .as_str()
                    .is_some_and(|o| o.starts_with("graph.onlineMeetings"))
        })
        .collect()
}

fn chat_requests<'j>(journal: &'j [Value], method: &str) -> Vec<&'j Value> {
    graph_requests(journal)
        .into_iter()
        .filter(|e| {
            e["method"] == method
                && e["operation"]
                    .as_str()
                    .is_some_and(|o| o.starts_with("graph.chats.messages"))
        })
        .collect()
}

fn tokens_of(journal: &[Value]) -> Vec<&Value> {
    journal
        .iter()
        .filter(|e| e["operation"] == "entra.token")
        .collect()
}

fn evidence(entries: &[&Value]) -> Vec<String> {
    entries.iter().take(8).map(|e| summarize(e)).collect()
}

/// The client's `{"meeting": …}` line.
fn meeting_line(run: &ClientRun) -> Option<&Value> {
    run.lines.iter().rev().find(|l| l["meeting"].is_string())
}

fn output_ids(run: &ClientRun, key: &str) -> Vec<String> {
    run.lines
        .iter()
        .filter_map(|l| match &l[key] {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect()
}

fn exited_nonzero(run: &ClientRun) -> bool {
    !run.succeeded() && run.exit_code.is_some()
}

/// Checks of a final error: a non-zero exit without a meeting, `code` reported, the answer
/// not retried (`posts` are the meeting requests it drew).
fn final_error_checks(run: &ClientRun, posts: &[&Value], code: &str, status: u16) -> Vec<Check> {
    let reported = run.reported_error().unwrap_or_default();
    vec![
        Check::new(
            "the client fails (non-zero exit) instead of reporting a meeting",
            exited_nonzero(run) && meeting_line(run).is_none(),
            run.describe(),
        ),
        Check::new(
            format!("the client reports {code}"),
            reported == code,
            format!("reported error {reported:?}"),
        ),
        Check::new(
            format!("the {status} is not retried"),
            posts.len() == 1,
            format!("{} meeting requests", posts.len()),
        )
        .with_evidence(evidence(posts)),
    ]
}

/// The meeting as Graph holds it (ground truth, through the reference library).
async fn meeting_as_stored(ctx: &Ctx<'_>, id: &str) -> Option<Value> {
    let tokens = backend_tokens(ctx).ok()?;
    let graph = Graph::new(ctx.target.http.clone(), &tokens, &graph_url(ctx));
    graph.get_meeting(ADELE, id).await.ok()
}

/// The client reported a meeting with `result`, and Graph holds it under that id and join URL.
async fn reported_meeting_check(ctx: &Ctx<'_>, rule: &str, run: &ClientRun, result: &str) -> Check {
    let Some(line) = meeting_line(run) else {
        return Check::new(rule, false, format!("no meeting line; {}", run.describe()));
    };
    let id = line["meeting"].as_str().unwrap_or_default();
    let stored = meeting_as_stored(ctx, id).await;
    let url_matches = stored
        .as_ref()
        .is_some_and(|m| m["joinWebUrl"] == line["joinWebUrl"]);
    Check::new(
        rule,
        run.succeeded() && line["result"] == result && url_matches,
        format!(
            "reported {line}; Graph {}",
            match &stored {
                Some(m) => format!("holds it (joinWebUrl {})", m["joinWebUrl"]),
                None => "has no such meeting for the organizer".into(),
            }
        ),
    )
}

// ---- meetings --------------------------------------------------------------------------------

async fn meeting_created(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    grant_policy(ctx, ADELE).await?;
    let run = meeting_run(ctx, None).await?;
    let journal = ctx.journal().await?;
    let posts = meeting_posts(&journal);
    let adele = user(ctx, ADELE)?;
    let for_organizer = |e: &&Value| {
        e["path"].as_str().is_some_and(|p| {
            let p = p.to_ascii_lowercase();
            p.ends_with(&format!("/users/{}/onlinemeetings", adele.object_id))
                || p.ends_with(&format!(
                    "/users/{}/onlinemeetings",
                    ADELE.replace('@', "%40")
                ))
                || p.ends_with(&format!("/users/{ADELE}/onlinemeetings"))
        })
    };
    let created: Vec<&Value> = posts
        .iter()
        .copied()
        .filter(|e| for_organizer(e) && e["status"] == 201)
        .collect();
    Ok(vec![
        reported_meeting_check(
            ctx,
            "the client reports the meeting Graph created (id, joinWebUrl, result created)",
            &run,
            "created",
        )
        .await,
        Check::new(
            "one POST …/users/{organizer}/onlineMeetings, answered 201",
            posts.len() == 1 && created.len() == 1,
            format!(
                "{} meeting requests, {} created for the organizer",
                posts.len(),
                created.len()
            ),
        )
        .with_evidence(evidence(&posts)),
    ])
}

async fn create_or_get(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    grant_policy(ctx, ADELE).await?;
    let external_id = uuid::Uuid::new_v4().to_string();
    let first = meeting_run(ctx, Some(&external_id)).await?;
    let second = meeting_run(ctx, Some(&external_id)).await?;
    let journal = ctx.journal().await?;
    let posts = meeting_posts(&journal);
    let not_create_or_get: Vec<&Value> = posts
        .iter()
        .copied()
        .filter(|e| {
            !e["path"].as_str().is_some_and(|p| {
                p.to_ascii_lowercase()
                    .ends_with("/onlinemeetings/createorget")
            })
        })
        .collect();
    let created = posts.iter().filter(|e| e["status"] == 201).count();
    let found = posts.iter().filter(|e| e["status"] == 200).count();
    let same = match (meeting_line(&first), meeting_line(&second)) {
        (Some(a), Some(b)) => a["meeting"] == b["meeting"] && b["result"] == "existing",
        _ => false,
    };
    Ok(vec![
        reported_meeting_check(
            ctx,
            "the first run creates the meeting (result created)",
            &first,
            "created",
        )
        .await,
        Check::new(
            "the second run finds the same meeting (same id, result existing)",
            second.succeeded() && same,
            format!(
                "first {:?}, second {:?}",
                meeting_line(&first).map(Value::to_string),
                meeting_line(&second).map(Value::to_string)
            ),
        ),
        Check::new(
            "every meeting request is a POST …/onlineMeetings/createOrGet",
            !posts.is_empty() && not_create_or_get.is_empty(),
            format!(
                "{} meeting requests, {} not createOrGet",
                posts.len(),
                not_create_or_get.len()
            ),
        )
        .with_evidence(evidence(&posts)),
        Check::new(
            "one meeting is created across both runs (201 once, then 200)",
            created == 1 && found >= 1,
            format!("{created} answered 201, {found} answered 200"),
        )
        .with_evidence(evidence(&posts)),
    ])
}

async fn missing_policy_reported(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    let run = meeting_run(ctx, None).await?;
    let journal = ctx.journal().await?;
    Ok(final_error_checks(
        &run,
        &meeting_posts(&journal),
        "Forbidden",
        403,
    ))
}

async fn policy_propagation(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    ctx.target
        .admin(
            Method::PATCH,
            "teams/settings",
            Some(json!({"policyPropagationSeconds": PROPAGATION_SECONDS})),
        )
        .await?;
    let granted = grant_policy(ctx, ADELE).await?;
    let early = meeting_run(ctx, None).await?;
    let before = ctx.journal().await?;
    let early_posts = meeting_posts(&before);
    ctx.target
        .admin(
            Method::POST,
            "clock",
            Some(json!({"advance_seconds": PROPAGATION_SECONDS})),
        )
        .await?;
    let later = meeting_run(ctx, None).await?;
    let after = ctx.journal().await?;
    let later_posts: Vec<&Value> = meeting_posts(&after)
        .into_iter()
        .filter(|e| e["id"].as_u64() > early_posts.last().and_then(|l| l["id"].as_u64()))
        .collect();
    let reported = early.reported_error().unwrap_or_default();
    let mut early_evidence = vec![format!(
        "policy granted, effective at {}",
        granted["effectiveAt"]
    )];
    early_evidence.extend(evidence(&early_posts));
    let mut later_evidence = vec![format!("clock advanced {PROPAGATION_SECONDS} s")];
    later_evidence.extend(evidence(&later_posts));
    Ok(vec![
        Check::new(
            "before the policy has propagated the client fails (non-zero exit) and reports Forbidden",
            exited_nonzero(&early) && meeting_line(&early).is_none() && reported == "Forbidden",
            format!("{}; reported error {reported:?}", early.describe()),
        )
        .with_evidence(early_evidence),
        Check::new(
            "the 403 is not retried",
            early_posts.len() == 1,
            format!("{} meeting requests before propagation", early_posts.len()),
        ),
        Check::new(
            "once the policy has propagated, a later run creates the meeting",
            later.succeeded()
                && meeting_line(&later).is_some_and(|l| l["result"] == "created")
                && later_posts.iter().any(|e| e["status"] == 201),
            later.describe(),
        )
        .with_evidence(later_evidence),
    ])
}

// ---- chat ------------------------------------------------------------------------------------

async fn chat_message_sent(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    let chat = new_chat(ctx, "Conformance chat").await?;
    let text = format!("m365-conformance {}", uuid::Uuid::new_v4());
    let run = chat_run(ctx, ADELE, &chat, Some(&text)).await?;
    let journal = ctx.journal().await?;
    let adele = user(ctx, ADELE)?;
    let sends = chat_requests(&journal, "POST");
    let tokens = tokens_of(&journal);
    let as_adele = sends.iter().any(|e| {
        e["status"] == 201
            && e["user"] == adele.object_id.as_str()
            && e["client_id"] == TEAMS_CLIENT
    });
    let user_token = tokens
        .iter()
        .any(|e| e["status"] == 200 && e["user"] == adele.object_id.as_str());
    // Ground truth: Megan reads the chat.
    let megan = user_tokens(ctx, MEGAN)?;
    let graph = Graph::new(ctx.target.http.clone(), &megan, &graph_url(ctx));
    let held: Vec<String> = graph
        .messages(&chat)
        .await?
        .iter()
        .filter(|m| m["body"]["content"] == text.as_str())
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect();
    let sent = output_ids(&run, "sent");
    let listed = output_ids(&run, "message");
    let mut ev = evidence(&tokens);
    ev.extend(evidence(&sends));
    Ok(vec![
        Check::new(
            "the client posts the text given, reports the id Graph gave it (`sent`) and lists it",
            run.succeeded()
                && held.len() == 1
                && sent == held
                && listed.iter().any(|m| held.contains(m)),
            format!(
                "reported sent {sent:?}; the chat holds the text under {held:?}; {}",
                run.describe()
            ),
        ),
        Check::new(
            "the message is sent with a delegated token of the Teams user (password grant, Teams Client)",
            as_adele && user_token,
            format!(
                "{} send requests, {} by Adele through the Teams Client; {} token requests, a user token: {user_token}",
                sends.len(),
                sends.iter().filter(|e| e["user"] == adele.object_id.as_str()).count(),
                tokens.len()
            ),
        )
        .with_evidence(ev),
    ])
}

/// The pairs of a query string, percent-decoded.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("https://q.invalid/?{query}"))
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// `$skiptoken` of a query (percent-decoded), or "" for the first page.
fn skiptoken(query: &str) -> String {
    query_pairs(query)
        .into_iter()
        .find(|(k, _)| k.trim_start_matches('$').eq_ignore_ascii_case("skiptoken"))
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// Path and query, percent-decoded, of a URL or journal entry, for comparison.
fn decoded(path: &str, query: &str) -> String {
    let query: Vec<String> = query_pairs(query)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "{}?{}",
        percent_decode(path).to_ascii_lowercase(),
        query.join("&")
    )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn entry_target(e: &Value) -> String {
    decoded(
        e["path"].as_str().unwrap_or_default(),
        e["query"].as_str().unwrap_or_default(),
    )
}

fn url_target(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => decoded(u.path(), u.query().unwrap_or_default()),
        Err(_) => url.to_string(),
    }
}

async fn follows_next_link(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    // 110 messages: at least three pages whatever page size (≤ 50) the client asks for.
    let chat = new_chat(ctx, "Conformance paging").await?;
    let expected = seed_messages(ctx, &chat, 110).await?;
    let run = chat_run(ctx, ADELE, &chat, None).await?;
    let journal = ctx.journal().await?;
    let lists = chat_requests(&journal, "GET");
    let reported = output_ids(&run, "message");
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for id in &reported {
        *counts.entry(id).or_default() += 1;
    }
    let missing = expected
        .iter()
        .filter(|id| !counts.contains_key(id.as_str()))
        .count();
    let repeated = counts.values().filter(|n| **n > 1).count();
    // The nextLinks Graph gives from the client's first request on (as Adele, ground truth).
    let mut next_links = BTreeSet::new();
    if let Some(first) = lists.first() {
        let tokens = user_tokens(ctx, ADELE)?;
        let graph = Graph::new(ctx.target.http.clone(), &tokens, &graph_url(ctx));
        let mut url = format!(
            "{}{}",
            ctx.target.base(),
            first["path"].as_str().unwrap_or_default()
        );
        if let Some(q) = first["query"].as_str() {
            url = format!("{url}?{q}");
        }
        if let Ok(pages) = graph.message_pages(&url).await {
            next_links.extend(
                pages
                    .iter()
                    .filter_map(|p| p.next_link.as_deref().map(url_target)),
            );
        }
    }
    let not_given: Vec<&Value> = lists
        .iter()
        .skip(1)
        .copied()
        .filter(|e| !next_links.contains(&entry_target(e)))
        .collect();
    let mut per_page: BTreeMap<String, usize> = BTreeMap::new();
    for e in &lists {
        let page = format!(
            "{}#{}",
            percent_decode(e["path"].as_str().unwrap_or_default()).to_ascii_lowercase(),
            skiptoken(e["query"].as_str().unwrap_or_default())
        );
        *per_page.entry(page).or_default() += 1;
    }
    let again = per_page.values().filter(|n| **n > 1).count();
    Ok(vec![
        Check::new(
            "every message of the chat is collected, to the last page",
            run.succeeded() && missing == 0,
            format!(
                "{} messages in the chat, {} distinct reported, {missing} missing; {}",
                expected.len(),
                counts.len(),
                run.describe()
            ),
        ),
        Check::new(
            "no message is reported twice",
            repeated == 0,
            format!("{repeated} messages reported more than once"),
        ),
        Check::new(
            "each page after the first is requested by the @odata.nextLink of the page before, as given",
            lists.len() > 1 && not_given.is_empty(),
            format!(
                "{} list requests, {} not a nextLink Graph gave",
                lists.len(),
                not_given.len()
            ),
        )
        .with_evidence(evidence(&not_given).into_iter().chain(evidence(&lists).into_iter().take(3))),
        Check::new(
            "each page is requested once (no $skiptoken, or the same one, twice)",
            !lists.is_empty() && again == 0,
            format!("{} list requests, {} pages requested more than once", lists.len(), again),
        )
        .with_evidence(evidence(&lists)),
    ])
}

async fn graph_token_reused(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    // 25 messages: one page or two, depending on the page size, plus the send.
    let chat = new_chat(ctx, "Conformance tokens").await?;
    let expected = seed_messages(ctx, &chat, 25).await?;
    let run = chat_run(ctx, ADELE, &chat, Some("m365-conformance token reuse")).await?;
    let journal = ctx.journal().await?;
    let graph = graph_requests(&journal);
    let tokens = tokens_of(&journal);
    let refused: Vec<&Value> = graph
        .iter()
        .copied()
        .filter(|e| e["status"] == 401)
        .collect();
    let presented: BTreeSet<&str> = graph
        .iter()
        .filter_map(|e| e["token_id"].as_str())
        .collect();
    let listed = output_ids(&run, "message");
    Ok(vec![
        Check::new(
            "the client posts and lists the chat (every message)",
            run.succeeded()
                && output_ids(&run, "sent").len() == 1
                && expected.iter().all(|id| listed.contains(id)),
            run.describe(),
        ),
        Check::new(
            "every Graph request carries a token for https://graph.microsoft.com (none refused with 401)",
            !graph.is_empty() && refused.is_empty(),
            format!("{} Graph requests, {} refused", graph.len(), refused.len()),
        )
        .with_evidence(evidence(&refused).into_iter().chain(evidence(&tokens))),
        Check::new(
            "one token request serves every Graph call (cached and reused)",
            graph.len() >= 2 && tokens.len() == 1 && presented.len() == 1,
            format!(
                "{} Graph requests with {} distinct tokens; {} token requests",
                graph.len(),
                presented.len(),
                tokens.len()
            ),
        )
        .with_evidence(evidence(&tokens)),
    ])
}

// ---- throttling and server errors ------------------------------------------------------------

async fn meeting_fault(ctx: &Ctx<'_>, rules: Value) -> Result<()> {
    grant_policy(ctx, ADELE).await?;
    ctx.target.add_fault(rules).await
}

fn throttle(schedule: Value) -> Value {
    json!({"match": {"operation": "graph.onlineMeetings", "method": "POST"},
           "action": {"error": "graph.TooManyRequests", "headers": {"Retry-After": "1"}},
           "schedule": schedule})
}

/// Gaps after each 429 are at least Retry-After (1 s).
fn retry_after_check(posts: &[&Value]) -> Check {
    let waits: Vec<f64> = posts
        .windows(2)
        .filter(|w| w[0]["status"] == 429)
        .map(|w| time_of(w[1]) - time_of(w[0]))
        .collect();
    Check::new(
        "no request before Retry-After (1 s) has passed",
        posts.len() >= 2 && waits.iter().all(|w| *w >= 0.95),
        format!("waits after a 429: {waits:.2?} s"),
    )
    .with_evidence(evidence(posts))
}

async fn retry_after_honoured(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    meeting_fault(ctx, throttle(json!({"first": 2}))).await?;
    let run = meeting_run(ctx, None).await?;
    let journal = ctx.journal().await?;
    let posts = meeting_posts(&journal);
    Ok(vec![
        Check::new(
            "the client creates the meeting after being throttled twice",
            run.succeeded()
                && meeting_line(&run).is_some()
                && posts.last().is_some_and(|e| e["status"] == 201),
            run.describe(),
        )
        .with_evidence(evidence(&posts)),
        retry_after_check(&posts),
    ])
}

/// A bounded number of attempts, then a non-zero exit reporting `code`.
fn gave_up_checks(run: &ClientRun, posts: &[&Value], code: &str) -> Vec<Check> {
    let reported = run.reported_error().unwrap_or_default();
    vec![
        bounded_attempts(posts.len(), evidence(posts)),
        Check::new(
            format!("the client fails (non-zero exit) and reports {code}"),
            exited_nonzero(run) && meeting_line(run).is_none() && reported == code,
            format!("{}; reported error {reported:?}", run.describe()),
        ),
    ]
}

async fn gives_up_when_throttled(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    meeting_fault(ctx, throttle(json!({"always": true}))).await?;
    let run = meeting_run(ctx, None).await?;
    let journal = ctx.journal().await?;
    let posts = meeting_posts(&journal);
    let mut checks = gave_up_checks(&run, &posts, "TooManyRequests");
    checks.push(retry_after_check(&posts));
    Ok(checks)
}

fn unavailable(schedule: Value) -> Value {
    json!({"match": {"operation": "graph.onlineMeetings", "method": "POST"},
           "action": {"error": "graph.ServiceUnavailable"}, "schedule": schedule})
}

async fn retries_server_errors(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    let gateway_timeout = json!({"match": {"operation": "graph.onlineMeetings", "method": "POST"},
        "action": {"status": 504, "body": {"error": {"code": "GatewayTimeout", "message": "The gateway did not receive a response in time."}}},
        "schedule": {"first": 1}});
    // Rules are tried in order: the first request gets the 503, the second the 504.
    meeting_fault(
        ctx,
        json!([unavailable(json!({"first": 1})), gateway_timeout]),
    )
    .await?;
    let run = meeting_run(ctx, None).await?;
    let journal = ctx.journal().await?;
    let posts = meeting_posts(&journal);
    let waits = gaps(&posts);
    Ok(vec![
        Check::new(
            "the client creates the meeting after a 503 and a 504",
            run.succeeded()
                && meeting_line(&run).is_some()
                && posts.last().is_some_and(|e| e["status"] == 201),
            run.describe(),
        )
        .with_evidence(evidence(&posts)),
        waits_before_each_retry(&waits, evidence(&posts)),
    ])
}

async fn gives_up_on_server_errors(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    meeting_fault(ctx, unavailable(json!({"always": true}))).await?;
    let run = meeting_run(ctx, None).await?;
    let journal = ctx.journal().await?;
    Ok(gave_up_checks(
        &run,
        &meeting_posts(&journal),
        "ServiceNotAvailable",
    ))
}
