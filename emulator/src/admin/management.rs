//! Management Activity API control: its knobs, its subscriptions as an admin sees them, and
//! records to append to a tenant's feed.
//!
//! - `GET|PATCH /_emulator/management/settings` — the knobs of `[server.management]` in force
//!   (same names as in the world file); a PATCH changes only the keys it names, until reset.
//! - `GET /_emulator/management/{tenant}/subscriptions` — every subscription with its state.
//! - `POST /_emulator/management/{tenant}/subscriptions/disable?contentType=…` — an admin
//!   disables a subscription: the client then gets AF20023 until it calls `/start` again.
//! - `GET|POST /_emulator/management/{tenant}/records` — `{"contentType": "Audit.General",
//!   "records": [{…}, …]}` appends the records to the next blob of that feed (the first one
//!   created at or after the emulator's clock); `Id`, `CreationTime`, `OrganizationId` are
//!   filled in when absent.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{Request, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{json_body, ok, AdminError};
use crate::management::generator::{creation_time, Feed, RETENTION};
use crate::management::store::Status;
use crate::management::wire::{format_response_time, ContentType};
use crate::management::{knobs, Query};
use crate::state::Core;
use crate::world::ManagementSection;

fn settings_json(core: &Core) -> Value {
    let world = &core.initial_directory().world.server.management;
    let section = core.management.settings(world);
    let k = knobs(core);
    json!({
        "page_size": k.page_size,
        "blob_interval_seconds": k.feed.interval_seconds,
        "records_per_blob": k.feed.records_per_blob,
        "webhook_ca_file": section.webhook_ca_file,
        "webhook_allowed_hosts": section.webhook_allowed_hosts,
        "default_window": k.default_window,
        "window_error_code": k.window_error_code,
        "accept_long_windows": k.accept_long_windows,
        "start_cooldown_seconds": k.start_cooldown.whole_seconds(),
        "start_cooldown_mode": k.start_cooldown_mode,
        "throttle_per_minute": k.throttle_per_minute,
        "throttle_status": k.throttle_status.as_u16(),
        "stop_status": k.stop_status.as_u16(),
        "late_blob_percent": k.feed.shape.late_percent,
        "late_blob_delay_seconds": k.feed.shape.late_delay_seconds,
        "out_of_order_percent": k.feed.shape.out_of_order_percent,
        "out_of_order_max_seconds": k.feed.shape.out_of_order_max_seconds,
        "duplicate_percent": k.feed.shape.duplicate_percent,
        "backfill_seconds": k.backfill.whole_seconds(),
    })
}

pub async fn get_settings(State(core): State<Arc<Core>>) -> Response {
    ok(
        "admin.management.settings",
        StatusCode::OK,
        settings_json(&core),
    )
}

pub async fn patch_settings(
    State(core): State<Arc<Core>>,
    req: Request<Body>,
) -> Result<Response, AdminError> {
    let body = json_body(&core, req.into_body()).await?;
    let patch: ManagementSection = serde_json::from_value(body)
        .map_err(|e| AdminError::bad_request(format!("invalid settings: {e}")))?;
    if patch.webhook_ca_file.is_some() || patch.webhook_allowed_hosts.is_some() {
        return Err(AdminError::bad_request(
            "webhook_ca_file and webhook_allowed_hosts are fixed when the emulator starts; set them in the world file",
        ));
    }
    patch
        .validate_behaviour()
        .map_err(|(key, message)| AdminError::bad_request(format!("{key}: {message}")))?;
    let world = &core.initial_directory().world.server.management;
    core.management.patch_settings(world, &patch);
    Ok(ok(
        "admin.management.settings",
        StatusCode::OK,
        settings_json(&core),
    ))
}

/// The tenant named in the path (id or domain), as a GUID.
fn tenant_id(core: &Core, key: &str) -> Result<Uuid, AdminError> {
    core.directory()
        .tenant(key)
        .map(|t| t.id)
        .ok_or_else(|| AdminError::not_found(format!("no tenant '{key}' in this world")))
}

fn content_type_of(text: Option<&str>) -> Result<ContentType, AdminError> {
    let text = text.ok_or_else(|| AdminError::bad_request("contentType is required"))?;
    ContentType::parse(text)
        .ok_or_else(|| AdminError::bad_request(format!("'{text}' is not a content type")))
}

