//! Signing in arrival order: an app-only token that has to be signed on request (none was
//! signed ahead) while another signature is already running is queued to a few signing
//! threads, first come first served, instead of being signed on the async worker that read
//! the request.
//!
//! Why: under load nearly all of a token request's time is its RSA signature (about a
//! millisecond). Signed inline, a busy async worker runs signatures back to back and polls
//! for new requests only between batches, so some requests wait several batches: measured at
//! 64 connections, p99 was 1.7-1.8 x p50. A fair semaphore around inline signing did not
//! help (the worker still runs one signature after another without polling). With the
//! signatures on their own threads the async workers read every request as it comes, the
//! queue holds them in arrival order, and p99 came to 1.2-1.3 x p50 at the same throughput.
//!
//! A request that finds no signature running is signed inline: handing it to a thread costs
//! two wake-ups, and at one connection a wake-up that missed its CPU showed as a 4 ms (one
//! scheduler tick) p99. When the pool is not running (a core that was never started, or
//! stopped), every token is signed inline, as before.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::mint::{AppOnlyRecipe, MintedToken};
use crate::jose::JoseError;
use crate::signing::SigningKey;

struct Job {
    recipe: AppOnlyRecipe,
    key: Arc<SigningKey>,
    now: OffsetDateTime,
    reply: oneshot::Sender<Result<MintedToken, JoseError>>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Signatures running or queued, inline ones included.
    in_flight: AtomicUsize,
}

/// Counts one signature in flight until dropped (also when a signature panics).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The signing threads and their queue (inert until [`SignerPool::start`]).
#[derive(Default)]
pub struct SignerPool {
    shared: Arc<Shared>,
    running: AtomicBool,
}

impl std::fmt::Debug for SignerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignerPool")
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

impl SignerPool {
    /// Starts `threads` signing threads (at least one). A second call does nothing.
    pub fn start(&self, threads: usize) {
        if self.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut started = 0;
        for i in 0..threads.max(1) {
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("m365-sign-{i}"))
                .spawn(move || serve(&shared));
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::debug!("cannot start signing thread {i}: {e}"),
            }
        }
        if started == 0 {
            self.running.store(false, Ordering::SeqCst);
        }
    }

    /// Stops the threads once they have signed what is queued; later calls sign inline.
    pub fn stop(&self) {
        self.running.store(false, Ordering::SeqCst);
        let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.stop = true;
        drop(q);
        self.shared.ready.notify_all();
    }

    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Mints `recipe` at `now` with `key`: inline when no other signature is in flight (or the
    /// pool is not running), else on a signing thread in arrival order. The token is the same
    /// either way.
    pub async fn mint(
        &self,
        recipe: AppOnlyRecipe,
        key: Arc<SigningKey>,
        now: OffsetDateTime,
    ) -> Result<MintedToken, JoseError> {
        let in_flight = &self.shared.in_flight;
        let alone = in_flight.fetch_add(1, Ordering::AcqRel) == 0;
        if alone || !self.is_running() {
            let _counted = InFlight(in_flight);
            return recipe.mint(&key, now);
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            recipe,
            key,
            now,
            reply,
        };
        {
            let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.stop {
                drop(q);
                let _counted = InFlight(in_flight);
                return job.recipe.mint(&job.key, job.now);
            }
            q.jobs.push_back(job);
        }
        self.shared.ready.notify_one();
        // The threads drain the queue before they stop, so no answer means one panicked.
        answer.await.unwrap_or(Err(JoseError::Sign))
    }

    /// Signatures running or queued right now (tests: zero once every request is answered).
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Acquire)
    }
}

impl Drop for SignerPool {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One signing thread: takes the oldest job, signs, answers; exits on stop once the queue is
/// empty.
fn serve(shared: &Shared) {
    loop {
        let job = {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(job) = q.jobs.pop_front() {
                    break job;
                }
                if q.stop {
                    return;
                }
                q = shared.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        let counted = InFlight(&shared.in_flight);
        // A caller that went away (connection closed) no longer needs its token.
        if job.reply.is_closed() {
            continue;
        }
        let token = job.recipe.mint(&job.key, job.now);
        // Counted out before the caller hears back, so it never sees its own job in flight.
        drop(counted);
        let _ = job.reply.send(token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::{self, JwsAlg};
    use crate::pki::KeySource;
    use crate::signing::SigningKeys;

    fn recipe(key: &SigningKey) -> AppOnlyRecipe {
        AppOnlyRecipe {
            kid: key.kid.clone(),
            version: 2,
            aud: "00000000-0000-0000-0000-000000000001".into(),
            tid: "t".into(),
            oid: "o".into(),
            client_id: "c".into(),
            display_name: "d".into(),
            acr: "1",
            roles: vec!["R".into()],
            issuer_host: "login.microsoftonline.com".into(),
            lifetime: time::Duration::hours(1),
        }
    }

    fn verifies(key: &SigningKey, token: &MintedToken) -> bool {
        let Ok(jws) = jose::parse_compact(&token.access_token) else {
            return false;
        };
        jose::verify_rsa(
            JwsAlg::RS256,
            &key.cert.rsa_public_key,
            jws.signing_input.as_bytes(),
            &jws.signature,
        ) && jws.claims["uti"] == token.uti.as_str()
    }

    #[tokio::test]
    async fn busy_pool_signs_in_arrival_order_and_tokens_verify() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys =
            SigningKeys::load_or_create(dir.path(), KeySource { seed: Some(5) }).expect("keys");
        let key = keys.active();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        let pool = Arc::new(SignerPool::default());
        let inline = pool
            .mint(recipe(&key), key.clone(), now)
            .await
            .expect("inline");
        assert!(verifies(&key, &inline));
        assert_eq!(pool.in_flight(), 0);

        pool.start(1);
        assert!(pool.is_running());
        // Another signature is running: every request below has to queue.
        pool.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        let done = Arc::new(Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for i in 0..6 {
            let (pool, key, done) = (pool.clone(), key.clone(), done.clone());
            waiting.push(tokio::spawn(async move {
                let token = pool.mint(recipe(&key), key.clone(), now).await;
                done.lock().expect("order").push(i);
                token
            }));
            // Let the task enqueue its job before the next one is spawned.
            tokio::task::yield_now().await;
        }
        assert!(pool.in_flight() > 1, "the requests were queued");
        let mut utis = vec![inline.uti.clone()];
        for w in waiting {
            let token = w.await.expect("task").expect("queued");
            assert_eq!(token.issued_at, inline.issued_at);
            assert_eq!(token.expires_on, inline.expires_on);
            assert!(
                verifies(&key, &token),
                "verifies against the signing certificate"
            );
            utis.push(token.uti);
        }
        assert_eq!(*done.lock().expect("order"), vec![0, 1, 2, 3, 4, 5]);
        utis.sort();
        utis.dedup();
        assert_eq!(utis.len(), 7, "every token has its own uti");
        pool.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        assert_eq!(pool.in_flight(), 0, "every signature was counted out");

        pool.stop();
        assert!(!pool.is_running());
        pool.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        let after = pool.mint(recipe(&key), key.clone(), now).await;
        assert!(verifies(&key, &after.expect("stopped: signed inline")));
    }
}
