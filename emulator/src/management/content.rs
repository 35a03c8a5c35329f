//! `subscriptions/content` (listing with `NextPageUri` paging) and `audit/{contentId}` (blobs).
//!
//! The window filters on `contentCreated`: `startTime <= contentCreated < endTime`. Both or
//! neither; at most 24 hours apart; start before end; start no more than 7 days + 1 hour in
//! the past; a future end is fine — otherwise 400 AF20055 (AF20030 with the
//! `window_error_code` knob; longer windows get a partial 200 with `accept_long_windows`).
//! Without times the window is the 24 hours before the request (the reference page's "last 24
//! hours"), or since midnight UTC with `default_window = "utc_day"` (the troubleshooting
//! page). Listed are the blobs that are available now (created, and for a late blob its delay
//! passed), were created since the subscription was (re-)enabled (minus `backfill_seconds`),
//! and have not expired, oldest first.
//!
//! A truncated page carries `NextPageUri`: the same path, `contentType`, the same window (as
//! the client wrote it, or the defaulted one), `PublisherIdentifier` when given, and an
//! opaque `nextPage` (`{yyyyMMddHH}R{blob index}`, the hour of that blob's creation as in the
//! documented sample `2015101900R022885001761`). A `nextPage` that does not decode, or names
//! a blob outside the window → AF20031.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Request};
use time::{Duration, OffsetDateTime};

use super::dates::parse_request_time;
use super::errors::AfError;
use super::generator::{Feed, RETENTION};
use super::knobs::Knobs;
use super::store::Status;
use super::wire::{format_response_time, ContentEntry, ContentType};
use super::{authorize, knobs, ok_json, Call, OP_BLOB, OP_CONTENT};
use crate::state::Core;
use crate::world::DefaultWindow;

/// The longest window `/subscriptions/content` accepts.
pub const MAX_WINDOW: Duration = Duration::hours(24);
/// How far back `startTime` may reach: 7 days, plus the hour of slack clients measured.
pub const MAX_LOOKBACK: Duration = Duration::hours(7 * 24 + 1);

/// A validated listing window, with the texts `NextPageUri` repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub start: OffsetDateTime,
    /// Where listing stops: the requested end, or 24 hours after the start for a longer
    /// window accepted with `accept_long_windows` (the documented "partial" result).
    pub end: OffsetDateTime,
    pub start_text: String,
    pub end_text: String,
}

/// Validates `startTime`/`endTime` at `now`: AF20002 for an unparsable value, the configured
/// window error (AF20055 by default) for a window the service refuses.
pub fn window(
    start: Option<&str>,
    end: Option<&str>,
    now: OffsetDateTime,
    knobs: &Knobs,
) -> Result<Window, AfError> {
    let parse = |name: &str, text: &str| {
        parse_request_time(text).ok_or_else(|| AfError::new("AF20002", &[name, "datetime"]))
    };
    let refused = || AfError::new(knobs.window_error_code, &[]);
    match (start, end) {
        (None, None) => {
            let start = match knobs.default_window {
                DefaultWindow::Last24Hours => now - MAX_WINDOW,
                DefaultWindow::UtcDay => now.replace_time(time::Time::MIDNIGHT),
            };
            Ok(Window {
                start,
                end: now,
                start_text: format_response_time(start),
                end_text: format_response_time(now),
            })
        }
        (Some(s), Some(e)) => {
            let (start, end) = (parse("startTime", s)?, parse("endTime", e)?);
            let too_long = end - start > MAX_WINDOW;
            if start >= end
                || (too_long && !knobs.accept_long_windows)
                || start < now - MAX_LOOKBACK
            {
                return Err(refused());
            }
            Ok(Window {
                start,
                end: end.min(start + MAX_WINDOW),
                start_text: s.to_string(),
                end_text: e.to_string(),
            })
        }
        (Some(s), None) => {
            parse("startTime", s)?;
            Err(refused())
        }
        (None, Some(e)) => {
            parse("endTime", e)?;
            Err(refused())
        }
    }
}

/// `{yyyyMMddHH}R{index}`: the `nextPage` token for a page starting at blob `index`.
pub fn encode_next_page(feed: &Feed, index: i64) -> String {
    let f = time::macros::format_description!("[year][month][day][hour]");
    let hour = feed.created(index).format(&f).unwrap_or_default();
    format!("{hour}R{index:012}")
}

/// Splits a `nextPage` token into its hour prefix and blob index; `None` when it does not
/// have the shape (never panics, whatever the input).
pub fn decode_next_page(token: &str) -> Option<(&str, i64)> {
    let (hour, index) = token.split_once('R')?;
    if hour.len() != 10 || !hour.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if index.is_empty() || index.len() > 18 || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((hour, index.parse().ok()?))
}

