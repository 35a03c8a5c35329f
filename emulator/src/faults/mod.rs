//! Fault injection, service-aware: a rule's named error comes out in the owning service's
//! exact wire shape. Rules are evaluated in the order they were added; the first that matches
//! and whose schedule fires is applied. A per-request header `x-m365emu-fault: <error name>`
//! injects one fault without global state.

pub mod layer;
pub mod rules;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::{json, Value};
use time::OffsetDateTime;

pub use rules::{Decision, FaultAction, FaultRule, FaultSpec, RuleError};

/// The request header that injects a named error into one request.
pub const FAULT_HEADER: &str = "x-m365emu-fault";

/// The live rule set.
#[derive(Debug, Default)]
pub struct Faults {
    rules: RwLock<Vec<Arc<FaultRule>>>,
    next_id: AtomicU64,
}

/// Facts about a request that rules match on, gathered before the handler runs.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    pub service: &'static str,
    pub operation: &'static str,
    /// The tenant as the request named it, and its GUID when it resolves.
    pub tenant_segment: Option<String>,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub method: String,
    pub path: String,
    pub headers: http::HeaderMap,
    /// The host the client addressed (`Host` or the HTTP/2 authority), lower-case, no port.
    pub host: String,
}

impl RequestFacts {
    /// Rate limits count per service and tenant (the tenant's GUID when it resolves).
    pub fn bucket_key(&self) -> String {
        let tenant = self
            .tenant_id
            .as_deref()
            .or(self.tenant_segment.as_deref())
            .unwrap_or_default();
        format!("{}|{}", self.service, tenant.to_ascii_lowercase())
    }
}

impl Faults {
    pub fn is_empty(&self) -> bool {
        self.rules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Adds a validated rule; returns its id. A duplicate explicit id is refused.
    pub fn add(&self, spec: FaultSpec, now: OffsetDateTime) -> Result<String, RuleError> {
        let mut rules = self.rules.write().unwrap_or_else(|e| e.into_inner());
        let id = match &spec.id {
            Some(id) => {
                if rules.iter().any(|r| &r.id == id) {
                    return Err(RuleError {
                        field: "id".into(),
                        message: format!("'{id}' is already in use"),
                    });
                }
                id.clone()
            }
            None => format!("fault-{}", self.next_id.fetch_add(1, Ordering::Relaxed) + 1),
        };
        rules.push(Arc::new(FaultRule::new(id.clone(), spec, now)));
        Ok(id)
    }

    pub fn remove(&self, id: &str) -> bool {
        let mut rules = self.rules.write().unwrap_or_else(|e| e.into_inner());
        let before = rules.len();
        rules.retain(|r| r.id != id);
        rules.len() != before
    }

    pub fn clear(&self) {
        self.rules
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub fn list(&self, now: OffsetDateTime) -> Vec<Value> {
        self.prune(now);
        self.rules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|r| {
                let (matched, applied) = r.counters();
                let mut v = serde_json::to_value(&r.spec).unwrap_or(Value::Null);
                v["id"] = json!(r.id);
                v["matched"] = json!(matched);
                v["applied"] = json!(applied);
                v
            })
            .collect()
    }

    fn prune(&self, now: OffsetDateTime) {
        let expired = self
            .rules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|r| r.expired(now));
        if expired {
            self.rules
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|r| !r.expired(now));
        }
    }

    /// The first rule that matches `facts` and fires now.
    pub fn evaluate(&self, facts: &RequestFacts, now: OffsetDateTime) -> Option<Arc<FaultRule>> {
        self.prune(now);
        let rules = self.rules.read().unwrap_or_else(|e| e.into_inner()).clone();
        rules.into_iter().find(|r| {
            matches(&r.spec.matcher, facts) && r.decide(now, &facts.bucket_key()) == Decision::Apply
        })
    }
}

fn eq_opt(want: &Option<String>, have: &str) -> bool {
    want.as_ref().is_none_or(|w| w.eq_ignore_ascii_case(have))
}

pub fn matches(m: &rules::FaultMatch, f: &RequestFacts) -> bool {
    let tenant_ok = m.tenant.as_ref().is_none_or(|want| {
        [&f.tenant_segment, &f.tenant_id]
            .iter()
            .any(|have| have.as_ref().is_some_and(|h| h.eq_ignore_ascii_case(want)))
    });
    let client_ok = m.client_id.as_ref().is_none_or(|want| {
        f.client_id
            .as_ref()
            .is_some_and(|h| h.eq_ignore_ascii_case(want))
    });
    let path_ok = m
        .path
        .as_ref()
        .is_none_or(|p| rules::glob_match(p, &f.path));
    let host_ok = m
        .host
        .as_ref()
        .is_none_or(|h| rules::glob_match(&h.to_ascii_lowercase(), &f.host));
    let headers_ok = m.headers.iter().all(|(name, value)| {
        f.headers
            .get_all(name.as_str())
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v == value))
    });
    eq_opt(&m.service, f.service)
        && eq_opt(&m.operation, f.operation)
        && eq_opt(&m.method, &f.method)
        && tenant_ok
        && client_ok
        && path_ok
        && host_ok
        && headers_ok
}
