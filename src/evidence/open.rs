//! Opening the files a manifest names, once and safely.
//!
//! Every file is opened exactly once and everything after (checks, sniffing, decoding,
//! encryption) reads that same handle, so swapping a symlink between validation and copy cannot
//! substitute another file. Opening is non-blocking, so a FIFO or a device cannot hang `enroll`,
//! and the handle (not the path) must be a regular file. Artifact paths are resolved beneath the
//! manifest's folder by the kernel (`openat2` with `RESOLVE_BENEATH`): neither `..` nor a symlink
//! can lead out of it unless the operator passes `--allow-outside`.

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// The manifest itself may be at most this large.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Flags for every open: read only, never block on a FIFO or device, never become the
/// controlling terminal, not inherited by children.
fn flags() -> OFlags {
    OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC
}

/// Where artifact paths may lead.
#[derive(Debug)]
pub enum Scope {
    /// Beneath this directory (the manifest's folder), symlinks included.
    Beneath(OwnedFd),
    /// Anywhere (`--allow-outside`): paths are joined to `base` and symlinks followed.
    Anywhere(std::path::PathBuf),
}

impl Scope {
    /// The scope for a manifest at `manifest`.
    pub fn for_manifest(manifest: &Path, allow_outside: bool) -> std::io::Result<Scope> {
        let base = manifest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if allow_outside {
            return Ok(Scope::Anywhere(base.to_owned()));
        }
        let dir = rustix::fs::open(base, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(Scope::Beneath(dir))
    }

    /// Opens `rel` within this scope and returns the handle and its size, or the rule it breaks.
    pub fn open(&self, rel: &str) -> Result<(File, u64), String> {
        let fd = match self {
            Scope::Beneath(dir) => open_beneath(dir, rel).map_err(|e| match e {
                Errno::XDEV => format!(
                    "{rel:?} leads outside the manifest's folder (through .., an absolute path or a \
                     symlink); move the file into the folder or pass --allow-outside"
                ),
                Errno::LOOP => format!("{rel:?}: too many levels of symbolic links"),
                e => format!("cannot open {rel:?}: {}", std::io::Error::from(e)),
            })?,
            Scope::Anywhere(base) => {
                let path = base.join(rel);
                rustix::fs::open(&path, flags(), Mode::empty())
                    .map_err(|e| format!("cannot open {}: {}", path.display(), std::io::Error::from(e)))?
            }
        };
        regular(fd).map_err(|kind| format!("{rel:?} is {kind}, not a regular file"))
    }
}

/// `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, retried on `EAGAIN` (which the kernel
/// returns when a rename raced the lookup).
fn open_beneath(dir: &OwnedFd, rel: &str) -> Result<OwnedFd, Errno> {
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(dir, rel, flags(), Mode::empty(), resolve) {
            Err(Errno::AGAIN) if tries < 8 => tries += 1,
            other => return other,
        }
    }
}

/// The handle as a `File` with its size, if it is a regular file; otherwise what it is.
fn regular(fd: OwnedFd) -> Result<(File, u64), &'static str> {
    let stat = rustix::fs::fstat(&fd).map_err(|_| "unreadable")?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    if kind != FileType::RegularFile {
        return Err(match kind {
            FileType::Fifo => "a FIFO",
            FileType::Socket => "a socket",
            FileType::CharacterDevice => "a character device",
            FileType::BlockDevice => "a block device",
            FileType::Directory => "a directory",
            _ => "not a regular file",
        });
    }
    // Regular files never block; reads from here on are ordinary.
    let _ = rustix::fs::fcntl_setfl(&fd, rustix::fs::fcntl_getfl(&fd).unwrap_or(OFlags::empty()) - OFlags::NONBLOCK);
    Ok((File::from(fd), stat.st_size as u64))
}

/// Reads the manifest at `path` through one non-blocking open, refusing anything but a regular
/// file of at most [`MAX_MANIFEST_BYTES`].
pub fn read_manifest(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind};
    let fd = rustix::fs::open(path, flags(), Mode::empty())?;
    let (file, size) =
        regular(fd).map_err(|kind| Error::new(ErrorKind::InvalidInput, format!("it is {kind}, not a regular file")))?;
    let too_big = || Error::new(ErrorKind::InvalidInput, format!("it is over the limit of {MAX_MANIFEST_BYTES} bytes"));
    if size > MAX_MANIFEST_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // The size was read from the handle, but a file can grow: never read past the cap.
    file.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(too_big());
    }
    Ok(bytes)
}
