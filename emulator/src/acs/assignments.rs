//! Teams Phone extensibility access assignments (reference §1.2–1.3):
//! `/access/teamsExtension/tenants/{tenantId}/assignments/{objectId}` and the tenant-less
//! short form (the resource's own tenant). PUT creates (201) or replaces (200); DELETE answers
//! 204 whether or not the assignment existed (Azure's idempotent delete) and revokes the
//! tokens it allowed; PATCH, which no spec defines, is a JSON merge patch (RFC 7386) on the
//! stored `{principalType, clientIds}` and needs an existing assignment.

use axum::body::Body;
use axum::response::Response;
use http::{Method, Request, StatusCode};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::errors::AcsError;
use super::store::{Assignment, AssignmentKey, TokenOwner};
use super::{auth, Call, CoreState, OP_ASSIGNMENTS, TPE_API_VERSIONS};
use crate::state::Core;

/// Principal types accepted (the spec's and the docs' spellings), stored as sent.
pub const PRINCIPAL_TYPES: [&str; 3] = ["user", "teamsResourceAccount", "resourceAccount"];

pub async fn get(state: CoreState, req: Request<Body>) -> Response {
    handle(state, req).await
}
pub async fn put(state: CoreState, req: Request<Body>) -> Response {
    handle(state, req).await
}
pub async fn patch(state: CoreState, req: Request<Body>) -> Response {
    handle(state, req).await
}
pub async fn delete(state: CoreState, req: Request<Body>) -> Response {
    handle(state, req).await
}

async fn handle(state: CoreState, req: Request<Body>) -> Response {
    let core = state.0;
    let mut call = match Call::begin(&core, req, OP_ASSIGNMENTS).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let result = run(&core, &mut call);
    super::finish(&call, result)
}

fn run(core: &Core, call: &mut Call) -> Result<Response, AcsError> {
    auth::authenticate(core, call)?;
    call.api_version(TPE_API_VERSIONS)?;
    let key = key_of(call)?;
    call.outcome.tenant = Some(key.1.to_string());
    call.outcome.user = Some(key.2.to_string());
    match call.parts.method.clone() {
        Method::GET => {
            let store = core.acs.lock();
            let a = store.assignments.get(&key).ok_or_else(|| not_found(&key))?;
            Ok(call.json(StatusCode::OK, document(&key, a)))
        }
        Method::PUT => {
            let body = call.json_body(false)?.unwrap_or_default();
            let a = validate(&body)?;
            let doc = document(&key, &a);
            let previous = core.acs.lock().assignments.insert(key, a.clone());
            if previous
                .as_ref()
                .is_some_and(|p| p.client_ids != a.client_ids)
            {
                // Clients dropped from the assignment lose the tokens they got through it.
                core.acs.lock().revoke(&TokenOwner::Assignment(key));
            }
            let status = if previous.is_some() {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok(call.json(status, doc))
        }
        Method::PATCH => {
            let patch = call.json_body(false)?.unwrap_or_default();
            let mut store = core.acs.lock();
            let current = store.assignments.get(&key).ok_or_else(|| not_found(&key))?;
            let mut doc = stored_fields(current);
            merge_patch(&mut doc, &Value::Object(patch));
            let Value::Object(merged) = doc else {
                return Err(AcsError::new(
                    "InvalidRequestBody",
                    "The merge patch must be a JSON object.",
                ));
            };
            let a = validate(&merged)?;
            let changed_clients = current.client_ids != a.client_ids;
            store.assignments.insert(key, a.clone());
            if changed_clients {
                store.revoke(&TokenOwner::Assignment(key));
            }
            Ok(call.json(StatusCode::OK, document(&key, &a)))
        }
        Method::DELETE => {
            let mut store = core.acs.lock();
            store.assignments.remove(&key);
            store.revoke(&TokenOwner::Assignment(key));
            Ok(call.empty(StatusCode::NO_CONTENT))
        }
        other => Err(AcsError::new(
            "MethodNotAllowed",
            format!("The method {other} is not allowed here."),
        )),
    }
}

/// `(resource, tenant, object)` from the path; the short form uses the resource's tenant.
fn key_of(call: &Call) -> Result<AssignmentKey, AcsError> {
    let segments: Vec<&str> = call.parts.uri.path().split('/').skip(1).collect();
    // ["access","teamsExtension","tenants",T,"assignments",O] or [..,"assignments",O]
    let (tenant_raw, object_raw) = match segments.as_slice() {
        [_, _, "tenants", t, _, o] => (Some(*t), *o),
        [_, _, _, o] => (None, *o),
        _ => return Err(AcsError::not_found("No such assignment route.")),
    };
    let guid = |raw: &str, name: &str| {
        super::percent_decode(raw)
            .and_then(|s| parse_guid(&s))
            .ok_or_else(|| {
                AcsError::invalid(
                    name,
                    format!("{name} '{raw}' is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)."),
                )
            })
    };
    let tenant = match tenant_raw {
        Some(t) => guid(t, "tenantId")?,
        None => call.resource_tenant,
    };
    Ok((
        call.resource.resource_id,
        tenant,
        guid(object_raw, "objectId")?,
    ))
}

/// A hyphenated 36-character GUID.
fn parse_guid(s: &str) -> Option<Uuid> {
    (s.len() == 36).then(|| Uuid::parse_str(s).ok()).flatten()
}

fn not_found(key: &AssignmentKey) -> AcsError {
    AcsError::not_found(format!(
        "No Teams Phone extensibility assignment for object '{}' in tenant '{}' on this resource.",
        key.2, key.1
    ))
}

/// Validates a create/replace body (`principalType` required, `clientIds` optional GUIDs).
fn validate(body: &Map<String, Value>) -> Result<Assignment, AcsError> {
    let principal_type = match body.get("principalType") {
        Some(Value::String(s)) if PRINCIPAL_TYPES.contains(&s.as_str()) => s.clone(),
        Some(v) => {
            return Err(AcsError::invalid(
                "principalType",
                format!(
                    "principalType {v} is not one of {}.",
                    PRINCIPAL_TYPES.join(", ")
                ),
            ))
        }
        None => {
            return Err(AcsError::invalid(
                "principalType",
                "principalType is required.",
            ))
        }
    };
    let client_ids = match body.get("clientIds") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => {
            let mut ids = Vec::with_capacity(list.len());
            for v in list {
                match v.as_str().and_then(parse_guid) {
                    Some(_) => ids.push(v.as_str().unwrap_or_default().to_string()),
                    None => {
                        return Err(AcsError::invalid(
                            "clientIds",
                            format!(
                            "clientIds must hold application (client) id GUIDs; {v} is not one."
                        ),
                        ))
                    }
                }
            }
            Some(ids)
        }
        Some(v) => {
            return Err(AcsError::invalid(
                "clientIds",
                format!("clientIds must be a list of GUIDs, not {v}."),
            ))
        }
    };
    Ok(Assignment {
        principal_type,
        client_ids,
    })
}

