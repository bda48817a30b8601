//! How long evidence has really waited, whatever the wall clock says.
//!
//! Kiosks boot with clocks that are days or years off (no RTC battery, NTP late) and have them
//! corrected while they run. A policy that compares wall-clock timestamps would erase evidence
//! the moment a clock is corrected forward, or keep it for ever after one goes back. So the time
//! an enrollment has waited is accumulated from [`Mark`]s: within one boot, the boot clock
//! (`CLOCK_BOOTTIME`, suspend included, never set) measures it; across a reboot, the wall clock
//! is believed only for a plausible gap ([`MAX_BELIEVED_GAP`]); a jump beyond that is unknown
//! time, and unknown time never counts as waited.

/// The longest time between two marks in different boots that the wall clock is believed for
/// (a kiosk switched off over a long weekend); a larger gap, or a negative one, is a clock that
/// was wrong on one side, and counts as nothing.
pub const MAX_BELIEVED_GAP_MS: i64 = 7 * 86_400_000;

/// Where the machine's clocks stood at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// `/proc/sys/kernel/random/boot_id`: which boot the boot clock belongs to.
    pub boot: String,
    /// `CLOCK_BOOTTIME` in milliseconds.
    pub since_boot_ms: i64,
    /// The wall clock, as [`super::now_ms`] reads it.
    pub wall_ms: i64,
}

impl Mark {
    /// The clocks now.
    pub fn now() -> Mark {
        let boot =
            std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_owned()).unwrap_or_default();
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        Mark { boot, since_boot_ms: t.tv_sec * 1000 + t.tv_nsec / 1_000_000, wall_ms: super::now_ms() }
    }

    /// How long verifiably passed from `earlier` to this mark, in milliseconds (never negative).
    pub fn elapsed_since(&self, earlier: &Mark) -> i64 {
        if !self.boot.is_empty() && self.boot == earlier.boot {
            return (self.since_boot_ms - earlier.since_boot_ms).max(0);
        }
        let gap = self.wall_ms - earlier.wall_ms;
        if (0..=MAX_BELIEVED_GAP_MS).contains(&gap) {
            gap
        } else {
            0
        }
    }

    /// The mark as stored (`boot,since_boot_ms,wall_ms`).
    pub fn encode(&self) -> String {
        format!("{},{},{}", self.boot, self.since_boot_ms, self.wall_ms)
    }

    pub fn decode(text: &str) -> Option<Mark> {
        let mut parts = text.split(',');
        let boot = parts.next()?.to_owned();
        let since_boot_ms = parts.next()?.parse().ok()?;
        let wall_ms = parts.next()?.parse().ok()?;
        Some(Mark { boot, since_boot_ms, wall_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    fn mark(boot: &str, since_boot_ms: i64, wall_ms: i64) -> Mark {
        Mark { boot: boot.into(), since_boot_ms, wall_ms }
    }

    #[test]
    fn within_a_boot_the_boot_clock_decides_whatever_the_wall_clock_did() {
        let queued = mark("a", 1_000, 1_000_000_000_000);
        // An hour later by the boot clock, the wall clock corrected 400 days ahead or behind.
        assert_eq!(mark("a", 1_000 + 3_600_000, 1_000_000_000_000 + 400 * DAY).elapsed_since(&queued), 3_600_000);
        assert_eq!(mark("a", 1_000 + 3_600_000, 1_000_000_000_000 - 400 * DAY).elapsed_since(&queued), 3_600_000);
    }

    #[test]
    fn across_a_reboot_only_a_plausible_wall_clock_gap_counts() {
        let before = mark("a", 50_000_000, 1_000_000_000_000);
        assert_eq!(mark("b", 10_000, 1_000_000_000_000 + 3 * DAY).elapsed_since(&before), 3 * DAY, "a long weekend");
        assert_eq!(
            mark("b", 10_000, 1_000_000_000_000 + 400 * DAY).elapsed_since(&before),
            0,
            "a jump is unknown time"
        );
        assert_eq!(
            mark("b", 10_000, 1_000_000_000_000 - DAY).elapsed_since(&before),
            0,
            "a clock behind counts nothing"
        );
    }

    #[test]
    fn marks_are_stored_and_read_back() {
        let m = mark("0f8c-11", 123, 456);
        assert_eq!(Mark::decode(&m.encode()), Some(m));
        assert_eq!(Mark::decode("garbage"), None);
    }
}
