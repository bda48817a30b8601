//! Durability helpers: what "fsync'd" means for files and directories on Linux.

use std::fs::File;
use std::io;
use std::path::Path;

/// Makes a directory's entries (files created, renamed or removed in it) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A file being written that hands what it has received to the disk as it goes: every
/// [`WRITEBACK_STEP`] bytes it asks the kernel to start writing them back (`fadvise`
/// `DONTNEED`, which starts the writeback without waiting for it and lets the clean pages go).
/// The tail's writeback starts at `flush`, when the file is complete. The final `fsync` then
/// waits for what the disk has not finished yet, not for the whole file: for a large video the
/// disk works while the rest is still being encrypted, instead of after, and the images sealed
/// beside it are on their way before `enroll` syncs everything at the end.
#[derive(Debug)]
pub struct WritebackFile {
    file: File,
    written: u64,
    started: u64,
}

/// How much is written before its writeback is started. 1 MiB rather than 4: the disk starts
/// sooner and the last step is shorter (`enroll` of a 30 MB video and four 1 MB images:
/// 54.2, 56.2 ms against 61.8, 63.4 ms for 4 MiB without the tail started at `flush`,
/// alternating rounds of 11); still writes large enough for an SD card or eMMC.
pub const WRITEBACK_STEP: u64 = 1 << 20;

impl WritebackFile {
    pub fn new(file: File) -> Self {
        WritebackFile { file, written: 0, started: 0 }
    }

    /// The file, to sync or close.
    pub fn get_ref(&self) -> &File {
        &self.file
    }

    /// Starts the writeback of what was written since the last start, if anything.
    fn start_writeback(&mut self) {
        if let Some(len) = std::num::NonZeroU64::new(self.written - self.started) {
            // Advice, not a promise: a file system that ignores it is synced in full later.
            let _ = rustix::fs::fadvise(&self.file, self.started, Some(len), rustix::fs::Advice::DontNeed);
            self.started = self.written;
        }
    }
}

impl io::Write for WritebackFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= WRITEBACK_STEP {
            self.start_writeback();
        }
        Ok(n)
    }

    /// Also starts the writeback of the last step: a file is flushed when it is complete, and
    /// its sync may come much later (`enroll` syncs every file at the end), by when the disk
    /// has written the tail too.
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.start_writeback();
        Ok(())
    }
}

/// Creates `dir` and its missing parents, syncing each parent whose entries changed.
pub fn create_dir_all_durable(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all_durable(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    sync_dir(dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
}

/// Bytes available to an unprivileged user on the file system holding `path`.
pub fn available_bytes(path: &Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(path).map_err(io::Error::from)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Overwrites a file with zeros, syncs it, then unlinks it durably: for what was written in
/// clear (an intake spill, a download), whose bytes must not stay where the file was.
pub fn shred_file(path: &Path) -> io::Result<()> {
    shred_unsynced(path)?;
    sync_parent(path)
}

/// [`shred_file`] without syncing the directory (the caller syncs it once for many files).
fn shred_unsynced(path: &Path) -> io::Result<()> {
    act_then_unlink(path, |file, len| {
        use std::io::Write as _;
        let zeros = vec![0u8; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            file.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        file.sync_data()
    })
}

/// [`shred_file`] for every file in `dir` (one level, as the spool has), then removes it.
pub fn shred_dir(dir: &Path) -> io::Result<()> {
    each_file_then_dir(dir, shred_unsynced)
}

/// Removes a file of ciphertext whose key is already destroyed: cryptographic erase (NIST SP
/// 800-88 Rev. 1), so no overwrite pass, which on flash does not even reach the same cells and
/// only doubles the wear. Its blocks are handed back first (`fallocate` punching a hole over
/// the whole file, so the file system may discard them) where the file system supports it;
/// then it is unlinked, durably.
pub fn discard_file(path: &Path) -> io::Result<()> {
    discard_unsynced(path)?;
    sync_parent(path)
}

/// [`discard_file`] without syncing the directory (the caller syncs it once for many files).
fn discard_unsynced(path: &Path) -> io::Result<()> {
    act_then_unlink(path, |file, len| {
        let hole = rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE;
        // Best effort: a file system without hole punching still unlinks below.
        let _ = rustix::fs::fallocate(&*file, hole, 0, len);
        Ok(())
    })
}

/// [`discard_file`] for every file in `dir` (one level, as the spool has), then removes it.
pub fn discard_dir(dir: &Path) -> io::Result<()> {
    each_file_then_dir(dir, discard_unsynced)
}

/// Opens `path` for writing without following a link or blocking, runs `act` on it with its
/// length when it is a regular file, then unlinks it (the caller syncs the directory). A missing
/// file is done; a link or something not writable is only unlinked.
fn act_then_unlink(path: &Path, act: impl FnOnce(&mut File, u64) -> io::Result<()>) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path);
    match file {
        Ok(mut file) if file.metadata()?.is_file() => {
            let len = file.metadata()?.len();
            act(&mut file, len)?;
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        // A symlink (ELOOP under O_NOFOLLOW) or something not writable: just unlink it.
        Err(_) => {}
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Syncs the directory holding `path` (its entry's creation or removal made durable).
fn sync_parent(path: &Path) -> io::Result<()> {
    sync_dir(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
}

/// Applies `per_file` to every file below `dir`, then removes `dir` and syncs its parent.
fn each_file_then_dir(dir: &Path, per_file: fn(&Path) -> io::Result<()>) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            each_file_then_dir(&entry.path(), per_file)?;
        } else {
            per_file(&entry.path())?;
        }
    }
    // One sync for all the files' removals (one journal commit, not one per file), then the
    // directory's own.
    sync_dir(dir)?;
    std::fs::remove_dir(dir)?;
    sync_parent(dir)
}

/// A secret (key, password, token) must be readable by its owner only, and that owner must be
/// the user running this process: anything else means another account could read or replace it.
/// The error names the file and the fix.
pub fn check_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is readable by group or others (mode {mode:03o}); make it private: chmod 600 {}",
            path.display(),
            path.display()
        ));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(format!(
            "{} belongs to uid {}, not to this user (uid {me}); run kiosk-agent as its owner, or chown {me} {}",
            path.display(),
            meta.uid(),
            path.display()
        ));
    }
    Ok(())
}

