//! The Management Activity API's webhook: the client serves it behind the runner's TLS front
//! (crate::webhook), the scenario moves the emulator's clock once `/start` has succeeded, and
//! the checks read the journal and the service's notification history.

use std::collections::BTreeSet;

use anyhow::Result;
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use super::{
    advance_clock, completeness, content, emulator_now, entries, ev, feed_url, fetched_once,
    ground_truth, last_journal_id, tokens, wait_for_entry, CT,
};
use crate::runner::{ClientRun, Cred, Ctx};
use crate::scenario::Check;
use crate::scenarios::time_of;
use crate::target::TENANT;

/// The `authId` the webhook scenarios register.
const WEBHOOK_AUTH_ID: &str = "m365-conformance-webhook";

/// Runs the client's `audit-webhook` (listening for 5 s) behind a TLS front, and `driver`
/// alongside it once the client's `/start` has been answered (it gets that journal entry).
async fn with_webhook_client<'c, F, Fut, T>(
    ctx: &'c Ctx<'c>,
    driver: F,
) -> Result<Option<(ClientRun, Option<Value>, T, u64)>>
where
    F: FnOnce(Value, String) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
    T: Default,
{
    let Ok(tls) = ctx.target.loopback_tls() else {
        return Ok(None);
    };
    let front = crate::webhook::WebhookFront::start(tls).await?;
    let before = last_journal_id(ctx).await?;
    let vars = [
        ("M365_AUDIT_CONTENT_TYPES", CT.to_string()),
        ("M365_WEBHOOK_LISTEN", front.listen.clone()),
        ("M365_WEBHOOK_ADDRESS", front.address.clone()),
        ("M365_WEBHOOK_AUTH_ID", WEBHOOK_AUTH_ID.to_string()),
        ("M365_WEBHOOK_SECONDS", "5".to_string()),
    ];
    let client = ctx.run_client("audit-webhook", Cred::Secret, &vars);
    let address = front.address.clone();
    let drive = async {
        let start = wait_for_entry(ctx, before, std::time::Duration::from_secs(15), |e| {
            e["operation"] == "management.subscriptions.start"
        })
        .await?;
        let done = match &start {
            Some(s) if s["status"] == 200 => driver(s.clone(), address).await?,
            _ => T::default(),
        };
        anyhow::Ok((start, done))
    };
    let (run, driven) = tokio::join!(client, drive);
    let (start, done) = driven?;
    Ok(Some((run?, start, done, before)))
}

fn webhook_unavailable() -> Vec<Check> {
    vec![Check::skipped(
        "the runner serves the client's webhook over HTTPS",
        "needs the in-process emulator (its CA issues the webhook's certificate); not with --emulator",
    )]
}

/// The validation check, from the client's `/start` calls after `before`.
fn validation_answered(journal: &[Value], before: u64) -> Check {
    let starts: Vec<&Value> = entries(journal, "management.subscriptions.start")
        .into_iter()
        .filter(|e| e["id"].as_u64() > Some(before))
        .collect();
    let refused = starts.iter().any(|e| e["error_code"] == "AF20021");
    Check::new(
        "the client's webhook answers the validation request with 200 (its /start with the webhook succeeds)",
        !refused && starts.iter().any(|e| e["status"] == 200),
        format!("{} /start calls; AF20021 (validation failed): {refused}", starts.len()),
    )
    .with_evidence(ev(&starts, 3))
}

/// Records of blobs created from the subscription's `/start` (journal entry) until now on
/// the emulator's clock: what notifications announce.
async fn announced_truth(ctx: &Ctx<'_>, start: &Value) -> Result<BTreeSet<String>> {
    let enabled = OffsetDateTime::from_unix_timestamp_nanos((time_of(start) * 1e9) as i128)
        .unwrap_or_else(|_| OffsetDateTime::now_utc());
    let until = emulator_now(ctx).await? + Duration::seconds(1);
    ground_truth(ctx, enabled, until).await
}

/// `GET …/subscriptions/notifications`: what the service recorded of its notifications.
async fn notification_history(ctx: &Ctx<'_>) -> Result<Vec<Value>> {
    let token = tokens(ctx)?
        .token(m365_reference_client::management::SCOPE)
        .await?;
    let url = format!(
        "{}/subscriptions/notifications?contentType={CT}",
        feed_url(ctx)
    );
    let resp = ctx.target.http.get(url).bearer_auth(token).send().await?;
    Ok(resp
        .json::<Value>()
        .await?
        .as_array()
        .cloned()
        .unwrap_or_default())
}

