//! The sync worker: moves queued enrollments through the One-Shot API.
//!
//! Oldest first, at most `sync.concurrency` enrollments at a time, each one step after another
//! (create → evidences → video → status). A retryable failure schedules the enrollment again
//! after [`Backoff`] on monotonic time, with no attempt limit; a permanent one, a terminal server
//! status or the same HTTP 500 repeated moves it to `failed` (or `cancelled`/`refused`) with the
//! reason while the others keep flowing.
//!
//! Connectivity is the worker's, not each enrollment's: when a step cannot reach the server at
//! all, dispatch pauses and a cheap probe ([`Client::probe`]) checks the network, then runs with
//! its own backoff capped at `sync.probe_cap_secs`. The moment it gets an answer, every
//! enrollment that was waiting for the network is tried at once, whatever its backoff said.
//! While the server is unreachable only probes go out.
//!
//! Delivery first: after-delivery work runs beside the uploads — following requests in review
//! and sending documents once approved ([`review`]), and orphan reconciliation ([`orphans`]),
//! only for enrollments already in review, within `sync.orphan_lookups_per_hour`.
//!
//! Idle costs nothing: between attempts the worker sleeps until the next one is due, until it is
//! woken ([`Worker::waker`]: `enroll` and `queue retry` poke the daemon through a socket in the
//! data directory, so new work starts at once), or for at most [`SAFETY_POLL`] in case a wake
//! was missed. On shutdown it takes no new work, gives in-flight steps [`SHUTDOWN_GRACE`] to
//! finish, then aborts them (an aborted upload is not applied by the server and its state was
//! never committed, so the queue stays consistent).

mod action;
mod backoff;
mod orphans;
mod pacer;
pub mod redact;
mod review;
mod step;

pub use backoff::Backoff;
pub use review::{ReviewError, Reviewed};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::Ordering;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::Config;
use crate::oneshot::Client;
use crate::queue::{Queue, QueueError};

/// The longest the worker sleeps without looking at the queue (a missed wake costs this much).
pub const SAFETY_POLL: Duration = Duration::from_secs(60);
/// How long in-flight steps may run on after a shutdown request before they are aborted.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often the retention policy (`storage.max_retention_days`) is applied.
const RETENTION_CHECK_EVERY: Duration = Duration::from_secs(3600);

/// Whether the worker exits once nothing is ready, or keeps running until shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Once,
    Forever,
}

/// What a worker run left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Enrollments still pending (waiting for the network or a retry).
    pub pending: usize,
    /// Enrollments that reached review (or beyond) during the run.
    pub delivered: u64,
    /// Enrollments that became `failed` during the run (an operator must act).
    pub failed: u64,
    /// Enrollments the server ended (`cancelled`, `refused`) during the run.
    pub ended: u64,
}

/// The shared context of a worker's tasks.
#[derive(Debug)]
pub struct Worker {
    queue: Arc<Queue>,
    client: Client,
    config: Config,
    wake: Arc<tokio::sync::Notify>,
    wakeups: std::sync::atomic::AtomicU64,
    probes: std::sync::atomic::AtomicU64,
    /// What this worker saw happen: delivered, failed, ended by the server.
    counts: [std::sync::atomic::AtomicU64; 3],
    orphan_budget: std::sync::Mutex<orphans::Budget>,
    /// When this worker was made (ms): what reached review since, it read itself.
    started_ms: i64,
    /// Whether the server is reachable as far as the worker knows (false once a probe failed).
    online: std::sync::atomic::AtomicBool,
    /// When the server last answered anything (ms; 0: not yet).
    last_contact_ms: std::sync::atomic::AtomicI64,
    /// When a step last moved an enrollment on (ms; the worker's start at first).
    last_progress_ms: std::sync::atomic::AtomicI64,
    /// `sync.max_upload_rate`, shared by every upload.
    pacer: Option<Arc<pacer::Pacer>>,
    /// Videos being uploaded: enrollment id → (bytes handed to the connection, total bytes).
    uploads: std::sync::Mutex<HashMap<String, (Arc<std::sync::atomic::AtomicU64>, u64)>>,
}

/// Runs `f` on the blocking pool: SQLite and file work never runs on executor threads.
pub async fn blocking<T, F>(queue: &Arc<Queue>, f: F) -> Result<T, QueueError>
where
    T: Send + 'static,
    F: FnOnce(&Queue) -> Result<T, QueueError> + Send + 'static,
{
    let q = Arc::clone(queue);
    tokio::task::spawn_blocking(move || f(&q)).await.expect("queue task panicked")
}

