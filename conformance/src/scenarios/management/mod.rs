//! Office 365 Management Activity API: how the client collects the audit log.
//!
//! Content is made on the emulator's clock, which runs in real time here: the scenarios
//! shrink the blob interval and give new subscriptions backfill, so that hours of content
//! exist at once and lateness plays out in seconds.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use m365_reference_client::auth::{Credential, TokenClient};
use m365_reference_client::management::Drainer;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::{bounded_attempts, gaps, of_operation, time_of, waits_before_each_retry};
use crate::runner::{ClientRun, Cred, Ctx};
use crate::scenario;
use crate::scenario::{summarize, Check, Scenario};
use crate::target::TENANT;

mod webhook;
use webhook::{webhook_auth_id_checked, webhook_validated_and_collected};

const CT: &str = "Audit.General";

pub fn scenarios() -> Vec<Scenario> {
    vec![
        scenario!("MGMT-SUB-001", "management", "audit-sync", "Starts the subscription when there is none (AF20022)", "https://learn.microsoft.com/office/office-365-management-api/office-365-management-activity-api-reference#start-a-subscription", starts_missing_subscription, mutants: [("", "starts the missing subscription")]),
        scenario!("MGMT-SUB-002", "management", "audit-sync", "Treats AF20024 (already enabled) as success", "../shared/reference/management-activity.md §4.1", tolerates_already_enabled, mutants: [("--start-always", "after AF20024 the client goes on"), ("--start-always --raise", "the client completes the sync")]),
        scenario!("MGMT-SUB-003", "management", "audit-sync", "Reports AF20023 (subscription disabled) instead of an empty result", "https://learn.microsoft.com/office/office-365-management-api/office-365-management-activity-api-reference#errors", reports_disabled, mutants: [("", "instead of reporting an empty audit log")]),
        scenario!("MGMT-PAGE-001", "management", "audit-sync", "Follows NextPageUri to the last page", "https://learn.microsoft.com/office/office-365-management-api/office-365-management-activity-api-reference#pagination", follows_next_page_uri, mutants: [("--start-always", "NextPageUri names")]),
        scenario!("MGMT-WINDOW-001", "management", "audit-sync", "Lists content in windows of at most 24 hours", "https://learn.microsoft.com/office/office-365-management-api/office-365-management-activity-api-reference#list-available-content", windows_at_most_24_hours, mutants: [("--start-always", "at most 24 hours")]),
        scenario!("MGMT-BLOB-001", "management", "audit-sync", "Fetches each content blob once", "https://learn.microsoft.com/office/office-365-management-api/office-365-management-activity-api-reference#retrieving-content", blobs_fetched_once, mutants: [("--start-always --double-fetch", "fetched once")]),
        scenario!("MGMT-LATE-001", "management", "audit-sync", "Loses and repeats no record when blobs are late, out of order and duplicated", "https://learn.microsoft.com/office/office-365-management-api/office-365-management-activity-api-faq", late_out_of_order_duplicates, mutants: [("", "record")]),
        scenario!("MGMT-THROTTLE-001", "management", "audit-sync", "Honours Retry-After on AF429", "https://learn.microsoft.com/office/office-365-management-api/office-365-management-activity-api-reference#activity-api-throttling", honours_af429, mutants: [("--start-always", "Retry-After")]),
        scenario!("MGMT-RETRY-001", "management", "audit-sync", "Retries AF50000 with a bounded backoff", "https://learn.microsoft.com/office/office-365-management-api/office-365-management-activity-api-reference#errors", retries_af50000, mutants: [("--start-always", "retries the listing until it succeeds"), ("--start-always --hot-retry", "waits before each retry")]),
        scenario!("MGMT-RETRY-002", "management", "audit-sync", "Gives up cleanly when AF50000 persists", "https://learn.microsoft.com/office/office-365-management-api/office-365-management-activity-api-reference#errors", gives_up_on_persistent_af50000, mutants: [("--start-always", "reports AF50000"), ("--start-always --hot-retry --raise", "a bounded number of attempts")]),
        scenario!("MGMT-THROTTLE-002", "management", "audit-sync", "Backs off on AF429 sent as a 403 without Retry-After", "https://learn.microsoft.com/office/office-365-management-api/office-365-management-activity-api-reference#activity-api-throttling", backs_off_on_af429_403, mutants: [("--start-always", "backs off and retries"), ("--start-always --hot-retry", "waits before each retry")]),
        scenario!("MGMT-CURSOR-001", "management", "audit-sync", "Keeps its cursor on contentCreated, not on event times", "https://learn.microsoft.com/office/office-365-management-api/office-365-management-activity-api-reference#list-available-content", cursor_on_content_created, mutants: [("--start-always", "not at the newest event time")]),
        scenario!("MGMT-AUTH-001", "management", "audit-sync", "Gets a new token and retries after a 401 for an expired token", "https://learn.microsoft.com/entra/identity-platform/access-tokens#token-lifetime", recovers_from_expired_token, mutants: [("--start-always", "gets a new token and retries with it"), ("--start-always --hot-retry", "not in a loop")]),
        scenario!("MGMT-WEBHOOK-001", "management", "audit-webhook", "Answers the webhook validation with 200 and collects what notifications announce", "https://learn.microsoft.com/office/office-365-management-api/office-365-management-activity-api-reference#webhook-validation", webhook_validated_and_collected, mutants: [("--webhook-bad-validation", "answers the validation request with 200"), ("--webhook-bad-validation --raise", "runs to its end"), ("--webhook-accepted", "every notification is answered with 200"), ("--double-fetch", "fetched once")]),
        scenario!("MGMT-WEBHOOK-002", "management", "audit-webhook", "Acts only on notifications that carry its Webhook-AuthID", "https://learn.microsoft.com/office/office-365-management-api/office-365-management-activity-api-reference#receiving-notifications", webhook_auth_id_checked, mutants: [("", "is not acted on"), ("", "reported as rejected")]),
    ]
}

