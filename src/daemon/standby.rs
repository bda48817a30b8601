//! The probe standby: a `kiosk-agent-capture probe-standby` kept waiting on
//! [`STANDBY_SOCKET`] in the data directory, FFmpeg already linked, so that probing an
//! enrollment's video (`enroll` in another process, or this daemon's API intake) skips starting
//! a process that links a hundred-odd libraries.
//!
//! The daemon owns the listening socket (0600, in the 0700 data directory: this user only) and
//! hands it to one standby at a time as its standard input. A standby answers one request and
//! exits, so a video that crashes or hangs the decoder takes only its own standby with it. The
//! next is started a moment later ([`QUIET`]; the first [`QUIET_AT_START`] after the daemon),
//! or at once when a request is waiting: a request that arrives in between waits in the
//! socket's backlog.
//! If standbys keep failing, the socket is removed for a while: probes then start their own
//! helper, as they do when no daemon runs.

use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::time::Duration;

use super::{Component, Context};
use crate::evidence::STANDBY_SOCKET;

/// After a standby has answered, the next one starts once the machine has had this long to
/// finish the enrollment it served (a standby's start is some 30 ms of CPU spent linking
/// FFmpeg, which would compete with that enrollment's encryption), or at once when a request
/// is already waiting.
const QUIET: Duration = Duration::from_secs(1);
/// The first standby starts this long after the daemon (or when the first request is waiting):
/// a kiosk's first enrollment comes minutes after boot, and a daemon that starts and stops
/// within seconds (tests, a restart loop) never pays for a standby it did not use.
const QUIET_AT_START: Duration = Duration::from_secs(30);
/// How often the socket is looked at for a waiting request while no standby runs.
const ASKED_EVERY: Duration = Duration::from_millis(50);
/// Standbys failing in a row before the socket is withdrawn.
const FAILURES_BEFORE_PAUSE: u32 = 3;
/// How long the socket stays withdrawn after that.
const PAUSE: Duration = Duration::from_secs(60);

pub(super) struct ProbeStandby;

impl Component for ProbeStandby {
    const NAME: &'static str = "probe standby";

    async fn run(self, context: Context) -> anyhow::Result<()> {
        let helper = match crate::helper::path() {
            Ok(helper) => helper,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "no probe standby: each video is probed by a helper started for it");
                return Ok(());
            }
        };
        let socket = context.queue.dir().join(STANDBY_SOCKET);
        let stopped = context.stopped();
        tokio::pin!(stopped);
        loop {
            // We hold the worker lock, so a socket file left here belongs to a dead daemon.
            let _ = std::fs::remove_file(&socket);
            let listener = match bind(&socket) {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::warn!(path = %socket.display(), error = %e, "no probe standby: each video is probed by a helper started for it");
                    return Ok(());
                }
            };
            let mut failures = 0;
            let mut wait = QUIET_AT_START;
            while failures < FAILURES_BEFORE_PAUSE {
                tokio::select! {
                    () = quiet_or_asked(&listener, wait) => {}
                    () = &mut stopped => {
                        withdraw(&socket);
                        return Ok(());
                    }
                }
                wait = QUIET;
                let stdin = listener.try_clone().map(OwnedFd::from)?;
                let mut standby = tokio::process::Command::new(&helper)
                    .arg("probe-standby")
                    // So that it can tell whether this daemon died before it could follow it.
                    .env(kiosk_common::video::STANDBY_PARENT_VAR, std::process::id().to_string())
                    .stdin(Stdio::from(stdin))
                    .stdout(Stdio::null())
                    // Stopping the daemon stops a standby mid-probe too: its client then starts
                    // a helper of its own.
                    .kill_on_drop(true)
                    .spawn()?;
                tokio::select! {
                    status = standby.wait() => match status {
                        Ok(status) if status.success() => failures = 0,
                        Ok(status) => {
                            failures += 1;
                            tracing::warn!(%status, "a probe standby failed");
                        }
                        Err(e) => return Err(e.into()),
                    },
                    () = &mut stopped => {
                        withdraw(&socket);
                        return Ok(());
                    }
                }
            }
            withdraw(&socket);
            drop(listener);
            tracing::warn!(
                "probe standbys keep failing; each video is probed by a helper started for it for the next {} s",
                PAUSE.as_secs()
            );
            tokio::select! {
                () = tokio::time::sleep(PAUSE) => {}
                () = &mut stopped => return Ok(()),
            }
        }
    }
}

/// Returns after `wait`, or as soon as a connection waits on `listener` (a listening socket is
/// readable then; it is never accepted here). Looked at every [`ASKED_EVERY`] rather than
/// waited on in a blocking thread: the daemon must be able to stop at any moment, and a runtime
/// does not end before its blocking threads do.
async fn quiet_or_asked(listener: &std::os::unix::net::UnixListener, wait: Duration) {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let until = tokio::time::Instant::now() + wait;
    loop {
        let now = Timespec { tv_sec: 0, tv_nsec: 0 };
        if poll(&mut [PollFd::new(listener, PollFlags::IN)], Some(&now)).is_ok_and(|ready| ready > 0) {
            return;
        }
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(ASKED_EVERY)).await;
    }
}

/// Removes the socket's name: probes then start helpers of their own.
fn withdraw(socket: &std::path::Path) {
    let _ = std::fs::remove_file(socket);
}

/// Listens on `socket`, this user only.
fn bind(socket: &std::path::Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    let listener = std::os::unix::net::UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(listener)
}