/// The stored fields as the JSON a merge patch applies to.
fn stored_fields(a: &Assignment) -> Value {
    let mut m = Map::new();
    m.insert("principalType".into(), json!(a.principal_type));
    if let Some(ids) = &a.client_ids {
        m.insert("clientIds".into(), json!(ids));
    }
    Value::Object(m)
}

/// `TeamsExtensionAssignmentResponse`.
pub fn document(key: &AssignmentKey, a: &Assignment) -> Value {
    let mut doc = json!({
        "objectId": key.2.to_string(),
        "tenantId": key.1.to_string(),
        "principalType": a.principal_type,
    });
    if let Some(ids) = &a.client_ids {
        doc["clientIds"] = json!(ids);
    }
    doc
}

/// RFC 7386 JSON merge patch: objects merge recursively, `null` removes, anything else
/// replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in patch {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386_examples() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!(["a", "b"]), json!({"a":"b"}), json!({"a":"b"})),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
        ];
        for (mut target, patch, want) in cases {
            merge_patch(&mut target, &patch);
            assert_eq!(target, want, "patch {patch}");
        }
    }

    #[test]
    fn validation() {
        let ok = |v: Value| validate(v.as_object().expect("object"));
        assert!(ok(
            json!({"principalType":"user","clientIds":["1bfa671a-3b8f-4d3f-a4b8-27d5bd2a8b2e"]})
        )
        .is_ok());
        assert!(ok(json!({"principalType":"teamsResourceAccount"})).is_ok());
        assert!(ok(json!({"principalType":"resourceAccount","clientIds":null})).is_ok());
        assert_eq!(
            ok(json!({})).unwrap_err().target.as_deref(),
            Some("principalType")
        );
        assert_eq!(
            ok(json!({"principalType":"group"}))
                .unwrap_err()
                .target
                .as_deref(),
            Some("principalType")
        );
        assert_eq!(
            ok(json!({"principalType":"user","clientIds":"x"}))
                .unwrap_err()
                .target
                .as_deref(),
            Some("clientIds")
        );
        assert_eq!(
            ok(json!({"principalType":"user","clientIds":["not-a-guid"]}))
                .unwrap_err()
                .target
                .as_deref(),
            Some("clientIds")
        );
        assert_eq!(
            ok(json!({"principalType":"user","clientIds":[1]}))
                .unwrap_err()
                .target
                .as_deref(),
            Some("clientIds")
        );
    }
}
