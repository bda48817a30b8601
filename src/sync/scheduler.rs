//! The worker's scheduler: what runs next, and when.
//!
//! [`Worker::run`] is a loop of three moves: start what is due ([`Scheduler::start_due_work`]),
//! wait for the first thing to happen ([`Scheduler::next_event`]), and take note of it
//! ([`Scheduler::note`]). Everything the loop remembers between turns lives here, with the
//! rule that reads or writes it, so each rule can be read (and changed) on its own.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::events::{DaemonEvent, Received, Subscription};
use super::{blocking, step, Mode, Outcome, Worker, RETENTION_CHECK_EVERY, SAFETY_POLL, SHUTDOWN_GRACE};
use crate::queue::QueueError;

/// "Never" for a batch run: what failed or waits for a window is left to the next run.
const NEXT_RUN: Duration = Duration::from_secs(u32::MAX as u64);

/// What woke the scheduler up.
pub(super) enum Event {
    /// An enrollment's step ended (`None`: it was aborted at shutdown).
    StepDone { id: String, result: Option<step::Result> },
    /// A connectivity probe answered: whether the server was reachable.
    Probed { reachable: bool },
    /// A round of after-delivery work ended: when it wants to run again.
    AfterDeliveryDone(Result<Option<Duration>, QueueError>),
    /// Something changed outside (an enrollment, an approval, a webhook).
    Woken,
    /// A retry, a probe or after-delivery work is due, or the idle limit passed.
    Due,
    /// The shutdown channel changed (or closed: `open` false).
    ShutdownChanged { open: bool },
    /// The shutdown grace is over.
    GraceOver,
}

/// Resolves when work arrives on the bus (or events were missed, which may have been work);
/// the rest of the bus's traffic is not the worker's business and never wakes its loop.
async fn work_arrives(events: &mut Subscription) {
    loop {
        match events.recv().await {
            Received::Event(DaemonEvent::WorkArrived(_)) | Received::Lagged => return,
            Received::Event(_) => {}
            Received::Closed => std::future::pending().await,
        }
    }
}

/// The state the worker loop keeps between turns.
pub(super) struct Scheduler {
    worker: Arc<Worker>,
    mode: Mode,
    shutdown: watch::Receiver<bool>,
    /// The bus, for work that arrives from outside.
    events: Subscription,
    /// Whether a stop was asked for, as read at the start of this turn (one reading a turn, so
    /// a stop asked for midway is seen by the whole of the next turn, grace period included).
    stopping: bool,
    /// A dropped shutdown sender means nobody can ask us to stop; its branch goes quiet.
    shutdown_open: bool,
    abort_at: Option<Instant>,
    /// Enrollments the worker has claimed: the scrub leaves them to the upload, which verifies
    /// every chunk as it decrypts (reading a large video twice would halve the upload's speed).
    claimed: Arc<Mutex<HashSet<String>>>,
    scrub: Option<JoinHandle<Result<Vec<String>, QueueError>>>,
    /// Monotonic schedule of enrollments waiting after a failure, and whether each waits for
    /// the network; wall-clock jumps cannot shorten or stretch it. A restart forgets it, which
    /// only means one early retry.
    not_before: HashMap<String, (Instant, bool)>,
    inflight: JoinSet<step::Result>,
    inflight_ids: HashMap<tokio::task::Id, String>,
    /// Connectivity: `offline` once a probe failed; dispatch also pauses while a probe runs.
    offline: bool,
    probe: Option<JoinHandle<bool>>,
    probe_due: Option<Instant>,
    probe_failures: u32,
    /// When a quiet daemon asks the server whether it is there (`sync.heartbeat_secs` after the
    /// last answer, jittered): without it an idle kiosk would report itself online through a
    /// whole outage, and the fleet's "offline" alerts would only see the busy ones.
    heartbeat_due: Option<Instant>,
    /// After-delivery work (reviews, documents, orphans): beside delivery in the daemon, once
    /// after it in a batch run.
    after_delivery: Option<JoinHandle<Result<Option<Duration>, QueueError>>>,
    after_delivery_due: Option<Instant>,
    /// The retention policy is checked at start and then hourly (at the next wake-up), online
    /// or not: a kiosk offline for weeks must still erase what it may no longer keep.
    retention_due: Instant,
    /// Enrollments the retention policy erased during this run.
    erased_by_retention: u64,
}

