//! A loss-free Office 365 Management Activity API drainer.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::auth::TokenClient;
use crate::retry::Reply;
use crate::ClientError;

pub const SCOPE: &str = "https://manage.office.com/.default";
/// The longest window the API accepts.
pub const MAX_WINDOW: Duration = Duration::hours(24);

/// Drains content of one tenant: `feed_url` is `…/api/v1.0/{tenant}/activity/feed`.
pub struct Drainer<'a> {
    pub http: reqwest::Client,
    pub tokens: &'a TokenClient,
    pub feed_url: String,
    pub publisher: Option<String>,
    /// Content ids already fetched (a blob listed again is not fetched again). Keep them
    /// across polls (with the records' ids) to never deliver a record twice.
    pub seen_blobs: BTreeSet<String>,
    /// Record ids already delivered.
    pub seen_records: BTreeSet<String>,
}

/// What one drain produced.
#[derive(Debug, Default)]
pub struct Drained {
    /// New records, by `Id`, in the order first seen.
    pub records: Vec<Value>,
    pub pages: u32,
    pub blobs: u32,
    /// Records skipped because their `Id` was already delivered.
    pub duplicates: u32,
}

impl<'a> Drainer<'a> {
    pub fn new(http: reqwest::Client, tokens: &'a TokenClient, feed_url: &str) -> Drainer<'a> {
        Drainer {
            http,
            tokens,
            feed_url: feed_url.trim_end_matches('/').to_string(),
            publisher: None,
            seen_blobs: BTreeSet::new(),
            seen_records: BTreeSet::new(),
        }
    }

    /// GET `url`, or POST it (with `body` as JSON when given), with a bearer token.
    async fn call(
        &self,
        post: bool,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Reply, ClientError> {
        self.tokens
            .send_with_token(SCOPE, |token| {
                let req = match (post, body) {
                    (true, Some(b)) => self.http.post(url).json(b),
                    (true, None) => self.http.post(url),
                    (false, _) => self.http.get(url),
                };
                req.bearer_auth(token)
            })
            .await
    }

    fn fail(reply: &Reply) -> ClientError {
        reply.error("management")
    }

    fn with_publisher(&self, url: String) -> String {
        match &self.publisher {
            Some(p) => format!("{url}&PublisherIdentifier={p}"),
            None => url,
        }
    }

    /// Makes sure the subscription for `content_type` is enabled: `/start` answers 200, or
    /// AF20024 (already enabled) which is fine too.
    pub async fn ensure_subscription(&self, content_type: &str) -> Result<(), ClientError> {
        self.start(content_type, None).await
    }

    /// Starts the subscription for `content_type` with a webhook: the service first sends
    /// the validation request to `address` (which must answer 200), then notifications that
    /// carry `auth_id` in `Webhook-AuthID`. AF20024 (already enabled) is fine too.
    pub async fn start_with_webhook(
        &self,
        content_type: &str,
        address: &str,
        auth_id: &str,
    ) -> Result<(), ClientError> {
        let body = serde_json::json!({"webhook": {"address": address, "authId": auth_id}});
        self.start(content_type, Some(&body)).await
    }

    async fn start(&self, content_type: &str, body: Option<&Value>) -> Result<(), ClientError> {
        let url = self.with_publisher(format!(
            "{}/subscriptions/start?contentType={content_type}",
            self.feed_url
        ));
        let reply = self.call(true, &url, body).await?;
        if reply.status.is_success() || reply.error_code().as_deref() == Some("AF20024") {
            return Ok(());
        }
        Err(Self::fail(&reply))
    }

    /// Every new record of blobs created in `[start, end)`, in windows of at most 24 hours.
    /// AF20022 starts the subscription and retries once; AF20023 (disabled) is an error.
    pub async fn drain(
        &mut self,
        content_type: &str,
        start: OffsetDateTime,
        end: OffsetDateTime,
    ) -> Result<Drained, ClientError> {
        let mut out = Drained::default();
        let mut lo = start;
        while lo < end {
            let hi = (lo + MAX_WINDOW).min(end);
            self.drain_window(content_type, lo, hi, &mut out).await?;
            lo = hi;
        }
        Ok(out)
    }

    async fn drain_window(
        &mut self,
        content_type: &str,
        lo: OffsetDateTime,
        hi: OffsetDateTime,
        out: &mut Drained,
    ) -> Result<(), ClientError> {
        let fmt = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        let first = self
            .with_publisher(format!(
                "{}/subscriptions/content?contentType={content_type}&startTime={}&endTime={}",
                self.feed_url,
                fmt(lo),
                fmt(hi)
            ))
            .replace('+', "%2B");
        let mut next = Some(first);
        let mut started = false;
        while let Some(url) = next.take() {
            let reply = self.call(false, &url, None).await?;
            if reply.error_code().as_deref() == Some("AF20022") && !started {
                self.ensure_subscription(content_type).await?;
                started = true;
                next = Some(url);
                continue;
            }
            if !reply.status.is_success() {
                return Err(Self::fail(&reply));
            }
            out.pages += 1;
            next = reply.header("NextPageUri").map(str::to_string);
            let entries = reply
                .json()
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default();
            for entry in entries {
                let (Some(id), Some(uri)) =
                    (entry["contentId"].as_str(), entry["contentUri"].as_str())
                else {
                    continue;
                };
                let Some(records) = self.fetch_blob(id, uri).await? else {
                    continue;
                };
                out.blobs += 1;
                let before = records.len();
                let new = self.keep_new(records);
                out.duplicates += (before - new.len()) as u32;
                out.records.extend(new);
            }
        }
        Ok(())
    }

    /// The records of blob `content_id` at `uri`; `None` when it was fetched before, or is
    /// expired or unknown (AF20050/AF20051: a stale listing or notification).
    pub async fn fetch_blob(
        &mut self,
        content_id: &str,
        uri: &str,
    ) -> Result<Option<Vec<Value>>, ClientError> {
        if !self.seen_blobs.insert(content_id.to_string()) {
            return Ok(None);
        }
        let blob = self
            .call(false, &self.with_publisher_blob(uri), None)
            .await?;
        if !blob.status.is_success() {
            if matches!(blob.error_code().as_deref(), Some("AF20050" | "AF20051")) {
                return Ok(None);
            }
            return Err(Self::fail(&blob));
        }
        Ok(Some(
            blob.json()
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default(),
        ))
    }

    /// The records whose `Id` was not delivered before (and remembers them).
    pub fn keep_new(&mut self, records: Vec<Value>) -> Vec<Value> {
        records
            .into_iter()
            .filter(|r| {
                self.seen_records
                    .insert(r["Id"].as_str().unwrap_or_default().to_string())
            })
            .collect()
    }

    fn with_publisher_blob(&self, uri: &str) -> String {
        match &self.publisher {
            Some(p) if uri.contains('?') => format!("{uri}&PublisherIdentifier={p}"),
            Some(p) => format!("{uri}?PublisherIdentifier={p}"),
            None => uri.to_string(),
        }
    }
}

/// Records by id: a convenience for callers comparing drains.
pub fn by_id(records: &[Value]) -> BTreeMap<String, Value> {
    records
        .iter()
        .map(|r| (r["Id"].as_str().unwrap_or_default().to_string(), r.clone()))
        .collect()
}
