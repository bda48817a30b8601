//! The operator page's sessions and the throttle on token guesses.
//!
//! The page exchanges the API token once (`POST /v1/session`) for a random session id in an
//! HttpOnly, SameSite=Strict cookie; the token itself never goes into a cookie (cookies ignore
//! ports, so every other service on 127.0.0.1 would receive it). Sessions live in memory only:
//! they end on logout, after `IDLE` without a request, after `LIFETIME` in any case, and when the
//! daemon restarts. Each is bound to the `Host` it was opened on. Only a hash of the id is kept.
//!
//! Wrong tokens (at `POST /v1/session` or as a bearer) are throttled for everyone: after
//! `FREE_GUESSES` in a row each further guess waits twice as long as the last, up to
//! `MAX_LOCKOUT`; while locked, guesses are not even compared. Time is the monotonic clock, so a
//! wall clock corrected meanwhile changes nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

/// A session unused this long ends.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// No session outlives this, used or not (an operator's shift).
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// At most this many sessions at once; opening one more ends the oldest.
const MAX_SESSIONS: usize = 16;
/// Wrong tokens in a row answered at once; then the lockout begins.
pub const FREE_GUESSES: u32 = 3;
/// The longest lockout between two guesses.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(60);

/// The cookie's name.
pub const COOKIE: &str = "kiosk_session";

#[derive(Debug)]
struct Session {
    host: String,
    opened: Instant,
    last_used: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<[u8; 32], Session>,
    wrong_guesses: u32,
    locked_until: Option<Instant>,
}

/// The sessions of one daemon, and its guess throttle.
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

/// A guess refused without being compared: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled(pub Duration);

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map stays consistent whatever panicked while it was held.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Compares a token guess with `token` in constant time, unless guesses are locked out.
    pub fn check_token(&self, given: &str, token: &str, now: Instant) -> Result<bool, Throttled> {
        let mut inner = self.lock();
        if let Some(until) = inner.locked_until.filter(|u| *u > now) {
            return Err(Throttled(until - now));
        }
        let right = same(given.as_bytes(), token.as_bytes());
        if right {
            inner.wrong_guesses = 0;
            inner.locked_until = None;
        } else {
            inner.wrong_guesses = inner.wrong_guesses.saturating_add(1);
            if inner.wrong_guesses >= FREE_GUESSES {
                let doublings = (inner.wrong_guesses - FREE_GUESSES).min(16);
                let wait = Duration::from_secs(1 << doublings).min(MAX_LOCKOUT);
                inner.locked_until = Some(now + wait);
            }
        }
        Ok(right)
    }

    /// Opens a session bound to `host`; returns its id (256 random bits, hex).
    pub fn open(&self, host: &str, now: Instant) -> String {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let id = hex::encode(bytes);
        let mut inner = self.lock();
        inner.sessions.retain(|_, s| alive(s, now));
        while inner.sessions.len() >= MAX_SESSIONS {
            let oldest = *inner.sessions.iter().min_by_key(|(_, s)| s.opened).map(|(k, _)| k).expect("not empty");
            inner.sessions.remove(&oldest);
        }
        inner.sessions.insert(digest(&id), Session { host: host.to_owned(), opened: now, last_used: now });
        id
    }

    /// Whether `id` is a live session opened on `host`; a use keeps it from idling out.
    pub fn valid(&self, id: &str, host: &str, now: Instant) -> bool {
        let mut inner = self.lock();
        let key = digest(id);
        match inner.sessions.get_mut(&key) {
            Some(s) if alive(s, now) && s.host == host => {
                s.last_used = now;
                true
            }
            Some(s) if !alive(s, now) => {
                inner.sessions.remove(&key);
                false
            }
            _ => false,
        }
    }

    /// Ends the session `id` (logout); whether there was one.
    pub fn close(&self, id: &str) -> bool {
        self.lock().sessions.remove(&digest(id)).is_some()
    }
}

fn alive(s: &Session, now: Instant) -> bool {
    now.saturating_duration_since(s.last_used) < IDLE && now.saturating_duration_since(s.opened) < LIFETIME
}

/// Compares constant-time: a wrong token takes as long to refuse whatever its prefix.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "right-token-0123456789";

    #[test]
    fn sessions_are_random_bound_to_their_host_and_expire() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let a = s.open("127.0.0.1:8470", t0);
        let b = s.open("127.0.0.1:8470", t0);
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_ne!(a, TOKEN);
        assert!(s.valid(&a, "127.0.0.1:8470", t0));
        assert!(!s.valid(&a, "localhost:8470", t0), "another Host is another session");
        assert!(!s.valid("0".repeat(64).as_str(), "127.0.0.1:8470", t0));
        // Used within IDLE it lives on; then idle for IDLE it ends.
        let t1 = t0 + IDLE - Duration::from_secs(1);
        assert!(s.valid(&a, "127.0.0.1:8470", t1));
        assert!(!s.valid(&a, "127.0.0.1:8470", t1 + IDLE));
        // Whatever its use, LIFETIME ends it.
        let mut t = t0;
        while t < t0 + LIFETIME - IDLE {
            t += IDLE / 2;
            assert!(s.valid(&b, "127.0.0.1:8470", t));
        }
        assert!(!s.valid(&b, "127.0.0.1:8470", t0 + LIFETIME));
    }

    #[test]
    fn logout_ends_a_session() {
        let s = Sessions::default();
        let now = Instant::now();
        let a = s.open("h:1", now);
        assert!(s.close(&a));
        assert!(!s.valid(&a, "h:1", now));
        assert!(!s.close(&a));
    }

    #[test]
    fn at_most_max_sessions_live_and_the_oldest_goes() {
        let s = Sessions::default();
        let now = Instant::now();
        let ids: Vec<String> =
            (0..=MAX_SESSIONS).map(|i| s.open("h:1", now + Duration::from_millis(i as u64))).collect();
        let later = now + Duration::from_secs(1);
        assert!(!s.valid(&ids[0], "h:1", later));
        assert!(ids[1..].iter().all(|id| s.valid(id, "h:1", later)));
    }

    #[test]
    fn wrong_guesses_lock_out_then_double() {
        let s = Sessions::default();
        let t0 = Instant::now();
        for _ in 0..FREE_GUESSES - 1 {
            assert_eq!(s.check_token("wrong", TOKEN, t0), Ok(false));
        }
        // The third wrong guess starts a 1 s lockout, during which even the right token waits.
        assert_eq!(s.check_token("wrong", TOKEN, t0), Ok(false));
        assert_eq!(s.check_token(TOKEN, TOKEN, t0), Err(Throttled(Duration::from_secs(1))));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(s.check_token("wrong", TOKEN, t1), Ok(false));
        assert_eq!(s.check_token("wrong", TOKEN, t1 + Duration::from_secs(1)), Err(Throttled(Duration::from_secs(1))));
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(s.check_token("wrong", TOKEN, t2), Ok(false));
        let t3 = t2 + Duration::from_secs(4);
        // Many more: the wait is capped.
        let mut t = t3;
        for _ in 0..20 {
            let _ = s.check_token("wrong", TOKEN, t);
            t += MAX_LOCKOUT;
        }
        assert_eq!(s.check_token(TOKEN, TOKEN, t - MAX_LOCKOUT), Err(Throttled(MAX_LOCKOUT)));
        // The right token after the wait opens, and clears the count.
        assert_eq!(s.check_token(TOKEN, TOKEN, t), Ok(true));
        assert_eq!(s.check_token("wrong", TOKEN, t), Ok(false));
        assert_eq!(s.check_token(TOKEN, TOKEN, t), Ok(true));
    }
}
