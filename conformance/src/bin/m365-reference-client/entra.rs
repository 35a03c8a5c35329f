//! Entra ID operations: `token`.

use m365_reference_client::ClientError;
use serde_json::json;

use crate::common::{emit, token_client};

pub async fn token(http: &reqwest::Client) -> Result<(), ClientError> {
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

