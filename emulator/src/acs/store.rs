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
}

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

    pub fn record_token(&mut self, token: &str, owner: TokenOwner) {
        self.tokens.insert(
            crate::jose::sha256(token.as_bytes()),
            IssuedToken {
                owner,
                revoked: false,
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
