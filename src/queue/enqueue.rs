//! Atomic, durable enqueue of a validated enrollment.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::params;

use super::early::{EarlyVideo, VIDEO};
use super::{add_event, artifact_aad, io_err, now_ms, pii_aad, EventKind, Queue, QueueError, State};
use crate::crypto::{encrypt_stream, SecretKey};
use crate::evidence::{ArtifactSource, Enrollment};

/// A new enrollment would not fit within the configured disk limits.
#[derive(Debug, thiserror::Error)]
pub enum SpaceError {
    #[error("storage.max_spool_bytes: queuing {needed} more bytes would take the spool to {would_be} bytes, over the limit of {limit} bytes ({missing} bytes missing)")]
    SpoolFull { needed: u64, would_be: u64, limit: u64, missing: u64 },
    #[error("storage.min_free_bytes: queuing {needed} bytes would leave {left} bytes free on the disk, under the minimum of {min} bytes ({missing} bytes missing)")]
    DiskLow { needed: u64, left: u64, min: u64, missing: u64 },
}

impl Queue {
    /// Encrypts and stores `enrollment`; returns its id once it is durable. On any error nothing
    /// of it remains on disk.
    pub fn enqueue(&self, enrollment: &Enrollment) -> Result<String, QueueError> {
        self.enqueue_with_progress(enrollment, &|_| {})
    }

    /// [`Queue::enqueue_with_progress`] for an enrollment whose video `early` has been sealing
    /// since validation opened it ([`Queue::seal_video_early`]): the enrollment takes its id and
    /// key, and its file once what was sealed is exactly the validated video.
    pub fn enqueue_with_early_video(
        &self,
        enrollment: &Enrollment,
        progress: &(dyn Fn(u64) + Sync),
        early: Option<EarlyVideo>,
    ) -> Result<String, QueueError> {
        self.enqueue_inner(enrollment, progress, early)
    }