/// A new anonymous memory file (`memfd`: in RAM, never on a disk, gone with its last handle)
/// and the path that opens it (`/proc/self/fd/N`, valid while the handle is open), for code
/// that takes paths: FFmpeg's muxer, the manifest validation.
pub fn memory_file(name: &str) -> io::Result<(std::fs::File, std::path::PathBuf)> {
    use std::os::fd::AsRawFd as _;
    let file = std::fs::File::from(rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)?);
    let path = std::path::PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    Ok((file, path))
}

/// [`memory_file`] holding `bytes`.
pub fn memory_file_holding(name: &str, bytes: &[u8]) -> io::Result<(std::fs::File, std::path::PathBuf)> {
    use std::io::Write as _;
    let (mut file, path) = memory_file(name)?;
    file.write_all(bytes)?;
    Ok((file, path))
}

/// The most a configuration file may hold.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// The most a key, token or password file may hold.
pub const MAX_SECRET_BYTES: u64 = 64 << 10;
/// The most a CA bundle may hold.
pub const MAX_CA_BUNDLE_BYTES: u64 = 4 << 20;

/// Reads a small file the configuration names (the configuration itself, a key, a token, a
/// password, a CA bundle) without trusting what is there: it is opened without blocking (a
/// FIFO cannot hang the reader), must be a regular file (not a FIFO, a device such as
/// `/dev/zero`, or a directory), and is read up to `cap` bytes (more is an error, never an
/// unbounded read).
pub fn read_bounded(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY).bits() as i32)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        let what = match meta.file_type() {
            t if t.is_dir() => "a directory",
            t if std::os::unix::fs::FileTypeExt::is_fifo(&t) => "a FIFO",
            t if std::os::unix::fs::FileTypeExt::is_char_device(&t)
                || std::os::unix::fs::FileTypeExt::is_block_device(&t) =>
            {
                "a device"
            }
            t if std::os::unix::fs::FileTypeExt::is_socket(&t) => "a socket",
            _ => "not a regular file",
        };
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("is {what}, not a regular file")));
    }
    if meta.len() > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("holds {} bytes, more than the {cap} such a file may hold", meta.len()),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("grew past the {cap} bytes such a file may hold"),
        ));
    }
    Ok(bytes)
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_bounded_text(path: &Path, cap: u64) -> io::Result<String> {
    String::from_utf8(read_bounded(path, cap)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "is not UTF-8 text"))
}

#[cfg(test)]
mod bounded_tests {
    use super::*;

    #[test]
    fn fifos_devices_directories_and_large_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        // Nobody writes to the FIFO: a blocking open would hang here for ever.
        let e = read_bounded(&fifo, 10).unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
        let e = read_bounded(Path::new("/dev/zero"), 10).unwrap_err();
        assert!(e.to_string().contains("a device"), "{e}");
        let e = read_bounded(dir.path(), 10).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 11]).unwrap();
        let e = read_bounded(&big, 10).unwrap_err();
        assert!(e.to_string().contains("more than the 10"), "{e}");
        std::fs::write(&big, b"0123456789").unwrap();
        assert_eq!(read_bounded(&big, 10).unwrap(), b"0123456789");
    }
}

#[cfg(test)]
mod writeback_tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn a_file_written_with_early_writeback_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.enc");
        let data: Vec<u8> = (0..(3 * WRITEBACK_STEP + 12_345)).map(|i| (i * 31 % 251) as u8).collect();
        let mut out = WritebackFile::new(File::create(&path).unwrap());
        // Odd-sized writes, so that no step boundary falls on a write's edge.
        const PIECE: usize = 300_007;
        for piece in data.chunks(PIECE) {
            out.write_all(piece).unwrap();
        }
        // Writeback was started as the steps filled up: what waits is less than a step (and
        // the write that completed it), never the whole file.
        assert_eq!(out.written, data.len() as u64);
        assert!(out.started > 0 && out.written - out.started < WRITEBACK_STEP + PIECE as u64, "{out:?}");
        // The file is complete when it is flushed: the tail's writeback starts then, not at
        // the sync.
        out.flush().unwrap();
        assert_eq!(out.started, out.written, "{out:?}");
        out.get_ref().sync_all().unwrap();
        drop(out);
        assert!(std::fs::read(&path).unwrap() == data, "the bytes read back differ");
    }
}
