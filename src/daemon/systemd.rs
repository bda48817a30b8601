//! systemd's notification protocol (`Type=notify`), when the unit asks for it (`NOTIFY_SOCKET`):
//! `READY=1` once the queue is open, locked and checked; `STATUS=` with the pending count, bytes
//! and online/offline; `STOPPING=1` on shutdown; and `WATCHDOG=1` only while the worker loop is
//! alive. The loop wakes at least every [`SAFETY_POLL`] even when idle, so a loop that has not
//! advanced for twice that is stuck: the pings stop and systemd restarts the service (the unit's
//! `WatchdogSec` is above that).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::queue::Queue;
use crate::sync::{blocking, Worker, SAFETY_POLL};

/// How often `STATUS=` is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(15);

/// Says `STOPPING=1`. Called on the shutdown path itself, before the worker is told to stop:
/// sent from a task of its own, it raced the runtime's shutdown and was sometimes never sent.
pub fn stopping() {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
    }
}

/// Sends `READY=1` and starts the status, watchdog and stopping notifications.
pub fn start(worker: &Arc<Worker>, queue: &Arc<Queue>, mut stop: tokio::sync::watch::Receiver<bool>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let _ = sd_notify::notify(&[NotifyState::Ready]);
    let (worker, queue) = (Arc::clone(worker), Arc::clone(queue));
    tokio::spawn(async move {
        let watchdog = sd_notify::watchdog_enabled();
        // Ping at a third of the interval; without a watchdog only the status is sent.
        let tick = watchdog.map_or(STATUS_EVERY, |w| (w / 3).min(STATUS_EVERY));
        let (mut seen, mut advanced) = (worker.wakeups(), Instant::now());
        let mut last_status = Instant::now() - STATUS_EVERY;
        loop {
            if last_status.elapsed() >= STATUS_EVERY {
                last_status = Instant::now();
                if let Ok(list) = blocking(&queue, |q| q.list()).await {
                    let b = crate::queue::Backlog::of(&list);
                    let link = if worker.is_online() { "online" } else { "offline" };
                    let status = format!("{} pending ({} bytes), {link}", b.pending, b.pending_bytes);
                    let _ = sd_notify::notify(&[NotifyState::Status(&status)]);
                }
            }
            if watchdog.is_some() {
                let now = worker.wakeups();
                if now != seen {
                    (seen, advanced) = (now, Instant::now());
                }
                if advanced.elapsed() < SAFETY_POLL * 2 {
                    let _ = sd_notify::notify(&[NotifyState::Watchdog]);
                } else {
                    tracing::error!("the sync worker has not advanced for {:?}; no watchdog ping", advanced.elapsed());
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    });
}
