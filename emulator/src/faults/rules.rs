//! Fault rules: a *match*, an *action*, a *schedule* and a *lifetime*, parsed from JSON with
//! errors that name the field. Evaluation is deterministic: a seeded probability rule draws
//! from its own ChaCha stream, so the same seed gives the same fault sequence.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// Which requests a rule applies to; absent fields match anything.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Tenant GUID or domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Glob over the path: `*` matches any run of characters, `?` one character.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Request headers that must be present with these values (case-insensitive names).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Glob over the host the client addressed, without port, case-insensitive (e.g.
    /// `manage.office.com` through the proxy, `127.0.0.1` directly).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// What happens to a matching request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum FaultAction {
    /// A named error from a service catalog (`AADSTS700027`, …), in that service's wire shape.
    Error(ErrorAction),
    /// A raw response.
    Raw(RawAction),
    /// Delay, then let the request through: fixed, or uniform in `[min, max]`.
    Delay(DelayAction),
    /// Close the connection without a response: `reset` (TCP RST) or `drop` (FIN).
    Connection(ConnectionAction),
    /// Let the request through but send the response body slowly.
    SlowBody(SlowBodyAction),
    /// A token bucket per service and tenant; when empty, the service's own throttling response.
    RateLimit(RateLimitAction),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ErrorAction {
    pub error: String,
    /// Extra response headers (e.g. `Retry-After`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DelayAction {
    pub delay_ms: DelaySpec,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConnectionAction {
    pub connection: ConnectionFault,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlowBodyAction {
    pub slow_body: SlowBody,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitAction {
    pub rate_limit: RateLimit,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum DelaySpec {
    Fixed(u64),
    Uniform { min: u64, max: u64 },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionFault {
    Reset,
    Drop,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlowBody {
    pub bytes_per_second: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Bucket size.
    pub burst: u32,
    /// Refill rate (tokens per second of the emulator's clock).
    pub per_second: f64,
}

/// When a matching request is faulted (counting matching requests from 1).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub always: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nth: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// How long a rule lives: it is removed after `count` applications or `seconds` of clock time.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Lifetime {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

/// A rule as submitted to `POST /_emulator/faults`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, rename = "match")]
    pub matcher: FaultMatch,
    pub action: FaultAction,
    #[serde(default)]
    pub schedule: Schedule,
    #[serde(default)]
    pub lifetime: Lifetime,
}

/// A rule is invalid; the message names the field.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid fault rule: `{field}` {message}")]
pub struct RuleError {
    pub field: String,
    pub message: String,
}

fn bad(field: &str, message: impl Into<String>) -> RuleError {
    RuleError {
        field: field.to_string(),
        message: message.into(),
    }
}

impl FaultSpec {
    /// Parses and validates; `known_error` tells whether a named error exists in a catalog.
    /// Nothing is accepted half-valid: any bad part rejects the whole rule.
    pub fn from_json(v: Value, known_error: &dyn Fn(&str) -> bool) -> Result<FaultSpec, RuleError> {
        let Value::Object(map) = v else {
            return Err(bad("rule", "must be a JSON object"));
        };
        for key in map.keys() {
            if !["id", "match", "action", "schedule", "lifetime"].contains(&key.as_str()) {
                return Err(bad(
                    key,
                    "is not a rule field (use id, match, action, schedule, lifetime)",
                ));
            }
        }
        fn part<T: serde::de::DeserializeOwned + Default>(
            map: &serde_json::Map<String, Value>,
            key: &str,
        ) -> Result<T, RuleError> {
            match map.get(key) {
                None | Some(Value::Null) => Ok(T::default()),
                Some(v) => serde_json::from_value(v.clone())
                    .map_err(|e| bad(key, format!("is malformed: {e}"))),
            }
        }
        let action = match map.get("action") {
            None | Some(Value::Null) => return Err(bad("action", "is required")),
            Some(v) => serde_json::from_value::<FaultAction>(v.clone()).map_err(|_| {
                bad(
                    "action",
                    "must be one of {\"error\": NAME}, {\"status\": N, \"headers\": {..}, \"body\": ..}, {\"delay_ms\": N | {\"min\": N, \"max\": N}}, {\"connection\": \"reset\" | \"drop\"}, {\"slow_body\": {\"bytes_per_second\": N}}, {\"rate_limit\": {\"burst\": N, \"per_second\": X}}",
                )
            })?,
        };
        let id = match map.get("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 100 => Some(s.clone()),
            Some(_) => {
                return Err(bad(
                    "id",
                    "must be a non-empty string of at most 100 characters",
                ))
            }
        };
        let spec = FaultSpec {
            id,
            matcher: part(&map, "match")?,
            action,
            schedule: part(&map, "schedule")?,
            lifetime: part(&map, "lifetime")?,
        };
        spec.validate(known_error)?;
        Ok(spec)
    }

    fn validate(&self, known_error: &dyn Fn(&str) -> bool) -> Result<(), RuleError> {
        match &self.action {
            FaultAction::Error(ErrorAction { error, .. }) if !known_error(error) => {
                return Err(bad(
                    "action.error",
                    format!("'{error}' is not in any service's error catalog"),
                ))
            }
            FaultAction::Raw(RawAction { status, .. }) if !(100..=599).contains(status) => {
                return Err(bad(
                    "action.status",
                    "must be an HTTP status code (100-599)",
                ))
            }
            FaultAction::Delay(DelayAction {
                delay_ms: DelaySpec::Uniform { min, max },
            }) if min > max => return Err(bad("action.delay_ms", "`min` must not exceed `max`")),
            FaultAction::Delay(DelayAction {
                delay_ms: DelaySpec::Fixed(ms) | DelaySpec::Uniform { max: ms, .. },
            }) if *ms > 600_000 => {
                return Err(bad(
                    "action.delay_ms",
                    "must be at most 600000 (10 minutes)",
                ))
            }
            FaultAction::SlowBody(SlowBodyAction { slow_body })
                if slow_body.bytes_per_second == 0 =>
            {
                return Err(bad("action.slow_body.bytes_per_second", "must be positive"))
            }
            FaultAction::RateLimit(RateLimitAction { rate_limit }) => {
                if rate_limit.burst == 0 {
                    return Err(bad("action.rate_limit.burst", "must be positive"));
                }
                if !(rate_limit.per_second.is_finite() && rate_limit.per_second >= 0.0) {
                    return Err(bad(
                        "action.rate_limit.per_second",
                        "must be a non-negative number",
                    ));
                }
            }
            _ => {}
        }
        let s = &self.schedule;
        let given = [
            s.always.is_some(),
            s.nth.is_some(),
            s.first.is_some(),
            s.every.is_some(),
            s.probability.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given > 1 {
            return Err(bad(
                "schedule",
                "give one of `always`, `nth`, `first`, `every`, `probability`",
            ));
        }
        if s.always == Some(false) {
            return Err(bad("schedule.always", "must be true when given"));
        }
        for (name, v) in [("nth", s.nth), ("first", s.first), ("every", s.every)] {
            if v == Some(0) {
                return Err(bad(&format!("schedule.{name}"), "must be at least 1"));
            }
        }
        if let Some(p) = s.probability {
            if !(p.is_finite() && (0.0..=1.0).contains(&p)) {
                return Err(bad("schedule.probability", "must be between 0 and 1"));
            }
        }
        if s.seed.is_some() && s.probability.is_none() {
            return Err(bad("schedule.seed", "only applies to `probability`"));
        }
        if self.lifetime.count == Some(0) {
            return Err(bad("lifetime.count", "must be at least 1"));
        }
        if let Some(secs) = self.lifetime.seconds {
            if !(secs.is_finite() && secs > 0.0 && secs <= MAX_LIFETIME_SECONDS) {
                return Err(bad(
                    "lifetime.seconds",
                    "must be a positive number of at most 315360000 (10 years)",
                ));
            }
        }
        if let Some(m) = &self.matcher.method {
            if m.is_empty() || !m.chars().all(|c| c.is_ascii_alphabetic()) {
                return Err(bad("match.method", "must be an HTTP method name"));
            }
        }
        Ok(())
    }
}

/// Ten years: the longest rule lifetime (and clock arithmetic stays far from overflow).
const MAX_LIFETIME_SECONDS: f64 = 315_360_000.0;

/// A live rule with its counters.
#[derive(Debug)]
pub struct FaultRule {
    pub id: String,
    pub spec: FaultSpec,
    pub created: OffsetDateTime,
    state: Mutex<RuleState>,
}

#[derive(Debug)]
struct RuleState {
    matched: u64,
    applied: u64,
    rng: Option<ChaCha8Rng>,
    /// Token buckets of a rate-limit rule, one per service and tenant (see `RequestFacts::bucket_key`).
    buckets: std::collections::HashMap<String, (f64, OffsetDateTime)>,
}

/// The verdict for one matching request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Skip,
    Apply,
}

impl FaultRule {
    pub fn new(id: String, spec: FaultSpec, created: OffsetDateTime) -> FaultRule {
        let rng = spec
            .schedule
            .probability
            .map(|_| ChaCha8Rng::seed_from_u64(spec.schedule.seed.unwrap_or_else(rand::random)));
        FaultRule {
            id,
            spec,
            created,
            state: Mutex::new(RuleState {
                matched: 0,
                applied: 0,
                rng,
                buckets: Default::default(),
            }),
        }
    }

    pub fn expired(&self, now: OffsetDateTime) -> bool {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.spec.lifetime.count.is_some_and(|c| s.applied >= c)
            || self
                .spec
                .lifetime
                .seconds
                .is_some_and(|secs| now >= self.created + time::Duration::seconds_f64(secs))
    }

    /// Counts a matching request and decides whether the fault applies to it. `bucket` names
    /// the rate-limit bucket the request draws from.
    pub fn decide(&self, now: OffsetDateTime, bucket: &str) -> Decision {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if self.spec.lifetime.count.is_some_and(|c| s.applied >= c) {
            return Decision::Skip;
        }
        s.matched += 1;
        let n = s.matched;
        let sch = &self.spec.schedule;
        let scheduled = if let Some(k) = sch.nth {
            n == k
        } else if let Some(k) = sch.first {
            n <= k
        } else if let Some(k) = sch.every {
            n % k == 0
        } else if let Some(p) = sch.probability {
            s.rng.as_mut().is_some_and(|r| r.gen::<f64>() < p)
        } else {
            true
        };
        if !scheduled {
            return Decision::Skip;
        }
        // A rate limit applies only when its bucket is empty.
        if let FaultAction::RateLimit(RateLimitAction { rate_limit }) = &self.spec.action {
            let (tokens, last) = s
                .buckets
                .get(bucket)
                .copied()
                .unwrap_or((f64::from(rate_limit.burst), now));
            let elapsed = (now - last).as_seconds_f64().max(0.0);
            let tokens =
                (tokens + elapsed * rate_limit.per_second).min(f64::from(rate_limit.burst));
            if tokens >= 1.0 {
                s.buckets.insert(bucket.to_string(), (tokens - 1.0, now));
                return Decision::Skip;
            }
            s.buckets.insert(bucket.to_string(), (tokens, now));
        }
        s.applied += 1;
        Decision::Apply
    }

    /// Seconds until a rate-limit bucket holds a token again (for `Retry-After`).
    pub fn retry_after(&self, bucket: &str) -> u64 {
        let FaultAction::RateLimit(RateLimitAction { rate_limit }) = &self.spec.action else {
            return 1;
        };
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let tokens = s.buckets.get(bucket).map_or(0.0, |(t, _)| *t);
        if rate_limit.per_second <= 0.0 {
            return 60;
        }
        ((1.0 - tokens) / rate_limit.per_second).ceil().max(1.0) as u64
    }

    pub fn counters(&self) -> (u64, u64) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (s.matched, s.applied)
    }
}

/// `*` matches any run of characters (including `/`), `?` exactly one.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: Value) -> Result<FaultSpec, RuleError> {
        FaultSpec::from_json(v, &|e| e.starts_with("AADSTS"))
    }

    #[test]
    fn globs() {
        assert!(glob_match("/*/oauth2/*token", "/contoso/oauth2/v2.0/token"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("/a?c", "/ac"));
        assert!(glob_match("/a?c", "/abc"));
    }

    #[test]
    fn bad_rules_name_the_field() {
        let e = spec(json!({"action": {"error": "NOPE"}})).unwrap_err();
        assert_eq!(e.field, "action.error");
        let e =
            spec(json!({"action": {"delay_ms": 5}, "schedule": {"probability": 1.5}})).unwrap_err();
        assert_eq!(e.field, "schedule.probability");
        let e = spec(json!({"action": {"delay_ms": 5}, "lifetime": {"seconds": -1}})).unwrap_err();
        assert_eq!(e.field, "lifetime.seconds");
        let e = spec(json!({"action": {"delay_ms": {"min": 5, "max": 1}}})).unwrap_err();
        assert_eq!(e.field, "action.delay_ms");
        let e = spec(json!({"match": {"bogus": 1}, "action": {"delay_ms": 5}})).unwrap_err();
        assert_eq!(e.field, "match");
        let e = spec(json!({"match": {}})).unwrap_err();
        assert_eq!(e.field, "action");
    }

    #[test]
    fn seeded_probability_is_reproducible() {
        let s =
            spec(json!({"action": {"status": 503}, "schedule": {"probability": 0.3, "seed": 7}}))
                .expect("rule");
        let now = OffsetDateTime::now_utc();
        let run = || {
            let r = FaultRule::new("r".into(), s.clone(), now);
            (0..200)
                .map(|_| r.decide(now, "") == Decision::Apply)
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        let hits = a.iter().filter(|b| **b).count();
        assert!((30..=90).contains(&hits), "{hits}");
    }

    #[test]
    fn schedules_count_matching_requests() {
        let now = OffsetDateTime::now_utc();
        let pattern = |sch: Value| {
            let r = FaultRule::new(
                "r".into(),
                spec(json!({"action": {"status": 500}, "schedule": sch})).expect("rule"),
                now,
            );
            (0..6)
                .map(|_| r.decide(now, "") == Decision::Apply)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            pattern(json!({"nth": 2})),
            [false, true, false, false, false, false]
        );
        assert_eq!(
            pattern(json!({"first": 2})),
            [true, true, false, false, false, false]
        );
        assert_eq!(
            pattern(json!({"every": 3})),
            [false, false, true, false, false, true]
        );
    }

    #[test]
    fn token_bucket_refills_on_the_clock() {
        let now = OffsetDateTime::now_utc();
        let r = FaultRule::new(
            "r".into(),
            spec(json!({"action": {"rate_limit": {"burst": 2, "per_second": 1.0}}})).expect("rule"),
            now,
        );
        assert_eq!(r.decide(now, "entra|a"), Decision::Skip);
        assert_eq!(r.decide(now, "entra|a"), Decision::Skip);
        assert_eq!(r.decide(now, "entra|a"), Decision::Apply);
        assert_eq!(r.retry_after("entra|a"), 1);
        assert_eq!(
            r.decide(now, "entra|b"),
            Decision::Skip,
            "another tenant has its own bucket"
        );
        assert_eq!(
            r.decide(now + time::Duration::seconds(1), "entra|a"),
            Decision::Skip
        );
    }
}
