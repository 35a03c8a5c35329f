//! `GET /_emulator/clock` → `{"now": "<RFC 3339>", "frozen": bool}`;
//! `POST /_emulator/clock` with `{"advance_seconds": N}`, `{"set": "<RFC 3339>"}`,
//! `{"freeze": true|false}` (combinable: freeze is applied first, then set, then advance).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{Request, StatusCode};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use super::{json_body, ok, AdminError};
use crate::ready::rfc3339;
use crate::state::Core;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockChange {
    advance_seconds: Option<f64>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    set: Option<OffsetDateTime>,
    freeze: Option<bool>,
}

/// Ten years: further jumps are almost certainly a unit mistake (milliseconds?).
const MAX_ADVANCE_SECONDS: f64 = 10.0 * 365.0 * 86_400.0;

fn state(core: &Core) -> serde_json::Value {
    json!({"now": rfc3339(core.clock.now()), "frozen": core.clock.is_frozen()})
}

pub async fn get(State(core): State<Arc<Core>>) -> Response {
    ok("admin.clock", StatusCode::OK, state(&core))
}

pub async fn change(
    State(core): State<Arc<Core>>,
    req: Request<Body>,
) -> Result<Response, AdminError> {
    let body = json_body(&core, req.into_body()).await?;
    let change: ClockChange = serde_json::from_value(body)
        .map_err(|e| AdminError::bad_request(format!("invalid clock change: {e}")))?;
    if let Some(a) = change.advance_seconds {
        if !(a.is_finite() && (0.0..=MAX_ADVANCE_SECONDS).contains(&a)) {
            return Err(AdminError::bad_request(format!(
                "`advance_seconds` must be between 0 and {MAX_ADVANCE_SECONDS}; time only moves forward by advancing (use `set` to go back)"
            )));
        }
    }
    if let Some(t) = change.set {
        if !(crate::clock::EARLIEST..=crate::clock::LATEST).contains(&t) {
            return Err(AdminError::bad_request(
                "`set` must be between 1970-01-01T00:00:00Z and 9000-01-01T00:00:00Z",
            ));
        }
    }
    if change.advance_seconds.is_none() && change.set.is_none() && change.freeze.is_none() {
        return Err(AdminError::bad_request(
            "give at least one of `advance_seconds`, `set`, `freeze`",
        ));
    }
    // Validated in full above; nothing is half-applied.
    match change.freeze {
        Some(true) => core.clock.freeze(),
        Some(false) => core.clock.resume(),
        None => {}
    }
    if let Some(t) = change.set {
        core.clock.set(t);
    }
    if let Some(a) = change.advance_seconds {
        core.clock.advance(time::Duration::seconds_f64(a));
    }
    Ok(ok("admin.clock", StatusCode::OK, state(&core)))
}