impl Scheduler {
    pub(super) fn new(worker: Arc<Worker>, mode: Mode, shutdown: watch::Receiver<bool>) -> Scheduler {
        let heartbeat_due = next_heartbeat(&worker, mode);
        Scheduler {
            events: worker.bus.subscribe(),
            worker,
            mode,
            shutdown,
            stopping: false,
            shutdown_open: true,
            abort_at: None,
            claimed: Arc::default(),
            scrub: None,
            not_before: HashMap::new(),
            inflight: JoinSet::new(),
            inflight_ids: HashMap::new(),
            offline: false,
            probe: None,
            probe_due: None,
            probe_failures: 0,
            heartbeat_due,
            after_delivery: None,
            after_delivery_due: Some(Instant::now()),
            retention_due: Instant::now(),
            erased_by_retention: 0,
        }
    }

    fn reschedule_heartbeat(&mut self) {
        self.heartbeat_due = next_heartbeat(&self.worker, self.mode);
    }

    /// Whether the heartbeat may start a probe now: online (offline, probes run anyway) and no
    /// probe running or due.
    fn heartbeat_may_probe(&self) -> bool {
        !self.offline && self.probe.is_none() && self.probe_due.is_none()
    }

    fn stopping(&self) -> bool {
        self.stopping
    }

    fn in_flight(&self) -> Vec<String> {
        self.inflight_ids.values().cloned().collect()
    }

    /// Starts whatever is due: the retention policy, new steps, a probe, after-delivery work.
    pub(super) async fn start_due_work(&mut self) -> Result<(), QueueError> {
        self.stopping = *self.shutdown.borrow();
        let stopping = self.stopping;
        if stopping && self.abort_at.is_none() {
            self.abort_at = Some(Instant::now() + SHUTDOWN_GRACE);
        }
        if stopping {
            return Ok(());
        }
        let now = Instant::now();
        if self.retention_due <= now {
            self.retention_due = now + RETENTION_CHECK_EVERY;
            self.apply_retention().await?;
        }
        self.dispatch(now).await?;
        if self.heartbeat_may_probe() && self.heartbeat_due.is_some_and(|t| t <= now) {
            self.heartbeat_due = None;
            self.probe_due = Some(now);
        }
        if self.probe.is_none() && self.probe_due.is_some_and(|t| t <= now) {
            self.probe_due = None;
            self.probe = Some(tokio::spawn(Arc::clone(&self.worker).probe()));
        }
        if self.mode == Mode::Forever
            && !self.offline
            && self.after_delivery.is_none()
            && self.after_delivery_due.is_some_and(|t| t <= now)
        {
            self.after_delivery_due = None;
            let worker = Arc::clone(&self.worker);
            self.after_delivery = Some(tokio::spawn(async move { worker.after_delivery(false).await }));
        }
        Ok(())
    }

    async fn apply_retention(&mut self) -> Result<(), QueueError> {
        let skip = self.in_flight();
        let erased = blocking(&self.worker.queue, move |q| q.expire_retained(&skip)).await?;
        self.erased_by_retention += erased.len() as u64;
        // Document backups, sealed, fall under the same policy.
        if let Err(e) = blocking(&self.worker.queue, |q| q.expire_backups()).await {
            tracing::warn!(error = %e, "cannot erase the document backups past the retention period");
        }
        Ok(())
    }

