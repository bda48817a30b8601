//! Document backups (`document delete` keeps the originals and signed copies first): sealed
//! like the spool, never in clear. Each backup `NAME` is two files in the backup directory:
//! `NAME.enc`, the document encrypted with a data key of its own (AES-256-GCM STREAM, bound to
//! its name), and `NAME.key`, that data key wrapped by the master key. Deleting the `.key`
//! erases the backup (cryptographic erase); `document ID backup UID --out F` reads one back.
//! Beside them, `NAME.waited` holds how long the backup has verifiably been kept (waited time
//! and the last clock mark, as the queue counts an enrollment's: see `clock.rs`), which the
//! retention policy counts instead of the key file's wall-clock date.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::crypto::{self, DecryptingReader, SecretKey};

use super::clock::Mark;
use super::{Queue, QueueError};

/// Backups are capped like the documents themselves.
const LIMIT: u64 = super::MAX_DOCUMENT_BYTES * 4;

fn aad(name: &str) -> Vec<u8> {
    format!("kiosk-agent document backup {name}").into_bytes()
}

fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{name}.enc")), dir.join(format!("{name}.key")))
}

fn waited_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.waited"))
}

/// Records that the backup `name` has been kept `waited_ms` as of `mark` (replaced whole, so a
/// cut leaves the old record or the new one).
fn write_waited(dir: &Path, name: &str, waited_ms: i64, mark: &Mark) -> std::io::Result<()> {
    let path = waited_path(dir, name);
    let tmp = path.with_extension("waited-partial");
    std::fs::write(&tmp, format!("{waited_ms} {}", mark.encode()))?;
    std::fs::rename(&tmp, &path)
}

/// How long the backup `name` has been kept by `now`: its record plus what verifiably passed
/// since; without a record (a backup from an older version), the key file's wall-clock age.
fn waited(dir: &Path, name: &str, key_file: &Path, now: &Mark) -> i64 {
    let recorded = std::fs::read_to_string(waited_path(dir, name)).ok().and_then(|text| {
        let (waited, mark) = text.trim().split_once(' ')?;
        Some((waited.parse::<i64>().ok()?, Mark::decode(mark)?))
    });
    match recorded {
        Some((waited, mark)) => waited + now.elapsed_since(&mark),
        None => std::fs::metadata(key_file)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
            .map_or(0, |age| age.as_millis() as i64),
    }
}

impl Queue {
    /// Seals `plain` as the backup `name` in `dir` (0700), durably, then shreds `plain`.
    pub fn seal_backup(&self, plain: &Path, dir: &Path, name: &str) -> Result<PathBuf, QueueError> {
        let (enc, key_file) = paths(dir, name);
        let data_key = SecretKey::random();
        let wrapped = self.master.wrap(&data_key, &aad(name));
        let mut input = std::fs::File::open(plain).map_err(super::io_err(plain))?;
        let write_private = |path: &Path, fill: &mut dyn FnMut(&mut std::fs::File) -> std::io::Result<()>| {
            use std::os::unix::fs::OpenOptionsExt as _;
            let tmp = path.with_extension("partial");
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(super::io_err(&tmp))?;
            fill(&mut file).and_then(|()| file.sync_all()).map_err(super::io_err(&tmp))?;
            std::fs::rename(&tmp, path).map_err(super::io_err(path))
        };
        write_private(&enc, &mut |f| crypto::encrypt_stream(&data_key, &aad(name), &mut input, f, LIMIT).map(drop))?;
        write_private(&key_file, &mut |f| f.write_all(&wrapped))?;
        write_waited(dir, name, 0, &Mark::now()).map_err(super::io_err(dir))?;
        crate::fsutil::sync_dir(dir).map_err(super::io_err(dir))?;
        crate::fsutil::shred_file(plain).map_err(super::io_err(plain))?;
        Ok(enc)
    }

    /// Erases the document backups kept longer than the retention period
    /// (`storage.max_retention_days`, in verifiably waited time: a corrected clock neither erases
    /// one early nor keeps it for ever): the wrapped key is deleted (cryptographic erase) and the
    /// sealed document discarded, with an audit record for each. Returns how many.
    pub fn expire_backups(&self) -> Result<usize, QueueError> {
        self.expire_backups_at(&Mark::now())
    }

