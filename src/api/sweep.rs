//! Erases what the capture path leaves behind: the intake of a submission cut off midway (a
//! crash, a kill) and the stills and clips no enrollment took (retakes, an abandoned customer).
//! Until an enrollment takes them these are plain files, 0600 in the 0700 data directory (see
//! the README's threat model), so they are kept as briefly as possible:
//! - at start, every intake directory and every capture is erased (nothing is in flight then);
//! - afterwards, a capture that stays unused for `ttl` is erased. Its age is counted on the
//!   monotonic clock from when the sweep first saw it, so a wall clock corrected meanwhile
//!   neither erases a fresh capture nor keeps an old one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the captures are looked at.
const EVERY: Duration = Duration::from_secs(30);

/// Erases every intake directory and capture now (the daemon is starting: none is in use).
pub fn at_start(data_dir: &Path, captures: &Path) {
    let intake = data_dir.join("intake");
    for dir in [intake.as_path(), captures] {
        match erase_entries(dir) {
            Ok(0) => {}
            Ok(n) => tracing::info!(dir = %dir.display(), erased = n, "erased what an earlier run left"),
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot erase what an earlier run left"),
        }
    }
}

/// Every entry of `dir` shredded (a missing `dir` is empty); how many there were.
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

/// The captures seen so far and when they were first seen.
#[derive(Debug, Default)]
pub struct Ages {
    first_seen: HashMap<PathBuf, Instant>,
}

impl Ages {
    /// Looks at `dir` at `now`: returns the files unused for `ttl` (to erase) and forgets
    /// the ones that are gone.
    pub fn expired(&mut self, dir: &Path, now: Instant, ttl: Duration) -> Vec<PathBuf> {
        let present: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
            Err(_) => Vec::new(),
        };
        self.first_seen.retain(|p, _| present.contains(p));
        let mut old = Vec::new();
        for path in present {
            let seen = *self.first_seen.entry(path.clone()).or_insert(now);
            if now.saturating_duration_since(seen) >= ttl {
                old.push(path);
            }
        }
        old
    }
}

/// Runs for the daemon's life: erases captures unused for `ttl`.
pub async fn run(captures: PathBuf, ttl: Duration) {
    let mut ages = Ages::default();
    loop {
        tokio::time::sleep(EVERY.min(ttl)).await;
        let old = ages.expired(&captures, Instant::now(), ttl);
        if old.is_empty() {
            continue;
        }
        let erased = tokio::task::spawn_blocking(move || {
            old.iter().filter(|p| crate::fsutil::shred_file(p).is_ok() || !p.exists()).count()
        })
        .await
        .unwrap_or(0);
        tracing::info!(erased, ttl_secs = ttl.as_secs(), "erased captures no enrollment took");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_expire_on_the_monotonic_clock_from_first_sight() {
        let dir = tempfile::tempdir().unwrap();
        let ttl = Duration::from_secs(600);
        let mut ages = Ages::default();
        let t0 = Instant::now();
        std::fs::write(dir.path().join("a.jpg"), b"a").unwrap();
        assert!(ages.expired(dir.path(), t0, ttl).is_empty());
        std::fs::write(dir.path().join("b.jpg"), b"b").unwrap();
        let t1 = t0 + Duration::from_secs(300);
        assert!(ages.expired(dir.path(), t1, ttl).is_empty());
        let expired = ages.expired(dir.path(), t0 + ttl, ttl);
        assert_eq!(expired, vec![dir.path().join("a.jpg")], "b was first seen later");
        // One that was used (gone) is forgotten; a new file of the same name starts afresh.
        std::fs::remove_file(dir.path().join("a.jpg")).unwrap();
        assert_eq!(ages.expired(dir.path(), t1 + ttl, ttl), vec![dir.path().join("b.jpg")]);
        std::fs::write(dir.path().join("a.jpg"), b"a2").unwrap();
        assert!(!ages.expired(dir.path(), t1 + ttl, ttl).contains(&dir.path().join("a.jpg")));
    }

    #[test]
    fn at_start_everything_left_is_erased() {
        let data = tempfile::tempdir().unwrap();
        let captures = data.path().join("captures");
        std::fs::create_dir_all(data.path().join("intake/x")).unwrap();
        std::fs::write(data.path().join("intake/x/document_front.bin"), b"\xff\xd8\xff").unwrap();
        std::fs::create_dir_all(&captures).unwrap();
        std::fs::write(captures.join("c.jpg"), b"\xff\xd8\xff").unwrap();
        at_start(data.path(), &captures);
        assert_eq!(std::fs::read_dir(data.path().join("intake")).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(&captures).unwrap().count(), 0);
    }
}
