//! kiosk-agent: capture, queue and upload One-Shot "External mode VideoID" evidence.
//!
//! Code map (one line a module, what it owns):
//!
//! - [`config`]   — TOML configuration: read → parse → validate into typed values.
//! - [`evidence`] — the enrollment manifest, its validation, the exact One-Shot JSON bodies.
//! - [`crypto`]   — master key, per-enrollment data keys, AEAD blobs and streamed artifact files.
//! - [`spill`]    — files too large for memory (a long video sent to the API) sealed on the disk
//!   under a key that never leaves memory, in the form FFmpeg's `crypto:` protocol reads.
//! - [`device_key`] — the per-device Ed25519 key that signs each enrollment's capture manifest.
//! - [`queue`]    — the durable, encrypted SQLite queue and the local state machine.
//! - [`oneshot`]  — the typed One-Shot HTTP client and its retryable/permanent error split.
//! - [`sync`]     — the worker that moves enrollments through the API, with backoff, follows
//!   reviews and sends documents once approved.
//! - [`api`]      — the local control API (axum) that `run` serves: status, enrollments, events;
//!   it trusts no browser (`api::guard`), trades its token for sessions (`api::session`).
//! - [`daemon`]   — `daemon::run(config, listeners, shutdown)`: the worker and the services beside it.
//! - [`webhook`]  — the optional receiver of the Optimizer's status callbacks.
//! - [`listener`] — serving HTTP so that no client can starve it (header timeout, connection
//!   limit, the descriptor limit raised).
//! - [`demo`]     — `kiosk-agent demo`: the whole job on embedded defaults.
//! - [`cli`]      — the command-line interface (`main.rs` only maps its result to an exit code).
//! - [`harden`]   — umask 077, no core dumps, not dumpable: applied first by every binary
//!   (from `kiosk-common`).
//! - [`helper`]   — finding and running `kiosk-agent-capture`, the process that links FFmpeg.
//! - [`flow`]     — the signing flow's shared steps (what an ID names, status checks, RAO).
//! - [`failure`]  — a command's failure: exit code and error (the API maps it to HTTP).
//! - [`faults`]   — named crash points for durability tests.
//! - [`fsutil`]   — what "durable" means on disk: fsync of files and directories, free space,
//!   shredding, and memory files for what must never reach a disk (from `kiosk-common`).
//! - [`progress`] — progress of enroll, upload and capture: a bar at a terminal, lines otherwise.
//!
//! Below this crate: `kiosk-common` (`common/`), what it shares with the capture helper (the
//! capture configuration and `Role`, the helper's command line, logging, progress, `fsutil`,
//! `harden`), and `oneshot-protocol` (`protocol/`), the vocabulary it shares with the sandbox.
//! The README's Architecture section lists the layers and the invariants that keep them apart.
//!
//! The built-in One-Shot server (`kiosk-agent sandbox`, the demo) is the `kiosk-sandbox` workspace
//! crate (`sandbox/`): linked for those two commands, never used by the worker.
//!
//! Camera work lives in the separate `kiosk-capture` crate, linked only by the
//! `kiosk-agent-capture` helper, a workspace package of its own (`capture-helper/`), so that
//! FFmpeg and V4L2 stay out of this library, the daemon and the queue commands, and out of
//! their build ([`helper`] says why).

pub mod api;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod daemon;
pub mod demo;
pub mod device_key;
pub mod evidence;
pub mod failure;
pub mod faults;
pub mod flow;
pub mod helper;
pub mod listener;
pub mod oneshot;
pub mod progress;
pub mod queue;
pub mod spill;
pub mod sync;
pub mod webhook;

// Shared with the capture helper (`kiosk-common`), re-exported under their old names.
pub use kiosk_common::{fsutil, harden};
