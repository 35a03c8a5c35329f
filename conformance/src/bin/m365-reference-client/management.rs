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

/// `audit-webhook`: serves the webhook, starts the subscriptions with it, and for every
/// trusted notification fetches the announced blobs (each once) and delivers their new
/// records, until `M365_WEBHOOK_SECONDS` have passed.
pub async fn audit_webhook(http: &reqwest::Client) -> Result<(), ClientError> {
    use m365_reference_client::webhook::{serve, Received};

    let tokens = token_client(http)?;
    let mut drainer = Drainer::new(http.clone(), &tokens, &env("M365_MANAGEMENT_URL")?);
    let listen = env("M365_WEBHOOK_LISTEN")?;
    let address = env("M365_WEBHOOK_ADDRESS")?;
    let auth_id = env("M365_WEBHOOK_AUTH_ID")?;
    let seconds: f64 = env("M365_WEBHOOK_SECONDS")?
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s >= 0.0)
        .ok_or_else(|| ClientError::Config("M365_WEBHOOK_SECONDS is not a number".into()))?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs_f64(seconds);
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| ClientError::Config(format!("listening on {listen}: {e}")))?;
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(serve(listener, auth_id.clone(), events));
    for ct in env("M365_AUDIT_CONTENT_TYPES")?.split(',') {
        drainer
            .start_with_webhook(ct.trim(), &address, &auth_id)
            .await?;
    }
    loop {
        let event = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            event = received.recv() => event,
        };
        match event {
            None => break,
            Some(Received::Validation) => eprintln!("m365-reference-client: webhook validated"),
            Some(Received::Rejected {
                content_ids,
                reason,
            }) => {
                for id in content_ids {
                    emit(json!({"rejected": id, "reason": reason}));
                }
            }
            Some(Received::Notification(announced)) => {
                for a in announced {
                    let Some(records) = drainer.fetch_blob(&a.content_id, &a.content_uri).await?
                    else {
                        continue;
                    };
                    for r in drainer.keep_new(records) {
                        emit(json!({"record": r["Id"], "contentType": a.content_type}));
                    }
                }
            }
        }
    }
    server.abort();
    Ok(())
}
