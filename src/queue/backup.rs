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
}
