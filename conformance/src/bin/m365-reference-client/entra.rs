//! Entra ID operations: `token` (the library's cache decides when a request is needed).

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
    let pause: f64 = std::env::var("M365_CONFORMANCE_PAUSE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|p: &f64| p.is_finite() && *p >= 0.0)
        .unwrap_or(0.0);
    for attempt in 1..=repeat {
        if attempt > 1 {
            tokio::time::sleep(std::time::Duration::from_secs_f64(pause)).await;
        }
        tokens.token(&scope).await?;
        emit(json!({"token": "acquired", "attempt": attempt}));
    }
    Ok(())
}