    /// Claims ready enrollments up to `sync.concurrency`, while the server is believed reachable
    /// and no probe is asking whether it is.
    async fn dispatch(&mut self, now: Instant) -> Result<(), QueueError> {
        let concurrency = self.worker.config.sync.concurrency.get();
        if self.offline || self.probe.is_some() || self.inflight_ids.len() >= concurrency {
            return Ok(());
        }
        self.not_before.retain(|_, (t, _)| *t > now);
        let mut skip = self.in_flight();
        skip.extend(self.not_before.keys().cloned());
        let slots = concurrency - self.inflight_ids.len();
        let jobs = blocking(&self.worker.queue, move |q| q.pending_jobs(&skip, slots)).await?;
        for job in jobs {
            let worker = Arc::clone(&self.worker);
            let id = job.id.clone();
            self.claimed.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone());
            let handle = self.inflight.spawn(async move { worker.advance(job).await });
            self.inflight_ids.insert(handle.id(), id);
        }
        if self.scrub.is_none() {
            // Started once the first work is claimed, so it skips what is being sent.
            let (queue, claimed) = (Arc::clone(&self.worker.queue), Arc::clone(&self.claimed));
            self.scrub = Some(tokio::task::spawn_blocking(move || {
                queue.scrub(&|id| claimed.lock().unwrap_or_else(|p| p.into_inner()).contains(id))
            }));
        }
        Ok(())
    }

    /// Whether the run is over: nothing in flight and a stop asked for, or (in a batch run)
    /// nothing left to do now.
    pub(super) fn finished(&self) -> bool {
        self.inflight_ids.is_empty() && (self.stopping() || (self.mode == Mode::Once && self.probe.is_none()))
    }

    /// A batch run follows reviews, sends documents and reconciles orphans once, after
    /// delivery (reconciliation within the hour's budget).
    pub(super) async fn after_delivery_of_a_batch(&self) {
        if self.mode == Mode::Once && !self.stopping() && !self.offline {
            if let Err(e) = self.worker.after_delivery(true).await {
                tracing::warn!(error = %e, "after-delivery work stopped");
            }
        }
    }

    /// When the next timed work is due, if any.
    fn next_due(&self) -> Option<Instant> {
        let retry_due = self
            .not_before
            .values()
            .filter(|(_, waits_for_network)| !self.offline || !waits_for_network)
            .map(|(t, _)| *t)
            .min();
        // Only what can start counts: after-delivery work waits while offline or while a round
        // of it still runs (counting it then would spin the loop).
        let after_due = self
            .after_delivery_due
            .filter(|_| self.mode == Mode::Forever && !self.offline && self.after_delivery.is_none());
        let heartbeat_due = self.heartbeat_due.filter(|_| self.heartbeat_may_probe());
        [retry_due, self.probe_due, after_due, heartbeat_due].into_iter().flatten().min()
    }

    /// Waits for the first thing to happen.
    pub(super) async fn next_event(&mut self) -> Event {
        let stopping = self.stopping();
        let next_due = self.next_due();
        let idle_limit = if self.mode == Mode::Forever { SAFETY_POLL } else { Duration::from_secs(3600) };
        tokio::select! {
            Some(done) = self.inflight.join_next_with_id(), if !self.inflight_ids.is_empty() => {
                let (task, result) = match done {
                    Ok((task, result)) => (task, Some(result)),
                    Err(e) if e.is_cancelled() => (e.id(), None),
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                };
                let id = self.inflight_ids.remove(&task).unwrap_or_default();
                Event::StepDone { id, result }
            }
            reachable = async { self.probe.as_mut().expect("guarded").await }, if self.probe.is_some() => {
                Event::Probed { reachable: reachable.unwrap_or(false) }
            }
            done = async { self.after_delivery.as_mut().expect("guarded").await }, if self.after_delivery.is_some() => {
                match done {
                    Ok(result) => Event::AfterDeliveryDone(result),
                    Err(e) if e.is_cancelled() => Event::AfterDeliveryDone(Ok(None)),
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                }
            }
            _ = tokio::time::sleep_until(next_due.unwrap_or_else(|| Instant::now() + idle_limit)),
                if !stopping && (next_due.is_some() || self.mode == Mode::Forever) => Event::Due,
            () = work_arrives(&mut self.events), if !stopping => Event::Woken,
            changed = self.shutdown.changed(), if !stopping && self.shutdown_open => {
                Event::ShutdownChanged { open: changed.is_ok() }
            }
            _ = tokio::time::sleep_until(self.abort_at.unwrap_or_else(Instant::now)), if self.abort_at.is_some() => {
                Event::GraceOver
            }
        }
    }

    /// Takes note of what happened.
    pub(super) fn note(&mut self, event: Event) {
        match event {
            Event::StepDone { id, result } => self.step_done(id, result),
            Event::Probed { reachable } => self.probed(reachable),
            Event::AfterDeliveryDone(done) => {
                self.after_delivery = None;
                // What became due during the round (an enrollment reached review, work was
                // announced) keeps its earlier time: the round's own plan never pushes it back.
                match done {
                    Ok(Some(wait)) => self.after_delivery_due_by(Instant::now() + wait),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "after-delivery work stopped; trying again later");
                        self.after_delivery_due_by(Instant::now() + SAFETY_POLL);
                    }
                }
            }
            // Look at reviews and documents too.
            Event::Woken => self.after_delivery_due_by(Instant::now()),
            Event::Due => {}
            Event::ShutdownChanged { open } => self.shutdown_open = open,
            Event::GraceOver => {
                tracing::warn!(in_flight = self.inflight_ids.len(), "shutdown grace over; aborting in-flight steps");
                self.inflight.abort_all();
                self.abort_at = Some(Instant::now() + Duration::from_secs(3600));
            }
        }
    }

    /// Plans the next round of after-delivery work no later than `at`.
    fn after_delivery_due_by(&mut self, at: Instant) {
        self.after_delivery_due = Some(self.after_delivery_due.map_or(at, |due| due.min(at)));
    }

    fn step_done(&mut self, id: String, result: Option<step::Result>) {
        let answered = !matches!(result, Some(step::Result::RetryAfter { offline: true, .. }) | None);
        if answered {
            // The server answered: the heartbeat counts from here.
            self.reschedule_heartbeat();
        }
        let worker = &self.worker;
        self.claimed.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        if answered {
            worker.contacted();
        }
        // A deliberate wait (a video outside its window) is not a stall either.
        if !matches!(result, Some(step::Result::RetryAfter { .. }) | None) {
            worker.progressed();
        }
        match result {
            Some(step::Result::Deferred { delay }) => {
                // A batch run does not wait for a window; the next run (or the daemon) sends
                // the video when one is open.
                let delay = if self.mode == Mode::Once { NEXT_RUN } else { delay };
                self.not_before.insert(id, (Instant::now() + delay, false));
            }
            Some(step::Result::RetryAfter { delay, offline: no_network }) => {
                // A batch run tries each enrollment once: what failed waits for the next run,
                // however soon its retry would be due.
                let delay = if self.mode == Mode::Once { NEXT_RUN } else { delay };
                self.not_before.insert(id, (Instant::now() + delay, no_network));
                if no_network && !self.offline && self.probe.is_none() && self.probe_due.is_none() {
                    // Is it the network or this request? Ask at once.
                    self.probe_due = Some(Instant::now());
                }
            }
            // Just in review: its orphan check and documents are due now, even if the next round
            // was planned for later (a review poll two minutes away must not hold them).
            Some(step::Result::Settled) => self.after_delivery_due_by(Instant::now()),
            _ => {}
        }
    }

    fn probed(&mut self, reachable: bool) {
        let worker = &self.worker;
        self.probe = None;
        if reachable {
            worker.contacted();
            worker.set_online(true);
            if self.offline {
                let waiting = self.not_before.values().filter(|(_, n)| *n).count();
                tracing::info!(waiting, "server reachable again; retrying what waited for it now");
                self.offline = false;
                self.not_before.retain(|_, (_, waits_for_network)| !*waits_for_network);
            }
            self.probe_failures = 0;
            self.reschedule_heartbeat();
        } else {
            if !self.offline {
                tracing::warn!("server unreachable; waiting for it (probing)");
                self.offline = true;
            }
            worker.set_online(false);
            self.probe_failures += 1;
            self.probe_due = Some(Instant::now() + worker.probe_delay(self.probe_failures));
        }
    }

    /// Ends the run: neither a probe nor reconciliation holds up a stop (both start over next
    /// time); a batch run waits for verification, a daemon does not.
    pub(super) async fn finish(self) -> Result<Outcome, QueueError> {
        for task in
            [self.probe.map(|t| t.abort_handle()), self.after_delivery.map(|t| t.abort_handle())].into_iter().flatten()
        {
            task.abort();
        }
        let mut failed_verification = 0;
        if let Some(scrub) = self.scrub {
            if self.mode == Mode::Once {
                // A batch run reports what verification found before it says what is left.
                match scrub.await {
                    Ok(Ok(failed)) => failed_verification = failed.len() as u64,
                    Ok(Err(e)) => tracing::error!(error = %e, "artifact verification failed"),
                    Err(_) => {}
                }
            } else {
                // A stopping daemon does not wait for verification; the next start repeats it.
                scrub.abort();
            }
        }
        let worker = self.worker;
        let pending = blocking(&worker.queue, |q| q.pending_count()).await?;
        let [delivered, failed, ended] = worker.counts.each_ref().map(|c| c.load(Ordering::Relaxed));
        Ok(Outcome {
            pending,
            delivered,
            failed,
            ended,
            failed_verification,
            erased_by_retention: self.erased_by_retention,
        })
    }
}

/// The next heartbeat counted from now, in a daemon that has them (a batch run never does).
fn next_heartbeat(worker: &Worker, mode: Mode) -> Option<Instant> {
    match mode {
        Mode::Forever => worker.heartbeat_delay().map(|d| Instant::now() + d),
        Mode::Once => None,
    }
}