impl Worker {
    pub fn new(queue: Arc<Queue>, client: Client, config: Config) -> Arc<Worker> {
        Arc::new(Worker {
            queue,
            client,
            wake: Arc::new(tokio::sync::Notify::new()),
            wakeups: Default::default(),
            probes: Default::default(),
            counts: Default::default(),
            orphan_budget: std::sync::Mutex::new(orphans::Budget::per_hour(config.sync.orphan_lookups_per_hour)),
            started_ms: crate::queue::now_ms(),
            online: std::sync::atomic::AtomicBool::new(true),
            last_contact_ms: Default::default(),
            uploads: Default::default(),
            pacer: config.sync.max_upload_rate.map(|rate| Arc::new(pacer::Pacer::new(rate))),
            last_progress_ms: std::sync::atomic::AtomicI64::new(crate::queue::now_ms()),
            config,
        })
    }

    /// Whether the server is reachable, as far as the worker knows.
    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }

    /// When the server last answered (ms since the epoch), if it has.
    pub fn last_contact_ms(&self) -> Option<i64> {
        Some(self.last_contact_ms.load(Ordering::Relaxed)).filter(|&ms| ms > 0)
    }

    /// The videos being uploaded now: (enrollment id, bytes sent, total bytes).
    pub fn upload_progress(&self) -> Vec<(String, u64, u64)> {
        let uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        uploads.iter().map(|(id, (sent, total))| (id.clone(), sent.load(Ordering::Relaxed), *total)).collect()
    }

    /// When a step last moved an enrollment on (ms since the epoch; the worker's start at first).
    pub fn last_progress_ms(&self) -> i64 {
        self.last_progress_ms.load(Ordering::Relaxed)
    }

    fn contacted(&self) {
        self.last_contact_ms.store(crate::queue::now_ms(), Ordering::Relaxed);
    }

    fn backoff(&self) -> Backoff {
        Backoff { base: self.config.sync.backoff_base, cap: self.config.sync.backoff_cap }
    }

    /// Notifying this makes the worker look at the queue now.
    pub fn waker(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.wake)
    }

    /// How many times the worker loop woke up (to show that idle means asleep).
    pub fn wakeups(&self) -> u64 {
        self.wakeups.load(Ordering::Relaxed)
    }

    /// Counts an outcome: 0 delivered, 1 failed, 2 ended by the server.
    fn count(&self, which: usize) {
        self.counts[which].fetch_add(1, Ordering::Relaxed);
    }

    /// How many connectivity probes were sent.
    pub fn probes(&self) -> u64 {
        self.probes.load(Ordering::Relaxed)
    }

    /// The wait before the `n`-th probe after `n - 1` failed ones: "equal jitter" (half the
    /// window fixed) so that probes neither bunch up nor wait longer than `sync.probe_cap_secs`.
    fn probe_delay(&self, failures: u32) -> Duration {
        let window = Backoff { base: self.config.sync.backoff_base, cap: self.config.sync.probe_cap }.ceiling(failures);
        window.mul_f64(rand::Rng::gen_range(&mut rand::thread_rng(), 0.5..=1.0))
    }

    async fn probe(self: Arc<Self>) -> bool {
        self.probes.fetch_add(1, Ordering::Relaxed);
        match self.client.probe().await {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "server unreachable");
                false
            }
        }
    }

    /// Works until `shutdown` turns true (in [`Mode::Forever`]) or nothing is ready now (in
    /// [`Mode::Once`]). Queued artifacts are verified in the background ([`Queue::scrub`]),
    /// except those being uploaded, which the upload verifies chunk by chunk.
    pub async fn run(self: &Arc<Self>, mode: Mode, mut shutdown: watch::Receiver<bool>) -> Result<Outcome, QueueError> {
        let concurrency = self.config.sync.concurrency.get();
        // Enrollments the worker has claimed: the scrub leaves them to the upload, which
        // verifies every chunk as it decrypts (reading a large video twice would halve the
        // upload's speed).
        let claimed: Arc<std::sync::Mutex<std::collections::HashSet<String>>> = Arc::default();
        let mut scrub: Option<tokio::task::JoinHandle<Result<Vec<String>, QueueError>>> = None;
        // Monotonic schedule of enrollments waiting after a failure, and whether each waits for
        // the network; wall-clock jumps cannot shorten or stretch it. A restart forgets it,
        // which only means one early retry.
        let mut not_before: HashMap<String, (Instant, bool)> = HashMap::new();
        let mut inflight: JoinSet<step::Result> = JoinSet::new();
        let mut inflight_ids: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut abort_at: Option<Instant> = None;
        // Connectivity: `offline` once a probe failed; dispatch also pauses while a probe runs.
        let mut offline = false;
        let mut probe: Option<tokio::task::JoinHandle<bool>> = None;
        let mut probe_due: Option<Instant> = None;
        let mut probe_failures = 0u32;
        // After-delivery work (reviews, documents, orphans): beside delivery in the daemon, once
        // after it in a batch run.
        let mut bookkeeping: Option<tokio::task::JoinHandle<Result<Option<Duration>, QueueError>>> = None;
        let mut bookkeeping_due: Option<Instant> = Some(Instant::now());
        // A dropped shutdown sender means nobody can ask us to stop; its branch goes quiet.
        let mut shutdown_open = true;
        // The retention policy is checked at start and then hourly (at the next wake-up), online
        // or not: a kiosk offline for weeks must still erase what it may no longer keep.
        let mut retention_due = Instant::now();
        loop {
            self.wakeups.fetch_add(1, Ordering::Relaxed);
            let stopping = *shutdown.borrow();
            if stopping && abort_at.is_none() {
                abort_at = Some(Instant::now() + SHUTDOWN_GRACE);
            }
            let now = Instant::now();
            if !stopping && retention_due <= now {
                retention_due = now + RETENTION_CHECK_EVERY;
                let skip: Vec<String> = inflight_ids.values().cloned().collect();
                blocking(&self.queue, move |q| q.expire_retained(&skip)).await?;
                // Document backups, sealed, fall under the same policy.
                if let Err(e) = blocking(&self.queue, |q| q.expire_backups()).await {
                    tracing::warn!(error = %e, "cannot erase the document backups past the retention period");
                }
            }
            if !stopping && !offline && probe.is_none() && inflight_ids.len() < concurrency {
                not_before.retain(|_, (t, _)| *t > now);
                let mut skip: Vec<String> = inflight_ids.values().cloned().collect();
                skip.extend(not_before.keys().cloned());
                let slots = concurrency - inflight_ids.len();
                let jobs = blocking(&self.queue, move |q| q.pending_jobs(&skip, slots)).await?;
                for job in jobs {
                    let me = Arc::clone(self);
                    let id = job.id.clone();
                    claimed.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone());
                    let handle = inflight.spawn(async move { me.advance(job).await });
                    inflight_ids.insert(handle.id(), id);
                }
                if scrub.is_none() {
                    // Started once the first work is claimed, so it skips what is being sent.
                    let (queue, claimed) = (Arc::clone(&self.queue), Arc::clone(&claimed));
                    scrub = Some(tokio::task::spawn_blocking(move || {
                        queue.scrub(&|id| claimed.lock().unwrap_or_else(|p| p.into_inner()).contains(id))
                    }));
                }
            }
            if !stopping && probe.is_none() && probe_due.is_some_and(|t| t <= now) {
                probe_due = None;
                probe = Some(tokio::spawn(Arc::clone(self).probe()));
            }
            if mode == Mode::Forever
                && !stopping
                && !offline
                && bookkeeping.is_none()
                && bookkeeping_due.is_some_and(|t| t <= now)
            {
                bookkeeping_due = None;
                let me = Arc::clone(self);
                bookkeeping = Some(tokio::spawn(async move { me.after_delivery(false).await }));
            }
            if inflight_ids.is_empty() && (stopping || (mode == Mode::Once && probe.is_none())) {
                if mode == Mode::Once && !stopping && !offline {
                    // A batch run follows reviews, sends documents and reconciles orphans once,
                    // after delivery (reconciliation within the hour's budget).
                    if let Err(e) = self.after_delivery(true).await {
                        tracing::warn!(error = %e, "after-delivery work stopped");
                    }
                }
                break;
            }
            let retry_due = not_before
                .values()
                .filter(|(_, waits_for_network)| !offline || !waits_for_network)
                .map(|(t, _)| *t)
                .min();
            // Only what can start counts: after-delivery work waits while offline or while a
            // round of it still runs (counting it then would spin the loop).
            let after_due = bookkeeping_due.filter(|_| mode == Mode::Forever && !offline && bookkeeping.is_none());
            let next_due = [retry_due, probe_due, after_due].into_iter().flatten().min();
            let idle_limit = if mode == Mode::Forever { SAFETY_POLL } else { Duration::from_secs(3600) };
            tokio::select! {
                Some(done) = inflight.join_next_with_id(), if !inflight_ids.is_empty() => {
                    let (task, result) = match done {
                        Ok((task, result)) => (task, Some(result)),
                        Err(e) if e.is_cancelled() => (e.id(), None),
                        Err(e) => std::panic::resume_unwind(e.into_panic()),
                    };
                    let id = inflight_ids.remove(&task).unwrap_or_default();
                    claimed.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                    if !matches!(result, Some(step::Result::RetryAfter { offline: true, .. }) | None) {
                        self.contacted();
                    }
                    // A deliberate wait (a video outside its window) is not a stall either.
                    if !matches!(result, Some(step::Result::RetryAfter { .. }) | None) {
                        self.last_progress_ms.store(crate::queue::now_ms(), Ordering::Relaxed);
                    }
                    match result {
                        Some(step::Result::Deferred { delay }) => {
                            // A batch run does not wait for a window; the next run (or the
                            // daemon) sends the video when one is open.
                            let delay = if mode == Mode::Once { Duration::from_secs(u32::MAX as u64) } else { delay };
                            not_before.insert(id, (Instant::now() + delay, false));
                        }
                        Some(step::Result::RetryAfter { delay, offline: no_network }) => {
                            // A batch run tries each enrollment once: what failed waits for the
                            // next run, however soon its retry would be due.
                            let delay = if mode == Mode::Once { Duration::from_secs(u32::MAX as u64) } else { delay };
                            not_before.insert(id, (Instant::now() + delay, no_network));
                            if no_network && !offline && probe.is_none() && probe_due.is_none() {
                                // Is it the network or this request? Ask at once.
                                probe_due = Some(Instant::now());
                            }
                        }
                        Some(step::Result::Settled) if bookkeeping_due.is_none() => bookkeeping_due = Some(Instant::now()),
                        _ => {}
                    }
                }
                reachable = async { probe.as_mut().expect("guarded").await }, if probe.is_some() => {
                    probe = None;
                    if reachable.unwrap_or(false) {
                        self.contacted();
                        self.online.store(true, Ordering::Relaxed);
                        if offline {
                            let waiting = not_before.values().filter(|(_, n)| *n).count();
                            tracing::info!(waiting, "server reachable again; retrying what waited for it now");
                            offline = false;
                            not_before.retain(|_, (_, waits_for_network)| !*waits_for_network);
                        }
                        probe_failures = 0;
                    } else {
                        if !offline {
                            tracing::warn!("server unreachable; waiting for it (probing)");
                            offline = true;
                        }
                        self.online.store(false, Ordering::Relaxed);
                        probe_failures += 1;
                        probe_due = Some(Instant::now() + self.probe_delay(probe_failures));
                    }
                }
                done = async { bookkeeping.as_mut().expect("guarded").await }, if bookkeeping.is_some() => {
                    bookkeeping = None;
                    match done {
                        Ok(Ok(Some(wait))) => bookkeeping_due = Some(Instant::now() + wait),
                        Ok(Ok(None)) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "after-delivery work stopped; trying again later");
                            bookkeeping_due = Some(Instant::now() + SAFETY_POLL);
                        }
                        Err(e) if e.is_cancelled() => {}
                        Err(e) => std::panic::resume_unwind(e.into_panic()),
                    }
                }
                _ = tokio::time::sleep_until(next_due.unwrap_or_else(|| Instant::now() + idle_limit)), if !stopping && (next_due.is_some() || mode == Mode::Forever) => {}
                _ = self.wake.notified(), if !stopping => {
                    // Something changed outside (an enrollment, an approval, a webhook): look at
                    // reviews and documents too.
                    bookkeeping_due = Some(Instant::now());
                }
                changed = shutdown.changed(), if !stopping && shutdown_open => shutdown_open = changed.is_ok(),
                _ = tokio::time::sleep_until(abort_at.unwrap_or_else(Instant::now)), if abort_at.is_some() => {
                    tracing::warn!(in_flight = inflight_ids.len(), "shutdown grace over; aborting in-flight steps");
                    inflight.abort_all();
                    abort_at = Some(Instant::now() + Duration::from_secs(3600));
                }
            }
        }
        // Neither a probe nor reconciliation holds up a stop; both start over next time.
        for task in [probe.map(|t| t.abort_handle()), bookkeeping.map(|t| t.abort_handle())].into_iter().flatten() {
            task.abort();
        }
        if let Some(scrub) = scrub {
            if mode == Mode::Once {
                // A batch run reports what verification found before it says what is left.
                if let Ok(Err(e)) = scrub.await {
                    tracing::error!(error = %e, "artifact verification failed");
                }
            } else {
                // A stopping daemon does not wait for verification; the next start repeats it.
                scrub.abort();
            }
        }
        let pending = blocking(&self.queue, |q| q.pending_count()).await?;
        let [delivered, failed, ended] = self.counts.each_ref().map(|c| c.load(Ordering::Relaxed));
        Ok(Outcome { pending, delivered, failed, ended })
    }
}

#[cfg(test)]
mod tests;