pub(super) async fn webhook_validated_and_collected(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    // A blob a minute, some repeating records of an earlier one; ten minutes pass as soon as
    // the subscription is on, so ten blobs are announced at once.
    content(ctx, 0, json!({"duplicate_percent": 30})).await?;
    let driver = |_start: Value, _address: String| async {
        advance_clock(ctx, 600).await?;
        anyhow::Ok(())
    };
    let Some((run, start, (), before)) = with_webhook_client(ctx, driver).await? else {
        return Ok(webhook_unavailable());
    };
    let journal = ctx.journal().await?;
    let gets: Vec<&Value> = entries(&journal, "management.content.get")
        .into_iter()
        .filter(|e| e["id"].as_u64() > Some(before))
        .collect();
    let mut checks = vec![
        Check::new(
            "the client runs to its end (exit 0)",
            run.succeeded(),
            run.describe(),
        ),
        validation_answered(&journal, before),
    ];
    let Some(start) = start.filter(|s| s["status"] == 200) else {
        checks.push(Check::new(
            "every notification is answered with 200",
            false,
            "no subscription with the webhook: nothing was announced",
        ));
        checks.extend(completeness(&BTreeSet::new(), &run.records()));
        return Ok(checks);
    };
    let history = notification_history(ctx).await?;
    let failed: Vec<&Value> = history
        .iter()
        .filter(|n| n["notificationStatus"] != "success")
        .collect();
    checks.push(
        Check::new(
            "every notification is answered with 200",
            !history.is_empty() && failed.is_empty(),
            format!(
                "{} notifications sent, {} not answered 200",
                history.len(),
                failed.len()
            ),
        )
        .with_evidence(failed.iter().take(3).map(|n| format!("notification {n}"))),
    );
    checks.push(fetched_once(&gets));
    let expected = announced_truth(ctx, &start).await?;
    checks.extend(completeness(&expected, &run.records()));
    Ok(checks)
}

pub(super) async fn webhook_auth_id_checked(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    // Ten minutes of content from before the subscription (listed, never announced); once
    // the subscription is on, a forged notification without the subscription's authId names
    // one of those blobs, then five minutes pass and five real blobs are announced.
    content(ctx, 0, json!({"backfill_seconds": 600})).await?;
    let driver = |_start: Value, address: String| async move {
        let token = tokens(ctx)?
            .token(m365_reference_client::management::SCOPE)
            .await?;
        let listing: Value = ctx
            .target
            .http
            .get(format!(
                "{}/subscriptions/content?contentType={CT}",
                feed_url(ctx)
            ))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
        let Some(mut blob) = listing.as_array().and_then(|a| a.first()).cloned() else {
            anyhow::bail!("no backfilled blob to forge a notification for");
        };
        blob["tenantId"] = json!(TENANT);
        blob["clientId"] = json!(crate::target::COLLECTOR);
        let answer = ctx
            .target
            .http
            .post(&address)
            .header("Webhook-AuthID", "not-this-subscriptions-auth-id")
            .json(&json!([blob]))
            .send()
            .await
            .map(|r| r.status().as_u16());
        advance_clock(ctx, 300).await?;
        anyhow::Ok(Some((blob, format!("{answer:?}"))))
    };
    let Some((run, start, forged, before)) = with_webhook_client(ctx, driver).await? else {
        return Ok(webhook_unavailable());
    };
    let journal = ctx.journal().await?;
    let mut checks = vec![validation_answered(&journal, before)];
    let (Some(start), Some((blob, answer))) = (start.filter(|s| s["status"] == 200), forged) else {
        checks.push(Check::new(
            "a notification without the subscription's Webhook-AuthID is not acted on (its blob is not fetched)",
            false,
            "no subscription with the webhook: the forged notification was not sent",
        ));
        return Ok(checks);
    };
    let forged_id = blob["contentId"].as_str().unwrap_or_default().to_string();
    let fetched: Vec<&Value> = entries(&journal, "management.content.get")
        .into_iter()
        .filter(|e| {
            e["id"].as_u64() > Some(before)
                && e["path"].as_str().is_some_and(|p| p.contains(&forged_id))
        })
        .collect();
    checks.push(
        Check::new(
            "a notification without the subscription's Webhook-AuthID is not acted on (its blob is not fetched)",
            fetched.is_empty(),
            format!("forged notification for {forged_id} answered {answer}; its blob fetched {} times", fetched.len()),
        )
        .with_evidence(ev(&fetched, 2)),
    );
    let rejected = run
        .lines
        .iter()
        .any(|l| l["rejected"] == forged_id.as_str());
    checks.push(Check::new(
        "the untrusted notification is reported as rejected",
        rejected,
        format!(
            "{}; `rejected` lines: {}",
            run.describe(),
            run.lines
                .iter()
                .filter(|l| l.get("rejected").is_some())
                .count()
        ),
    ));
    let expected = announced_truth(ctx, &start).await?;
    checks.extend(completeness(&expected, &run.records()));
    Ok(checks)
}