/// Blobs every 60 s, 3 records each, and `backfill` of history for a new subscription.
async fn content(ctx: &Ctx<'_>, backfill_hours: i64, extra: Value) -> Result<OffsetDateTime> {
    let mut knobs = json!({"blob_interval_seconds": 60, "records_per_blob": 3, "backfill_seconds": backfill_hours * 3600});
    if let (Some(k), Some(e)) = (knobs.as_object_mut(), extra.as_object()) {
        k.extend(e.clone());
    }
    ctx.target.management_settings(knobs).await?;
    Ok(OffsetDateTime::now_utc() - Duration::hours(backfill_hours) + Duration::minutes(1))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

async fn sync(ctx: &Ctx<'_>, since: OffsetDateTime) -> Result<ClientRun> {
    ctx.run_client(
        "audit-sync",
        Cred::Secret,
        &[
            ("M365_AUDIT_CONTENT_TYPES", CT.into()),
            ("M365_AUDIT_SINCE", rfc3339(since)),
        ],
    )
    .await
}

/// The rule every sync scenario applies to its client runs: each one exited 0.
fn sync_completes(runs: &[&ClientRun]) -> Check {
    let failed = runs.iter().find(|r| !r.succeeded());
    Check::new(
        "the client completes the sync",
        !runs.is_empty() && failed.is_none(),
        match failed {
            Some(r) => r.describe(),
            None if runs.len() == 1 => runs[0].describe(),
            None => format!("{} runs, all exit 0", runs.len()),
        },
    )
}

/// The reference client's token client for the collector (ground truth and setup).
fn tokens(ctx: &Ctx<'_>) -> Result<TokenClient> {
    let app = ctx.target.collector()?;
    let secret = app.client_secret.clone().unwrap_or_default();
    Ok(TokenClient::new(
        ctx.target.http.clone(),
        ctx.target.base(),
        TENANT,
        &app.client_id,
        Credential::Secret(secret),
    ))
}

fn feed_url(ctx: &Ctx<'_>) -> String {
    format!("{}/api/v1.0/{TENANT}/activity/feed", ctx.target.base())
}

async fn start_subscription(ctx: &Ctx<'_>) -> Result<()> {
    let t = tokens(ctx)?;
    Drainer::new(ctx.target.http.clone(), &t, &feed_url(ctx))
        .ensure_subscription(CT)
        .await?;
    Ok(())
}

/// Every record id of blobs created in `[since, until)`, drained by the reference client.
async fn ground_truth(
    ctx: &Ctx<'_>,
    since: OffsetDateTime,
    until: OffsetDateTime,
) -> Result<BTreeSet<String>> {
    let t = tokens(ctx)?;
    let mut d = Drainer::new(ctx.target.http.clone(), &t, &feed_url(ctx));
    let drained = d.drain(CT, since, until).await?;
    Ok(drained
        .records
        .iter()
        .filter_map(|r| r["Id"].as_str().map(str::to_string))
        .collect())
}

/// The completeness checks for one run: every record of blobs created from `since` until a
/// minute ago (drained by the reference client), each delivered once.
async fn collected_everything(
    ctx: &Ctx<'_>,
    since: OffsetDateTime,
    run: &ClientRun,
) -> Result<Vec<Check>> {
    let until = OffsetDateTime::now_utc() - Duration::minutes(1);
    let expected = ground_truth(ctx, since, until).await?;
    Ok(completeness(&expected, &run.records()))
}

/// Every expected record delivered, and none more than once.
fn completeness(expected: &BTreeSet<String>, delivered: &[String]) -> Vec<Check> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for id in delivered {
        *counts.entry(id).or_default() += 1;
    }
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| !counts.contains_key(id.as_str()))
        .collect();
    let repeated: Vec<&&str> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    vec![
        Check::new(
            "every available record is collected",
            !expected.is_empty() && missing.is_empty(),
            format!(
                "{} expected, {} collected, {} missing",
                expected.len(),
                counts.len(),
                missing.len()
            ),
        )
        .with_evidence(
            missing
                .iter()
                .take(5)
                .map(|id| format!("missing record {id}")),
        ),
        Check::new(
            "no record is delivered twice (de-duplicated by Id)",
            repeated.is_empty(),
            format!("{} records delivered more than once", repeated.len()),
        )
        .with_evidence(
            repeated
                .iter()
                .take(5)
                .map(|id| format!("repeated record {id}")),
        ),
    ]
}

