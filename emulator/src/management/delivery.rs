//! Webhook notifications (reference §5.2) and their history, `subscriptions/notifications`
//! (§4.6).
//!
//! A background task ([`run`], spawned by `Emulator::start`) ticks every [`TICK`] of real time
//! and reads the emulator's clock: for every enabled subscription with an active webhook, the
//! blobs whose `contentCreated` has been reached since the last tick (and since the
//! subscription's `/start`) are announced, up to [`MAX_BATCH`] per POST, as a JSON array of
//! `{tenantId, clientId, contentType, contentId, contentUri, contentCreated,
//! contentExpiration}`. `clientId` is the application that called `/start`; `contentUri` uses
//! the scheme and host that `/start` was called on. Blobs already past their retention are
//! skipped. A tick with no webhook registered only takes one lock.
//!
//! Choices where the reference is unconfirmed (README fidelity notes):
//! * Retries: a POST that does not answer HTTP 200 within five seconds (timeout, connection
//!   error, TLS error, any other status, a redirect) is retried with the same batch after 1, 2,
//!   4, 8 … minutes of emulator time ([`FIRST_RETRY`] doubled per failed attempt).
//! * After [`MAX_FAILURES`] (5) consecutive failed POSTs of a subscription (whatever the
//!   batch) the webhook becomes `disabled` and its pending retries are dropped; `/start` with
//!   the webhook re-enables it (and announces blobs from then on). Any 200 resets the count.
//! * An `expired` webhook gets nothing; `/stop` and `/_emulator/reset` stop deliveries (a
//!   POST in flight is not recorded), and a new `/start` resumes with blobs created from then
//!   on.
//! * The history lists every attempt, one element per blob and POST: `notificationStatus` is
//!   `success` or `failed` (the failure value is not documented). The window rules are those
//!   of `/subscriptions/content` but apply to `notificationSent`; the list is not paged (the
//!   history keeps the newest [`HISTORY_LIMIT`] attempts per subscription). AF20022 without
//!   a subscription, AF20023 when it is disabled, `[]` when it never had a webhook.
//!
//! Outgoing POSTs use the validation client (`webhook.rs`): only the emulator's CA and the
//! configured extra CA are trusted, no proxy, no redirects, a five-second timeout, and only
//! the registered address is called.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::Request;
use serde::Serialize;
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};
use tokio::sync::watch;
use uuid::Uuid;

use super::content::{decode_next_page, enabled_since, next_page_uri, window};
use super::errors::AfError;
use super::generator::{Feed, RETENTION};
use super::wire::{format_response_time, ContentEntry, ContentType, Webhook};
use super::{authorize, feed_config, knobs, ok_json, Call, OP_NOTIFICATIONS};
use crate::state::Core;

/// How often (real time) the delivery task looks at the emulator's clock.
pub const TICK: std::time::Duration = std::time::Duration::from_millis(200);
/// Most blobs announced in one POST.
pub const MAX_BATCH: usize = 100;
/// Most new blobs queued per subscription and tick (a clock jumped by weeks catches up over
/// several ticks).
pub const MAX_NEW_PER_TICK: i64 = 10 * MAX_BATCH as i64;
/// The wait before the first retry; it doubles with every failed attempt.
pub const FIRST_RETRY: Duration = Duration::minutes(1);
/// Consecutive failed POSTs after which a webhook is `disabled`.
pub const MAX_FAILURES: u32 = 5;
/// Attempts kept per subscription for `subscriptions/notifications`.
pub const HISTORY_LIMIT: usize = 10_000;

pub const STATUS_SUCCESS: &str = "success";
pub const STATUS_FAILED: &str = "failed";

/// Makes every arming unique, so that a POST finishing after `/stop`, `/start` or a reset
/// is not recorded against the new state.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// Who subscribed: the application (`clientId`) and the origin for `contentUri`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sender {
    pub origin: String,
    pub client_id: String,
}

