//! Entra ID control: `GET|PATCH /_emulator/entra/settings` — `{"token_lifetime_seconds": n}`,
//! the lifetime of the access tokens minted from now on (60..=86400; `expires_in` is one
//! second less). A PATCH lasts until reset, so a scenario can make tokens expire within
//! seconds and watch a client refresh them.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{Request, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::{json_body, ok, AdminError};
use crate::state::Core;

/// The range the `token_lifetime_seconds` start-up setting accepts, too.
const LIFETIME_SECONDS: std::ops::RangeInclusive<i64> = 60..=86_400;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntraSettings {
    token_lifetime_seconds: Option<i64>,
}

fn settings(core: &Core) -> serde_json::Value {
    let dir = core.directory();
    json!({"token_lifetime_seconds": core.token_lifetime(&dir).whole_seconds()})
}

pub async fn get_settings(State(core): State<Arc<Core>>) -> Response {
    ok("admin.entra.settings", StatusCode::OK, settings(&core))
}

pub async fn patch_settings(
    State(core): State<Arc<Core>>,
    req: Request<Body>,
) -> Result<Response, AdminError> {
    let body = json_body(&core, req.into_body()).await?;
    let patch: EntraSettings = serde_json::from_value(body)
        .map_err(|e| AdminError::bad_request(format!("invalid settings: {e}")))?;
    if let Some(seconds) = patch.token_lifetime_seconds {
        if !LIFETIME_SECONDS.contains(&seconds) {
            return Err(AdminError::bad_request(format!(
                "token_lifetime_seconds: {seconds} is outside 60..=86400"
            )));
        }
        core.directory_mut().token_lifetime = Some(time::Duration::seconds(seconds));
    }
    Ok(ok("admin.entra.settings", StatusCode::OK, settings(&core)))
}
