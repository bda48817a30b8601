//! Sealing the video while the rest of its enrollment is still being checked.
//!
//! On a two-core kiosk the video's encryption and hashing are `enroll`'s longest step, and
//! they used to wait for the images' checks and the queue's opening. [`Queue::seal_video_early`]
//! starts them as soon as the video has been opened and sniffed, into an unnamed file
//! (`O_TMPFILE`) in the spool: the file has no name until [`Queue::enqueue_with_early_video`]
//! links it into the enrollment's directory, so bad input, a refused check or a crash leave
//! nothing on disk (the kernel frees an unnamed file when its last descriptor closes). The
//! video is read through a descriptor of its own, so the checks and the probe may read it
//! meanwhile; what was sealed must be exactly the validated size, or nothing is queued.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write as _};
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::{artifact_aad, Queue};
use crate::crypto::{encrypt_stream, SecretKey, StreamSummary};
use crate::evidence::{PendingProbe, VideoProber};
use crate::fsutil::WritebackFile;
use crate::spill::SpillKey;

/// The name the video is sealed under (its AAD, and its file in the spool).
pub(super) const VIDEO: &str = "video";

/// A video being sealed for an enrollment that does not exist yet: its id and key are chosen
/// now. Dropped unused (the enrollment was refused), the sealing stops and the unnamed file
/// goes with it.
pub struct EarlyVideo {
    pub(super) id: String,
    pub(super) key: SecretKey,
    stop: Arc<AtomicBool>,
    /// Taken by [`EarlyVideo::finish`]; joined on drop otherwise.
    job: Option<JoinHandle<io::Result<SealedVideo>>>,
}

/// The unnamed file (flushed, not synced) and what was sealed into it.
type SealedVideo = (WritebackFile, StreamSummary);

impl std::fmt::Debug for EarlyVideo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EarlyVideo").field("id", &self.id).finish_non_exhaustive()
    }
}

impl EarlyVideo {
    /// Waits for the sealing: the unnamed file (flushed, not synced) and what was sealed.
    pub(super) fn finish(mut self) -> io::Result<SealedVideo> {
        let job = self.job.take().expect("the sealing is there until finished");
        job.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl Drop for EarlyVideo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(job) = self.job.take() {
            let _ = job.join();
        }
    }
}

impl Queue {
    /// Starts sealing `video` (a plain file that validation opened) into an unnamed file in the
    /// spool, for an enrollment with a new id. `None` when it cannot start (no room for it, a
    /// file system without unnamed files): the video is then sealed with the rest, as always.
    pub fn seal_video_early(&self, video: &File) -> Option<EarlyVideo> {
        let size = video.metadata().ok()?.len();
        // A queue over its limits refuses the enrollment later, naming the limit; nothing is
        // written for it before.
        self.check_space(size, 0).ok()?;
        // Its own open file description: the checks and the probe move no offset of it.
        let input = File::open(format!("/proc/self/fd/{}", video.as_raw_fd())).ok()?;
        let spool = self.dir.join("spool");
        let output = unnamed_file(&spool).ok()?;
        let id = uuid::Uuid::new_v4().to_string();
        let key = SecretKey::random();
        let stop = Arc::new(AtomicBool::new(false));
        let job = {
            let (key, aad, stop) = (key.clone(), artifact_aad(&id, VIDEO), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut input = BufReader::with_capacity(crate::crypto::CHUNK, Stoppable { inner: input, stop });
                let mut out = BufWriter::with_capacity(4096, WritebackFile::new(output));
                // One byte over the size seen now is enough to tell a growing file: the queue
                // compares what was sealed with the validated size before it links anything.
                let summary = encrypt_stream(&key, aad.as_bytes(), &mut input, &mut out, size)?;
                out.flush()?;
                let file = out.into_inner().map_err(|e| e.into_error())?;
                Ok((file, summary))
            })
        };
        Some(EarlyVideo { id, key, stop, job: Some(job) })
    }
}

/// An unnamed file in `dir`, this user's only.
fn unnamed_file(dir: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(dir, OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC, Mode::from_raw_mode(0o600))?;
    Ok(File::from(fd))
}

/// Gives the unnamed file `file` the name `target` (in the same file system).
pub(super) fn link_unnamed(file: &File, target: &Path) -> io::Result<()> {
    use rustix::fs::{AtFlags, CWD};
    let proc_path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    rustix::fs::linkat(CWD, &proc_path, CWD, target, AtFlags::SYMLINK_FOLLOW)?;
    Ok(())
}

/// A reader that fails once `stop` is set: an early sealing whose enrollment was refused ends
/// at its next read.
struct Stoppable<R> {
    inner: R,
    stop: Arc<AtomicBool>,
}

impl<R: Read> Read for Stoppable<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(io::Error::other("the enrollment was refused"));
        }
        self.inner.read(buf)
    }
}

/// A prober that also starts sealing the video early (see the module): what `enroll` validates
/// with when its queue exists already. A spill's video (the API's intake) is left to the
/// queue: this is for plain files.
pub struct SealingEarly<'a> {
    pub probe: &'a dyn VideoProber,
    pub queue: &'a Queue,
    pub early: std::sync::OnceLock<EarlyVideo>,
}

impl std::fmt::Debug for SealingEarly<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealingEarly").field("early", &self.early).finish_non_exhaustive()
    }
}

impl VideoProber for SealingEarly<'_> {
    fn start(&self, file: &File, sealed: Option<&SpillKey>) -> Result<PendingProbe, String> {
        let probe = self.probe.start(file, sealed)?;
        if sealed.is_none() {
            if let Some(early) = self.queue.seal_video_early(file) {
                let _ = self.early.set(early);
            }
        }
        Ok(probe)
    }
}
