//! The durable, encrypted offline queue (SQLite through rusqlite, linked to Debian's libsqlite3).
//!
//! Design note — the invariants this module keeps:
//!
//! * **Atomic, durable enqueue.** Artifacts are encrypted into `spool/<id>/` first; each file and
//!   the directories are fsync'd; only then one transaction inserts the enrollment, its
//!   artifacts and its first history event. The commit is the acknowledgement: the database runs
//!   in WAL mode with `synchronous=FULL`, so a committed row survives power loss. A crash before
//!   the commit leaves at most a spool directory without a row, which [`Queue::open`] removes
//!   once it is older than [`ORPHAN_SPOOL_AGE`] (younger ones may belong to an `enroll` running
//!   in another process right now).
//! * **One write, one transaction.** A state change, a history event and its audit record,
//!   and whatever belongs with them (an erasure's key) are committed together, durably. Only
//!   bookkeeping commits without waiting for the disk ([`Queue::write_bookkeeping`]).
//! * **Encryption at rest.** Each enrollment has its own data key, wrapped by the master key
//!   ([`crate::crypto`]). Personal fields are one sealed JSON blob; artifacts are STREAM-encrypted
//!   files. The plaintext SHA-256 and size of every artifact are kept in clear for audit.
//! * **Streaming.** Artifacts are never read whole except images for the evidences body, which
//!   are capped by `evidence.max_image_bytes`; the video is decrypted chunk by chunk.
//! * **Locking.** Several processes share the database (`enroll` while `run` works); every
//!   operation is one short transaction with a busy timeout, begun `IMMEDIATE` (it waits for the
//!   write lock first, so another process's commit can never leave it a stale snapshot, which
//!   SQLite would refuse at once, timeout or not). Only one sync worker runs per data
//!   directory, guarded by an exclusive lock on `worker.lock` (see [`Queue::lock_worker`]).
//!   Inside a process the connection sits behind a `std::sync::Mutex`, never held across `.await`.
//! * **Schema versioning.** Append-only migrations in `schema`, tracked by `PRAGMA user_version`
//!   and applied in one transaction; applying them again is a no-op.

pub mod audit;
mod backup;
pub mod capture_manifest;
mod changes;
pub mod clock;
pub mod counters;
mod documents;
mod early;
mod enqueue;
mod event_kind;
mod follow;
pub mod identity;
mod records;
mod schema;
mod state;

pub use documents::{DocumentRecord, DocumentState, OutgoingDocument, MAX_DOCUMENT_BYTES};
pub use early::{EarlyVideo, SealingEarly};
pub use enqueue::SpaceError;
pub use event_kind::EventKind;
pub use records::{format_ms, pk_json, ArtifactRecord, Backlog, Event, Job, Summary, UploadProgress};
pub use state::State;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};

use crate::config::{EraseAfter, StorageConfig};
use crate::crypto::{self, CryptoError, DecryptingReader, SecretKey};
use crate::evidence::Pii;

/// A spool directory without a database row and without a `WRITING_MARKER` (it was just
/// created) is removed only once it is this old.
pub const ORPHAN_SPOOL_AGE: Duration = Duration::from_secs(15 * 60);
/// Suffix of the file an enqueue holds locked, beside its spool directory, until the commit.
pub(crate) const WRITING_MARKER: &str = ".writing";

/// The marker of the spool directory `dir` (`spool/<id>.writing`).
pub(crate) fn writing_marker(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(WRITING_MARKER);
    dir.with_file_name(name)
}

