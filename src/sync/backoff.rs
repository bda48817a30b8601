//! Exponential backoff with full jitter, on monotonic time.

use std::time::Duration;

use rand::Rng;

/// `delay = uniform(0, min(cap, base · 2^(attempt-1)))`, never less than the server's
/// `Retry-After` (itself bounded by [`MAX_RETRY_AFTER`], so one bad header cannot park the
/// queue for days).
/// The longest a server's `Retry-After` is honoured for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The ceiling of the jitter window for the `attempt`-th consecutive failure (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay before the next try.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        let jittered = ceiling.mul_f64(rng.gen_range(0.0..=1.0));
        jittered.max(retry_after.unwrap_or(Duration::ZERO).min(MAX_RETRY_AFTER))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let b = Backoff { base: Duration::from_secs(2), cap: Duration::from_secs(300) };
        let ceilings: Vec<u64> = (1..=10).map(|a| b.ceiling(a).as_secs()).collect();
        assert_eq!(ceilings, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn delays_stay_in_the_window_and_honour_retry_after() {
        let b = Backoff { base: Duration::from_secs(2), cap: Duration::from_secs(300) };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let delays: Vec<Duration> = (0..1000).map(|_| b.delay(4, None, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(16)));
        // Full jitter spreads over the whole window, not just near its top.
        assert!(
            delays.iter().any(|d| *d < Duration::from_secs(4)) && delays.iter().any(|d| *d > Duration::from_secs(12))
        );
        assert!(b.delay(1, Some(Duration::from_secs(30)), &mut rng) >= Duration::from_secs(30));
        assert_eq!(b.delay(1, Some(Duration::from_secs(100_000)), &mut rng), MAX_RETRY_AFTER);
    }
}