fn entries<'j>(journal: &'j [Value], op: &str) -> Vec<&'j Value> {
    of_operation(journal, op)
}

fn ev(list: &[&Value], n: usize) -> Vec<String> {
    list.iter().take(n).map(|e| summarize(e)).collect()
}

async fn starts_missing_subscription(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    let since = content(ctx, 1, json!({})).await?;
    let run = sync(ctx, since).await?;
    let journal = ctx.journal().await?;
    let starts = entries(&journal, "management.subscriptions.start");
    let started = starts.iter().any(|e| e["status"] == 200);
    let mut checks = vec![
        sync_completes(&[&run]),
        Check::new(
            "the client starts the missing subscription",
            started,
            format!("{} /start calls", starts.len()),
        )
        .with_evidence(ev(&starts, 3)),
    ];
    checks.extend(collected_everything(ctx, since, &run).await?);
    Ok(checks)
}

async fn tolerates_already_enabled(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    let since = content(ctx, 1, json!({})).await?;
    start_subscription(ctx).await?;
    let run = sync(ctx, since).await?;
    let journal = ctx.journal().await?;
    let af20024: Vec<&Value> = entries(&journal, "management.subscriptions.start")
        .into_iter()
        .filter(|e| e["error_code"] == "AF20024")
        .collect();
    let lists = entries(&journal, "management.content.list");
    // After an AF20024 (if the client called /start at all) it must go on and list content.
    let went_on = match af20024.last() {
        Some(a) => lists.iter().any(|l| l["id"].as_u64() > a["id"].as_u64()),
        None => !lists.is_empty(),
    };
    let mut checks = vec![
        sync_completes(&[&run]),
        Check::new(
            "after AF20024 the client goes on to list content",
            went_on,
            format!(
                "{} AF20024 answers, {} listing calls",
                af20024.len(),
                lists.len()
            ),
        )
        .with_evidence(ev(&af20024, 2).into_iter().chain(ev(&lists, 1))),
    ];
    checks.extend(collected_everything(ctx, since, &run).await?);
    Ok(checks)
}

