//! Live guidance for the capture service: one judged preview frame a few times a second per
//! viewer, sent as server-sent events. It reads the hub's latest frame without copying it and
//! sleeps between judgements, so it never holds the camera back or slows a recording: a slow
//! judgement only means fewer of them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiosk_capture::auto::JUDGE_EVERY;
use kiosk_capture::guidance::{Guide, Steady};
use kiosk_capture::hub::Hub;
use kiosk_common::capture::{CaptureConfig, Role};
use tokio::sync::mpsc::Sender;

use crate::report::GuidanceReport;

/// One SSE event per judged frame into `tx` until the viewer leaves or the camera ends.
pub fn stream(hub: Hub, cfg: &CaptureConfig, role: Role, tx: Sender<Result<Vec<u8>, std::io::Error>>) {
    let r = cfg.role(role);
    let card = r.card.filter(|_| role == Role::Document);
    let mut guide = Guide::new(r.thresholds, card);
    let mut steady = Steady::new(cfg.still.auto_steady);
    let mut seen = None;
    loop {
        let began = Instant::now();
        let frame = match hub.frame_after(seen) {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => return, // the camera ended or went silent: the page reconnects
        };
        seen = Some(frame.index);
        let Ok(g) = guide.judge(&frame) else { return };
        steady.update(g.ready, frame.timestamp);
        let report = GuidanceReport::new(&g, role, steady.ready_for(frame.timestamp), cfg.still.auto_steady);
        let json = serde_json::to_string(&report).expect("reports serialize");
        if tx.blocking_send(Ok(format!("event: guidance\ndata: {json}\n\n").into_bytes())).is_err() {
            return; // the viewer left
        }
        if let Some(rest) = JUDGE_EVERY.checked_sub(began.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

/// Set when the request that started a wait is dropped (its client went away).
#[derive(Debug, Default, Clone)]
pub struct Cancelled(Arc<AtomicBool>);

impl Cancelled {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Sets its [`Cancelled`] when dropped: held by the handler across its await.
#[derive(Debug)]
pub struct CancelOnDrop(pub Cancelled);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0 .0.store(true, Ordering::Relaxed);
    }
}

/// How long an auto-capture may wait when the request does not say, and at most.
pub const AUTO_TIMEOUT: Duration = Duration::from_secs(30);
pub const AUTO_TIMEOUT_MAX: Duration = Duration::from_secs(120);
