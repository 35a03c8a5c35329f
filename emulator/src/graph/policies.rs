//! Application access policies as the Teams PowerShell cmdlets manage them
//! (`New-/Set-/Get-/Remove-/Grant-CsApplicationAccessPolicy`), per tenant, with the
//! propagation delay of the real service measured on the emulator's clock.
//!
//! Every change produces a new configuration; Graph sees the newest configuration whose
//! "effective at" time (change time + delay) has passed, so with a delay of 30 minutes a grant
//! only lets the app in once the (virtual) clock has moved 30 minutes on.

use std::collections::{BTreeMap, HashMap};

use http::StatusCode;
use serde::Serialize;
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

/// The `Tag:` prefix of policy identities (`Get-CsApplicationAccessPolicy` shows `Tag:<name>`).
pub const TAG: &str = "Tag:";

/// A policy name from `-Identity`/`-PolicyName` (an optional `Tag:` prefix is dropped);
/// `None` if empty, too long or with characters the XDS identity does not allow.
pub fn normalize_name(raw: &str) -> Option<String> {
    let s = raw.trim();
    let s = if s.len() >= TAG.len() && s[..TAG.len()].eq_ignore_ascii_case(TAG) {
        &s[TAG.len()..]
    } else {
        s
    };
    let ok = !s.is_empty()
        && s.len() <= 256
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '));
    ok.then(|| s.to_string())
}

/// One policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub name: String,
    pub app_ids: Vec<Uuid>,
    pub description: String,
}

impl Policy {
    pub fn to_json(&self) -> Value {
        json!({
            "identity": format!("{TAG}{}", self.name),
            "name": self.name,
            "appIds": self.app_ids,
            "description": self.description,
        })
    }
}

/// A tenant's configuration at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantPolicies {
    /// Lower-cased name → policy.
    pub policies: BTreeMap<String, Policy>,
    /// User object id → lower-cased policy name.
    pub users: BTreeMap<Uuid, String>,
    /// The policy granted with `-Global`.
    pub global: Option<String>,
}

impl TenantPolicies {
    /// Whether `app` may act for `user`: the user's own policy, else the global one.
    pub fn allows(&self, user: &Uuid, app: &Uuid) -> bool {
        let name = self.users.get(user).or(self.global.as_ref());
        name.and_then(|n| self.policies.get(n))
            .is_some_and(|p| p.app_ids.contains(app))
    }

    pub fn assigned_users(&self, key: &str) -> Vec<Uuid> {
        self.users
            .iter()
            .filter(|(_, n)| n.as_str() == key)
            .map(|(u, _)| *u)
            .collect()
    }
}

/// What the admin API says when a cmdlet would fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl PolicyError {
    fn new(status: StatusCode, code: &'static str, message: String) -> PolicyError {
        PolicyError {
            status,
            code,
            message,
        }
    }

    pub fn not_found(name: &str) -> PolicyError {
        PolicyError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("Cannot get policy \"{name}\" because it does not exist."),
        )
    }

    pub fn bad_name(raw: &str) -> PolicyError {
        PolicyError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("'{raw}' is not a valid policy identity: use letters, digits, '-', '_', '.' or spaces (at most 256)."),
        )
    }
}

/// `-AppIds` of `Set-CsApplicationAccessPolicy`: replace, or `@{Add=…}` / `@{Remove=…}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppIdsChange {
    pub replace: Option<Vec<Uuid>>,
    pub add: Vec<Uuid>,
    pub remove: Vec<Uuid>,
}

/// A tenant's policies: the configuration as changed, and the timeline Graph reads.
#[derive(Debug, Clone, Default)]
pub struct TenantPolicyState {
    pub configured: TenantPolicies,
    /// `(effective at, configuration)`, in the order the changes were made.
    timeline: Vec<(OffsetDateTime, TenantPolicies)>,
}

impl TenantPolicyState {
    /// A state whose configuration is effective from the beginning of time.
    pub fn seeded(initial: TenantPolicies) -> TenantPolicyState {
        TenantPolicyState {
            timeline: vec![(OffsetDateTime::UNIX_EPOCH, initial.clone())],
            configured: initial,
        }
    }

    /// The configuration Graph enforces at `now`.
    pub fn effective(&self, now: OffsetDateTime) -> Option<&TenantPolicies> {
        self.timeline
            .iter()
            .rev()
            .find(|(at, _)| *at <= now)
            .map(|(_, p)| p)
    }