async fn reports_disabled(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    let since = content(ctx, 1, json!({})).await?;
    start_subscription(ctx).await?;
    ctx.target.disable_subscription(CT).await?;
    let run = sync(ctx, since).await?;
    let journal = ctx.journal().await?;
    let refused: Vec<&Value> = journal
        .iter()
        .filter(|e| e["error_code"] == "AF20023")
        .collect();
    let reported = run.reported_error().unwrap_or_default();
    Ok(vec![
        Check::new(
            "the client fails instead of reporting an empty audit log",
            !run.succeeded() && run.exit_code.is_some() && run.records().is_empty(),
            run.describe(),
        )
        .with_evidence(ev(&refused, 2)),
        Check::new(
            "the client names AF20023",
            reported.contains("AF20023"),
            format!("reported error {reported:?}"),
        ),
    ])
}

async fn follows_next_page_uri(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    let since = content(ctx, 2, json!({"page_size": 10})).await?;
    let run = sync(ctx, since).await?;
    let journal = ctx.journal().await?;
    let lists = entries(&journal, "management.content.list");
    let paged: Vec<&Value> = lists
        .iter()
        .copied()
        .filter(|e| {
            e["query"]
                .as_str()
                .is_some_and(|q| q.to_ascii_lowercase().contains("nextpage="))
        })
        .collect();
    let mut checks = vec![
        sync_completes(&[&run]),
        Check::new(
            "the client requests the pages NextPageUri names",
            paged.len() >= 11,
            format!(
                "{} listing calls, {} with nextPage (about 12 pages exist)",
                lists.len(),
                paged.len()
            ),
        )
        .with_evidence(ev(&paged, 3)),
    ];
    checks.extend(collected_everything(ctx, since, &run).await?);
    Ok(checks)
}

/// `startTime`/`endTime` of a listing call, when both are present and parse.
fn window_of(entry: &Value) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let q = entry["query"].as_str()?;
    let mut start = None;
    let mut end = None;
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=')?;
        let v = v
            .replace("%3A", ":")
            .replace("%3a", ":")
            .replace("%2B", "+")
            .replace("%2b", "+");
        let parse = |s: &str| {
            OffsetDateTime::parse(s, &Rfc3339)
                .ok()
                .or_else(|| OffsetDateTime::parse(&format!("{s}Z"), &Rfc3339).ok())
        };
        match k.to_ascii_lowercase().as_str() {
            "starttime" => start = parse(&v),
            "endtime" => end = parse(&v),
            _ => {}
        }
    }
    Some((start?, end?))
}

