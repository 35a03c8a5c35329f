//! Signing ahead: while a CPU is idle, a background thread signs app-only tokens for the
//! recipes (tenant, app, resource, roles, key, …) clients asked for in the last few seconds,
//! so a request can be answered without waiting for its RSA signature.
//!
//! What a client can observe is unchanged: a pre-signed token is handed out only while its
//! `iat`/`nbf`/`exp` claims (whole seconds) are exactly the ones a token minted for that
//! request would carry, i.e. within the emulator-clock second it was signed in, and never
//! before it was signed. `expires_in` (and v1 `expires_on`/`not_before`) are computed from
//! the time of the request as for a fresh token, so they agree with the claims to the
//! second, as they always did. Every token is handed out at most once (its own `uti`, `aio`
//! and `rh`), and is signed with the active key of its recipe (`kid` is part of the recipe,
//! so a rotation never serves a token of the old key). Anything else (rotation, a changed
//! lifetime, roles or display name, a moved clock) changes the recipe or the second and the
//! old tokens are dropped unused.
//!
//! Cost: while a recipe is hot the thread keeps up to [`TARGET`] tokens for the current
//! second, so an idle emulator spends up to `TARGET` signatures a second per hot recipe for
//! [`HOT_FOR`] after the last request. The thread runs under `SCHED_IDLE` (Linux), so it only
//! ever uses CPU nobody else wants; where that policy is unavailable it does not run and every
//! token is signed on request. The request path never waits for it (`try_lock`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::mint::{AppOnlyRecipe, MintedToken};
use crate::signing::SigningKey;
use crate::state::Core;

/// Tokens kept ready per hot recipe.
pub const TARGET: usize = 16;
/// A recipe stays hot this long after a client last asked for it.
pub const HOT_FOR: Duration = Duration::from_secs(10);
/// At most this many recipes are kept (the least recently wanted goes first).
const MAX_RECIPES: usize = 16;

struct Pending {
    token: MintedToken,
    signed_at: OffsetDateTime,
}

struct Entry {
    key: Arc<SigningKey>,
    wanted: Instant,
    ready: VecDeque<Pending>,
}

#[derive(Default)]
struct Pool {
    recipes: HashMap<AppOnlyRecipe, Entry>,
    stop: bool,
}

/// The pool of pre-signed app-only tokens (empty and inert unless [`start`] ran).
#[derive(Default)]
pub struct Presigner {
    pool: Mutex<Pool>,
    wake: Condvar,
    running: AtomicBool,
}