    /// When the newest change takes effect (None when it already has).
    pub fn pending_until(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.timeline
            .last()
            .map(|(at, _)| *at)
            .filter(|at| *at > now)
    }

    /// Records the configured state as a change taking effect after `delay_seconds`.
    fn commit(&mut self, now: OffsetDateTime, delay_seconds: u64) {
        let at = now + time::Duration::seconds(delay_seconds.min(i64::MAX as u64) as i64);
        // Entries superseded by an already effective later one can never be read again.
        if let Some(last_effective) = self.timeline.iter().rposition(|(t, _)| *t <= now) {
            self.timeline.drain(..last_effective);
        }
        self.timeline.push((at, self.configured.clone()));
    }

    pub fn create(
        &mut self,
        raw_name: &str,
        app_ids: Vec<Uuid>,
        description: Option<String>,
        now: OffsetDateTime,
        delay: u64,
    ) -> Result<&Policy, PolicyError> {
        let name = normalize_name(raw_name).ok_or_else(|| PolicyError::bad_name(raw_name))?;
        let key = name.to_ascii_lowercase();
        if self.configured.policies.contains_key(&key) {
            return Err(PolicyError::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!("Cannot create policy \"{name}\" because it already exists (use Set-CsApplicationAccessPolicy)."),
            ));
        }
        let mut ids = Vec::new();
        for id in app_ids {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        self.configured.policies.insert(
            key.clone(),
            Policy {
                name,
                app_ids: ids,
                description: description.unwrap_or_default(),
            },
        );
        self.commit(now, delay);
        self.configured
            .policies
            .get(&key)
            .ok_or_else(|| PolicyError::not_found(raw_name))
    }

    pub fn get(&self, raw_name: &str) -> Result<&Policy, PolicyError> {
        let name = normalize_name(raw_name).ok_or_else(|| PolicyError::bad_name(raw_name))?;
        self.configured
            .policies
            .get(&name.to_ascii_lowercase())
            .ok_or_else(|| PolicyError::not_found(&name))
    }

    pub fn set(
        &mut self,
        raw_name: &str,
        change: AppIdsChange,
        description: Option<String>,
        now: OffsetDateTime,
        delay: u64,
    ) -> Result<&Policy, PolicyError> {
        let name = normalize_name(raw_name).ok_or_else(|| PolicyError::bad_name(raw_name))?;
        let key = name.to_ascii_lowercase();
        let policy = self
            .configured
            .policies
            .get_mut(&key)
            .ok_or_else(|| PolicyError::not_found(&name))?;
        if let Some(ids) = change.replace {
            policy.app_ids.clear();
            for id in ids {
                if !policy.app_ids.contains(&id) {
                    policy.app_ids.push(id);
                }
            }
        }
        for id in change.add {
            if !policy.app_ids.contains(&id) {
                policy.app_ids.push(id);
            }
        }
        policy.app_ids.retain(|id| !change.remove.contains(id));
        if let Some(d) = description {
            policy.description = d;
        }
        self.commit(now, delay);
        self.configured
            .policies
            .get(&key)
            .ok_or_else(|| PolicyError::not_found(&name))
    }

    /// Removes the policy; users and the global grant that pointed to it fall back to none.
    pub fn remove(
        &mut self,
        raw_name: &str,
        now: OffsetDateTime,
        delay: u64,
    ) -> Result<Policy, PolicyError> {
        let name = normalize_name(raw_name).ok_or_else(|| PolicyError::bad_name(raw_name))?;
        let key = name.to_ascii_lowercase();
        let removed = self
            .configured
            .policies
            .remove(&key)
            .ok_or_else(|| PolicyError::not_found(&name))?;
        self.configured.users.retain(|_, n| *n != key);
        if self.configured.global.as_deref() == Some(key.as_str()) {
            self.configured.global = None;
        }
        self.commit(now, delay);
        Ok(removed)
    }