/// The subscription for `ct` must exist (AF20022) and be enabled (AF20023); returns since
/// when it is enabled (without backfill).
pub(super) fn enabled_since(
    core: &Core,
    call: &Call,
    ct: ContentType,
) -> Result<OffsetDateTime, AfError> {
    match core.management.get(call.tenant, ct) {
        None => Err(AfError::new("AF20022", &[])),
        Some(s) if s.status == Status::Disabled => Err(AfError::new("AF20023", &[])),
        Some(s) => Ok(s.enabled_since),
    }
}

/// The oldest content a subscription sees: from its start, or earlier with backfill.
pub(super) fn content_since(
    core: &Core,
    call: &Call,
    ct: ContentType,
    k: &Knobs,
) -> Result<OffsetDateTime, AfError> {
    Ok(enabled_since(core, call, ct)? - k.backfill)
}

pub async fn list(State(core): State<Arc<Core>>, req: Request<Body>) -> Response {
    let (parts, _body) = req.into_parts();
    let call = match authorize(&core, &parts, OP_CONTENT) {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    match list_page(&core, &call, parts.uri.path()) {
        Ok(resp) => resp,
        Err(e) => call.fail(e),
    }
}

fn list_page(core: &Core, call: &Call, path: &str) -> Result<Response, AfError> {
    let (raw_ct, ct) = call.content_type()?;
    let k = knobs(core);
    let since = content_since(core, call, ct, &k)?;
    let now = call.now;
    let w = window(
        call.query.get("starttime"),
        call.query.get("endtime"),
        now,
        &k,
    )?;
    let feed = Feed::new(k.feed, call.tenant, ct);
    let (window_first, window_end) = (
        feed.first_index_at_or_after(w.start),
        feed.first_index_at_or_after(w.end),
    );
    let resume = match call.query.get("nextpage") {
        None => None,
        Some(token) => {
            let bad = || AfError::new("AF20031", &[token]);
            let (hour, index) = decode_next_page(token).ok_or_else(bad)?;
            if index < window_first || index > window_end {
                return Err(bad());
            }
            if encode_next_page(&feed, index).split_once('R').map(|p| p.0) != Some(hour) {
                return Err(bad());
            }
            Some(index)
        }
    };
    // Blobs that exist now, since the subscription, not yet expired, inside the window.
    let lo = [w.start, since, now - RETENTION]
        .into_iter()
        .max()
        .unwrap_or(w.start);
    let hi = w.end.min(now + Duration::nanoseconds(1));
    let (first, end) = if hi > lo {
        (
            feed.first_index_at_or_after(lo),
            feed.first_index_at_or_after(hi),
        )
    } else {
        (0, 0)
    };
    let from = first.max(resume.unwrap_or(first));
    let to = end.min(from.saturating_add(k.page_size as i64));
    let tenant = call.tenant;
    // A late blob is listed once it is visible, under its (earlier) creation time.
    let entries: Vec<ContentEntry> = (from..to.max(from))
        .filter(|&i| feed.visible_at(i) <= now)
        .map(|i| {
            let id = feed.content_id(i);
            let created = feed.created_ms(i);
            ContentEntry {
                content_type: ct.as_str(),
                content_uri: format!("{}/api/v1.0/{tenant}/activity/feed/audit/{id}", call.origin),
                content_id: id,
                content_created: format_response_time(created),
                content_expiration: format_response_time(created + RETENTION),
            }
        })
        .collect();
    let body = serde_json::to_string(&entries).unwrap_or_else(|_| "[]".into());
    let mut resp = ok_json(call, body);
    if to < end {
        let uri = next_page_uri(call, path, raw_ct, &w, &encode_next_page(&feed, to));
        if let Ok(v) = HeaderValue::from_str(&uri) {
            resp.headers_mut().insert("NextPageUri", v);
        }
    }
    Ok(resp)
}

/// The `NextPageUri` of a truncated page: the same path, `contentType` and window (as the
/// client wrote it, or the defaulted one), `PublisherIdentifier` when given, and `nextPage`.
pub fn next_page_uri(call: &Call, path: &str, raw_ct: &str, w: &Window, next_page: &str) -> String {
    let mut uri = format!(
        "{}{}?contentType={}&startTime={}&endTime={}",
        call.origin,
        path,
        encode_query_value(raw_ct),
        encode_query_value(&w.start_text),
        encode_query_value(&w.end_text)
    );
    if let Some(p) = call.publisher {
        uri.push_str(&format!("&PublisherIdentifier={p}"));
    }
    uri.push_str(&format!("&nextPage={next_page}"));
    uri
}

/// Percent-encodes a query value, keeping `:` readable (`2015-10-01T00:00:00`).
pub fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub async fn blob(State(core): State<Arc<Core>>, req: Request<Body>) -> Response {
    let (parts, _body) = req.into_parts();
    let call = match authorize(&core, &parts, OP_BLOB) {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    let raw = parts
        .uri
        .path()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    // Thousands of records rendered to JSON: milliseconds of CPU, megabytes of memory.
    let worker_core = core.clone();
    let now = call.now;
    let rendered = core
        .cpu_pool
        .run(move || {
            let body = blob_body(&worker_core, &call, &raw);
            (call, body)
        })
        .await;
    match rendered {
        Some((call, Ok(body))) => ok_json(&call, body),
        Some((call, Err(e))) => call.fail(e),
        // Only a bug gets here (the rendering panicked): the service's own internal error.
        None => AfError::new("AF50000", &[]).render(now),
    }
}

fn blob_body(core: &Core, call: &Call, raw_id: &str) -> Result<String, AfError> {
    let malformed = || AfError::new("AF20052", &[raw_id]);
    let id = super::percent_decode(raw_id).ok_or_else(malformed)?;
    let k = knobs(core);
    let cfg = k.feed;
    let parsed = Feed::parse_content_id(cfg, &id).map_err(|_| malformed())?;
    let ct = parsed.content_type;
    if let Some(role) = ct.extra_role() {
        if !call.has_permission(role) {
            return Err(call.missing_permission());
        }
    }
    let since = content_since(core, call, ct, &k)?;
    let feed = Feed::new(cfg, call.tenant, ct);
    let created = feed.created(parsed.index);
    let visible = feed.visible_at(parsed.index) <= call.now;
    if feed.content_id(parsed.index) != id || !visible || created < since {
        return Err(AfError::new("AF20050", &[&id]));
    }
    if call.now > feed.created_ms(parsed.index) + RETENTION {
        return Err(AfError::new("AF20051", &[&id]));
    }
    let actors = super::actors(core, call.tenant).ok_or_else(|| AfError::new("AF20050", &[&id]))?;
    let mut records = feed.records(&actors, parsed.index);
    records.extend(core.management.injected(call.tenant, ct, parsed.index));
    Ok(serde_json::Value::Array(records).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2030-01-10 12:00 UTC);

    #[test]
    fn windows() {
        let k = Knobs::resolve(&Default::default(), 0);
        let w = window(None, None, NOW, &k).expect("default");
        assert_eq!((w.start, w.end), (NOW - MAX_WINDOW, NOW));
        assert_eq!(w.start_text, "2030-01-09T12:00:00.000Z");
        let ok = [
            ("2030-01-09", "2030-01-10"),
            ("2030-01-03T11:00:01", "2030-01-03T12:00"),
            ("2030-01-20", "2030-01-21"),
        ];
        for (s, e) in ok {
            assert!(window(Some(s), Some(e), NOW, &k).is_ok(), "{s} {e}");
        }
        let refused = [
            (Some("2030-01-09"), None),
            (None, Some("2030-01-09")),
            (Some("2030-01-09"), Some("2030-01-10T00:00:01")),
            (Some("2030-01-10"), Some("2030-01-10")),
            (Some("2030-01-10"), Some("2030-01-09")),
            (Some("2030-01-03T10:59:59"), Some("2030-01-03T12:00")),
        ];
        for (s, e) in refused {
            assert_eq!(
                window(s, e, NOW, &k).unwrap_err().code,
                "AF20055",
                "{s:?} {e:?}"
            );
        }
        let bad = window(
            Some("2030-01-09T00:00:00 00:00"),
            Some("2030-01-10"),
            NOW,
            &k,
        );
        assert_eq!(
            bad.unwrap_err().message,
            "Invalid parameter type: startTime. Expected type: datetime"
        );
    }

    #[test]
    fn next_page_tokens() {
        assert_eq!(
            decode_next_page("2015101900R022885001761"),
            Some(("2015101900", 22885001761))
        );
        for bad in [
            "",
            "R1",
            "2015101900R",
            "2015101900R-1",
            "201510190R1",
            "2015101900R99999999999999999999",
            "x",
            "2015101900R1R",
        ] {
            assert_eq!(decode_next_page(bad), None, "{bad}");
        }
    }

    #[test]
    fn encoding_keeps_colons() {
        assert_eq!(
            encode_query_value("2015-10-01T00:00:00.000Z"),
            "2015-10-01T00:00:00.000Z"
        );
        assert_eq!(encode_query_value("a b+c&d"), "a%20b%2Bc%26d");
    }
}