#[derive(Debug, Clone)]
struct Batch {
    indices: Vec<i64>,
    /// Attempts made so far.
    attempts: u32,
    due: OffsetDateTime,
}

/// One delivery attempt of one blob, as `subscriptions/notifications` lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    #[serde(flatten)]
    pub content: ContentEntry,
    pub notification_sent: String,
    pub notification_status: &'static str,
    #[serde(skip)]
    pub sent: OffsetDateTime,
}

/// The delivery state of one subscription.
#[derive(Debug, Default)]
pub struct Delivery {
    armed: bool,
    generation: u64,
    sender: Sender,
    /// Blobs created at or after this are announced.
    from: Option<OffsetDateTime>,
    /// The next blob index to announce (computed on the first tick after arming).
    next: Option<i64>,
    pending: Vec<Batch>,
    /// Late blobs already passed by `next`, announced once visible.
    late: std::collections::BTreeSet<i64>,
    failures: u32,
    history: VecDeque<Attempt>,
}

impl Delivery {
    pub(crate) fn arm(&mut self, sender: Sender, now: OffsetDateTime) {
        self.armed = true;
        self.generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        self.sender = sender;
        self.from = Some(now);
        self.next = None;
        self.pending.clear();
        self.late.clear();
        self.failures = 0;
    }

    pub(crate) fn disarm(&mut self) {
        self.armed = false;
        self.generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        self.pending.clear();
        self.late.clear();
    }
}

/// The wait after the `attempts`-th failed attempt: 1, 2, 4, 8 … minutes.
pub fn backoff(attempts: u32) -> Duration {
    FIRST_RETRY * 2i32.pow(attempts.saturating_sub(1).min(20))
}

/// The content fields of blob `index`, with `contentUri` on `origin`.
pub fn content_entry(feed: &Feed, index: i64, origin: &str) -> ContentEntry {
    let id = feed.content_id(index);
    let created = feed.created_ms(index);
    ContentEntry {
        content_type: feed.content_type.as_str(),
        content_uri: format!("{origin}/api/v1.0/{}/activity/feed/audit/{id}", feed.tenant),
        content_id: id,
        content_created: format_response_time(created),
        content_expiration: format_response_time(created + RETENTION),
    }
}

struct Job {
    key: (Uuid, ContentType),
    generation: u64,
    hook: Webhook,
    sender: Sender,
    feed: Feed,
    batch: Batch,
}

