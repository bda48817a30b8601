//! `sync.max_upload_rate`: one budget of bytes per second shared by every upload of the worker,
//! so the kiosk never takes more of the shop's uplink than configured, whatever is in flight.
//! Uploads hand their bytes to the connection when [`Pacer::reserve`] says the budget allows
//! them ([`Pacer::take`] sleeps until then); idle time earns no credit (no burst after a pause).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A byte-rate budget.
#[derive(Debug)]
pub struct Pacer {
    bytes_per_sec: u64,
    /// Since when bytes are counted, and how many were taken since then.
    window: Mutex<(Instant, u64)>,
}

impl Pacer {
    pub fn new(bytes_per_sec: u64) -> Pacer {
        Pacer { bytes_per_sec: bytes_per_sec.max(1), window: Mutex::new((Instant::now(), 0)) }
    }

    /// Counts `n` more bytes and answers when they fit the budget: a streamed body holds its
    /// chunk until then without blocking its thread.
    pub fn reserve(&self, n: u64) -> Instant {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let until = w.0 + Duration::from_secs_f64(w.1 as f64 / self.bytes_per_sec as f64);
        // More than a second idle: start a fresh window instead of spending saved-up credit.
        if now > until + Duration::from_secs(1) {
            *w = (now, 0);
        }
        w.1 += n;
        w.0 + Duration::from_secs_f64(w.1 as f64 / self.bytes_per_sec as f64)
    }

    /// Waits (blocking the calling thread) until `n` more bytes fit the budget, and counts them.
    pub fn take(&self, n: u64) {
        let due = self.reserve(n);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_holds_the_rate() {
        let pacer = Pacer::new(1_000_000);
        let start = Instant::now();
        for _ in 0..20 {
            pacer.take(25_000); // 500 kB in all: half a second at 1 MB/s
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(480), "{took:?}");
    }
}