impl std::fmt::Debug for Presigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presigner")
            .field("running", &self.running.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A pre-signed token can stand for one minted at `now` when its claims are the same.
fn usable(recipe: &AppOnlyRecipe, p: &Pending, now: OffsetDateTime) -> bool {
    p.signed_at <= now && recipe.claim_times(p.signed_at) == recipe.claim_times(now)
}

impl Presigner {
    /// A pre-signed token for `recipe`, signed with `key`, that is indistinguishable from one
    /// minted at `now`; `None` when there is none (the caller signs one). Records the demand.
    pub fn take(
        &self,
        recipe: &AppOnlyRecipe,
        key: &Arc<SigningKey>,
        now: OffsetDateTime,
    ) -> Option<MintedToken> {
        if !self.running.load(Ordering::Relaxed) {
            return None;
        }
        // Never wait for the signing thread: it may be starved by design (SCHED_IDLE).
        let mut pool = self.pool.try_lock().ok()?;
        let found = match pool.recipes.get_mut(recipe) {
            Some(entry) => {
                entry.wanted = Instant::now();
                let mut found = None;
                while let Some(p) = entry.ready.pop_front() {
                    if usable(recipe, &p, now) {
                        found = Some(p.token);
                        break;
                    }
                }
                found
            }
            None => {
                if pool.recipes.len() >= MAX_RECIPES {
                    let coldest = pool
                        .recipes
                        .iter()
                        .min_by_key(|(_, e)| e.wanted)
                        .map(|(r, _)| r.clone());
                    if let Some(r) = coldest {
                        pool.recipes.remove(&r);
                    }
                }
                pool.recipes.insert(
                    recipe.clone(),
                    Entry {
                        key: key.clone(),
                        wanted: Instant::now(),
                        ready: VecDeque::new(),
                    },
                );
                None
            }
        };
        drop(pool);
        self.wake.notify_one();
        let mut token = found?;
        // The response's times are the request's, exactly as for a fresh token; the claims
        // (whole seconds) are the same by `usable`.
        token.issued_at = now - super::mint::BACKDATE;
        token.not_before = token.issued_at;
        token.expires_on = now + recipe.lifetime;
        Some(token)
    }

    /// Stops the signing thread (it also stops by itself once the core is gone).
    pub fn stop(&self) {
        if let Ok(mut pool) = self.pool.lock() {
            pool.stop = true;
            pool.recipes.clear();
        }
        self.running.store(false, Ordering::Relaxed);
        self.wake.notify_all();
    }

    /// True while the signing thread runs (only then are pre-signed tokens handed out).
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// The ready tokens of every recipe, oldest first (what tests compare with).
    pub fn ready_tokens(&self) -> Vec<(AppOnlyRecipe, Vec<String>)> {
        self.pool
            .lock()
            .map(|p| {
                p.recipes
                    .iter()
                    .map(|(r, e)| {
                        let tokens = e.ready.iter().map(|p| p.token.access_token.clone());
                        (r.clone(), tokens.collect())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The next recipe to sign for at `now`, after dropping what is stale or cold.
    fn next_job(pool: &mut Pool, now: OffsetDateTime) -> Option<(AppOnlyRecipe, Arc<SigningKey>)> {
        pool.recipes.retain(|_, e| e.wanted.elapsed() < HOT_FOR);
        let mut job = None;
        for (recipe, entry) in pool.recipes.iter_mut() {
            entry.ready.retain(|p| usable(recipe, p, now));
            if job.is_none() && entry.ready.len() < TARGET {
                job = Some((recipe.clone(), entry.key.clone()));
            }
        }
        job
    }
}

/// Starts the signing thread for `core` when the OS lets it run at idle priority.
pub fn start(core: &Arc<Core>) {
    let weak = Arc::downgrade(core);
    let spawned = std::thread::Builder::new()
        .name("m365-presign".into())
        .spawn(move || {
            if !idle_priority() {
                tracing::debug!("no SCHED_IDLE: tokens are signed on request only");
                return;
            }
            run(weak);
        });
    if let Err(e) = spawned {
        tracing::debug!("cannot start the pre-signing thread: {e}");
    }
}

fn run(weak: Weak<Core>) {
    if let Some(core) = weak.upgrade() {
        core.presign.running.store(true, Ordering::Relaxed);
    }
    loop {
        let Some(core) = weak.upgrade() else { return };
        match sign_ahead(&core) {
            Work::Signed => {}
            Work::Stopped => return,
            Work::Idle => {
                // Full (or nothing hot): sleep until a request wakes us or the clock's next
                // second makes the ready tokens stale.
                let ps = &core.presign;
                let Ok(pool) = ps.pool.lock() else { return };
                if pool.stop {
                    return;
                }
                let now = core.clock.now();
                let to_next_second =
                    Duration::from_nanos(u64::from(1_000_000_000 - now.nanosecond()));
                let _ = ps
                    .wake
                    .wait_timeout(pool, to_next_second.min(Duration::from_secs(1)));
            }
        }
    }
}

/// What one step of the signing thread did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// One token was signed for a hot recipe.
    Signed,
    /// Every hot recipe has its [`TARGET`] tokens for the current second (or none is hot).
    Idle,
    Stopped,
}

/// Signs one token ahead for the hot recipe that needs it: the signing thread's step, public
/// so tests can fill the pool deterministically.
pub fn sign_ahead(core: &Core) -> Work {
    let ps = &core.presign;
    let now = core.clock.now();
    let job = {
        let Ok(mut pool) = ps.pool.lock() else {
            return Work::Stopped;
        };
        if pool.stop {
            return Work::Stopped;
        }
        Presigner::next_job(&mut pool, now)
    };
    let Some((recipe, key)) = job else {
        return Work::Idle;
    };
    // Sign outside the lock; the request path only ever try_locks it.
    let signed_at = core.clock.now();
    let Ok(token) = recipe.mint(&key, signed_at) else {
        return Work::Idle;
    };
    if let Ok(mut pool) = ps.pool.lock() {
        if let Some(entry) = pool.recipes.get_mut(&recipe) {
            entry.ready.push_back(Pending { token, signed_at });
        }
    }
    Work::Signed
}

/// Puts the calling thread under `SCHED_IDLE`: it runs only when a CPU is otherwise idle.
#[cfg(target_os = "linux")]
fn idle_priority() -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param for SCHED_IDLE.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn idle_priority() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe() -> AppOnlyRecipe {
        AppOnlyRecipe {
            kid: "k".into(),
            version: 1,
            aud: "https://manage.office.com".into(),
            tid: "t".into(),
            oid: "o".into(),
            client_id: "c".into(),
            display_name: "d".into(),
            acr: "1",
            roles: vec![],
            issuer_host: "login.microsoftonline.com".into(),
            lifetime: time::Duration::hours(1),
        }
    }

    fn pending(signed_at: OffsetDateTime) -> Pending {
        Pending {
            token: MintedToken {
                access_token: "x".into(),
                uti: "u".into(),
                version: 1,
                issued_at: signed_at,
                not_before: signed_at,
                expires_on: signed_at,
            },
            signed_at,
        }
    }

    #[test]
    fn usable_only_within_its_second_and_never_before_signing() {
        let r = recipe();
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time")
            + time::Duration::milliseconds(200);
        let p = pending(t);
        assert!(usable(&r, &p, t));
        assert!(usable(&r, &p, t + time::Duration::milliseconds(799)));
        assert!(!usable(&r, &p, t + time::Duration::milliseconds(800)));
        assert!(!usable(&r, &p, t - time::Duration::milliseconds(1)));
        // A fractional lifetime moves `exp` across a second boundary: refused.
        let odd = AppOnlyRecipe {
            lifetime: time::Duration::milliseconds(3_600_500),
            ..recipe()
        };
        assert!(!usable(&odd, &p, t + time::Duration::milliseconds(400)));
    }
}