async fn windows_at_most_24_hours(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    let since = content(ctx, 30, json!({"blob_interval_seconds": 600})).await?;
    let run = sync(ctx, since).await?;
    let journal = ctx.journal().await?;
    let lists = entries(&journal, "management.content.list");
    let refused: Vec<&Value> = lists
        .iter()
        .copied()
        .filter(|e| matches!(e["error_code"].as_str(), Some("AF20055" | "AF20030")))
        .collect();
    let long: Vec<&Value> = lists
        .iter()
        .copied()
        .filter(|e| window_of(e).is_some_and(|(s, t)| t - s > Duration::hours(24)))
        .collect();
    let mut checks = vec![
        sync_completes(&[&run]),
        Check::new(
            "no window is refused (AF20055/AF20030)",
            refused.is_empty(),
            format!("{} refused", refused.len()),
        )
        .with_evidence(ev(&refused, 3)),
        Check::new(
            "every window spans at most 24 hours",
            long.is_empty() && !lists.is_empty(),
            format!("{} of {} listing calls over 24 h", long.len(), lists.len()),
        )
        .with_evidence(ev(&long, 3)),
    ];
    checks.extend(collected_everything(ctx, since, &run).await?);
    Ok(checks)
}

async fn blobs_fetched_once(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    let since = content(ctx, 1, json!({})).await?;
    let run = sync(ctx, since).await?;
    let journal = ctx.journal().await?;
    Ok(vec![
        sync_completes(&[&run]),
        fetched_once(&entries(&journal, "management.content.get")),
    ])
}

async fn late_out_of_order_duplicates(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    // Blobs every 2 s, a third of them 5 s late; events up to an hour older than their blob;
    // a quarter of the blobs repeat records of an earlier one. Four polls, 3 s apart.
    let since = content(ctx, 0, json!({"blob_interval_seconds": 2, "backfill_seconds": 30, "late_blob_percent": 34, "late_blob_delay_seconds": 5, "out_of_order_percent": 30, "out_of_order_max_seconds": 3600, "duplicate_percent": 25})).await?;
    let since = since - Duration::seconds(30) - Duration::minutes(1);
    start_subscription(ctx).await?;
    let mut delivered = Vec::new();
    let mut runs = Vec::new();
    let mut last_poll = OffsetDateTime::now_utc();
    for i in 0..4 {
        if i > 0 {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        }
        last_poll = OffsetDateTime::now_utc();
        let run = sync(ctx, since).await?;
        delivered.extend(run.records());
        runs.push(run);
    }
    let journal = ctx.journal().await?;
    let mut checks = vec![sync_completes(&runs.iter().collect::<Vec<_>>())];
    // Blobs visible at the last poll: created at least the late delay before it.
    let expected = ground_truth(ctx, since, last_poll - Duration::seconds(6)).await?;
    checks.extend(completeness(&expected, &delivered));
    let lists = entries(&journal, "management.content.list");
    checks[0].evidence.extend(ev(&lists, 2));
    Ok(checks)
}

/// One sync over an hour of content with `fault` in force: when the content starts, the
/// run, and the journal entries of `operation`.
async fn sync_under_fault(
    ctx: &Ctx<'_>,
    fault: Value,
    operation: &str,
) -> Result<(OffsetDateTime, ClientRun, Vec<Value>)> {
    let since = content(ctx, 1, json!({})).await?;
    ctx.target.add_fault(fault).await?;
    let run = sync(ctx, since).await?;
    let journal = ctx.journal().await?;
    let of_op = entries(&journal, operation).into_iter().cloned().collect();
    Ok((since, run, of_op))
}

async fn honours_af429(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    let body = json!({"error": {"code": "AF429", "message": "Too many requests. Method=GetBlob, PublisherId=00000000-0000-0000-0000-000000000000"}});
    let fault = json!({"match": {"operation": "management.content.get"}, "action": {"status": 429, "headers": {"Retry-After": "2"}, "body": body}, "schedule": {"first": 1}});
    let (since, run, gets) = sync_under_fault(ctx, fault, "management.content.get").await?;
    let gets: Vec<&Value> = gets.iter().collect();
    let mut checks = vec![sync_completes(&[&run])];
    match (gets.first(), gets.get(1)) {
        (Some(a), Some(b)) => {
            let waited = time_of(b) - time_of(a);
            checks.push(
                Check::new(
                    "no request before Retry-After (2 s) has passed",
                    waited >= 1.95,
                    format!("next blob request after {waited:.2} s"),
                )
                .with_evidence(ev(&gets, 2)),
            );
        }
        _ => checks.push(
            Check::new(
                "the client retries after AF429",
                false,
                format!("{} blob requests", gets.len()),
            )
            .with_evidence(ev(&gets, 2)),
        ),
    }
    checks.extend(collected_everything(ctx, since, &run).await?);
    Ok(checks)
}

