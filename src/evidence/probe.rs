//! Probing the video before it is queued: a process of the capture helper (which links FFmpeg)
//! reads the already-open file and reports container, codec, size and duration once its first
//! frame decodes. The probe starts during validation and runs beside the rest of it and beside
//! the encryption; its verdict is awaited before the enrollment is committed ([`VideoCheck`]).
//! The agent itself never loads a decoder (see [`crate::helper`]).
//!
//! Who probes: when a daemon runs on the data directory, its standby (`probe-standby`, started
//! ahead with FFmpeg's hundred-odd libraries already linked) gets the open file over
//! [`STANDBY_SOCKET`]; otherwise, or if the standby ends without a verdict, a helper is started
//! for this video with the file as its standard input (`probe-video`). Both are one process per
//! video, so a file that crashes or hangs the decoder takes only that process down.
//!
//! A sealed spill ([`crate::spill`]) is read through FFmpeg's `crypto:` protocol, its key given
//! in the helper's environment or in the standby's request (never on a command line; readable
//! only by this same user, who can read this process's memory anyway).

use std::fs::File;
use std::io::{ErrorKind, Read as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{EvidenceError, Violation};

/// Video codecs accepted inside the MP4 (what the reviewers' players handle).
pub const ACCEPTED_CODECS: [&str; 2] = ["h264", "hevc"];
/// A probe that takes longer than this is a hostile or broken file.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

use kiosk_common::video::{send_probe_request, ProbeAnswer};
pub use kiosk_common::video::{VideoFacts, SEALED_KEY_VAR, STANDBY_SOCKET};

use crate::spill::SpillKey;

/// Something that can tell whether an open file is a playable video (from any thread: the
/// video is probed while the images are checked, and the verdict is awaited only before the
/// enrollment is committed).
pub trait VideoProber: Sync {
    /// Starts the probe; `sealed`: the file is a sealed spill under this key. An error is the
    /// rule the file breaks (or why it could not be probed).
    fn start(&self, file: &File, sealed: Option<&SpillKey>) -> Result<PendingProbe, String>;
}

/// The real prober: the standby of a daemon running on the same data directory when one
/// listens (FFmpeg already loaded: see the helper's `probe-standby`), else
/// `kiosk-agent-capture probe-video` started for this video with the file as standard input.
/// Either way the video is probed in a process of its own.
#[derive(Debug, Default, Clone)]
pub struct HelperProber {
    /// The standby socket to try first.
    standby: Option<PathBuf>,
}

impl HelperProber {
    /// Starts a helper for every video.
    pub fn cold() -> HelperProber {
        HelperProber { standby: None }
    }

    /// Asks the standby of a daemon running on `data_dir` first (see [`STANDBY_SOCKET`]).
    pub fn standby_in(data_dir: &Path) -> HelperProber {
        HelperProber { standby: Some(data_dir.join(STANDBY_SOCKET)) }
    }
}

impl VideoProber for HelperProber {
    fn start(&self, file: &File, sealed: Option<&SpillKey>) -> Result<PendingProbe, String> {
        let started = Instant::now();
        let sealed = sealed.map(SpillKey::to_hex);
        if let Some(socket) = &self.standby {
            // No daemon, a stale socket, another user's daemon: the helper is started instead.
            match ask_standby(socket, file, sealed.as_deref()) {
                Ok(stream) => {
                    let file = file.try_clone().map_err(|e| format!("cannot hand the video to the probe: {e}"))?;
                    return Ok(PendingProbe { probing: Probing::Standby { stream, file, sealed }, started });
                }
                Err(e) => {
                    tracing::debug!(socket = %socket.display(), error = %e, "no probe standby; starting the helper")
                }
            }
        }
        let child = spawn_helper(file, sealed.as_deref())?;
        Ok(PendingProbe { probing: Probing::Helper(Some(child)), started })
    }
}

/// Starts `kiosk-agent-capture probe-video` on `file` (a sealed spill under the hex key
/// `sealed`).
fn spawn_helper(file: &File, sealed: Option<&str>) -> Result<Child, String> {
    let stdin = file.try_clone().map_err(|e| format!("cannot hand the video to the probe: {e}"))?;
    let mut command = crate::helper::command().map_err(|e| format!("cannot be probed: {e:#}"))?;
    command.env_remove(SEALED_KEY_VAR);
    if let Some(key) = sealed {
        command.env(SEALED_KEY_VAR, key);
    }
    command
        .arg("probe-video")
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot be probed: the capture helper did not start ({e})"))
}

/// Connects to the standby socket and hands it the file (and the spill's key).
fn ask_standby(socket: &Path, file: &File, sealed: Option<&str>) -> std::io::Result<UnixStream> {
    let stream = UnixStream::connect(socket)?;
    send_probe_request(&stream, file, sealed)?;
    Ok(stream)
}

/// A probe under way: the helper or standby reads the video (through its own open file
/// description, so the caller may read the same file meanwhile) while the caller goes on.
/// Dropped unfinished, a helper is killed; a standby finishes on its own (within its limit).
#[derive(Debug)]
pub struct PendingProbe {
    probing: Probing,
    started: Instant,
}

#[derive(Debug)]
enum Probing {
    /// A helper started for this video.
    Helper(Option<Child>),
    /// The daemon's standby, answering on `stream`; the file and key are kept in case it ends
    /// without a verdict.
    Standby { stream: UnixStream, file: File, sealed: Option<String> },
}

impl PendingProbe {
    /// Whether the daemon's standby answers this probe (rather than a helper started for it).
    pub fn by_standby(&self) -> bool {
        matches!(self.probing, Probing::Standby { .. })
    }

    /// Waits for the verdict (within [`PROBE_TIMEOUT`] of the probe's start): the video's
    /// facts, or the rule it breaks.
    pub fn finish(mut self) -> Result<VideoFacts, String> {
        let facts = match &mut self.probing {
            Probing::Helper(child) => {
                let child = child.take().expect("a pending probe has its helper");
                helper_verdict(child, self.started)?
            }
            Probing::Standby { stream, file, sealed } => match standby_verdict(stream, self.started)? {
                Some(facts) => facts,
                // The standby ended without a verdict: stopped with its daemon, or the decoder
                // crashed on this file. A helper of this process's own decides.
                None => helper_verdict(spawn_helper(file, sealed.as_deref())?, self.started)?,
            },
        };
        check(&facts)?;
        Ok(facts)
    }
}

/// The error of a probe that ran out of time.
fn timed_out() -> String {
    format!("could not be probed within {} s", PROBE_TIMEOUT.as_secs())
}

/// Waits for a helper (within [`PROBE_TIMEOUT`] of `started`) and reads its verdict.
fn helper_verdict(mut child: Child, started: Instant) -> Result<VideoFacts, String> {
    let left = PROBE_TIMEOUT.saturating_sub(started.elapsed());
    let status = match wait_within(&mut child, left) {
        Ok(Some(status)) => status,
        Ok(None) | Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(timed_out());
        }
    };
    // The helper prints one short line; a full pipe cannot stall it before it exits.
    let mut out = String::new();
    let mut err = String::new();
    let _ = child.stdout.take().map(|mut s| s.read_to_string(&mut out));
    let _ = child.stderr.take().map(|mut s| s.read_to_string(&mut err));
    if !status.success() {
        return Err(refusal(err.trim().trim_start_matches("error: ")));
    }
    serde_json::from_str(out.trim()).map_err(|e| format!("probe gave an unreadable answer ({e})"))
}