/// Errors of the queue layer.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    DeviceKey(#[from] crate::device_key::DeviceKeyError),
    #[error("I/O error on {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("no enrollment with id {0}")]
    NotFound(String),
    /// The evidence was refused by a check that ran beside the encryption (the video's probe).
    #[error(transparent)]
    Evidence(#[from] crate::evidence::EvidenceError),
    #[error("enrollment {id} is {state}: {rule}")]
    WrongState { id: String, state: State, rule: &'static str },
    #[error(transparent)]
    Space(#[from] SpaceError),
    #[error("another sync worker already holds {0}; only one may run per data directory")]
    WorkerBusy(PathBuf),
    #[error("stored data for enrollment {id} is damaged: {detail}")]
    Damaged { id: String, detail: String },
    #[error("the master key in use (fingerprint {found}) is not the one the queue in {dir} was created with (fingerprint {expected}); nothing was changed. Provide the right key (the unit's LoadCredential= or storage.master_key_file)")]
    WrongKey { dir: PathBuf, expected: String, found: String },
    #[error("the data directory {dir} belongs to uid {owner} (the daemon's user), not to this user (uid {me}); nothing was written. Run this command as that user (e.g. sudo -u '#{owner}' kiosk-agent …): files written by another user would be unreadable to the daemon")]
    ForeignDataDir { dir: PathBuf, owner: u32, me: u32 },
    #[error("document {path}: {rule}")]
    BadDocument { path: PathBuf, rule: String },
    #[error("the queue database {path} is damaged ({detail}); it was left in place for inspection. Restore it from a backup (see `kiosk-agent queue salvage`); the encrypted spool beside it is untouched")]
    DamagedDatabase { path: PathBuf, detail: String },
    #[error("the queue database {path} is {how}, but this data directory held a queue: the spool holds {enrollments} enrollment(s) and {documents} document(s) whose keys only that database had; nothing was created or changed. Restore queue.db (with queue.db-wal if there was one) from a backup; `kiosk-agent queue salvage` lists what the spool holds and the ways out")]
    LostDatabase { path: PathBuf, how: &'static str, enrollments: usize, documents: usize },
}

impl QueueError {
    /// Whether this is a passing condition of the machine (too many open files, no memory, a
    /// device's I/O error) rather than data that is wrong or gone: work it stops is retried,
    /// never failed as damaged. Only what the data itself says (a failed authentication, a size
    /// or hash that does not match, a file cut short or missing) is damage.
    pub fn is_transient(&self) -> bool {
        let error = match self {
            QueueError::Io { error, .. } | QueueError::Crypto(crate::crypto::CryptoError::Io(error)) => error,
            _ => return false,
        };
        !matches!(
            error.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
        )
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> QueueError + '_ {
    move |error| QueueError::Io { path: path.to_owned(), error }
}

/// Milliseconds since the Unix epoch, the unit of every timestamp column.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0) + wall_offset_ms()
}

/// Test builds only: `KIOSK_AGENT_TEST_WALL_OFFSET_SECS` shifts the wall clock this process
/// reads, so tests can run the binary with a clock that is days or years off.
#[cfg(feature = "crash-points")]
fn wall_offset_ms() -> i64 {
    static OFFSET: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::env::var("KIOSK_AGENT_TEST_WALL_OFFSET_SECS").ok().and_then(|s| s.parse::<i64>().ok()).unwrap_or(0) * 1000
    })
}

#[cfg(not(feature = "crash-points"))]
fn wall_offset_ms() -> i64 {
    0
}

/// The queue of one data directory.
#[derive(Debug)]
pub struct Queue {
    conn: Mutex<Connection>,
    master: SecretKey,
    dir: PathBuf,
    storage: StorageConfig,
    changes: changes::Changes,
    /// When a bookkeeping write last waited for the disk (`None`: the next one must).
    bookkeeping_synced: Mutex<Option<Instant>>,
}

/// How long bookkeeping may go without a write that waits for the disk (see
/// [`Queue::write_bookkeeping`]).
const BOOKKEEPING_SYNC_EVERY: Duration = Duration::from_secs(60);

impl Drop for Queue {
    /// A process that changed enrollments with nobody watching (a CLI command) tells a running
    /// worker once it is done, so the daemon (and the page's event stream) hear of it.
    fn drop(&mut self) {
        if self.changes.committed_any() && !self.changes.observed() {
            self.poke_worker();
        }
    }
}

/// Held by the one sync worker of a data directory; released on drop.
#[derive(Debug)]
pub struct WorkerLock {
    // The open file holds the flock; it is released when this is dropped.
    _held: std::fs::File,
}

/// The queue's database in data directory `dir` (a data directory without one has no queue yet).
pub fn database_path(dir: &Path) -> PathBuf {
    dir.join("queue.db")
}

impl Queue {
    /// Opens (creating when needed) the queue under `storage.data_dir`, applies migrations and
    /// loads or creates the master key.
    pub fn open(storage: &StorageConfig) -> Result<Queue, QueueError> {
        let dir = storage.data_dir.clone();
        Self::check_owner(&dir)?;
        crate::fsutil::create_dir_all_durable(&dir.join("spool")).map_err(io_err(&dir))?;
        // Private whatever umask made it (or an older version left it).
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err(&dir))?;
        let master = crypto::load_master_key(&storage.master_key_file)?;
        let db_path = database_path(&dir);
        // Switching to WAL and migrating need the database to themselves; several processes
        // starting at once on a fresh data directory (`enroll` beside `run`) take turns here
        // instead of failing with "database is locked".
        let init_path = dir.join("init.lock");
        let init = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&init_path)
            .map_err(io_err(&init_path))?;
        init.lock().map_err(io_err(&init_path))?;
        // Before SQLite would create a database: a missing or empty one is a lost queue when
        // this directory held one.
        identity::check_not_lost(&dir)?;
        let damaged = |e: rusqlite::Error| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
                QueueError::DamagedDatabase { path: db_path.clone(), detail: e.to_string() }
            }
            _ => QueueError::Sqlite(e),
        };
        let mut conn = Connection::open(&db_path).map_err(damaged)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(damaged)?;
        // Every transaction takes the write lock as it begins (and waits for it as long as
        // above). A deferred one that read first and then waited to write, while another process
        // (an `enroll` or a `queue purge` beside the daemon) committed, would hold a snapshot
        // older than the database: SQLite fails that write at once, timeout or not.
        conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        audit::register(&conn).map_err(damaged)?;
        // Erased rows must not stay readable in freed pages, and freed pages must go back to the
        // file system: secure_delete zeroes deleted content, incremental auto-vacuum lets an
        // erase shrink the file. auto_vacuum only takes effect before the first table exists,
        // or through a VACUUM for a database created before this setting (done once, here).
        conn.pragma_update(None, "secure_delete", "ON").map_err(damaged)?;
        let auto_vacuum: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).map_err(damaged)?;
        if auto_vacuum != 2 {
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL").map_err(damaged)?;
            let tables: i64 =
                conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0)).map_err(damaged)?;
            if tables > 0 {
                conn.execute_batch("VACUUM").map_err(damaged)?;
            }
        }
        conn.pragma_update(None, "journal_mode", "WAL").map_err(damaged)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(damaged)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(damaged)?;
        schema::migrate(&mut conn).map_err(damaged)?;
        // The first open records the key's fingerprint; every later one must present that key.
        let found = master.fingerprint();
        let expected: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE name = 'key_fingerprint'", [], |r| r.get(0))
            .optional()
            .map_err(damaged)?;
        match expected {
            Some(expected) if expected != found => return Err(QueueError::WrongKey { dir, expected, found }),
            Some(_) => {}
            None => {
                conn.execute("INSERT INTO meta (name, value) VALUES ('key_fingerprint', ?1)", [&found])
                    .map_err(damaged)?;
            }
        }
        identity::record(&dir, &found)?;
        drop(init);
        let changes = changes::Changes::default();
        changes.install(&conn);
        let queue = Queue {
            conn: Mutex::new(conn),
            master,
            dir,
            storage: storage.clone(),
            changes,
            // The first minute may be lax: what the last process committed is on the disk (its
            // close checkpointed the log), or, if it was killed, in the kernel's cache on its
            // way there; only a power cut as well could lose it, as it could in that process.
            bookkeeping_synced: Mutex::new(Some(Instant::now())),
        };
        queue.remove_orphan_spool_dirs()?;
        queue.remove_orphan_documents()?;
        Ok(queue)
    }

    /// Refuses a data directory that belongs to another user: whatever this process wrote there
    /// (0600, its own) the daemon could not read, and an enrollment would be lost to it.
    fn check_owner(dir: &Path) -> Result<(), QueueError> {
        use std::os::unix::fs::MetadataExt as _;
        let me = rustix::process::geteuid().as_raw();
        match std::fs::metadata(dir) {
            Ok(meta) if meta.uid() != me => {
                Err(QueueError::ForeignDataDir { dir: dir.to_owned(), owner: meta.uid(), me })
            }
            _ => Ok(()),
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The datagram socket a running worker listens on for "new work" pokes.
    pub fn wake_socket(&self) -> PathBuf {
        self.dir.join("wake.sock")
    }

    /// Tells a running worker (if any) to look at the queue now. Best effort: without a worker,
    /// or if the poke is lost, the worker's safety poll finds the work a little later.
    pub fn poke_worker(&self) {
        if let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() {
            let _ = sock.send_to(b"wake", self.wake_socket());
        }
    }

    /// Calls `observer` with the row ids of the enrollments each committed transaction of this
    /// queue wrote (see [`Self::summaries_of_rows`]). It runs inside SQLite's commit hook, with
    /// the queue locked until the commit ends: it must only hand the ids on (publish an event),
    /// never use the queue.
    pub fn on_commit(&self, observer: impl FnMut(Vec<i64>) + Send + 'static) {
        self.changes.observe(Box::new(observer));
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-updated (transactions roll
        // back on drop), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `write` as one transaction of bookkeeping, committed without waiting for the disk
    /// (`synchronous=NORMAL` for it alone): an upload's progress, the waited-time marks, a
    /// status read the agent knows, the next review read. Every other write waits for the disk
    /// as before.
    ///
    /// Why that is safe: in WAL mode such a commit is as atomic as any, only not yet durable.
    /// The next durable commit syncs the log up to and including it, and a power cut before
    /// that rolls back this write and nothing else: the log is replayed in order, so no later
    /// commit can survive without it. Losing it is the same as the cut coming a little earlier,
    /// which can always happen. How much earlier is bounded: at least once every
    /// [`BOOKKEEPING_SYNC_EVERY`] a bookkeeping write waits for the disk as well, so a long
    /// stretch without a state change (a kiosk offline for days, a request in review for
    /// weeks) never leaves more than that of waited time unrecorded, which would keep evidence
    /// past its retention. So it is only for figures that are recomputed or written again
    /// and that nothing outside the database acts on before a durable commit: never a state
    /// change, a history event or an audit record (an audit anchor sent to the server must
    /// name a record that is on the disk).
    ///
    /// Why: a durable commit is an fdatasync of the log, a fraction of a millisecond and a
    /// write to the card each. Delivering one enrollment (`sync --once`) made 24 fsyncs; with
    /// these writes lazy (and the erasure one transaction), 16.
    fn write_bookkeeping<T>(
        &self,
        write: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, QueueError>,
    ) -> Result<T, QueueError> {
        let mut conn = self.conn();
        let lax = {
            let mut synced = self.bookkeeping_synced.lock().unwrap_or_else(|p| p.into_inner());
            match *synced {
                Some(at) if at.elapsed() < BOOKKEEPING_SYNC_EVERY => true,
                _ => {
                    *synced = Some(Instant::now());
                    false
                }
            }
        };
        // The safety level cannot change inside a transaction: set around it.
        if lax {
            conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        let written = (|| {
            let tx = conn.transaction()?;
            let value = write(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        // Whatever became of the write, the next one waits for the disk again.
        if lax {
            conn.pragma_update(None, "synchronous", "FULL")?;
        } else if written.is_err() {
            // The synced write that was due did not happen: the next one is due still.
            *self.bookkeeping_synced.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        written
    }

    /// Takes the per-data-directory worker lock, or fails at once if another process holds it.
    pub fn lock_worker(&self) -> Result<WorkerLock, QueueError> {
        let path = self.dir.join("worker.lock");
        let file =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(WorkerLock { _held: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(QueueError::WorkerBusy(path)),
            Err(std::fs::TryLockError::Error(e)) => Err(QueueError::Io { path, error: e }),
        }
    }

    fn spool_dir(&self, id: &str) -> PathBuf {
        self.dir.join("spool").join(id)
    }

    /// Removes spool directories of enqueues that never committed: their writer is gone (its
    /// lock on the marker is free) and no row names them. Directories being written now are
    /// left alone.
    fn remove_orphan_spool_dirs(&self) -> Result<(), QueueError> {
        let spool = self.dir.join("spool");
        let entries = std::fs::read_dir(&spool).map_err(io_err(&spool))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(WRITING_MARKER) {
                // A marker whose writer is gone and whose directory is gone too: litter.
                let free = std::fs::File::open(&path).is_ok_and(|f| f.try_lock().is_ok());
                if free && !self.spool_dir(id).exists() {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            if !entry.file_type().is_ok_and(|t| t.is_dir()) || self.exists(&name)? {
                continue;
            }
            let abandoned = match std::fs::File::open(writing_marker(&path)) {
                Ok(f) => f.try_lock().is_ok(),
                // No marker: the writer finished (and the row check above raced its commit), or
                // the directory predates markers. Only a long-forgotten one is removed.
                Err(_) => entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > ORPHAN_SPOOL_AGE),
            };
            if abandoned && !self.exists(&name)? {
                tracing::warn!(dir = %path.display(), "removing spool directory of an enrollment that was never committed");
                std::fs::remove_dir_all(&path).map_err(io_err(&path))?;
                let _ = std::fs::remove_file(writing_marker(&path));
            }
        }
        Ok(())
    }

    fn exists(&self, id: &str) -> Result<bool, QueueError> {
        let found: Option<i64> =
            self.conn().query_row("SELECT 1 FROM enrollments WHERE id = ?1", [id], |r| r.get(0)).optional()?;
        Ok(found.is_some())
    }

    fn data_key(&self, id: &str) -> Result<SecretKey, QueueError> {
        let wrapped: Option<Vec<u8>> = self
            .conn()
            .query_row("SELECT wrapped_key FROM enrollments WHERE id = ?1", [id], |r| r.get(0))
            .optional()?
            .ok_or_else(|| QueueError::NotFound(id.into()))?;
        let wrapped =
            wrapped.ok_or_else(|| QueueError::Damaged { id: id.into(), detail: "evidence already erased".into() })?;
        Ok(self.master.unwrap_key(&wrapped, id.as_bytes())?)
    }

    /// Decrypts the personal fields of an enrollment.
    pub fn load_pii(&self, id: &str) -> Result<Pii, QueueError> {
        let key = self.data_key(id)?;
        let sealed: Option<Vec<u8>> =
            self.conn().query_row("SELECT pii FROM enrollments WHERE id = ?1", [id], |r| r.get(0))?;
        let sealed =
            sealed.ok_or_else(|| QueueError::Damaged { id: id.into(), detail: "evidence already erased".into() })?;
        let json = key.open(&sealed, pii_aad(id).as_bytes(), "personal fields")?;
        serde_json::from_slice(&json).map_err(|e| QueueError::Damaged { id: id.into(), detail: e.to_string() })
    }

    /// Opens one artifact for decryption, chunk by chunk.
    pub fn open_artifact(&self, id: &str, name: &str) -> Result<DecryptingReader, QueueError> {
        let key = self.data_key(id)?;
        let path = self.spool_dir(id).join(format!("{name}.enc"));
        Ok(DecryptingReader::open(&key, artifact_aad(id, name).as_bytes(), &path)?)
    }

    /// Erases the local evidence of an enrollment (files, personal fields, data key), keeping the
    /// audit record: ids, hashes, sizes, timestamps and history.
    pub fn erase_evidence(&self, id: &str) -> Result<(), QueueError> {
        self.destroy_key(id)?;
        self.remove_spool(id)?;
        self.destroy_freed_data();
        Ok(())
    }

    /// [`Queue::erase_evidence`] for the sync worker: the same erasure, durable when this
    /// returns (the key destroyed, the spool gone from the queue), but the ciphertext is only
    /// moved aside, into `erased/`, for [`Queue::discard_erased`] to hand its blocks back later,
    /// off the delivery's path. Without its key it is noise already (cryptographic erase), and
    /// freeing a large video's blocks is the file system's slowest work here: tens of ms for
    /// 200 MB where the disk is mounted with `discard`.
    pub fn erase_evidence_deferred(&self, id: &str) -> Result<(), QueueError> {
        self.destroy_key(id)?;
        let (from, aside) = (self.spool_dir(id), self.erased_dir());
        crate::fsutil::create_dir_all_durable(&aside).map_err(io_err(&aside))?;
        match std::fs::rename(&from, aside.join(id)) {
            Ok(()) => {
                // Both entries durable: the spool no longer names it, `erased/` does.
                let spool = self.dir.join("spool");
                crate::fsutil::sync_dir(&spool).map_err(io_err(&spool))?;
                crate::fsutil::sync_dir(&aside).map_err(io_err(&aside))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // Something in the way (a leftover of the same id): discard at once instead.
            Err(_) => self.remove_spool(id)?,
        }
        self.destroy_freed_data();
        Ok(())
    }

    /// Hands back the blocks of every spool [`Queue::erase_evidence_deferred`] set aside (their
    /// keys are destroyed) and removes them; how many there were. A crash halfway leaves the
    /// rest for the next call.
    pub fn discard_erased(&self) -> Result<usize, QueueError> {
        let aside = self.erased_dir();
        let entries = match std::fs::read_dir(&aside) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err(&aside)(e)),
        };
        let mut count = 0;
        for entry in entries {
            let path = entry.map_err(io_err(&aside))?.path();
            let discarded =
                if path.is_dir() { crate::fsutil::discard_dir(&path) } else { crate::fsutil::discard_file(&path) };
            discarded.map_err(io_err(&path))?;
            count += 1;
        }
        Ok(count)
    }

    /// Where erased spools wait for [`Queue::discard_erased`].
    fn erased_dir(&self) -> PathBuf {
        self.dir.join("erased")
    }

    /// The erasure proper: the data key and the personal fields gone from the database, the
    /// audit record kept.
    fn destroy_key(&self, id: &str) -> Result<(), QueueError> {
        let mut conn = self.conn();
        // One transaction: the key never goes without its history event and audit record (a
        // crash between them would leave an erasure nobody can account for), nor they without it.
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE enrollments SET pii = NULL, wrapped_key = NULL, erased_at = ?2 WHERE id = ?1",
            params![id, now_ms()],
        )?;
        add_event(&tx, id, EventKind::Erased, "local evidence erased; audit record kept")?;
        tx.commit()?;
        Ok(())
    }

    /// Removes the enrollment's spool files: ciphertext whose key the caller has destroyed, so
    /// the files are discarded, not overwritten (cryptographic erase, see `fsutil::discard_file`).
    fn remove_spool(&self, id: &str) -> Result<(), QueueError> {
        let dir = self.spool_dir(id);
        crate::fsutil::discard_dir(&dir).map_err(io_err(&dir))
    }

    /// After an erase: gives freed pages back to the file system and copies the WAL into the
    /// database then truncates it, so the erased key and personal data survive neither in an
    /// old WAL frame nor in a free page. Readers in other processes can delay the truncation;
    /// it is retried briefly, and otherwise happens at the next erase.
    pub(crate) fn destroy_freed_data(&self) {
        let conn = self.conn();
        // The pragma frees one page per step: it must be stepped to the end.
        let vacuum = conn.prepare("PRAGMA incremental_vacuum").and_then(|mut stmt| {
            let mut rows = stmt.query([])?;
            while rows.next()?.is_some() {}
            Ok(())
        });
        if let Err(e) = vacuum {
            tracing::warn!("incremental vacuum after an erase failed: {e}");
        }
        for attempt in 0..20 {
            match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0)) {
                Ok(0) => return,
                Ok(_) => std::thread::sleep(Duration::from_millis(10 * (attempt + 1))),
                Err(e) => {
                    tracing::warn!("checkpoint after an erase failed: {e}");
                    return;
                }
            }
        }
        tracing::warn!(
            "the WAL could not be truncated after an erase (another process is reading); it will be at the next erase"
        );
    }

    /// Verifies every artifact of every pending enrollment: it must decrypt (AEAD, chunk by
    /// chunk) and match its recorded size and SHA-256. An enrollment with a damaged or missing
    /// artifact moves to `failed` with the reason; the others are untouched. Returns the ids
    /// that failed.
    /// Enrollments for which `skip` says true are left alone (the worker is sending them).
    pub fn scrub(&self, skip: &dyn Fn(&str) -> bool) -> Result<Vec<String>, QueueError> {
        let pending: Vec<(String, State)> = {
            let conn = self.conn();
            let mut stmt = conn.prepare(&format!(
                "SELECT id, state FROM enrollments WHERE erased_at IS NULL
                 AND state IN {} ORDER BY created_at",
                State::pending_sql()
            ))?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            rows.filter_map(|r| r.ok()).filter_map(|(id, st)| st.parse().ok().map(|st| (id, st))).collect()
        };
        let mut failed = Vec::new();
        for (id, _) in pending {
            if skip(&id) {
                continue;
            }
            let mut problem = None;
            for a in self.artifacts(&id)? {
                let check = (|| -> Result<Option<String>, QueueError> {
                    let (size, sha) = self.open_artifact(&id, &a.name)?.size_and_sha256()?;
                    Ok((size != a.size || sha != a.sha256)
                        .then(|| format!("{size} bytes with SHA-256 {sha}, expected {} bytes {}", a.size, a.sha256)))
                })();
                match check {
                    Ok(None) => {}
                    // Not the evidence's fault (too many open files, say): looked at next time.
                    Err(e) if e.is_transient() => {
                        tracing::warn!(enrollment_id = %id, error = %e, "cannot verify the evidence now; will next time");
                        break;
                    }
                    Ok(Some(mismatch)) => problem = Some(format!("artifact {} is damaged: {mismatch}", a.name)),
                    Err(QueueError::Io { error, .. })
                    | Err(QueueError::Crypto(crate::crypto::CryptoError::Io(error))) => {
                        problem = Some(format!("artifact {} cannot be read: {error}", a.name))
                    }
                    Err(e @ (QueueError::Crypto(_) | QueueError::Damaged { .. })) => {
                        problem = Some(format!("artifact {} is damaged: {e}", a.name))
                    }
                    Err(e) => return Err(e),
                }
                if problem.is_some() {
                    break;
                }
            }
            if let Some(reason) = problem {
                let mut conn = self.conn();
                // The failure, its event and its audit record in one transaction.
                let tx = conn.transaction()?;
                // Whatever step the worker reached meanwhile, the evidence cannot be sent.
                let n = tx.execute(
                    &format!(
                        "UPDATE enrollments SET failed_from = state, state = 'failed', last_error = ?2,
                            next_attempt_at = NULL, updated_at = ?3
                         WHERE id = ?1 AND erased_at IS NULL AND state IN {}",
                        State::pending_sql()
                    ),
                    params![id, reason, now_ms()],
                )?;
                // Only an enrollment still waiting with that evidence: one the worker sent and
                // erased meanwhile (its files gone on purpose) is not damaged, and says nothing.
                if n == 1 {
                    add_event(&tx, &id, EventKind::Entered(State::Failed), &reason)?;
                }
                tx.commit()?;
                if n == 1 {
                    tracing::error!(enrollment_id = %id, reason = %reason, "damaged evidence; enrollment failed");
                    failed.push(id);
                }
            }
        }
        Ok(failed)
    }

    /// Runs SQLite's structural check of the database.
    pub fn check_integrity(&self) -> Result<(), QueueError> {
        let result: String = self.conn().query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if result == "ok" {
            Ok(())
        } else {
            Err(QueueError::DamagedDatabase { path: database_path(&self.dir), detail: result })
        }
    }

    /// Whether reaching `state` means the local copy should now be erased.
    pub fn should_erase_at(&self, state: State) -> bool {
        match self.storage.erase_after {
            EraseAfter::InReview => matches!(state, State::InReview | State::Approved | State::Signed),
            EraseAfter::Approved => matches!(state, State::Approved | State::Signed),
            EraseAfter::Never => false,
        }
    }
}

pub(crate) fn pii_aad(id: &str) -> String {
    format!("{id}/pii")
}

pub(crate) fn artifact_aad(id: &str, name: &str) -> String {
    format!("{id}/{name}")
}

/// Adds to an enrollment's history and, with the kind only (the detail may quote a server's
/// answer), to the audit trail. It takes the caller's transaction, never a bare connection:
/// the event, its audit record and the change they describe land together or not at all.
pub(crate) fn add_event(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    kind: EventKind,
    detail: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO events (enrollment_id, at, kind, detail) VALUES (?1, ?2, ?3, ?4)",
        params![id, now_ms(), kind.as_str(), detail],
    )?;
    audit::append(tx, Some(id), kind.as_str())
}

#[cfg(test)]
mod tests;
