//! The sync worker: moves queued enrollments through the One-Shot API.
//!
//! Oldest first, at most `sync.concurrency` enrollments at a time, each one step after another
//! (create → evidences → video → status). A retryable failure schedules the enrollment again
//! after [`Backoff`] on monotonic time, with no attempt limit; a permanent one moves it to
//! `failed` with the server's reason while the others keep flowing. The database is polled
//! every [`POLL_INTERVAL`], so enrollments that another process queues are picked up within a
//! second without a restart.

mod backoff;
mod orphans;
mod step;

pub use backoff::Backoff;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::Config;
use crate::oneshot::Client;
use crate::queue::{Queue, QueueError};

/// How often the worker looks for new work when idle.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

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
}

/// The shared context of a worker's tasks.
#[derive(Debug)]
pub struct Worker {
    queue: Arc<Queue>,
    client: Client,
    config: Config,
}

/// Runs `f` on the blocking pool: SQLite and file work never runs on executor threads.
pub async fn blocking<T, F>(queue: &Arc<Queue>, f: F) -> Result<T, QueueError>
where
    T: Send + 'static,
    F: FnOnce(&Queue) -> Result<T, QueueError> + Send + 'static,
{
    let q = Arc::clone(queue);
    tokio::task::spawn_blocking(move || f(&q))
        .await
        .expect("queue task panicked")
}

impl Worker {
    pub fn new(queue: Arc<Queue>, client: Client, config: Config) -> Arc<Worker> {
        Arc::new(Worker {
            queue,
            client,
            config,
        })
    }

    /// Works until `shutdown` turns true (in [`Mode::Forever`]) or nothing is ready now (in
    /// [`Mode::Once`]). In-flight steps finish before it returns; their state is committed.
    pub async fn run(
        self: &Arc<Self>,
        mode: Mode,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Outcome, QueueError> {
        let backoff = Backoff {
            base: self.config.sync.backoff_base,
            cap: self.config.sync.backoff_cap,
        };
        let concurrency = self.config.sync.concurrency.get();
        // Monotonic schedule of enrollments waiting after a failure; wall-clock jumps cannot
        // shorten or stretch it. A restart forgets it, which only means one early retry.
        let mut not_before: HashMap<String, Instant> = HashMap::new();
        let mut inflight: JoinSet<(String, step::Result)> = JoinSet::new();
        let mut inflight_ids: Vec<String> = Vec::new();
        let mut rng = rand::rngs::StdRng::from_entropy();
        loop {
            let stopping = *shutdown.borrow();
            if !stopping && inflight_ids.len() < concurrency {
                let now = Instant::now();
                not_before.retain(|_, t| *t > now);
                let mut skip: Vec<String> = inflight_ids.clone();
                skip.extend(not_before.keys().cloned());
                let slots = concurrency - inflight_ids.len();
                let jobs = blocking(&self.queue, move |q| q.pending_jobs(&skip, slots)).await?;
                for job in jobs {
                    let me = Arc::clone(self);
                    inflight_ids.push(job.id.clone());
                    inflight.spawn(async move {
                        let id = job.id.clone();
                        (id, me.advance(job).await)
                    });
                }
            }
            if inflight_ids.is_empty() && (stopping || mode == Mode::Once) {
                break;
            }
            tokio::select! {
                Some(done) = inflight.join_next(), if !inflight_ids.is_empty() => {
                    let (id, result) = done.expect("sync task panicked");
                    inflight_ids.retain(|x| *x != id);
                    if let step::Result::RetryAfter { attempts, retry_after } = result {
                        let delay = backoff.delay(attempts, retry_after, &mut rng);
                        not_before.insert(id.clone(), Instant::now() + delay);
                        tracing::debug!(enrollment = %id, attempts, delay_ms = delay.as_millis() as u64, "retry scheduled");
                    }
                }
                _ = tokio::time::sleep(POLL_INTERVAL), if mode == Mode::Forever || !inflight_ids.is_empty() => {}
                _ = shutdown.changed(), if !stopping => {}
            }
        }
        let pending = blocking(&self.queue, |q| q.pending_count()).await?;
        Ok(Outcome { pending })
    }
}

use rand::SeedableRng as _;