async fn retries_af50000(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    let fault = json!({"match": {"operation": "management.content.list"}, "action": {"error": "AF50000"}, "schedule": {"first": 2}});
    let (since, run, lists) = sync_under_fault(ctx, fault, "management.content.list").await?;
    let lists: Vec<&Value> = lists.iter().collect();
    let errors: Vec<&Value> = lists
        .iter()
        .copied()
        .filter(|e| e["error_code"] == "AF50000")
        .collect();
    let recovered = lists.iter().any(|e| e["status"] == 200);
    let mut checks = vec![
        sync_completes(&[&run]),
        Check::new(
            "the client retries the listing until it succeeds",
            recovered,
            format!("{} listing calls, {} AF50000", lists.len(), errors.len()),
        )
        .with_evidence(ev(&lists, 3)),
        waits_before_each_retry(&gaps(&lists[..lists.len().min(3)]), ev(&lists, 3)),
    ];
    checks.extend(collected_everything(ctx, since, &run).await?);
    Ok(checks)
}

async fn gives_up_on_persistent_af50000(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    let since = content(ctx, 1, json!({})).await?;
    start_subscription(ctx).await?;
    ctx.target
        .add_fault(json!({"match": {"operation": "management.content.list"}, "action": {"error": "AF50000"}}))
        .await?;
    let run = sync(ctx, since).await?;
    let journal = ctx.journal().await?;
    let lists = entries(&journal, "management.content.list");
    let reported = run.reported_error().unwrap_or_default();
    Ok(vec![
        bounded_attempts(lists.len(), ev(&lists, 3)),
        Check::new(
            "the client fails (non-zero exit) and reports AF50000",
            !run.succeeded() && run.exit_code.is_some() && reported.contains("AF50000"),
            format!("{}; reported error {reported:?}", run.describe()),
        ),
    ])
}

/// The emulator's clock.
async fn emulator_now(ctx: &Ctx<'_>) -> Result<OffsetDateTime> {
    let c = ctx
        .target
        .admin(reqwest::Method::GET, "clock", None)
        .await?;
    let now = c["now"].as_str().unwrap_or_default();
    OffsetDateTime::parse(now, &Rfc3339)
        .map_err(|e| anyhow::anyhow!("the emulator clock {now:?}: {e}"))
}

async fn advance_clock(ctx: &Ctx<'_>, seconds: i64) -> Result<()> {
    ctx.target
        .admin(
            reqwest::Method::POST,
            "clock",
            Some(json!({"advance_seconds": seconds})),
        )
        .await
        .map(drop)
}

/// The newest journal entry's id (0 when empty): later entries are the client's.
async fn last_journal_id(ctx: &Ctx<'_>) -> Result<u64> {
    Ok(ctx
        .journal()
        .await?
        .last()
        .and_then(|e| e["id"].as_u64())
        .unwrap_or(0))
}

