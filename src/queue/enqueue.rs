//! Atomic, durable enqueue of a validated enrollment.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use rusqlite::params;

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

    /// [`Queue::enqueue`], telling `progress` how many bytes of the artifacts are encrypted so
    /// far (out of the sum of their sizes).
    pub fn enqueue_with_progress(&self, enrollment: &Enrollment, progress: &dyn Fn(u64)) -> Result<String, QueueError> {
        let artifacts: Vec<&ArtifactSource> = enrollment.images.iter().chain([&enrollment.video]).collect();
        let pending = self.begin(artifacts.iter().map(|a| a.size).sum())?;
        let mut written = Vec::with_capacity(artifacts.len());
        let mut done = 0u64;
        for a in artifacts {
            // The handle validation opened, from its start: never the path again.
            let input = a.reader().map_err(io_err(Path::new(&a.name)))?;
            let w = pending.write(&a.name, input, a.size, &|n| progress(done + n))?;
            done += w.size;
            written.push(w);
        }
        pending.commit(enrollment, written)
    }

    /// Starts a new enrollment of at most `needed` bytes of artifacts: checks the disk limits
    /// and the device key, then makes its spool directory, locked as being written.
    pub fn begin(&self, needed: u64) -> Result<Pending<'_>, QueueError> {
        self.check_space(needed)?;
        // Without the device key nothing could be signed: refuse before writing anything.
        let device = crate::device_key::load(&self.storage.device_key_file)?;
        let id = uuid::Uuid::new_v4().to_string();
        let dir = self.spool_dir(&id);
        // The marker is created and locked before the directory exists, and stays locked while
        // this process writes: a crashed writer's lock is released by the kernel, which is how
        // start-up cleanup tells an abandoned directory from one in progress.
        let marker = super::writing_marker(&dir);
        let writing = File::create(&marker).and_then(|f| f.lock().map(|()| f)).map_err(io_err(&marker))?;
        let pending =
            Pending { queue: self, id, key: SecretKey::random(), device, dir, marker, writing: Some(writing) };
        std::fs::create_dir(&pending.dir).map_err(io_err(&pending.dir))?;
        Ok(pending)
    }

    /// The database half of [`Pending::commit`]: the spool's directories synced, then the
    /// enrollment, its artifacts, an event and the audit record in one transaction.
    fn commit_rows(
        &self,
        id: &str,
        key: &SecretKey,
        e: &Enrollment,
        rows: &[(String, &str, u64, String)],
        device: &crate::device_key::DeviceKey,
        dir: &Path,
    ) -> Result<(), QueueError> {
        crate::fsutil::sync_dir(dir).map_err(io_err(dir))?;
        let spool = self.dir.join("spool");
        crate::fsutil::sync_dir(&spool).map_err(io_err(&spool))?;
        crate::faults::crash_point("enqueue.before_commit");

        let pii_json = serde_json::to_vec(&e.pii).expect("serializing JSON values cannot fail");
        let sealed = key.seal(&pii_json, pii_aad(id).as_bytes());
        let wrapped = self.master.wrap(key, id.as_bytes());
        let now = now_ms();
        let manifest_rows: Vec<super::capture_manifest::Row<'_>> =
            rows.iter().map(|(name, kind, size, sha)| (name.as_str(), *kind, *size, sha.as_str())).collect();
        let manifest = super::capture_manifest::sign(id, e, &manifest_rows, now, device);
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
        for (name, kind, size, sha) in rows {
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

    /// Refuses work that would cross `storage.max_spool_bytes` or `storage.min_free_bytes`.
    /// Queued evidence is never evicted to make room.
    fn check_space(&self, needed: u64) -> Result<(), QueueError> {
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
        let on_disk = needed + needed / crate::crypto::CHUNK as u64 * 16 + 64;
        let left = free.saturating_sub(on_disk);
        let min = self.storage.min_free_bytes;
        if left < min {
            return Err(SpaceError::DiskLow { needed: on_disk, left, min, missing: min - left }.into());
        }
        Ok(())
    }
}

/// An enrollment being written: its id, key and locked spool directory exist, its artifacts
/// are encrypted into that directory ([`Pending::write`], from any thread), and nothing of it
/// is in the database until [`Pending::commit`]. Dropped uncommitted (a rejected manifest, an
/// error), it removes what it wrote; a crash leaves the directory to start-up cleanup.
pub struct Pending<'q> {
    queue: &'q Queue,
    id: String,
    key: SecretKey,
    device: crate::device_key::DeviceKey,
    dir: PathBuf,
    marker: PathBuf,
    /// The marker's lock, held until the enrollment is committed or removed.
    writing: Option<File>,
}

