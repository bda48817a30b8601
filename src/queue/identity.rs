//! The queue's identity, kept outside its database, so that a lost database is noticed.
//!
//! SQLite creates a database wherever it is asked to open one: a `queue.db` deleted, or
//! truncated to nothing, beside an encrypted spool would otherwise become a new, empty queue,
//! and the evidence waiting in the spool (whose data keys only the database held) would never
//! be decryptable again, then be swept as litter. So the data directory records that a queue
//! exists (`queue.id`: the master key's fingerprint, written once, durably, beside the
//! database), and a database that is missing or empty while that record or the spool says
//! otherwise is refused as lost (exit 4, the unit does not restart), never a fresh start.
//! `kiosk-agent queue salvage` lists what the spool holds and says the ways out.

use std::path::{Path, PathBuf};

use super::{io_err, QueueError, WRITING_MARKER};

/// The record that a queue exists in this data directory.
const MARKER: &str = "queue.id";

/// What the spool holds beside a database: enrollment directories and sealed documents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolContents {
    /// Enrollment ids with a spool directory, and each one's files with their sizes.
    pub enrollments: Vec<(String, Vec<(String, u64)>)>,
    /// Sealed documents (`documents/*.enc`) and their sizes.
    pub documents: Vec<(String, u64)>,
}

impl SpoolContents {
    pub fn is_empty(&self) -> bool {
        self.enrollments.is_empty() && self.documents.is_empty()
    }

    /// Reads what the spool of `dir` holds (nothing when it does not exist).
    pub fn of(dir: &Path) -> Result<SpoolContents, QueueError> {
        let files = |path: &Path| -> Result<Vec<(String, u64)>, QueueError> {
            let mut out = Vec::new();
            let entries = match std::fs::read_dir(path) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(io_err(path)(e)),
            };
            for entry in entries.flatten() {
                let meta = entry.metadata().map_err(io_err(&entry.path()))?;
                out.push((entry.file_name().to_string_lossy().into_owned(), meta.len()));
            }
            out.sort();
            Ok(out)
        };
        let spool = dir.join("spool");
        let mut enrollments = Vec::new();
        for (name, _) in files(&spool)? {
            let path = spool.join(&name);
            if name.ends_with(WRITING_MARKER) || !path.is_dir() {
                continue;
            }
            enrollments.push((name, files(&path)?));
        }
        let documents = files(&dir.join("documents"))?.into_iter().filter(|(n, _)| n.ends_with(".enc")).collect();
        Ok(SpoolContents { enrollments, documents })
    }
}

fn marker(dir: &Path) -> PathBuf {
    dir.join(MARKER)
}

/// The fingerprint a data directory's record names, if it has one.
fn recorded(dir: &Path) -> Result<Option<String>, QueueError> {
    let path = marker(dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// Refuses to go on when the database of `dir` is missing or empty while the record says a
/// queue existed here, or the spool holds evidence: that is a lost queue, not a new one.
pub fn check_not_lost(dir: &Path) -> Result<(), QueueError> {
    let db = super::database_path(dir);
    let size = match std::fs::metadata(&db) {
        Ok(meta) => Some(meta.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(&db)(e)),
    };
    if size.is_some_and(|s| s > 0) {
        return Ok(());
    }
    let existed = recorded(dir)?.is_some();
    let spool = SpoolContents::of(dir)?;
    if !existed && spool.is_empty() {
        return Ok(());
    }
    Err(QueueError::LostDatabase {
        path: db,
        how: if size.is_some() { "empty" } else { "missing" },
        enrollments: spool.enrollments.len(),
        documents: spool.documents.len(),
    })
}

/// Records (once) that the queue of `dir` exists under the key with `fingerprint`; a record
/// naming another key means this database is not the data directory's queue.
pub fn record(dir: &Path, fingerprint: &str) -> Result<(), QueueError> {
    match recorded(dir)? {
        Some(found) if found == fingerprint => Ok(()),
        Some(found) => Err(QueueError::DamagedDatabase {
            path: super::database_path(dir),
            detail: format!(
                "it belongs to the queue of key {fingerprint}, but this data directory's queue was created with key {found} ({})",
                marker(dir).display()
            ),
        }),
        None => {
            let path = marker(dir);
            let tmp = dir.join(format!("{MARKER}.tmp"));
            let write = || -> std::io::Result<()> {
                use std::io::Write as _;
                let mut f = std::fs::File::create(&tmp)?;
                writeln!(f, "{fingerprint}")?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                crate::fsutil::sync_dir(dir)
            };
            write().map_err(io_err(&path))
        }
    }
}

/// Forgets the record, so that a new queue may start here (`queue salvage --discard`).
pub(crate) fn forget(dir: &Path) -> Result<(), QueueError> {
    let path = marker(dir);
    match std::fs::remove_file(&path) {
        Ok(()) => crate::fsutil::sync_dir(dir).map_err(io_err(dir)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(&path)(e)),
    }
}