/// Waits (up to `limit`) for a journal entry after `after` that `wanted` accepts.
async fn wait_for_entry(
    ctx: &Ctx<'_>,
    after: u64,
    limit: std::time::Duration,
    wanted: impl Fn(&Value) -> bool,
) -> Result<Option<Value>> {
    let until = std::time::Instant::now() + limit;
    loop {
        let found = ctx
            .journal()
            .await?
            .into_iter()
            .find(|e| e["id"].as_u64() > Some(after) && wanted(e));
        if found.is_some() || std::time::Instant::now() >= until {
            return Ok(found);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// "Each blob is fetched once", over the blob GETs in `gets`.
fn fetched_once(gets: &[&Value]) -> Check {
    let mut per_blob: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for g in gets {
        per_blob
            .entry(g["path"].as_str().unwrap_or_default().replace("%24", "$"))
            .or_default()
            .push(g);
    }
    let again: Vec<&Value> = per_blob
        .values()
        .filter(|v| v.len() > 1)
        .flat_map(|v| v.iter().copied())
        .collect();
    Check::new(
        "each blob is fetched once",
        !gets.is_empty() && again.is_empty(),
        format!("{} fetches of {} blobs", gets.len(), per_blob.len()),
    )
    .with_evidence(ev(&again, 4))
}

async fn backs_off_on_af429_403(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    let fault = json!({"match": {"operation": "management.content.get"}, "action": {"error": "AF429"}, "schedule": {"first": 2}});
    let (since, run, gets) = sync_under_fault(ctx, fault, "management.content.get").await?;
    let gets: Vec<&Value> = gets.iter().collect();
    let throttled = gets.iter().filter(|e| e["status"] == 403).count();
    let waits = gaps(&gets[..gets.len().min(3)]);
    let mut checks = vec![
        sync_completes(&[&run]),
        Check::new(
            "the client backs off and retries the throttled blob",
            throttled == 2 && gets.get(2).is_some_and(|e| e["status"] == 200),
            format!("{} blob requests, {throttled} answered AF429", gets.len()),
        )
        .with_evidence(ev(&gets, 3)),
        waits_before_each_retry(&waits, ev(&gets, 3)),
    ];
    checks.extend(collected_everything(ctx, since, &run).await?);
    Ok(checks)
}

/// `startTime` of a listing call, to the second, as `YYYY-MM-DDTHH:MM:SS`.
fn start_second(entry: &Value) -> Option<String> {
    window_of(entry).map(|(s, _)| rfc3339(s.replace_nanosecond(0).unwrap_or(s))[..19].to_string())
}

async fn cursor_on_content_created(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    // Blobs every 2 s, some of them 4 s late; two polls 5 s apart. A cursor taken from the
    // newest event (CreationTime) of the first poll skips blobs created before that event but
    // listed only later (the XSOAR collector's bug, reference §9).
    let since = content(ctx, 0, json!({"blob_interval_seconds": 2, "backfill_seconds": 120, "late_blob_percent": 40, "late_blob_delay_seconds": 4})).await?;
    let since = since - Duration::seconds(120) - Duration::minutes(1);
    start_subscription(ctx).await?;
    let first = sync(ctx, since).await?;
    let between = last_journal_id(ctx).await?;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let last_poll = OffsetDateTime::now_utc();
    let second = sync(ctx, since).await?;
    let journal = ctx.journal().await?;
    let truth = {
        let t = tokens(ctx)?;
        let mut d = Drainer::new(ctx.target.http.clone(), &t, &feed_url(ctx));
        d.drain(CT, since, last_poll - Duration::seconds(5)).await?
    };
    // The newest event time the first poll delivered, to the second.
    let first_ids: BTreeSet<String> = first.records().into_iter().collect();
    let newest_event = truth
        .records
        .iter()
        .filter(|r| r["Id"].as_str().is_some_and(|id| first_ids.contains(id)))
        .filter_map(|r| r["CreationTime"].as_str())
        .map(|t| t.chars().take(19).collect::<String>())
        .max()
        .unwrap_or_default();
    let second_lists: Vec<&Value> = entries(&journal, "management.content.list")
        .into_iter()
        .filter(|e| e["id"].as_u64() > Some(between))
        .collect();
    let starts: Vec<String> = second_lists
        .iter()
        .filter_map(|e| start_second(e))
        .collect();
    let mut checks = vec![
        sync_completes(&[&first, &second]),
        Check::new(
            "the next poll starts from the previous window (contentCreated), not at the newest event time it delivered",
            !starts.is_empty() && !newest_event.is_empty() && !starts.contains(&newest_event),
            format!(
                "second poll startTimes {starts:?}; newest CreationTime of the first poll {newest_event:?}"
            ),
        )
        .with_evidence(ev(&second_lists, 2)),
    ];
    let expected: BTreeSet<String> = truth
        .records
        .iter()
        .filter_map(|r| r["Id"].as_str().map(str::to_string))
        .collect();
    let mut delivered = first.records();
    delivered.extend(second.records());
    checks.extend(completeness(&expected, &delivered));
    Ok(checks)
}

async fn recovers_from_expired_token(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    let since = content(ctx, 1, json!({})).await?;
    start_subscription(ctx).await?;
    let before = last_journal_id(ctx).await?;
    // The client's first call to the API is held for 1.5 s; meanwhile, as soon as the client
    // has its token, the emulator's clock jumps two hours: the token it holds has expired
    // (on the emulator's clock) when the call is checked.
    ctx.target
        .add_fault(json!({"match": {"service": "management"}, "action": {"delay_ms": 1500}, "schedule": {"first": 1}}))
        .await?;
    let started = OffsetDateTime::now_utc();
    let watch = async {
        let token = wait_for_entry(ctx, before, std::time::Duration::from_secs(20), |e| {
            e["operation"] == "entra.token" && e["status"] == 200
        })
        .await?;
        if token.is_some() {
            advance_clock(ctx, 7200).await?;
        }
        anyhow::Ok(token.is_some())
    };
    let (run, advanced) = tokio::join!(sync(ctx, since), watch);
    let (run, advanced) = (run?, advanced?);
    let journal = ctx.journal().await?;
    let mine: Vec<&Value> = journal
        .iter()
        .filter(|e| e["id"].as_u64() > Some(before) && e["service"] != "admin")
        .collect();
    let api: Vec<&Value> = mine
        .iter()
        .copied()
        .filter(|e| e["service"] == "management")
        .collect();
    let refused: Vec<&Value> = api.iter().copied().filter(|e| e["status"] == 401).collect();
    // After the first 401: a token request that succeeded, then an API call carrying it.
    let recovered = refused.first().is_some_and(|first| {
        let after = |e: &Value| e["id"].as_u64() > first["id"].as_u64();
        mine.iter()
            .filter(|e| after(e) && e["operation"] == "entra.token" && e["status"] == 200)
            .any(|t| {
                api.iter().any(|a| {
                    a["id"].as_u64() > t["id"].as_u64()
                        && a["status"] != 401
                        && !a["token_id"].is_null()
                        && a["token_id"] == t["token_id"]
                })
            })
    });
    let shown: Vec<&Value> = mine.iter().copied().take(6).collect();
    let mut checks = vec![
        sync_completes(&[&run]),
        Check::new(
            "after a 401 the client gets a new token and retries with it",
            advanced && !refused.is_empty() && recovered,
            format!(
                "clock moved: {advanced}; {} API calls answered 401",
                refused.len()
            ),
        )
        .with_evidence(ev(&shown, 6)),
        Check::new(
            "the 401 is retried with a new token once, not in a loop",
            refused.len() <= 2,
            format!("{} API calls answered 401", refused.len()),
        )
        .with_evidence(ev(&refused, 3)),
    ];
    let expected = ground_truth(ctx, since, started - Duration::minutes(1)).await?;
    let delivered = run.records();
    checks.extend(
        completeness(&expected, &delivered)
            .into_iter()
            .map(|mut c| {
                // Records newer than the client's start may or may not be in its window.
                c.detail
                    .push_str(" (blobs created before the client started)");
                c
            }),
    );
    Ok(checks)
}
