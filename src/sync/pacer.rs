//! `sync.max_upload_rate`: one budget of bytes per second shared by every upload of the worker,
//! so the kiosk never takes more of the shop's uplink than configured, whatever is in flight.
//! Uploads hand their bytes to the connection through [`Pacer::take`], which sleeps until the
//! budget allows them; idle time earns no credit (no burst after a pause).

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

    /// Waits (blocking the calling thread) until `n` more bytes fit the budget, and counts them.
    pub fn take(&self, n: u64) {
        let due = {
            let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let until = w.0 + Duration::from_secs_f64(w.1 as f64 / self.bytes_per_sec as f64);
            // More than a second idle: start a fresh window instead of spending saved-up credit.
            if now > until + Duration::from_secs(1) {
                *w = (now, 0);
            }
            w.1 += n;
            w.0 + Duration::from_secs_f64(w.1 as f64 / self.bytes_per_sec as f64)
        };
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

/// Parses a rate such as `"2 Mbit/s"`, `"500 kbit/s"`, `"1.5 MB/s"`, `"256 KiB/s"` or a plain
/// number of bytes per second, into bytes per second.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = (t[..split].trim(), t[split..].trim());
    let value: f64 = number.parse().map_err(|_| format!("{text:?} does not start with a number"))?;
    let per_sec = match unit {
        "" | "B/s" => 1.0,
        "bit/s" => 1.0 / 8.0,
        "kbit/s" => 1000.0 / 8.0,
        "Mbit/s" => 1_000_000.0 / 8.0,
        "Gbit/s" => 1_000_000_000.0 / 8.0,
        "kB/s" => 1000.0,
        "MB/s" => 1_000_000.0,
        "KiB/s" => 1024.0,
        "MiB/s" => 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} (use bit/s, kbit/s, Mbit/s, Gbit/s, B/s, kB/s, MB/s, KiB/s or MiB/s)"
            ))
        }
    };
    let bytes = value * per_sec;
    if !(bytes >= 1024.0 && bytes.is_finite()) {
        return Err(format!("{text:?} is below 1 KiB/s"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_the_usual_units() {
        assert_eq!(parse_rate("2 Mbit/s"), Ok(250_000));
        assert_eq!(parse_rate("500kbit/s"), Ok(62_500));
        assert_eq!(parse_rate("1.5 MB/s"), Ok(1_500_000));
        assert_eq!(parse_rate("256 KiB/s"), Ok(262_144));
        assert_eq!(parse_rate("100000"), Ok(100_000));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("2 Mbps").unwrap_err().contains("unknown unit"));
        assert!(parse_rate("10 bit/s").unwrap_err().contains("below"));
    }

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
