//! Erases what a submission cut off midway leaves behind: the intake directory of a `POST
//! /v1/enrollments` whose process was killed (or lost power) before it could shred it, and the
//! `captures/` directory of earlier versions, whose capture service wrote stills and clips to
//! disk. At the daemon's start nothing is in flight, so everything found there goes. (The
//! capture service keeps its captures in memory and forgets them itself.)

use std::path::Path;

/// Erases every intake directory, and the captures an earlier version wrote, under `data_dir`.
pub fn at_start(data_dir: &Path) {
    for dir in [data_dir.join("intake"), data_dir.join("captures")] {
        match erase_entries(&dir) {
            Ok(0) => {}
            Ok(n) => tracing::info!(dir = %dir.display(), erased = n, "erased what an earlier run left"),
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot erase what an earlier run left"),
        }
    }
}

/// Every entry of `dir` shredded (a missing `dir` is empty); how many there were. Shredded, not
/// just discarded: an intake written by a version before sealed spills holds clear text.
fn erase_entries(dir: &Path) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut n = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            crate::fsutil::shred_dir(&path)?;
        } else {
            crate::fsutil::shred_file(&path)?;
        }
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_start_everything_left_is_erased() {
        let data = tempfile::tempdir().unwrap();
        let captures = data.path().join("captures");
        std::fs::create_dir_all(data.path().join("intake/x")).unwrap();
        std::fs::write(data.path().join("intake/x/document_front.bin"), b"\xff\xd8\xff").unwrap();
        std::fs::create_dir_all(&captures).unwrap();
        std::fs::write(captures.join("c.jpg"), b"\xff\xd8\xff").unwrap();
        at_start(data.path());
        assert_eq!(std::fs::read_dir(data.path().join("intake")).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(&captures).unwrap().count(), 0);
    }
}
