//! Threads for the CPU-heavy part of requests, first come first served: app-only token
//! signatures that could not be signed ahead, and Management content blobs.
//!
//! Why signatures: under load nearly all of a token request's time is its RSA signature
//! (about a millisecond). Signed inline, a busy async worker runs signatures back to back and
//! polls for new requests only between batches, so some requests wait several batches:
//! measured at 64 connections, p99 was 1.7-1.8 x p50. A fair semaphore around inline signing
//! did not help (the worker still runs one signature after another without polling). With the
//! signatures on their own threads the async workers read every request as it comes, the
//! queue holds them in arrival order, and p99 came to 1.2-1.3 x p50 at the same throughput.
//! A signature that finds no other work in flight is signed inline: handing it to a thread
//! costs two wake-ups, and at one connection a wake-up that missed its CPU showed as a 4 ms
//! (one scheduler tick) p99.
//!
//! Why blobs: a blob of a busy feed is thousands of records, megabytes of JSON, milliseconds
//! of CPU. On the async workers it would stall every connection they serve; moved off them
//! with `block_in_place` it ran on ever new threads, each keeping its own malloc arena (peak
//! RSS 114 MiB against 47 MiB). Here it runs on the same few threads.
//!
//! When the pool is not running (a core that was never started, or stopped), the work runs
//! inline, as before.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use time::OffsetDateTime;
use tokio::sync::oneshot;

use crate::entra::mint::{AppOnlyRecipe, MintedToken};
use crate::jose::JoseError;
use crate::signing::SigningKey;

/// Queued work; it is handed the in-flight count and gives it back before it answers, so the
/// caller never sees its own job still in flight.
type Job = Box<dyn FnOnce(InFlight<'_>) + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    stop: bool,
    /// Threads waiting for a job: under load none is, and the wake-up (a futex call) is
    /// skipped.
    idle: usize,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Jobs running or queued, inline signatures included.
    in_flight: AtomicUsize,
}

/// Counts one job in flight until dropped (also when the job panics).
pub struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The threads and their queue (inert until [`CpuPool::start`]).
#[derive(Default)]
pub struct CpuPool {
    shared: Arc<Shared>,
    running: AtomicBool,
}

impl std::fmt::Debug for CpuPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuPool")
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

impl CpuPool {
    /// Starts `threads` threads (at least one). A second call does nothing.
    pub fn start(&self, threads: usize) {
        if self.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut started = 0;
        for i in 0..threads.max(1) {
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("m365-cpu-{i}"))
                .spawn(move || serve(&shared));
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::debug!("cannot start CPU pool thread {i}: {e}"),
            }
        }
        if started == 0 {
            self.running.store(false, Ordering::SeqCst);
        }
    }

    /// Stops the threads once they have run what is queued; later work runs inline.
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

    /// Mints `recipe` at `now` with `key`: inline when nothing else is in flight (or the pool
    /// is not running), else on a pool thread in arrival order. The token is the same either
    /// way.
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
        let job: Job = Box::new(move |counted| {
            // A caller that went away (connection closed) no longer needs its token.
            if reply.is_closed() {
                return;
            }
            let token = recipe.mint(&key, now);
            drop(counted);
            let _ = reply.send(token);
        });
        self.queue(job).await;
        // The threads drain the queue before they stop, so no answer means a job panicked.
        answer.await.unwrap_or(Err(JoseError::Sign))
    }

    /// Runs `work` on a pool thread in arrival order (inline when the pool is not running);
    /// `None` if it panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        if !self.is_running() {
            let _counted = InFlight(&self.shared.in_flight);
            return Some(work());
        }
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |counted| {
            let out = work();
            drop(counted);
            let _ = reply.send(out);
        });
        self.queue(job).await;
        answer.await.ok()
    }

    /// Queues `job` (already counted in flight), or runs it here when the pool has stopped.
    async fn queue(&self, job: Job) {
        let someone_idle = {
            let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.stop {
                drop(q);
                job(InFlight(&self.shared.in_flight));
                return;
            }
            q.jobs.push_back(job);
            q.idle > 0
        };
        if someone_idle {
            self.shared.ready.notify_one();
        }
    }

    /// Jobs running or queued right now (tests: zero once every request is answered).
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Acquire)
    }
}

impl Drop for CpuPool {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One pool thread: takes the oldest job and runs it; exits on stop once the queue is empty.
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
                q.idle += 1;
                q = shared.ready.wait(q).unwrap_or_else(|e| e.into_inner());
                q.idle -= 1;
            }
        };
        // A panicking job must not take the thread with it (its caller sees no answer).
        let counted = InFlight(&shared.in_flight);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(counted)));
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
        let pool = Arc::new(CpuPool::default());
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

    #[tokio::test]
    async fn run_answers_in_order_survives_a_panic_and_runs_inline_when_stopped() {
        let pool = Arc::new(CpuPool::default());
        pool.start(1);
        let on_pool = pool
            .run(|| std::thread::current().name().map(str::to_string))
            .await;
        assert_eq!(on_pool, Some(Some("m365-cpu-0".to_string())));
        let panicked = pool.run(|| -> u8 { panic!("a job that panics") }).await;
        assert_eq!(panicked, None, "no answer, and the thread lives on");
        assert_eq!(pool.run(|| 7).await, Some(7));
        assert_eq!(pool.in_flight(), 0);
        pool.stop();
        let inline = pool
            .run(|| std::thread::current().name().map(str::to_string))
            .await;
        assert_ne!(inline, Some(Some("m365-cpu-0".to_string())));
    }
}