    /// [`Self::expire_backups`] with the clocks at `now` (tests set them).
    pub fn expire_backups_at(&self, now: &Mark) -> Result<usize, QueueError> {
        let root = &self.storage.document_backup_dir;
        let Ok(requests) = std::fs::read_dir(root) else { return Ok(0) };
        let max = self.storage.max_retention.as_millis() as i64;
        let mut erased = 0;
        for dir in requests.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for key_file in entries.flatten().map(|e| e.path()) {
                let Some(name) = key_file.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".key"))
                else {
                    continue;
                };
                let kept = waited(&dir, name, &key_file, now);
                if kept < max {
                    write_waited(&dir, name, kept, now).map_err(super::io_err(&dir))?;
                    continue;
                }
                let (enc, _) = paths(&dir, name);
                std::fs::remove_file(&key_file).map_err(super::io_err(&key_file))?;
                crate::fsutil::sync_dir(&dir).map_err(super::io_err(&dir))?;
                crate::fsutil::discard_file(&enc).map_err(super::io_err(&enc))?;
                let _ = std::fs::remove_file(waited_path(&dir, name));
                let request = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                self.audit(None, &format!("document backup {name} of request {request} erased (retention)"))?;
                erased += 1;
            }
        }
        Ok(erased)
    }

    /// The backup `name` in `dir`, decrypted.
    pub fn open_backup(&self, dir: &Path, name: &str) -> Result<Vec<u8>, QueueError> {
        let (enc, key_file) = paths(dir, name);
        let wrapped = std::fs::read(&key_file).map_err(super::io_err(&key_file))?;
        let data_key = self.master.unwrap_key(&wrapped, &aad(name))?;
        Ok(DecryptingReader::open(&data_key, &aad(name), &enc)?.read_all()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_is_sealed_bound_to_its_name_and_erased_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(&super::super::tests::storage(dir.path())).unwrap();
        let backups = dir.path().join("backup");
        std::fs::create_dir(&backups).unwrap();
        let pdf = b"%PDF-1.4\n% Ana Garc\xc3\xada's contract\n%%EOF\n";
        let plain = backups.join(".download");
        std::fs::write(&plain, pdf).unwrap();
        q.seal_backup(&plain, &backups, "u1-original.pdf").unwrap();
        assert!(!plain.exists(), "the download is shredded");
        for entry in std::fs::read_dir(&backups).unwrap().flatten() {
            let bytes = std::fs::read(entry.path()).unwrap();
            assert!(!bytes.windows(5).any(|w| w == b"%PDF-"), "{} is in clear", entry.path().display());
        }
        assert_eq!(q.open_backup(&backups, "u1-original.pdf").unwrap(), pdf);
        // Renamed, it no longer opens (the name is bound in); without its key, never again.
        std::fs::rename(backups.join("u1-original.pdf.enc"), backups.join("u2-original.pdf.enc")).unwrap();
        std::fs::copy(backups.join("u1-original.pdf.key"), backups.join("u2-original.pdf.key")).unwrap();
        assert!(q.open_backup(&backups, "u2-original.pdf").is_err());
        std::fs::rename(backups.join("u2-original.pdf.enc"), backups.join("u1-original.pdf.enc")).unwrap();
        std::fs::remove_file(backups.join("u1-original.pdf.key")).unwrap();
        assert!(q.open_backup(&backups, "u1-original.pdf").is_err());
    }

    #[test]
    fn backups_past_the_retention_period_are_erased() {
        let dir = tempfile::tempdir().unwrap();
        let storage = super::super::tests::storage(dir.path());
        let q = Queue::open(&storage).unwrap();
        let backups = storage.document_backup_dir.join("45001");
        std::fs::create_dir_all(&backups).unwrap();
        for name in ["old.pdf", "new.pdf"] {
            let plain = backups.join(".download");
            std::fs::write(&plain, b"%PDF-1.4\n").unwrap();
            q.seal_backup(&plain, &backups, name).unwrap();
        }
        // The old one was made a day past the retention period, by a version that kept no
        // record of the time waited: its key file's age counts.
        let then = std::time::SystemTime::now() - storage.max_retention - std::time::Duration::from_secs(86_400);
        std::fs::File::options().write(true).open(backups.join("old.pdf.key")).unwrap().set_modified(then).unwrap();
        std::fs::remove_file(backups.join("old.pdf.waited")).unwrap();
        assert_eq!(q.expire_backups().unwrap(), 1);
        assert!(!backups.join("old.pdf.key").exists() && !backups.join("old.pdf.enc").exists());
        assert!(q.open_backup(&backups, "new.pdf").is_ok());
        let audit = q.audit_records().unwrap();
        assert!(audit.iter().any(|r| r.kind.contains("old.pdf") && r.kind.contains("retention")), "{audit:?}");
        assert_eq!(q.expire_backups().unwrap(), 0);
    }

    /// A backup's retention is waited time: a clock corrected 400 days ahead, or a reboot onto
    /// a clock 400 days on, erases nothing; 31 days of uptime do.
    #[test]
    fn backup_retention_counts_waited_time_not_wall_clock_dates() {
        const DAY: i64 = 86_400_000;
        let dir = tempfile::tempdir().unwrap();
        let storage = super::super::tests::storage(dir.path());
        let q = Queue::open(&storage).unwrap();
        let backups = storage.document_backup_dir.join("45001");
        std::fs::create_dir_all(&backups).unwrap();
        let plain = backups.join(".download");
        std::fs::write(&plain, b"%PDF-1.4\n").unwrap();
        let made = Mark::now();
        q.seal_backup(&plain, &backups, "contract.pdf").unwrap();
        let ahead =
            Mark { since_boot_ms: made.since_boot_ms + 3_600_000, wall_ms: made.wall_ms + 400 * DAY, ..made.clone() };
        assert_eq!(q.expire_backups_at(&ahead).unwrap(), 0, "a clock corrected ahead");
        let jump = Mark { boot: "another boot".into(), since_boot_ms: 1_000, wall_ms: ahead.wall_ms + 400 * DAY };
        assert_eq!(q.expire_backups_at(&jump).unwrap(), 0, "a reboot onto a clock 400 days on");
        assert!(q.open_backup(&backups, "contract.pdf").is_ok());
        let month = Mark { since_boot_ms: jump.since_boot_ms + 31 * DAY, ..jump.clone() };
        assert_eq!(q.expire_backups_at(&month).unwrap(), 1, "what was truly kept too long goes");
        assert!(q.open_backup(&backups, "contract.pdf").is_err());
        assert!(!backups.join("contract.pdf.waited").exists());
    }
}
