//! `probe-standby`: one video probe, answered by a process that loaded FFmpeg before it was
//! asked.
//!
//! `kiosk-agent run` listens on `probe.sock` in its data directory and hands the listening
//! socket to a standby as standard input. The standby accepts one connection, receives the open
//! video file over it (`SCM_RIGHTS`, with the key when it is a sealed spill), probes it through
//! `/proc/self/fd`, writes one [`ProbeAnswer`] line and exits; the daemon starts the next one
//! meanwhile. So `enroll` skips the dynamic linking of FFmpeg's libraries (about 30 ms of CPU
//! on a kiosk) and still gets one process per video: a file that crashes or hangs the decoder
//! takes only its own standby with it. Another request waits in the socket's backlog until the
//! next standby accepts it.

use std::io::Write as _;
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use kiosk_common::video::{receive_probe_request, ProbeAnswer, STANDBY_PARENT_VAR};

/// How long a client that connected may take to send its request.
const REQUEST_WAIT: Duration = Duration::from_secs(5);
/// A probe still running after this long is a hostile or broken file: the standby ends itself
/// (the client gave up at 30 s).
const PROBE_LIMIT: Duration = Duration::from_secs(35);

pub fn run() -> anyhow::Result<ExitCode> {
    let parent = std::env::var(STANDBY_PARENT_VAR).ok().and_then(|p| p.parse::<i32>().ok());
    if parent.is_some() && rustix::process::getppid().map(|p| p.as_raw_nonzero().get()) != parent {
        anyhow::bail!("the daemon that started this probe standby is gone");
    }
    let listener = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(UnixListener::from)
        .context("probe-standby needs the listening socket as its standard input")?;
    kiosk_capture::init_ffmpeg();
    let (conn, _) = listener.accept().context("waiting for a probe request")?;
    // Whatever comes next is this request's; the daemon's next standby takes the next one.
    drop(listener);
    std::thread::spawn(|| {
        std::thread::sleep(PROBE_LIMIT);
        std::process::exit(3);
    });
    let answer = match answer(&conn) {
        Ok(facts) => ProbeAnswer::Facts(facts),
        Err(reason) => ProbeAnswer::Refused(reason),
    };
    let mut line = serde_json::to_string(&answer).expect("plain values serialize");
    line.push('\n');
    // A client that went away needs no answer.
    let _ = (&conn).write_all(line.as_bytes());
    Ok(ExitCode::SUCCESS)
}

fn answer(conn: &UnixStream) -> Result<kiosk_common::video::VideoFacts, String> {
    conn.set_read_timeout(Some(REQUEST_WAIT)).map_err(|e| e.to_string())?;
    let (file, sealed) = receive_probe_request(conn)?;
    // Through this process's own descriptor: the very file the client opened and checked.
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    crate::commands::probe_file(Path::new(&path), sealed.as_deref()).map_err(|bad| bad.0)
}