/// Reads a standby's verdict (within [`PROBE_TIMEOUT`] of `started`); `None` when it ended
/// without one.
fn standby_verdict(stream: &mut UnixStream, started: Instant) -> Result<Option<VideoFacts>, String> {
    let left = PROBE_TIMEOUT.saturating_sub(started.elapsed());
    if left.is_zero() {
        return Err(timed_out());
    }
    let mut out = String::new();
    match stream.set_read_timeout(Some(left)).and_then(|()| stream.read_to_string(&mut out)) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Err(timed_out()),
        Err(_) => return Ok(None),
        Ok(_) if out.trim().is_empty() => return Ok(None),
        Ok(_) => {}
    }
    match serde_json::from_str::<ProbeAnswer>(out.trim()) {
        Ok(ProbeAnswer::Facts(facts)) => Ok(Some(facts)),
        Ok(ProbeAnswer::Refused(reason)) => Err(refusal(&reason)),
        Err(e) => Err(format!("probe gave an unreadable answer ({e})")),
    }
}

/// The rule a video the helper or standby refused breaks, in the helper's words.
fn refusal(reason: &str) -> String {
    let reason = reason.trim().trim_start_matches("camera source ");
    format!("is not a playable video: {}", reason.chars().take(200).collect::<String>())
}

impl Drop for PendingProbe {
    fn drop(&mut self) {
        if let Probing::Helper(Some(child)) = &mut self.probing {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::os::unix::net::UnixListener;

    /// The demo's sample clip: a real H.264/MP4 file.
    fn sample_video() -> File {
        File::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/samples/video.mp4")).unwrap()
    }

    fn file_of(bytes: &[u8]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        file
    }

    /// A data directory with the standby socket listening, as the daemon keeps it.
    fn standby_dir() -> (tempfile::TempDir, UnixListener) {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join(STANDBY_SOCKET)).unwrap();
        (dir, listener)
    }

    /// Starts one real standby on `listener`, as the daemon does.
    fn start_standby(listener: &UnixListener) -> Child {
        crate::helper::command()
            .unwrap()
            .arg("probe-standby")
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(listener.try_clone().unwrap())))
            .spawn()
            .unwrap()
    }

    #[test]
    fn the_standby_gives_the_verdicts_a_fresh_helper_gives() {
        let (dir, listener) = standby_dir();
        let warm = HelperProber::standby_in(dir.path());
        let cases = [sample_video(), file_of(b"\x00\x00\x00\x18ftypmp42 but no more"), file_of(b"plain words")];
        for file in cases {
            let mut standby = start_standby(&listener);
            let probe = warm.start(&file, None).unwrap();
            assert!(probe.by_standby());
            let by_standby = probe.finish();
            assert!(standby.wait().unwrap().success(), "a standby exits after its one probe");
            let cold = HelperProber::cold().start(&file, None).unwrap();
            assert!(!cold.by_standby());
            assert_eq!(by_standby, cold.finish());
        }
        let facts = warm_facts(&listener, &warm, &sample_video(), None).unwrap();
        assert_eq!((facts.container.contains("mp4"), facts.codec.as_str()), (true, "h264"));
        let refused = warm_facts(&listener, &warm, &file_of(b"plain words"), None).unwrap_err();
        assert!(refused.starts_with("is not a playable video: "), "{refused}");
    }

    fn warm_facts(
        listener: &UnixListener,
        prober: &HelperProber,
        file: &File,
        key: Option<&SpillKey>,
    ) -> Result<VideoFacts, String> {
        let mut standby = start_standby(listener);
        let probe = prober.start(file, key).unwrap();
        assert!(probe.by_standby());
        let verdict = probe.finish();
        standby.wait().unwrap();
        verdict
    }

    #[test]
    fn the_standby_reads_a_sealed_spill_and_only_with_its_key() {
        let (dir, listener) = standby_dir();
        let warm = HelperProber::standby_in(dir.path());
        let key = SpillKey::random();
        let mut sealer = key.sealer();
        let mut sealed = sealer
            .seal(&std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/samples/video.mp4")).unwrap());
        sealed.extend(sealer.finish());
        let spill = file_of(&sealed);
        let facts = warm_facts(&listener, &warm, &spill, Some(&key)).unwrap();
        assert_eq!(facts.codec, "h264");
        // Without the key it is noise, whoever probes it.
        assert!(warm_facts(&listener, &warm, &spill, None).is_err());
        assert!(warm_facts(&listener, &warm, &spill, Some(&SpillKey::random())).is_err());
    }

    #[test]
    fn without_a_standby_or_when_it_ends_without_a_verdict_a_helper_decides() {
        // A socket file nobody listens on: a daemon that died.
        let (dir, listener) = standby_dir();
        drop(listener);
        let prober = HelperProber::standby_in(dir.path());
        let probe = prober.start(&sample_video(), None).unwrap();
        assert!(!probe.by_standby());
        assert_eq!(probe.finish().unwrap().codec, "h264");
        // No socket at all.
        let empty = tempfile::tempdir().unwrap();
        let probe = HelperProber::standby_in(empty.path()).start(&sample_video(), None).unwrap();
        assert!(!probe.by_standby());
        assert!(probe.finish().is_ok());
        // A standby that takes the request and ends without answering (its daemon stopped it):
        // the video is judged by a helper, not refused.
        let (dir, listener) = standby_dir();
        let prober = HelperProber::standby_in(dir.path());
        let vanishing = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let request = kiosk_common::video::receive_probe_request(&conn);
            assert!(request.is_ok(), "{request:?}");
        });
        let probe = prober.start(&sample_video(), None).unwrap();
        assert!(probe.by_standby());
        vanishing.join().unwrap();
        assert_eq!(probe.finish().unwrap().codec, "h264");
        let probe = prober.start(&file_of(b"plain words"), None);
        // The socket's listener is gone with the thread: a helper is started.
        assert!(!probe.as_ref().unwrap().by_standby());
        assert!(probe.unwrap().finish().unwrap_err().starts_with("is not a playable video: "));
    }
}
