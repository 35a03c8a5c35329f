//! `m365-reference-client`: the reference client (crate `m365-reference-client`, in
//! conformance/clients/rust) as a conformance adapter
//! (conformance/CONTRACT.md). The operation comes from `M365_CONFORMANCE_OPERATION`; results
//! go to stdout as JSON lines.

use std::process::ExitCode;

use m365_reference_client::auth::{Credential, TokenClient};
use m365_reference_client::management::Drainer;
use m365_reference_client::ClientError;
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const OPERATIONS: &[&str] = &["token", "audit-sync"];

fn env(name: &str) -> Result<String, ClientError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ClientError::Config(format!("{name} is not set")))
}

fn emit(v: serde_json::Value) {
    println!("{v}");
}

fn http() -> Result<reqwest::Client, ClientError> {
    // SSL_CERT_FILE names the CA to trust (the contract sets it); nothing else is trusted.
    let mut builder = reqwest::Client::builder().no_proxy();
    if let Ok(path) = std::env::var("SSL_CERT_FILE") {
        let pem = std::fs::read(&path).map_err(|e| ClientError::Config(format!("{path}: {e}")))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| ClientError::Config(format!("{path}: {e}")))?;
        builder = builder.tls_certs_only(certs);
    }
    Ok(builder.build()?)
}

fn token_client(http: &reqwest::Client) -> Result<TokenClient, ClientError> {
    let credential = match std::env::var("AZURE_CLIENT_CERTIFICATE_PATH") {
        Ok(path) if !path.is_empty() => {
            let pem = std::fs::read_to_string(&path)
                .map_err(|e| ClientError::Config(format!("{path}: {e}")))?;
            Credential::from_combined_pem(&pem)?
        }
        _ => Credential::Secret(env("AZURE_CLIENT_SECRET")?),
    };
    Ok(TokenClient::new(
        http.clone(),
        &env("AZURE_AUTHORITY_HOST")?,
        &env("AZURE_TENANT_ID")?,
        &env("AZURE_CLIENT_ID")?,
        credential,
    ))
}

async fn token(http: &reqwest::Client) -> Result<(), ClientError> {
    let tokens = token_client(http)?;
    let scope = std::env::var("M365_CONFORMANCE_SCOPE")
        .unwrap_or_else(|_| "https://manage.office.com/.default".into());
    let repeat: u32 = std::env::var("M365_CONFORMANCE_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for attempt in 1..=repeat {
        tokens.token(&scope).await?;
        emit(json!({"token": "acquired", "attempt": attempt}));
    }
    Ok(())
}

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
async fn audit_sync(http: &reqwest::Client) -> Result<(), ClientError> {
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let op = std::env::var("M365_CONFORMANCE_OPERATION").unwrap_or_default();
    if op == "describe" || std::env::args().any(|a| a == "--describe") {
        emit(json!({"operations": OPERATIONS}));
        return ExitCode::SUCCESS;
    }
    let result = match http() {
        Err(e) => Err(e),
        Ok(http) => match op.as_str() {
            "token" => token(&http).await,
            "audit-sync" => audit_sync(&http).await,
            other => Err(ClientError::Config(format!(
                "unsupported operation {other:?}"
            ))),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            emit(json!({"error": e.code().unwrap_or("client_error"), "message": e.to_string()}));
            eprintln!("m365-reference-client: {e}");
            ExitCode::FAILURE
        }
    }
}
