//! Document backups (`document delete` keeps the originals and signed copies first): sealed
//! like the spool, never in clear. Each backup `NAME` is two files in the backup directory:
//! `NAME.enc`, the document encrypted with a data key of its own (AES-256-GCM STREAM, bound to
//! its name), and `NAME.key`, that data key wrapped by the master key. Deleting the `.key`
//! erases the backup (cryptographic erase); `document ID backup UID --out F` reads one back.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::crypto::{self, DecryptingReader, SecretKey};

use super::{Queue, QueueError};

/// Backups are capped like the documents themselves.
const LIMIT: u64 = super::MAX_DOCUMENT_BYTES * 4;

fn aad(name: &str) -> Vec<u8> {
    format!("kiosk-agent document backup {name}").into_bytes()
}

fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{name}.enc")), dir.join(format!("{name}.key")))
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
        crate::fsutil::sync_dir(dir).map_err(super::io_err(dir))?;
        crate::fsutil::shred_file(plain).map_err(super::io_err(plain))?;
        Ok(enc)
    }

    /// Erases the document backups older than the retention period (`storage.max_retention_days`,
    /// by the age of their key file): the wrapped key is deleted (cryptographic erase) and the
    /// sealed document shredded, with an audit record for each. Returns how many.
    pub fn expire_backups(&self) -> Result<usize, QueueError> {
        let root = &self.storage.document_backup_dir;
        let Ok(requests) = std::fs::read_dir(root) else { return Ok(0) };
        let cutoff = std::time::SystemTime::now() - self.storage.max_retention;
        let mut erased = 0;
        for dir in requests.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for key_file in entries.flatten().map(|e| e.path()) {
                let Some(name) = key_file.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".key"))
                else {
                    continue;
                };
                let old = std::fs::metadata(&key_file).and_then(|m| m.modified()).is_ok_and(|t| t < cutoff);
                if !old {
                    continue;
                }
                let (enc, _) = paths(&dir, name);
                std::fs::remove_file(&key_file).map_err(super::io_err(&key_file))?;
                crate::fsutil::sync_dir(&dir).map_err(super::io_err(&dir))?;
                crate::fsutil::discard_file(&enc).map_err(super::io_err(&enc))?;
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
        // The old one was made a day past the retention period.
        let then = std::time::SystemTime::now() - storage.max_retention - std::time::Duration::from_secs(86_400);
        std::fs::File::options().write(true).open(backups.join("old.pdf.key")).unwrap().set_modified(then).unwrap();
        assert_eq!(q.expire_backups().unwrap(), 1);
        assert!(!backups.join("old.pdf.key").exists() && !backups.join("old.pdf.enc").exists());
        assert!(q.open_backup(&backups, "new.pdf").is_ok());
        let audit = q.audit_records().unwrap();
        assert!(audit.iter().any(|r| r.kind.contains("old.pdf") && r.kind.contains("retention")), "{audit:?}");
        assert_eq!(q.expire_backups().unwrap(), 0);
    }
}
