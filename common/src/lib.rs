//! kiosk-common: what the agent (`kiosk-agent`) and its capture helper (`kiosk-agent-capture`)
//! share, and nothing else. It sits below both and depends on no crate of ours, so the helper,
//! which decodes untrusted camera data, links neither the queue (SQLite) nor the One-Shot client.
//!
//! Code map:
//!
//! - [`config`]      — the configuration file's shared part: problems and errors, the
//!   `[cameras.*]`/`[capture]` sections ([`capture`]) and `[log]` ([`log`]).
//! - [`capture`]     — camera roles, still and video settings, validated; the capture crate
//!   takes these very types.
//! - [`log`]         — `log.format` and [`log::init`], the logging set-up of every binary.
//! - [`helper_args`] — the helper's command line (`cameras`, `capture still|video`, …), which
//!   `kiosk-agent` hands over unchanged.
//! - [`video`]       — what a probe of a clip found ([`video::VideoFacts`]).
//! - [`progress`]    — progress bars at a terminal, plain lines otherwise.
//! - [`fsutil`]      — what "durable" means on disk, shredding, memory files.
//! - [`harden`]      — umask 077, no core dumps, not dumpable: applied first by every binary.
//! - [`BadInput`]    — the marker that makes a failure exit 2 ("nothing changed") in both binaries.

pub mod capture;
pub mod config;
pub mod fsutil;
pub mod harden;
pub mod helper_args;
pub mod log;
pub mod progress;
pub mod video;

/// An error that is the input's fault (a missing device, a file that is not a video): both
/// binaries exit 2 for it, meaning nothing was changed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);
