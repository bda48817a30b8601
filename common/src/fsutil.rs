//! Durability helpers: what "fsync'd" means for files and directories on Linux.

use std::fs::File;
use std::io;
use std::path::Path;

/// Makes a directory's entries (files created, renamed or removed in it) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
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

/// Overwrites a regular file with zeros, syncs it, then unlinks it (and syncs its directory), so
/// its bytes do not stay readable in the file's old blocks through this path. A symlink is
/// removed, never followed. Missing files are not an error.
pub fn shred_file(path: &Path) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path);
    match file {
        Ok(mut file) if file.metadata()?.is_file() => {
            let len = file.metadata()?.len();
            let zeros = vec![0u8; 64 * 1024];
            let mut left = len;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                file.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            file.sync_data()?;
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        // A symlink (ELOOP under O_NOFOLLOW) or something not writable: just unlink it.
        Err(_) => {}
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    sync_dir(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
}

/// [`shred_file`] for every file in `dir` (one level, as the spool has), then removes it.
pub fn shred_dir(dir: &Path) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            shred_dir(&entry.path())?;
        } else {
            shred_file(&entry.path())?;
        }
    }
    std::fs::remove_dir(dir)?;
    sync_dir(dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
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
