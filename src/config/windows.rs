//! `sync.video_windows`: the times of day (local time) when videos may upload.
//!
//! A shop may need its uplink during opening hours; evidences are small and always go first, at
//! any time, so a request is created and its images are on the server at once, while the video
//! waits for the next window.

use std::time::Duration;

const DAY_SECS: u32 = 24 * 3600;

/// One window, `"HH:MM-HH:MM"` in local time; it may run past midnight (`"22:00-06:00"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Seconds after local midnight.
    start: u32,
    end: u32,
}

impl Window {
    pub fn parse(text: &str) -> Result<Window, String> {
        let rule = || format!("must be \"HH:MM-HH:MM\" in local time, such as \"22:00-06:00\", not {text:?}");
        let (a, b) = text.split_once('-').ok_or_else(rule)?;
        let clock = |t: &str| -> Option<u32> {
            let (h, m) = t.trim().split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60).then_some((h * 60 + m) * 60)
        };
        let (start, end) = (clock(a).ok_or_else(rule)?, clock(b).ok_or_else(rule)?);
        if start == end {
            return Err(format!("{text:?} is empty: start and end must differ (leave the list out for any time)"));
        }
        Ok(Window { start, end })
    }

    fn contains(&self, t: u32) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&t)
        } else {
            t >= self.start || t < self.end
        }
    }
}

/// The windows of `sync.video_windows`; none means any time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VideoWindows(pub Vec<Window>);

impl VideoWindows {
    /// Whether a window is open `t` seconds after local midnight (any time, without windows).
    pub fn open_at(&self, t: u32) -> bool {
        self.0.is_empty() || self.0.iter().any(|w| w.contains(t % DAY_SECS))
    }

    /// How long until a video may upload, at `now`: `None` when a window is open (or there are
    /// no windows). The wait is real time to the next opening in `now`'s zone, so it is right
    /// across a daylight-saving change (a night an hour shorter or longer). An opening in the
    /// hour skipped in spring is taken as the moment after the change.
    pub fn wait_from(&self, now: &jiff::Zoned) -> Option<Duration> {
        let t = now.hour() as u32 * 3600 + now.minute() as u32 * 60 + now.second() as u32;
        if self.open_at(t) {
            return None;
        }
        self.0.iter().filter_map(|w| next_opening(now, w.start)).min()
    }

    /// [`VideoWindows::wait_from`] now, in local time (the `TZ` variable, else `/etc/localtime`).
    pub fn wait_now(&self) -> Option<Duration> {
        if self.0.is_empty() {
            return None;
        }
        // Round up to whole seconds so the worker wakes inside the window, not just before it.
        self.wait_from(&jiff::Zoned::now()).map(|d| d + Duration::from_secs(1))
    }
}

/// Real time from `now` to the next `start` (seconds after midnight) on its zone's clock.
fn next_opening(now: &jiff::Zoned, start: u32) -> Option<Duration> {
    let (hour, minute) = ((start / 3600) as i8, (start / 60 % 60) as i8);
    let mut date = now.date();
    // Today's opening may have passed; tomorrow's has not (one more day covers any zone rule).
    for _ in 0..3 {
        let at = date.at(hour, minute, 0, 0).to_zoned(now.time_zone().clone()).ok()?;
        if at > *now {
            let secs = at.duration_since(now).as_secs();
            return u64::try_from(secs).ok().map(Duration::from_secs);
        }
        date = date.tomorrow().ok()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(list: &[&str]) -> VideoWindows {
        VideoWindows(list.iter().map(|w| Window::parse(w).unwrap()).collect())
    }

    const H: u32 = 3600;

    /// Central European time, with its daylight-saving rules written out (no tzdata needed).
    fn cet(date: &str) -> jiff::Zoned {
        let tz = jiff::tz::TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        date.parse::<jiff::civil::DateTime>().unwrap().to_zoned(tz).unwrap()
    }

    fn wait(w: &VideoWindows, at: &str) -> Option<u64> {
        w.wait_from(&cet(at)).map(|d| d.as_secs())
    }

    #[test]
    fn open_inside_and_waits_outside() {
        let w = windows(&["12:00-13:30"]);
        assert_eq!(wait(&w, "2026-06-10T12:00"), None);
        assert_eq!(wait(&w, "2026-06-10T13:29:59"), None);
        assert_eq!(wait(&w, "2026-06-10T13:30"), Some((22 * H + 1800).into()), "the end is excluded");
        assert_eq!(wait(&w, "2026-06-10T11:00"), Some(H.into()));
    }

    #[test]
    fn a_window_may_run_past_midnight_and_the_nearest_opening_wins() {
        let w = windows(&["22:00-06:00", "12:00-13:00"]);
        assert_eq!(wait(&w, "2026-06-10T23:00"), None);
        assert_eq!(wait(&w, "2026-06-10T02:00"), None);
        assert_eq!(wait(&w, "2026-06-10T07:00"), Some((5 * H).into()));
        assert_eq!(wait(&w, "2026-06-10T14:00"), Some((8 * H).into()));
        assert_eq!(VideoWindows::default().wait_from(&cet("2026-06-10T05:00")), None, "no windows: any time");
    }

    #[test]
    fn waits_across_a_daylight_saving_change_are_real_time() {
        let w = windows(&["06:00-07:00"]);
        // The night of 28–29 March 2026 loses an hour at 02:00: 23:00 to 06:00 is 6 hours.
        assert_eq!(wait(&w, "2026-03-28T23:00"), Some((6 * H).into()));
        // The night of 24–25 October 2026 gains one at 03:00: 23:00 to 06:00 is 8 hours.
        assert_eq!(wait(&w, "2026-10-24T23:00"), Some((8 * H).into()));
        // An opening in the skipped hour (02:30 on 29 March, which never shows on the clock) is
        // looked for at 03:30 summer time, one real hour after 01:30 winter time.
        let w = windows(&["02:30-02:45"]);
        assert_eq!(wait(&w, "2026-03-29T01:30"), Some(H.into()));
    }

    #[test]
    fn bad_windows_are_refused_with_the_rule() {
        for bad in ["", "22:00", "2200-0600", "24:00-01:00", "10:60-11:00", "9:00-10:00", "10:00-10:00", "a-b"] {
            let e = Window::parse(bad).unwrap_err();
            assert!(e.contains("HH:MM-HH:MM") || e.contains("must differ"), "{bad}: {e}");
        }
    }
}
