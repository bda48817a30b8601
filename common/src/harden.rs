//! Process hardening applied first thing by every kiosk-agent binary.
//!
//! The process holds the master key and customers' personal data in memory and writes evidence
//! to disk, so: files it creates are private whatever umask it inherited (0600 files, 0700
//! directories), it never writes a core dump, and it is not dumpable, so other processes of the
//! same user cannot attach to it or read its memory through /proc.

use rustix::fs::Mode;
use rustix::process::{DumpableBehavior, Resource, Rlimit};

/// Applies the hardening; failures are ignored (each step only removes capabilities).
pub fn apply() {
    rustix::process::umask(Mode::from_raw_mode(0o077));
    let _ = rustix::process::setrlimit(Resource::Core, Rlimit { current: Some(0), maximum: Some(0) });
    let _ = rustix::process::set_dumpable_behavior(DumpableBehavior::NotDumpable);
}
