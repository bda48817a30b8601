//! Live guidance for the capture service, as server-sent events (one per judged preview
//! frame, [`kiosk_capture::guidance::follow`]), and the cancellation of an auto-capture whose
//! asker went away.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kiosk_capture::guidance::{follow, Guide};
use kiosk_capture::hub::Hub;
use kiosk_common::capture::{CaptureConfig, Role};
use tokio::sync::mpsc::Sender;

use crate::report::GuidanceReport;

/// One SSE event per judged frame into `tx` until the viewer leaves or the camera ends.
pub fn stream(hub: Hub, cfg: &CaptureConfig, role: Role, tx: Sender<Result<Vec<u8>, std::io::Error>>) {
    let r = cfg.role(role);
    let card = r.card.filter(|_| role == Role::Document);
    let steady = cfg.still.auto_steady;
    follow(&hub, Guide::new(r.thresholds, card), steady, |g, ready_for| {
        let report = GuidanceReport::new(g, role, ready_for, steady);
        let json = serde_json::to_string(&report).expect("reports serialize");
        // False once the viewer left.
        tx.blocking_send(Ok(format!("event: guidance\ndata: {json}\n\n").into_bytes())).is_ok()
    });
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