    /// `Grant-CsApplicationAccessPolicy -PolicyName <name|$null> (-Identity <user> | -Global)`.
    /// One policy per user: a grant replaces the previous one; `None` unassigns.
    pub fn grant(
        &mut self,
        raw_name: Option<&str>,
        target: GrantTarget,
        now: OffsetDateTime,
        delay: u64,
    ) -> Result<(), PolicyError> {
        let key = match raw_name {
            Some(raw) => {
                let name = normalize_name(raw).ok_or_else(|| PolicyError::bad_name(raw))?;
                let key = name.to_ascii_lowercase();
                if !self.configured.policies.contains_key(&key) {
                    return Err(PolicyError::not_found(&name));
                }
                Some(key)
            }
            None => None,
        };
        match (target, key) {
            (GrantTarget::User(u), Some(k)) => {
                self.configured.users.insert(u, k);
            }
            (GrantTarget::User(u), None) => {
                self.configured.users.remove(&u);
            }
            (GrantTarget::Global, k) => self.configured.global = k,
        }
        self.commit(now, delay);
        Ok(())
    }
}

/// Who a grant is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantTarget {
    User(Uuid),
    Global,
}

/// All tenants' policy states.
pub type PolicyStates = HashMap<Uuid, TenantPolicyState>;

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_000_000 + s)
    }

    #[test]
    fn names_drop_the_tag_prefix() {
        assert_eq!(
            normalize_name("Tag:Test-policy").as_deref(),
            Some("Test-policy")
        );
        assert_eq!(normalize_name(" tag:A ").as_deref(), Some("A"));
        assert_eq!(normalize_name(""), None);
        assert_eq!(normalize_name("Tag:"), None);
        assert_eq!(normalize_name("a/b"), None);
    }

    #[test]
    fn per_user_policy_overrides_the_global_one_and_grants_replace() {
        let (app, other, adele, megan) = (
            Uuid::from_u128(1),
            Uuid::from_u128(2),
            Uuid::from_u128(10),
            Uuid::from_u128(11),
        );
        let mut s = TenantPolicyState::seeded(TenantPolicies::default());
        s.create("G", vec![app], None, t(0), 0).expect("create");
        s.create("Other", vec![other], None, t(0), 0)
            .expect("create");
        s.grant(Some("G"), GrantTarget::Global, t(0), 0)
            .expect("grant");
        let eff = s.effective(t(0)).expect("effective");
        assert!(eff.allows(&adele, &app) && eff.allows(&megan, &app));
        s.grant(Some("Other"), GrantTarget::User(megan), t(1), 0)
            .expect("grant");
        let eff = s.effective(t(1)).expect("effective");
        assert!(eff.allows(&adele, &app));
        assert!(!eff.allows(&megan, &app), "the per-user policy wins");
        s.grant(None, GrantTarget::User(megan), t(2), 0)
            .expect("unassign");
        assert!(s.effective(t(2)).expect("effective").allows(&megan, &app));
        assert_eq!(
            s.grant(Some("nope"), GrantTarget::Global, t(3), 0),
            Err(PolicyError::not_found("nope"))
        );
    }

    #[test]
    fn changes_wait_for_the_propagation_delay() {
        let (app, adele) = (Uuid::from_u128(1), Uuid::from_u128(10));
        let mut s = TenantPolicyState::seeded(TenantPolicies::default());
        s.create("P", vec![app], None, t(0), 1800).expect("create");
        s.grant(Some("P"), GrantTarget::User(adele), t(0), 1800)
            .expect("grant");
        assert!(!s
            .effective(t(1799))
            .expect("effective")
            .allows(&adele, &app));
        assert_eq!(s.pending_until(t(1799)), Some(t(1800)));
        assert!(s
            .effective(t(1800))
            .expect("effective")
            .allows(&adele, &app));
        assert_eq!(s.pending_until(t(1800)), None);
    }

    #[test]
    fn set_adds_and_removes_app_ids() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut s = TenantPolicyState::seeded(TenantPolicies::default());
        s.create("P", vec![a, a], Some("d".into()), t(0), 0)
            .expect("create");
        let p = s
            .set(
                "tag:p",
                AppIdsChange {
                    add: vec![b],
                    ..Default::default()
                },
                None,
                t(0),
                0,
            )
            .expect("set");
        assert_eq!(p.app_ids, vec![a, b]);
        let p = s
            .set(
                "P",
                AppIdsChange {
                    remove: vec![a],
                    ..Default::default()
                },
                None,
                t(0),
                0,
            )
            .expect("set");
        assert_eq!(p.app_ids, vec![b]);
        assert_eq!(p.description, "d");
        assert!(
            s.create("p", vec![], None, t(0), 0).is_err(),
            "names are case-insensitive"
        );
    }
}
