//! ACS state: Teams Phone extensibility assignments, identities, and the register of issued
//! ACS tokens (so that revoking an identity's tokens, deleting the identity or deleting an
//! assignment makes existing tokens stop working). Cleared by `Core::reset`; the signing key
//! survives resets (it lives in the state directory).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use serde::Serialize;
use uuid::Uuid;

use super::tokens::AcsSigningKey;

/// `(resource id, tenant id, object id)`.
pub type AssignmentKey = (Uuid, Uuid, Uuid);

/// A stored assignment; `principal_type` as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assignment {
    pub principal_type: String,
    pub client_ids: Option<Vec<String>>,
}

/// A communication identity (`8:acs:{resourceId}_{suffix}`).
#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    pub resource_id: Uuid,
    pub created_at: i64,
    pub last_token_issued_at: Option<i64>,
}

/// Whose token it is, to revoke it when its grant goes away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOwner {
    /// An identity of the Identity API (revoke / delete).
    Identity(String),
    /// A Teams user's exchanged token (never revoked by the emulator).
    TeamsUser,
    /// A Teams Phone extensibility user, by the assignment that allowed it.
    Assignment(AssignmentKey),
}

#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub owner: TokenOwner,
    pub revoked: bool,
    /// `exp` (NumericDate): expired entries are pruned once the register grows large.
    pub exp: i64,
}

/// Register size above which expired entries are dropped on the next insert.
pub const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug, Default)]
pub struct Inner {
    pub assignments: BTreeMap<AssignmentKey, Assignment>,
    pub identities: BTreeMap<String, Identity>,
    /// By SHA-256 of the compact token.
    pub tokens: HashMap<[u8; 32], IssuedToken>,
}

impl Inner {
    /// Marks every token of `owner` revoked; returns how many.
    pub fn revoke(&mut self, owner: &TokenOwner) -> usize {
        let mut n = 0;
        for t in self.tokens.values_mut() {
            if &t.owner == owner && !t.revoked {
                t.revoked = true;
                n += 1;
            }
        }
        n
    }

    pub fn record_token(&mut self, token: &str, owner: TokenOwner, exp: i64, now: i64) {
        if self.tokens.len() >= PRUNE_ABOVE {
            self.tokens.retain(|_, t| t.exp > now);
        }
        self.tokens.insert(
            crate::jose::sha256(token.as_bytes()),
            IssuedToken {
                owner,
                revoked: false,
                exp,
            },
        );
    }
}

#[derive(Debug, Default)]
pub struct Store {
    inner: Mutex<Inner>,
    key: OnceLock<Result<Arc<AcsSigningKey>, String>>,
}

impl Store {
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets assignments, identities and issued tokens.
    pub fn clear(&self) {
        *self.lock() = Inner::default();
    }

    /// The signing key, loaded or created on first use.
    pub fn key(
        &self,
        init: impl FnOnce() -> Result<AcsSigningKey, String>,
    ) -> Result<Arc<AcsSigningKey>, String> {
        self.key.get_or_init(|| init().map(Arc::new)).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoking_is_per_owner_and_large_registers_drop_expired_entries() {
        let mut inner = Inner::default();
        let alice = TokenOwner::Identity("8:acs:r_a".into());
        inner.record_token("t1", alice.clone(), 100, 0);
        inner.record_token("t2", TokenOwner::TeamsUser, 100, 0);
        assert_eq!(inner.revoke(&alice), 1);
        assert_eq!(inner.revoke(&alice), 0);
        for i in 0..PRUNE_ABOVE {
            inner.record_token(&format!("old{i}"), TokenOwner::TeamsUser, 50, 0);
        }
        assert!(inner.tokens.len() > PRUNE_ABOVE);
        inner.record_token("new", TokenOwner::TeamsUser, 500, 60);
        // t1 and t2 (exp 100) and the new token survive; the entries with exp 50 are gone.
        assert_eq!(inner.tokens.len(), 3);
    }
}