impl std::fmt::Debug for Pending<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("id", &self.id).finish_non_exhaustive()
    }
}

/// One artifact encrypted into a pending enrollment's spool, durable on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub name: String,
    /// Plaintext bytes.
    pub size: u64,
    pub sha256: String,
}

impl Pending<'_> {
    /// Encrypts `input` (at most `limit` bytes: a file that grows after validation is refused)
    /// into `NAME.enc` and syncs it, telling `progress` the bytes read so far.
    pub fn write(
        &self,
        name: &str,
        input: impl std::io::Read,
        limit: u64,
        progress: &dyn Fn(u64),
    ) -> Result<Written, QueueError> {
        let target = self.dir.join(format!("{name}.enc"));
        let counted = Counted { inner: input, done: 0, progress };
        let mut input = BufReader::with_capacity(crate::crypto::CHUNK, counted);
        let file = File::create(&target).map_err(io_err(&target))?;
        let mut out = BufWriter::with_capacity(4 * crate::crypto::CHUNK, crate::fsutil::WritebackFile::new(file));
        let summary = encrypt_stream(&self.key, artifact_aad(&self.id, name).as_bytes(), &mut input, &mut out, limit)
            .map_err(io_err(Path::new(name)))?;
        out.flush().map_err(io_err(&target))?;
        out.get_ref().get_ref().sync_all().map_err(io_err(&target))?;
        crate::faults::crash_point("enqueue.after_artifact");
        Ok(Written { name: name.to_owned(), size: summary.plaintext_len, sha256: summary.sha256 })
    }

    /// Records `e` with its `written` artifacts (one for each of its images and its video) in
    /// the database, durably; returns its id. On an error nothing of it remains on disk.
    pub fn commit(mut self, e: &Enrollment, written: Vec<Written>) -> Result<String, QueueError> {
        let mut rows = Vec::with_capacity(written.len());
        for a in e.images.iter().chain([&e.video]) {
            let Some(w) = written.iter().find(|w| w.name == a.name) else {
                let path = self.dir.join(format!("{}.enc", a.name));
                return Err(QueueError::Io { path, error: std::io::Error::other("the artifact was never written") });
            };
            rows.push((w.name.clone(), a.kind.as_str(), w.size, w.sha256.clone()));
        }
        self.queue.commit_rows(&self.id, &self.key, e, &rows, &self.device, &self.dir)?;
        self.finish();
        Ok(std::mem::take(&mut self.id))
    }

    /// Releases the marker and its lock: the enrollment is committed, or removed.
    fn finish(&mut self) {
        let _ = std::fs::remove_file(&self.marker);
        self.writing.take();
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.writing.is_some() {
            // Nothing was acknowledged: leave nothing behind.
            let _ = std::fs::remove_dir_all(&self.dir);
            self.finish();
        }
    }
}

/// A reader that reports the bytes read so far (plus those of earlier artifacts).
struct Counted<'a, R> {
    inner: R,
    done: u64,
    progress: &'a dyn Fn(u64),
}

impl<R: std::io::Read> std::io::Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        (self.progress)(self.done);
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
