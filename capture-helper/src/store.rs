//! The capture service's stills and clips, kept in memory only: a still is a JPEG in a map, a
//! clip is an anonymous memory file (`memfd`) the encoder writes through `/proc/self/fd/N`.
//! Nothing the cameras saw is ever written to a disk by this process, so nothing is left behind
//! by a crash, a kill or a power cut, and a disk taken out holds none of it.
//!
//! A capture lives until the daemon takes it for an enrollment (and then deletes it), until a
//! newer one pushes it out (at most [`MAX_STILLS`] stills and [`MAX_CLIPS`] clips), or until it
//! stays unused for `keep` (counted on the monotonic clock). Retakes are never stored.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read as _, Seek as _};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Stills kept at once: a customer's three, a few retakes' worth of margin.
pub const MAX_STILLS: usize = 12;
/// Clips kept at once (each up to `capture.video.max_seconds` of H.264).
pub const MAX_CLIPS: usize = 2;

struct Kept<T> {
    value: T,
    at: Instant,
}

#[derive(Default)]
struct Inner {
    stills: HashMap<String, Kept<Vec<u8>>>,
    clips: HashMap<String, Kept<File>>,
}

/// The kept captures.
pub struct Store {
    inner: Mutex<Inner>,
    keep: Duration,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("keep", &self.keep).finish_non_exhaustive()
    }
}

fn evict<T>(map: &mut HashMap<String, Kept<T>>, max: usize) {
    while map.len() >= max {
        let oldest = map.iter().min_by_key(|(_, k)| k.at).map(|(id, _)| id.clone()).expect("not empty");
        map.remove(&oldest);
    }
}

impl Store {
    pub fn new(keep: Duration) -> Store {
        Store { inner: Mutex::default(), keep }
    }

    fn lock(&self, now: Instant) -> std::sync::MutexGuard<'_, Inner> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let keep = self.keep;
        inner.stills.retain(|_, k| now.saturating_duration_since(k.at) < keep);
        inner.clips.retain(|_, k| now.saturating_duration_since(k.at) < keep);
        inner
    }

    /// Keeps a still under a new id.
    pub fn put_still(&self, jpeg: Vec<u8>, now: Instant) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let mut inner = self.lock(now);
        evict(&mut inner.stills, MAX_STILLS);
        inner.stills.insert(id.clone(), Kept { value: jpeg, at: now });
        id
    }

    pub fn still(&self, id: &str, now: Instant) -> Option<Vec<u8>> {
        self.lock(now).stills.get(id).map(|k| k.value.clone())
    }

    /// Keeps a finished clip under its recording's id.
    pub fn put_clip(&self, id: String, file: File, now: Instant) {
        let mut inner = self.lock(now);
        evict(&mut inner.clips, MAX_CLIPS);
        inner.clips.insert(id, Kept { value: file, at: now });
    }

    /// The clip's bytes.
    pub fn clip(&self, id: &str, now: Instant) -> Option<std::io::Result<Vec<u8>>> {
        let file = self.lock(now).clips.get(id).map(|k| k.value.try_clone())?;
        Some(file.and_then(|mut f| {
            f.rewind()?;
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes)?;
            Ok(bytes)
        }))
    }

    /// Forgets a still or a clip (taken by an enrollment); whether there was one.
    pub fn remove(&self, id: &str, now: Instant) -> bool {
        let mut inner = self.lock(now);
        inner.stills.remove(id).is_some() | inner.clips.remove(id).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn captures_are_kept_bounded_and_forgotten_when_unused() {
        let store = Store::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let ids: Vec<String> =
            (0..=MAX_STILLS).map(|i| store.put_still(vec![i as u8], t0 + Duration::from_millis(i as u64))).collect();
        assert_eq!(store.still(&ids[0], t0), None, "the oldest was pushed out");
        assert_eq!(store.still(&ids[1], t0), Some(vec![1]));
        assert!(store.remove(&ids[1], t0));
        assert_eq!(store.still(&ids[1], t0), None);
        assert_eq!(store.still(&ids[2], t0 + Duration::from_secs(61)), None, "unused for `keep`");
    }

    #[test]
    fn a_clip_lives_in_a_memory_file_with_no_name_on_disk() {
        let store = Store::new(Duration::from_secs(60));
        let (mut file, path) = kiosk_common::fsutil::memory_file("clip").unwrap();
        assert!(path.starts_with("/proc/self/fd"));
        // What the encoder does: open the path and write.
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().write_all(b"....ftypisom").unwrap();
        let target = std::fs::read_link(&path).unwrap();
        assert!(target.to_string_lossy().starts_with("/memfd:"), "{}", target.display());
        file.rewind().unwrap();
        let now = Instant::now();
        store.put_clip("c".into(), file, now);
        assert_eq!(store.clip("c", now).unwrap().unwrap(), b"....ftypisom");
        assert!(store.remove("c", now));
        assert!(store.clip("c", now).is_none());
    }
}