/// The delivery task: ticks until shutdown.
pub async fn run(core: Arc<Core>, mut shutdown: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            _ = tick(&core) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One pass: queue newly available blobs, send what is due, record the outcomes.
pub async fn tick(core: &Core) {
    let now = core.clock.now();
    let hooks = core.management.active_webhooks(now);
    if hooks.is_empty() {
        return;
    }
    let cfg = feed_config(core);
    let mut jobs = Vec::new();
    {
        let mut deliveries = core.management.deliveries();
        for (tenant, ct, hook) in hooks {
            let Some(d) = deliveries.get_mut(&(tenant, ct)) else {
                continue;
            };
            if !d.armed {
                continue;
            }
            let feed = Feed::new(cfg, tenant, ct);
            let from = d.from.unwrap_or(now);
            let next = *d
                .next
                .get_or_insert_with(|| feed.first_index_at_or_after(from));
            // Content past its retention is never announced.
            let next = next.max(feed.first_index_at_or_after(now - RETENTION));
            let end = feed
                .first_index_at_or_after(now + Duration::nanoseconds(1))
                .min(next.saturating_add(MAX_NEW_PER_TICK));
            let mut indices: Vec<i64> = Vec::new();
            // Late blobs seen earlier that became visible (or expired meanwhile).
            let ready: Vec<i64> = d
                .late
                .iter()
                .copied()
                .filter(|&i| feed.visible_at(i) <= now)
                .collect();
            for i in ready {
                d.late.remove(&i);
                if feed.created_ms(i) + RETENTION >= now {
                    indices.push(i);
                }
            }
            for i in next..end.max(next) {
                if feed.visible_at(i) <= now {
                    indices.push(i);
                } else {
                    d.late.insert(i);
                }
            }
            if end > next {
                d.next = Some(end);
            }
            if !indices.is_empty() {
                for chunk in indices.chunks(MAX_BATCH) {
                    d.pending.push(Batch {
                        indices: chunk.to_vec(),
                        attempts: 0,
                        due: now,
                    });
                }
            }
            let (due, later): (Vec<Batch>, Vec<Batch>) =
                d.pending.drain(..).partition(|b| b.due <= now);
            d.pending = later;
            for batch in due {
                jobs.push(Job {
                    key: (tenant, ct),
                    generation: d.generation,
                    hook: hook.clone(),
                    sender: d.sender.clone(),
                    feed,
                    batch,
                });
            }
        }
    }
    if jobs.is_empty() {
        return;
    }
    let client = match super::webhook_client(core) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!("cannot notify webhooks: {e}");
            None
        }
    };
    let mut set = tokio::task::JoinSet::new();
    for job in jobs {
        let client = client.clone();
        let sent = core.clock.now();
        set.spawn(async move {
            let ok = match client {
                Some(c) => send(&c, &job).await,
                None => false,
            };
            (job, sent, ok)
        });
    }
    while let Some(done) = set.join_next().await {
        if let Ok((job, sent, ok)) = done {
            record(core, job, sent, ok);
        }
    }
}

/// The POST body: one element per blob, in the documented order.
fn body(job: &Job) -> Value {
    let items: Vec<Value> = job
        .batch
        .indices
        .iter()
        .map(|&i| {
            let e = content_entry(&job.feed, i, &job.sender.origin);
            json!({
                "tenantId": job.key.0.to_string(),
                "clientId": job.sender.client_id,
                "contentType": e.content_type,
                "contentId": e.content_id,
                "contentUri": e.content_uri,
                "contentCreated": e.content_created,
                "contentExpiration": e.content_expiration,
            })
        })
        .collect();
    Value::Array(items)
}

/// POSTs the batch; `true` only for HTTP 200.
async fn send(client: &reqwest::Client, job: &Job) -> bool {
    // The doc shows `application/json; utf-8`, an invalid media type that strict receivers
    // refuse; the validation POST's `charset=utf-8` is sent instead.
    let mut req = client
        .post(&job.hook.address)
        .header("Content-Type", "application/json; charset=utf-8")
        .body(body(job).to_string());
    if !job.hook.auth_id.is_empty() {
        req = req.header("Webhook-AuthID", &job.hook.auth_id);
    }
    match req.send().await {
        Ok(resp) if resp.status() == reqwest::StatusCode::OK => true,
        Ok(resp) => {
            tracing::debug!("webhook {} answered {}", job.hook.address, resp.status());
            false
        }
        Err(e) => {
            tracing::debug!("webhook {} failed: {e}", job.hook.address);
            false
        }
    }
}

fn record(core: &Core, job: Job, sent: OffsetDateTime, ok: bool) {
    let disable = {
        let mut deliveries = core.management.deliveries();
        let Some(d) = deliveries.get_mut(&job.key) else {
            return;
        };
        if d.generation != job.generation {
            return;
        }
        let status = if ok { STATUS_SUCCESS } else { STATUS_FAILED };
        for &i in &job.batch.indices {
            d.history.push_back(Attempt {
                content: content_entry(&job.feed, i, &job.sender.origin),
                notification_sent: format_response_time(sent),
                notification_status: status,
                sent,
            });
        }
        while d.history.len() > HISTORY_LIMIT {
            d.history.pop_front();
        }
        if ok {
            d.failures = 0;
            false
        } else {
            d.failures += 1;
            if d.failures >= MAX_FAILURES {
                d.pending.clear();
                true
            } else {
                let mut batch = job.batch;
                batch.attempts += 1;
                batch.due = sent + backoff(batch.attempts);
                d.pending.push(batch);
                false
            }
        }
    };
    if disable {
        tracing::info!(
            "webhook {} disabled after {MAX_FAILURES} failed notifications",
            job.hook.address
        );
        core.management.update(job.key.0, job.key.1, |sub| {
            if let Some(h) = sub.and_then(|s| s.webhook.as_mut()) {
                if h.same_properties(&job.hook) {
                    h.disabled = true;
                }
            }
        });
    }
}