pub async fn list_subscriptions(
    State(core): State<Arc<Core>>,
    Path(tenant): Path<String>,
) -> Result<Response, AdminError> {
    let tid = tenant_id(&core, &tenant)?;
    let now = core.clock.now();
    let list: Vec<Value> = core
        .management
        .list(tid)
        .into_iter()
        .map(|(ct, s)| {
            json!({
                "contentType": ct.as_str(),
                "status": s.status.as_str(),
                "enabled_since": format_response_time(s.enabled_since),
                "last_start": format_response_time(s.last_start),
                "webhook": s.webhook.as_ref().map_or(Value::Null, |h| h.list_json(now)),
            })
        })
        .collect();
    Ok(ok(
        "admin.management.subscriptions",
        StatusCode::OK,
        json!({"tenant": tid, "subscriptions": list}),
    ))
}

pub async fn disable_subscription(
    State(core): State<Arc<Core>>,
    Path(tenant): Path<String>,
    req: Request<Body>,
) -> Result<Response, AdminError> {
    let tid = tenant_id(&core, &tenant)?;
    let query = Query::parse(req.uri().query());
    let ct = content_type_of(query.get("contenttype"))?;
    core.management.update(tid, ct, |sub| match sub {
        None => Err(AdminError::not_found(format!(
            "tenant {tid} has no {} subscription",
            ct.as_str()
        ))),
        Some(s) => {
            s.status = Status::Disabled;
            Ok(())
        }
    })?;
    core.management.disarm_delivery(tid, ct);
    Ok(ok(
        "admin.management.subscriptions",
        StatusCode::OK,
        json!({"tenant": tid, "contentType": ct.as_str(), "status": "disabled"}),
    ))
}

pub async fn list_records(
    State(core): State<Arc<Core>>,
    Path(tenant): Path<String>,
) -> Result<Response, AdminError> {
    let tid = tenant_id(&core, &tenant)?;
    let cfg = knobs(&core).feed;
    let blobs: Vec<Value> = core
        .management
        .injected_for(tid)
        .into_iter()
        .map(|(ct, index, records)| {
            let feed = Feed::new(cfg, tid, ct);
            json!({
                "contentType": ct.as_str(),
                "contentId": feed.content_id(index),
                "contentCreated": format_response_time(feed.created_ms(index)),
                "records": records,
            })
        })
        .collect();
    Ok(ok(
        "admin.management.records",
        StatusCode::OK,
        json!({"tenant": tid, "blobs": blobs}),
    ))
}

pub async fn add_records(
    State(core): State<Arc<Core>>,
    Path(tenant): Path<String>,
    req: Request<Body>,
) -> Result<Response, AdminError> {
    let tid = tenant_id(&core, &tenant)?;
    let body = json_body(&core, req.into_body()).await?;
    let ct = content_type_of(body.get("contentType").and_then(Value::as_str))?;
    let Some(list) = body.get("records").and_then(Value::as_array) else {
        return Err(AdminError::bad_request(
            "records must be an array of audit records (JSON objects)",
        ));
    };
    if list.is_empty() || list.iter().any(|r| !r.is_object()) {
        return Err(AdminError::bad_request(
            "records must be a non-empty array of JSON objects",
        ));
    }
    let now = core.clock.now();
    let feed = Feed::new(knobs(&core).feed, tid, ct);
    let index = feed.first_index_at_or_after(now);
    let records: Vec<Value> = list
        .iter()
        .cloned()
        .map(|mut r| {
            let defaults = [
                ("Id", Value::String(Uuid::new_v4().to_string())),
                ("CreationTime", Value::String(creation_time(now))),
                ("OrganizationId", Value::String(tid.to_string())),
            ];
            for (key, value) in defaults {
                if r.get(key).is_none() {
                    r[key] = value;
                }
            }
            r
        })
        .collect();
    let ids: Vec<Value> = records.iter().map(|r| r["Id"].clone()).collect();
    core.management.inject(tid, ct, index, records);
    let created = feed.created_ms(index);
    Ok(ok(
        "admin.management.records",
        StatusCode::CREATED,
        json!({
            "tenant": tid,
            "contentType": ct.as_str(),
            "contentId": feed.content_id(index),
            "contentCreated": format_response_time(created),
            "contentExpiration": format_response_time(created + RETENTION),
            "availableAt": format_response_time(feed.visible_at(index)),
            "ids": ids,
        }),
    ))
}
