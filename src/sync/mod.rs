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
pub mod events;
mod orphans;
mod pacer;
pub mod redact;
mod review;
mod scheduler;
mod step;
mod streamed;

pub use backoff::Backoff;
pub use review::{ReviewError, Reviewed};

use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::Ordering;

use tokio::sync::watch;

use crate::config::Config;
use crate::oneshot::Client;
use crate::queue::{Queue, QueueError};
use scheduler::Scheduler;

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
    /// Enrollments failed by the verification of their queued evidence (damaged, missing).
    pub failed_verification: u64,
    /// Enrollments whose evidence the retention policy erased during the run.
    pub erased_by_retention: u64,
}

/// The shared context of a worker's tasks.
#[derive(Debug)]
pub struct Worker {
    queue: Arc<Queue>,
    client: Client,
    config: Config,
    /// The daemon's event bus: the worker wakes on work that arrives and tells of links and uploads.
    bus: events::Bus,
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
    /// When a step last moved an enrollment on, in ms after `created` on the monotonic clock
    /// (0: the worker's start): a wall clock corrected forward is not a stall.
    last_progress_ms: std::sync::atomic::AtomicU64,
    /// When this worker was made (the monotonic clock's origin for `last_progress_ms`).
    created: std::time::Instant,
    /// `sync.max_upload_rate`, shared by every upload.
    pacer: Option<Arc<pacer::Pacer>>,
    /// Told when an erasure set a spool aside ([`Worker::discard_erased`]).
    erased: tokio::sync::Notify,
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
            bus: events::Bus::default(),
            wakeups: Default::default(),
            probes: Default::default(),
            counts: Default::default(),
            orphan_budget: std::sync::Mutex::new(orphans::Budget::per_hour(config.sync.orphan_lookups_per_hour)),
            started_ms: crate::queue::now_ms(),
            online: std::sync::atomic::AtomicBool::new(true),
            last_contact_ms: Default::default(),
            pacer: config.sync.max_upload_rate.map(|rate| Arc::new(pacer::Pacer::new(rate))),
            last_progress_ms: std::sync::atomic::AtomicU64::new(0),
            created: std::time::Instant::now(),
            erased: tokio::sync::Notify::new(),
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

    /// How long since a step last moved an enrollment on (since the worker's start at first),
    /// on the monotonic clock.
    pub fn without_progress(&self) -> std::time::Duration {
        let last = std::time::Duration::from_millis(self.last_progress_ms.load(Ordering::Relaxed));
        self.created.elapsed().saturating_sub(last)
    }

    /// Notes that a step moved an enrollment on.
    fn progressed(&self) {
        self.last_progress_ms.store(self.created.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Records whether the server is reachable, and says so on the bus when that changed.
    fn set_online(&self, online: bool) {
        if self.online.swap(online, Ordering::Relaxed) != online {
            self.bus.publish(events::DaemonEvent::Link { online });
        }
    }

    fn contacted(&self) {
        self.last_contact_ms.store(crate::queue::now_ms(), Ordering::Relaxed);
    }

    fn backoff(&self) -> Backoff {
        Backoff { base: self.config.sync.backoff_base, cap: self.config.sync.backoff_cap }
    }

    /// The event bus this worker subscribes to and publishes on: publishing
    /// [`events::DaemonEvent::WorkArrived`] makes it look at the queue now.
    pub fn bus(&self) -> &events::Bus {
        &self.bus
    }

    /// Asks the worker to look at the queue now, saying why.
    pub fn wake(&self, why: events::Why) {
        self.bus.publish(events::DaemonEvent::WorkArrived(why));
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

    /// How long a quiet daemon waits after the server's last answer before it probes:
    /// `sync.heartbeat_secs` with equal jitter, so that a fleet started together (after an
    /// update, a region's power cut) does not probe together.
    fn heartbeat_delay(&self) -> Option<Duration> {
        let every = self.config.sync.heartbeat?;
        Some(every.mul_f64(rand::Rng::gen_range(&mut rand::thread_rng(), 0.5..=1.0)))
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
    pub async fn run(self: &Arc<Self>, mode: Mode, shutdown: watch::Receiver<bool>) -> Result<Outcome, QueueError> {
        let discarder = tokio::spawn(Arc::clone(self).discard_erased(mode, shutdown.clone()));
        let mut scheduler = Scheduler::new(Arc::clone(self), mode, shutdown);
        loop {
            self.wakeups.fetch_add(1, Ordering::Relaxed);
            scheduler.start_due_work().await?;
            if scheduler.finished() {
                scheduler.after_delivery_of_a_batch().await;
                break;
            }
            let event = scheduler.next_event().await;
            scheduler.note(event);
        }
        let outcome = scheduler.finish().await;
        match mode {
            // What an earlier run set aside was discarded beside this run's deliveries; this
            // run's own erasures are left to the next run (their keys are destroyed already).
            Mode::Once => {
                let _ = discarder.await;
            }
            Mode::Forever => discarder.abort(),
        }
        outcome
    }

    /// Hands back the blocks of erased spools in the background ([`Queue::discard_erased`]):
    /// what earlier runs left at the start, then (in [`Mode::Forever`]) after each erasure.
    /// A failure is logged and retried at the next erasure: nothing readable is left behind
    /// meanwhile, only ciphertext without its key.
    async fn discard_erased(self: Arc<Self>, mode: Mode, mut shutdown: watch::Receiver<bool>) {
        loop {
            match blocking(&self.queue, |q| q.discard_erased()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(spools = n, "erased spools discarded"),
                Err(e) => tracing::warn!(error = %e, "cannot discard erased spools yet"),
            }
            if mode == Mode::Once {
                return;
            }
            tokio::select! {
                () = self.erased.notified() => {}
                changed = shutdown.changed() => if changed.is_err() || *shutdown.borrow() { return },
            }
        }
    }
}

#[cfg(test)]
mod tests;
