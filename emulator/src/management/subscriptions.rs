//! `subscriptions/start`, `subscriptions/stop`, `subscriptions/list`.
//!
//! Choices where the reference is unconfirmed (README fidelity notes): subscriptions are kept
//! per tenant and content type (not per application); `/start` sets the webhook to what its
//! body asks for, so a body without a webhook removes an existing one, and the same webhook
//! on an enabled subscription is AF20024; `/stop` answers 200 (or 204, a knob) with an empty body, AF20022
//! when there is no subscription and AF20023 when it is already disabled; stopped
//! subscriptions stay in `/list` as `disabled`.
//!
//! The documented 15-minute wait between two `/start` calls is the `start_cooldown_seconds`
//! knob (off by default, since the real answer to a too-early call is unconfirmed): the call
//! gets AF429 (`Method=StartSubscription`), or with `start_cooldown_mode = "silent"` a 200
//! "enabled" that changes nothing — what clients observed after stop + immediate start.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{Request, StatusCode};
use serde_json::{json, Value};

use super::errors::{self, AfError, StartFailure};
use super::store::Status;
use super::{authorize, ok_json, webhook, OP_LIST, OP_START, OP_STOP};
use crate::http::{read_body, BodyError};
use crate::state::Core;
use crate::world::CooldownMode;

pub async fn start(State(core): State<Arc<Core>>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let call = match authorize(&core, &parts, OP_START) {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    let (raw_ct, ct) = match call.content_type() {
        Ok(v) => v,
        Err(e) => return call.fail(e),
    };
    let audit_on = core
        .directory()
        .tenant(&call.tenant.to_string())
        .map(|t| t.audit_logging);
    if call.unknown_tenant || audit_on != Some(true) {
        let tenant = call.tenant.to_string();
        let app = call.token.client_id().unwrap_or_default().to_string();
        let publisher = call.publisher_text();
        return errors::start_subscription_failed(
            &StartFailure {
                tenant: &tenant,
                content_type: ct.as_str(),
                application_id: &app,
                publisher_id: &publisher,
            },
            call.now,
            call.outcome(),
        );
    }
    let k = super::knobs(&core);
    if let Some(sub) = core.management.get(call.tenant, ct) {
        let allowed_at = sub.last_start + k.start_cooldown;
        if call.now < allowed_at {
            return match k.start_cooldown_mode {
                CooldownMode::Throttle => {
                    let wait = (allowed_at - call.now).whole_seconds().max(1) as u64;
                    call.throttled(&k, wait)
                }
                // As observed after stop + immediate start: "enabled", and nothing changed.
                CooldownMode::Silent => {
                    let hook = sub.webhook.as_ref();
                    let body = json!({
                        "contentType": raw_ct,
                        "status": "enabled",
                        "webhook": hook.map_or(Value::Null, |h| h.start_json(call.now)),
                    });
                    ok_json(&call, body.to_string())
                }
            };
        }
    }
    let bytes = match read_body(body, core.settings.body_limit).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return too_large(&core, &call),
        // A body that broke off mid-way is no body.
        Err(BodyError::Broken) => Default::default(),
    };
    let form = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let hook = match webhook::parse_start_body(&bytes, form, call.now) {
        Ok(h) => h,
        Err(e) => return call.fail(e),
    };
    if let Some(sub) = core.management.get(call.tenant, ct) {
        let same_hook = match (&sub.webhook, &hook) {
            (None, None) => true,
            // A disabled or expired webhook is re-enabled by the same registration.
            (Some(a), Some(b)) => a.same_properties(b) && a.active(call.now),
            _ => false,
        };
        if sub.status == Status::Enabled && same_hook {
            return call.fail(AfError::new("AF20024", &[]));
        }
    }
    if let Some(h) = &hook {
        let allowed = core
            .initial_directory()
            .world
            .server
            .management
            .webhook_allowed_hosts
            .clone()
            .unwrap_or_default();
        if let Err(e) = webhook::validate(super::webhook_client(&core), h, &allowed).await {
            return call.fail(e);
        }
    }
    let now = call.now;
    core.management.enable(call.tenant, ct, hook.clone(), now);
    core.management.arm_delivery(
        call.tenant,
        ct,
        super::delivery::Sender {
            origin: call.origin.clone(),
            client_id: call.token.client_id().unwrap_or_default().to_string(),
        },
        now,
    );
    let body = json!({
        "contentType": raw_ct,
        "status": "enabled",
        "webhook": hook.as_ref().map_or(Value::Null, |h| h.start_json(now)),
    });
    ok_json(&call, body.to_string())
}

pub async fn stop(State(core): State<Arc<Core>>, req: Request<Body>) -> Response {
    let (parts, _body) = req.into_parts();
    let call = match authorize(&core, &parts, OP_STOP) {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    let ct = match call.content_type() {
        Ok((_, ct)) => ct,
        Err(e) => return call.fail(e),
    };
    let result = core.management.update(call.tenant, ct, |sub| match sub {
        None => Err(AfError::new("AF20022", &[])),
        Some(s) if s.status == Status::Disabled => Err(AfError::new("AF20023", &[])),
        Some(s) => {
            s.status = Status::Disabled;
            Ok(())
        }
    });
    if result.is_ok() {
        core.management.disarm_delivery(call.tenant, ct);
    }
    if let Err(e) = result {
        return call.fail(e);
    }
    let mut resp = super::knobs(&core).stop_status.into_response();
    errors::service_headers(resp.headers_mut(), call.now);
    resp.extensions_mut().insert(call.outcome());
    resp
}

pub async fn list(State(core): State<Arc<Core>>, req: Request<Body>) -> Response {
    let (parts, _body) = req.into_parts();
    let call = match authorize(&core, &parts, OP_LIST) {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    let items: Vec<Value> = core
        .management
        .list(call.tenant)
        .into_iter()
        .map(|(ct, s)| {
            json!({
                "contentType": ct.as_str(),
                "status": s.status.as_str(),
                "webhook": s.webhook.as_ref().map_or(Value::Null, |h| h.list_json(call.now)),
            })
        })
        .collect();
    ok_json(&call, Value::Array(items).to_string())
}

fn too_large(core: &Core, call: &super::Call) -> Response {
    // No AF code is documented for an oversized body; IIS answers 413.
    let body = json!({"error": {"code": "RequestEntityTooLarge", "message": format!("The request body is larger than {} bytes.", core.settings.body_limit)}});
    let mut resp = errors::json_response(StatusCode::PAYLOAD_TOO_LARGE, body.to_string(), call.now);
    let mut outcome = call.outcome();
    outcome.error_code = Some("RequestEntityTooLarge".into());
    resp.extensions_mut().insert(outcome);
    resp
}
