//! Office 365 Management Activity API operations: `audit-sync`.

use m365_reference_client::management::Drainer;
use m365_reference_client::ClientError;
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::common::{emit, env, token_client};

/// The adapter's memory between polls: the cursor (the end of the last poll) and what was
/// already delivered.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct SyncState {
    cursor: Option<String>,
    blobs: std::collections::BTreeSet<String>,
    records: std::collections::BTreeSet<String>,
}

/// How far before its cursor each poll reaches back, so that late blobs are not missed.
const OVERLAP: time::Duration = time::Duration::hours(1);

/// One poll: from the cursor in the state file (or `M365_AUDIT_SINCE`) minus the overlap, to
/// now; blobs and records already delivered by an earlier poll are skipped.
pub async fn audit_sync(http: &reqwest::Client) -> Result<(), ClientError> {
    let tokens = token_client(http)?;
    let mut drainer = Drainer::new(http.clone(), &tokens, &env("M365_MANAGEMENT_URL")?);
    let state_path = std::env::var("M365_CONFORMANCE_STATE").ok();
    let mut state: SyncState = state_path
        .as_deref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let parse = |s: &str| {
        OffsetDateTime::parse(s.trim(), &Rfc3339)
            .map_err(|e| ClientError::Config(format!("bad time {s:?}: {e}")))
    };
    let since = parse(&env("M365_AUDIT_SINCE")?)?;
    let cursor = match &state.cursor {
        Some(c) => parse(c)?,
        None => since,
    };
    drainer.seen_blobs = std::mem::take(&mut state.blobs);
    drainer.seen_records = std::mem::take(&mut state.records);
    let now = OffsetDateTime::now_utc();
    let from = (cursor - OVERLAP).max(since);
    for ct in env("M365_AUDIT_CONTENT_TYPES")?.split(',') {
        let drained = drainer.drain(ct.trim(), from, now).await?;
        for r in drained.records {
            emit(json!({"record": r["Id"], "contentType": ct.trim()}));
        }
    }
    if let Some(p) = state_path {
        state.cursor = Some(now.format(&Rfc3339).unwrap_or_default());
        state.blobs = std::mem::take(&mut drainer.seen_blobs);
        state.records = std::mem::take(&mut drainer.seen_records);
        let text = serde_json::to_string(&state).unwrap_or_default();
        std::fs::write(&p, text).map_err(|e| ClientError::Config(format!("{p}: {e}")))?;
    }
    Ok(())
}
