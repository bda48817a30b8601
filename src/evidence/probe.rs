//! Probing the video before it is queued: the capture helper (which links FFmpeg) reads the
//! already-open file as its standard input and reports container, codec, size and duration
//! once its first frame decodes. The helper is started during validation and runs beside the
//! rest of it and beside the encryption; its verdict is awaited before the enrollment is
//! committed ([`VideoCheck`]), so loading FFmpeg (over a hundred shared libraries) and decoding
//! are off `enroll`'s critical path. The agent itself never loads a decoder (see [`crate::helper`]).
//! A sealed spill ([`crate::spill`]) is read by the helper through FFmpeg's `crypto:` protocol,
//! its key given in the helper's environment (never on its command line, readable only by this
//! same user, who can read this process's memory anyway).

use std::fs::File;
use std::io::Read as _;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{EvidenceError, Violation};

/// Video codecs accepted inside the MP4 (what the reviewers' players handle).
pub const ACCEPTED_CODECS: [&str; 2] = ["h264", "hevc"];
/// A probe that takes longer than this is a hostile or broken file.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

pub use kiosk_common::video::{VideoFacts, SEALED_KEY_VAR};

use crate::spill::SpillKey;

/// Something that can tell whether an open file is a playable video (from any thread: the
/// video is probed while the images are checked, and the verdict is awaited only before the
/// enrollment is committed).
pub trait VideoProber: Sync {
    /// Starts the probe; `sealed`: the file is a sealed spill under this key. An error is the
    /// rule the file breaks (or why it could not be probed).
    fn start(&self, file: &File, sealed: Option<&SpillKey>) -> Result<PendingProbe, String>;
}

/// The real prober: `kiosk-agent-capture probe-video` with the file as standard input.
#[derive(Debug, Default)]
pub struct HelperProber;

impl VideoProber for HelperProber {
    fn start(&self, file: &File, sealed: Option<&SpillKey>) -> Result<PendingProbe, String> {
        let stdin = file.try_clone().map_err(|e| format!("cannot hand the video to the probe: {e}"))?;
        let mut command = crate::helper::command().map_err(|e| format!("cannot be probed: {e:#}"))?;
        command.env_remove(SEALED_KEY_VAR);
        if let Some(key) = sealed {
            command.env(SEALED_KEY_VAR, key.to_hex());
        }
        let child = command
            .arg("probe-video")
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot be probed: the capture helper did not start ({e})"))?;
        Ok(PendingProbe { child: Some(child), started: Instant::now() })
    }
}

/// A probe under way: the helper reads the video (through its own open file description, so
/// the caller may read the same file meanwhile) while the caller goes on. Dropped unfinished,
/// the helper is killed.
#[derive(Debug)]
pub struct PendingProbe {
    child: Option<Child>,
    started: Instant,
}

impl PendingProbe {
    /// Waits for the helper (within [`PROBE_TIMEOUT`] of its start): the video's facts, or the
    /// rule it breaks.
    pub fn finish(mut self) -> Result<VideoFacts, String> {
        let mut child = self.child.take().expect("a pending probe has its helper");
        let left = PROBE_TIMEOUT.saturating_sub(self.started.elapsed());
        let status = match wait_within(&mut child, left) {
            Ok(Some(status)) => status,
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("could not be probed within {} s", PROBE_TIMEOUT.as_secs()));
            }
        };
        // The helper prints one short line; a full pipe cannot stall it before it exits.
        let mut out = String::new();
        let mut err = String::new();
        let _ = child.stdout.take().map(|mut s| s.read_to_string(&mut out));
        let _ = child.stderr.take().map(|mut s| s.read_to_string(&mut err));
        if !status.success() {
            let reason = err.trim().trim_start_matches("error: ").trim_start_matches("camera source ");
            return Err(format!("is not a playable video: {}", reason.chars().take(200).collect::<String>()));
        }
        let facts: VideoFacts =
            serde_json::from_str(out.trim()).map_err(|e| format!("probe gave an unreadable answer ({e})"))?;
        check(&facts)?;
        Ok(facts)
    }
}

impl Drop for PendingProbe {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for `child` to exit, at most `limit`: its status, or None when it is still running.
/// Woken by the kernel the moment it exits (a pidfd, which names this process and no other
/// even if its pid were reused), not by polling: the probe is on every `enroll`'s path. On a
/// kernel without pidfds (before 5.3) it polls.
fn wait_within(child: &mut Child, limit: Duration) -> std::io::Result<Option<ExitStatus>> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    use rustix::process::{pidfd_open, Pid, PidfdFlags};
    let started = Instant::now();
    if let Ok(pidfd) = pidfd_open(Pid::from_child(child), PidfdFlags::empty()) {
        loop {
            let left = limit.saturating_sub(started.elapsed());
            let timeout = Timespec { tv_sec: left.as_secs() as i64, tv_nsec: i64::from(left.subsec_nanos()) };
            let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
            match poll(&mut fds, Some(&timeout)) {
                Ok(0) => return Ok(None),
                Ok(_) => return child.wait().map(Some),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if started.elapsed() >= limit {
            return Ok(None);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// The rules a probed video must meet.
pub fn check(facts: &VideoFacts) -> Result<(), String> {
    if !facts.container.split(',').any(|n| n == "mp4" || n == "mov") {
        return Err(format!("must be an MP4 container, not {}", facts.container));
    }
    if !ACCEPTED_CODECS.contains(&facts.codec.as_str()) {
        return Err(format!("must hold an {} video stream, not {}", ACCEPTED_CODECS.join(" or "), facts.codec));
    }
    if facts.duration_secs.is_nan() || facts.duration_secs <= 0.0 {
        return Err("must last longer than zero seconds".into());
    }
    Ok(())
}

/// The video's probe as the enrollment carries it: still running, or its verdict.
#[derive(Debug)]
pub struct VideoCheck(Mutex<CheckState>);

#[derive(Debug)]
enum CheckState {
    /// Nothing is pending: the video's facts are the ones its source holds.
    Known,
    Running {
        field: String,
        probe: PendingProbe,
    },
    Done(Result<Option<Value>, Violation>),
}

impl VideoCheck {
    /// A video whose facts were known without a probe (built by hand, as in tests).
    pub fn known() -> VideoCheck {
        VideoCheck(Mutex::new(CheckState::Known))
    }

    pub(crate) fn running(field: String, probe: PendingProbe) -> VideoCheck {
        VideoCheck(Mutex::new(CheckState::Running { field, probe }))
    }

    /// The probe's facts as the capture manifest records them (`None`: [`VideoCheck::known`]),
    /// waiting for it the first time; its violation when the video is refused.
    pub fn wait(&self) -> Result<Option<Value>, EvidenceError> {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let verdict = match std::mem::replace(&mut *state, CheckState::Known) {
            CheckState::Known => Ok(None),
            CheckState::Running { field, probe } => {
                probe.finish().map(|facts| Some(media_of(&facts))).map_err(|rule| Violation { field, rule })
            }
            CheckState::Done(verdict) => verdict,
        };
        *state = CheckState::Done(verdict.clone());
        verdict.map_err(|v| EvidenceError::Invalid(vec![v]))
    }
}

/// The facts of a probed video as the capture manifest records them.
fn media_of(facts: &VideoFacts) -> Value {
    serde_json::json!({
        "container": facts.container, "codec": facts.codec, "width": facts.width,
        "height": facts.height, "duration_secs": facts.duration_secs,
    })
}
