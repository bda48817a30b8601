//! Named crash points for durability tests.
//!
//! `KIOSK_AGENT_CRASH_AT=<name>` makes the process abort (no unwinding, no destructors, like
//! `kill -9` or a power cut as far as our files are concerned) when it reaches that point.
//! Unset, a crash point costs one environment lookup, cached on first use. The hook exists only
//! in builds with the `crash-points` feature (test builds); elsewhere a crash point is nothing.

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
#[cfg(feature = "crash-points")]
pub fn crash_point(point: &'static str) {
    static TARGET: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let target = TARGET.get_or_init(|| std::env::var(CRASH_ENV).ok());
    if target.as_deref() == Some(point) {
        debug_assert!(CRASH_POINTS.contains(&point), "crash point {point} is not listed in CRASH_POINTS");
        eprintln!("kiosk-agent: aborting at crash point {point}");
        std::process::abort();
    }
}

/// Without the `crash-points` feature, crash points compile to nothing.
#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn crash_point(_point: &'static str) {}
