//! systemd's notification protocol (`Type=notify`), when the unit asks for it (`NOTIFY_SOCKET`):
//! `READY=1` once the queue is open, locked and checked; `STATUS=` with the pending count, bytes
//! and online/offline; `STOPPING=1` on shutdown; and `WATCHDOG=1` only while the worker loop is
//! alive. The loop wakes at least every [`SAFETY_POLL`] even when idle, so a loop that has not
//! advanced for twice that is stuck: the pings stop and systemd restarts the service (the unit's
//! `WatchdogSec` is above that).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::sync::events::{DaemonEvent, Received};
use crate::sync::{blocking, SAFETY_POLL};

/// The longest between watchdog pings when the unit sets no `WatchdogSec`.
const STATUS_EVERY: Duration = Duration::from_secs(15);
/// `STATUS=` follows the queue, but not more often than this (an upload writes its progress).
const STATUS_AT_MOST: Duration = Duration::from_secs(2);

/// Says `STOPPING=1`. Called on the shutdown path itself, before the worker is told to stop:
/// sent from a task of its own, it raced the runtime's shutdown and was sometimes never sent.
pub fn stopping() {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
    }
}

/// `READY=1`, then the status (on what the bus tells, at most every [`STATUS_AT_MOST`]) and
/// the watchdog pings, when the unit asks for notifications.
pub struct Notify;

impl super::Component for Notify {
    const NAME: &'static str = "systemd notifications";

    async fn run(self, context: super::Context) -> anyhow::Result<()> {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return Ok(());
        }
        let _ = sd_notify::notify(&[NotifyState::Ready]);
        let mut bus = context.bus.subscribe();
        let worker = Arc::clone(&context.worker);
        let watchdog = sd_notify::watchdog_enabled();
        // Ping at a third of the interval; without a watchdog only the status is sent.
        let tick = watchdog.map_or(STATUS_EVERY, |w| (w / 3).min(STATUS_EVERY));
        let (mut seen, mut advanced) = (worker.wakeups(), Instant::now());
        // The status is due at once, then whenever the queue or the link changed.
        let mut status_due = true;
        let mut last_status = Instant::now() - STATUS_EVERY;
        let stopped = context.stopped();
        tokio::pin!(stopped);
        loop {
            if status_due && last_status.elapsed() >= STATUS_AT_MOST {
                (status_due, last_status) = (false, Instant::now());
                if let Ok(list) = blocking(&context.queue, |q| q.list()).await {
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
            let wait = if status_due { STATUS_AT_MOST.saturating_sub(last_status.elapsed()).min(tick) } else { tick };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                received = bus.recv() => match received {
                    Received::Event(DaemonEvent::EnrollmentChanged { .. } | DaemonEvent::Link { .. } | DaemonEvent::WorkArrived(_))
                    | Received::Lagged => status_due = true,
                    Received::Event(_) => {}
                    Received::Closed => return Ok(()),
                },
                () = &mut stopped => return Ok(()),
            }
        }
    }
}