/// `GET subscriptions/notifications`.
pub async fn list(State(core): State<Arc<Core>>, req: Request<Body>) -> Response {
    let (parts, _body) = req.into_parts();
    let call = match authorize(&core, &parts, OP_NOTIFICATIONS) {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    match history(&core, &call, parts.uri.path()) {
        Ok((body, next)) => {
            let mut resp = ok_json(&call, body);
            if let Some(v) = next.and_then(|u| http::HeaderValue::from_str(&u).ok()) {
                resp.headers_mut().insert("NextPageUri", v);
            }
            resp
        }
        Err(e) => call.fail(e),
    }
}

/// The page of attempts and, when truncated, the `NextPageUri` (same window, `nextPage`
/// = `{yyyyMMddHH of the next attempt}R{its position}`; AF20031 when it does not match).
fn history(core: &Core, call: &Call, path: &str) -> Result<(String, Option<String>), AfError> {
    let (raw_ct, ct) = call.content_type()?;
    enabled_since(core, call, ct)?;
    let k = knobs(core);
    let mut w = window(
        call.query.get("starttime"),
        call.query.get("endtime"),
        call.now,
        &k,
    )?;
    if call.query.get("starttime").is_none() {
        // The defaulted window includes now (with a frozen clock, attempts made at this very
        // instant are listed): it ends at the next millisecond, the precision `NextPageUri`
        // repeats it in, so later pages see the same attempts.
        let ns = call.now.nanosecond();
        let end = call.now + Duration::nanoseconds(i64::from(1_000_000 - ns % 1_000_000));
        if end - w.start > super::content::MAX_WINDOW {
            w.start = end - super::content::MAX_WINDOW;
            w.start_text = format_response_time(w.start);
        }
        w.end = end;
        w.end_text = format_response_time(end);
    }
    let inside = |t: OffsetDateTime| t >= w.start && t < w.end;
    let deliveries = core.management.deliveries();
    let items: Vec<&Attempt> = deliveries
        .get(&(call.tenant, ct))
        .map(|d| d.history.iter().filter(|a| inside(a.sent)).collect())
        .unwrap_or_default();
    let hour = |a: &Attempt| {
        let f = time::macros::format_description!("[year][month][day][hour]");
        a.sent.format(&f).unwrap_or_default()
    };
    let from = match call.query.get("nextpage") {
        None => 0,
        Some(token) => {
            let bad = || AfError::new("AF20031", &[token]);
            let (h, at) = decode_next_page(token).ok_or_else(bad)?;
            let at = usize::try_from(at).map_err(|_| bad())?;
            match items.get(at) {
                Some(a) if hour(a) == h => at,
                _ => return Err(bad()),
            }
        }
    };
    let to = items.len().min(from.saturating_add(k.page_size));
    let page = items.get(from..to).unwrap_or_default();
    let body = serde_json::to_string(page).unwrap_or_else(|_| "[]".into());
    let next = items
        .get(to)
        .map(|a| next_page_uri(call, path, raw_ct, &w, &format!("{}R{to:012}", hour(a))));
    Ok((body, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_minute() {
        let waits: Vec<i64> = (1..=5).map(|a| backoff(a).whole_minutes()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16]);
        assert!(backoff(u32::MAX) > Duration::days(100));
    }
}
