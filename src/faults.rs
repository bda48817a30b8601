//! Named crash points for durability tests.
//!
//! `KIOSK_AGENT_CRASH_AT=<name>` makes the process abort (no unwinding, no destructors, like
//! `kill -9` or a power cut as far as our files are concerned) when it reaches that point.
//! Unset, a crash point costs one environment lookup, cached on first use.

use std::sync::OnceLock;

/// Environment variable naming the crash point to abort at.
pub const CRASH_ENV: &str = "KIOSK_AGENT_CRASH_AT";

/// Every named point, so tests can run them all and the README can list them.
pub const CRASH_POINTS: &[&str] = &[
    "enqueue.after_artifact",
    "enqueue.before_commit",
    "create.before_request",
    "create.after_response",
    "evidences.after_response",
    "video.mid_upload",
    "video.after_response",
    "document.before_upload",
    "document.after_response",
];

/// Aborts the process if `KIOSK_AGENT_CRASH_AT` names `point`.
pub fn crash_point(point: &'static str) {
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    let target = TARGET.get_or_init(|| std::env::var(CRASH_ENV).ok());
    if target.as_deref() == Some(point) {
        debug_assert!(CRASH_POINTS.contains(&point), "crash point {point} is not listed in CRASH_POINTS");
        eprintln!("kiosk-agent: aborting at crash point {point}");
        std::process::abort();
    }
}