    /// [`Queue::enqueue`], telling `progress` how many bytes of the artifacts are encrypted so
    /// far (out of the sum of their sizes).
    pub fn enqueue_with_progress(
        &self,
        enrollment: &Enrollment,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<String, QueueError> {
        self.enqueue_inner(enrollment, progress, None)
    }

    fn enqueue_inner(
        &self,
        enrollment: &Enrollment,
        progress: &(dyn Fn(u64) + Sync),
        early: Option<EarlyVideo>,
    ) -> Result<String, QueueError> {
        let needed: u64 = enrollment.images.iter().chain([&enrollment.video]).map(|a| a.size).sum();
        // A video sealed early is on the disk already: it counts towards the spool, not
        // against the free space it has taken.
        let on_disk = early.as_ref().map_or(0, |_| enrollment.video.size);
        self.check_space(needed, on_disk)?;

        // Without the device key nothing could be signed: refuse before writing anything.
        let device = crate::device_key::load(&self.storage.device_key_file)?;
        let (id, key) = match &early {
            Some(early) => (early.id.clone(), early.key.clone()),
            None => (uuid::Uuid::new_v4().to_string(), SecretKey::random()),
        };
        let dir = self.spool_dir(&id);
        // The marker is created and locked before the directory exists, and stays locked while
        // this process writes: a crashed writer's lock is released by the kernel, which is how
        // start-up cleanup tells an abandoned directory from one in progress.
        let marker = super::writing_marker(&dir);
        let writing = std::fs::File::create(&marker).and_then(|f| f.lock().map(|()| f)).map_err(io_err(&marker))?;
        let result = std::fs::create_dir(&dir)
            .map_err(io_err(&dir))
            .and_then(|()| self.write_and_commit(&id, &key, enrollment, &device, progress, early));
        let _ = std::fs::remove_file(&marker);
        drop(writing);
        match result {
            Ok(()) => Ok(id),
            Err(e) => {
                // Nothing was acknowledged: leave nothing behind.
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    fn write_and_commit(
        &self,
        id: &str,
        key: &SecretKey,
        e: &Enrollment,
        device: &crate::device_key::DeviceKey,
        progress: &(dyn Fn(u64) + Sync),
        early: Option<EarlyVideo>,
    ) -> Result<(), QueueError> {
        let dir = self.spool_dir(id);
        let done = AtomicU64::new(0);
        // The video, by far the largest, is sealed on a thread of its own (or was sealed early)
        // while the images are sealed here: on a two-core kiosk its encryption and hashing no
        // longer wait for theirs.
        let sealed: Vec<Sealed> = std::thread::scope(|scope| {
            let video = scope.spawn(|| match early {
                Some(early) => self.take_early(id, early, &e.video, &done, progress),
                None => self.seal_artifact(id, key, &e.video, &done, progress),
            });
            let images: Result<Vec<Sealed>, QueueError> =
                e.images.iter().map(|a| self.seal_artifact(id, key, a, &done, progress)).collect();
            let video = video.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            let mut all = images?;
            all.push(video?);
            Ok::<_, QueueError>(all)
        })?;
        let mut rows = Vec::with_capacity(sealed.len());
        let mut written = Vec::with_capacity(sealed.len());
        for Sealed { file, target, row } in sealed {
            written.push((file, target));
            rows.push(row);
        }
        // Synced together at the end: the small files' syncs do not hold up the next file's
        // encryption, and one journal commit can cover several of them.
        for (file, target) in &written {
            file.get_ref().sync_all().map_err(io_err(target))?;
        }
        crate::fsutil::sync_dir(&dir).map_err(io_err(&dir))?;
        let spool = self.dir.join("spool");
        crate::fsutil::sync_dir(&spool).map_err(io_err(&spool))?;
        // The video's probe ran beside the encryption; nothing is acknowledged before it passed
        // (a refused video takes the spool directory with it, as any error here does).
        let video_media = e.video_media()?;
        crate::faults::crash_point("enqueue.before_commit");

        let pii_json = serde_json::to_vec(&e.pii).expect("serializing JSON values cannot fail");
        let sealed = key.seal(&pii_json, pii_aad(id).as_bytes());
        let wrapped = self.master.wrap(key, id.as_bytes());
        let now = now_ms();
        let manifest_rows: Vec<super::capture_manifest::Row<'_>> =
            rows.iter().map(|(name, kind, size, sha)| (name.as_str(), *kind, *size, sha.as_str())).collect();
        let manifest = super::capture_manifest::sign(id, e, &video_media, &manifest_rows, now, device);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO enrollments (id, state, created_at, updated_at, wrapped_key, pii, next_attempt_at,
                capture_manifest, capture_signature, device_public_key, waited_ms, waited_mark)
             VALUES (?1, 'queued', ?2, ?2, ?3, ?4, ?2, ?5, ?6, ?7, 0, ?8)",
            params![
                id,
                now,
                wrapped,
                sealed,
                manifest.json,
                manifest.signature,
                manifest.public_key,
                super::clock::Mark::now().encode()
            ],
        )?;
        for (name, kind, size, sha) in &rows {
            tx.execute(
                "INSERT INTO artifacts (enrollment_id, name, kind, size, sha256) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, name, kind, *size as i64, sha],
            )?;
        }
        add_event(
            &tx,
            id,
            EventKind::Entered(State::Queued),
            &format!("{} artifacts, {} bytes", rows.len(), rows.iter().map(|r| r.2).sum::<u64>()),
        )?;
        super::audit::append(&tx, Some(id), &claims_record(&e.claims_source))?;
        tx.commit()?;
        Ok(())
    }

    /// Encrypts one artifact into the spool directory (its file flushed, not yet synced),
    /// hashing it on the way; `done` counts the bytes encrypted so far across all artifacts.
    fn seal_artifact(
        &self,
        id: &str,
        key: &SecretKey,
        a: &ArtifactSource,
        done: &AtomicU64,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Sealed, QueueError> {
        let (target, source) = self.artifact_paths(id, a);
        // The handle validation opened, from its start: never the path again.
        let counted = Counted { inner: a.reader().map_err(io_err(source))?, done, progress };
        let mut input = BufReader::with_capacity(crate::crypto::CHUNK, counted);
        let file = File::create(&target).map_err(io_err(&target))?;
        // Buffered for the stream's header only: each sealed chunk is larger than the buffer
        // and goes straight to the file, without a copy.
        let mut out = BufWriter::with_capacity(4096, crate::fsutil::WritebackFile::new(file));
        // The limit is the size validated a moment ago: a file that grows in between is refused.
        let summary = encrypt_stream(key, artifact_aad(id, &a.name).as_bytes(), &mut input, &mut out, a.size)
            .map_err(io_err(source))?;
        out.flush().map_err(io_err(&target))?;
        let file = out.into_inner().map_err(|e| io_err(&target)(e.into_error()))?;
        crate::faults::crash_point("enqueue.after_artifact");
        Ok(Sealed::of(a, file, target, summary))
    }

    /// The video sealed early, given its name in the enrollment's directory once it is
    /// exactly what validation checked.
    fn take_early(
        &self,
        id: &str,
        early: EarlyVideo,
        a: &ArtifactSource,
        done: &AtomicU64,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Sealed, QueueError> {
        // Sealed under the video's name before the enrollment existed: the same name here.
        debug_assert_eq!(a.name, VIDEO);
        let (target, source) = self.artifact_paths(id, a);
        let (file, summary) = early.finish().map_err(io_err(source))?;
        if summary.plaintext_len != a.size {
            let changed =
                format!("changed while being queued ({} bytes validated, {} read)", a.size, summary.plaintext_len);
            return Err(io_err(source)(std::io::Error::new(std::io::ErrorKind::InvalidData, changed)));
        }
        super::early::link_unnamed(file.get_ref(), &target).map_err(io_err(&target))?;
        progress(done.fetch_add(a.size, Ordering::Relaxed) + a.size);
        crate::faults::crash_point("enqueue.after_artifact");
        Ok(Sealed::of(a, file, target, summary))
    }

    /// Where an artifact is sealed to, and its name in errors.
    fn artifact_paths<'a>(&self, id: &str, a: &'a ArtifactSource) -> (std::path::PathBuf, &'a std::path::Path) {
        (self.spool_dir(id).join(format!("{}.enc", a.name)), std::path::Path::new(&a.name))
    }

    /// Refuses work that would cross `storage.max_spool_bytes` or `storage.min_free_bytes`.
    /// Queued evidence is never evicted to make room. `on_disk`: the bytes of `needed` written
    /// already (a video sealed early), which the free space no longer holds.
    pub(super) fn check_space(&self, needed: u64, on_disk: u64) -> Result<(), QueueError> {
        let spooled: i64 = self.conn().query_row(
            "SELECT COALESCE(SUM(a.size), 0) FROM artifacts a JOIN enrollments e ON e.id = a.enrollment_id
             WHERE e.erased_at IS NULL",
            [],
            |r| r.get(0),
        )?;
        let would_be = spooled as u64 + needed;
        let limit = self.storage.max_spool_bytes;
        if would_be > limit {
            return Err(SpaceError::SpoolFull { needed, would_be, limit, missing: would_be - limit }.into());
        }
        let free = crate::fsutil::available_bytes(&self.dir).map_err(io_err(&self.dir))?;
        // Encryption adds 16 bytes per 64 KiB chunk; count it so the estimate is not optimistic.
        let to_write = needed.saturating_sub(on_disk);
        let writing = to_write + to_write / crate::crypto::CHUNK as u64 * 16 + 64;
        let left = free.saturating_sub(writing);
        let min = self.storage.min_free_bytes;
        if left < min {
            return Err(SpaceError::DiskLow { needed: writing, left, min, missing: min - left }.into());
        }
        Ok(())
    }
}

/// An artifact encrypted into the spool: its file (flushed, to be synced with the others), its
/// path, and its row (name, kind, size, SHA-256 of the plaintext).
struct Sealed {
    file: crate::fsutil::WritebackFile,
    target: std::path::PathBuf,
    row: (String, &'static str, u64, String),
}

impl Sealed {
    /// Artifact `a`, sealed into `file` at `target`.
    fn of(
        a: &ArtifactSource,
        file: crate::fsutil::WritebackFile,
        target: std::path::PathBuf,
        summary: crate::crypto::StreamSummary,
    ) -> Sealed {
        Sealed { file, target, row: (a.name.clone(), a.kind.as_str(), summary.plaintext_len, summary.sha256) }
    }
}

/// A reader that adds the bytes it reads to `done` (shared by the artifacts sealed side by
/// side) and reports the total.
struct Counted<'a, R> {
    inner: R,
    done: &'a AtomicU64,
    progress: &'a (dyn Fn(u64) + Sync),
}

impl<R: std::io::Read> std::io::Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.done.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        (self.progress)(total);
        Ok(n)
    }
}

/// The audit record of who made the claims about the customer, e.g. `claims: documents_match by
/// operator, liveliness by software:FaceCheck 2, similarity_level by software:FaceCheck 2`.
fn claims_record(sources: &serde_json::Map<String, serde_json::Value>) -> String {
    if sources.is_empty() {
        return "claims: sources not stated".to_owned();
    }
    let each: Vec<String> =
        sources.iter().map(|(claim, by)| format!("{claim} by {}", by.as_str().unwrap_or("?"))).collect();
    format!("claims: {}", each.join(", "))
}
