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
    /// How long until a video may upload, `t` seconds after local midnight: `None` when a
    /// window is open now (or there are no windows).
    pub fn wait_at(&self, t: u32) -> Option<Duration> {
        let t = t % DAY_SECS;
        if self.0.is_empty() || self.0.iter().any(|w| w.contains(t)) {
            return None;
        }
        self.0.iter().map(|w| (w.start + DAY_SECS - t) % DAY_SECS).min().map(|s| Duration::from_secs(s.into()))
    }

    /// [`VideoWindows::wait_at`] for the local time now (the `TZ` variable, else
    /// `/etc/localtime`). Across a daylight-saving change the wait can be an hour off; the worker
    /// looks again when it wakes.
    pub fn wait_now(&self) -> Option<Duration> {
        if self.0.is_empty() {
            return None;
        }
        let now = jiff::Zoned::now();
        let t = now.hour() as u32 * 3600 + now.minute() as u32 * 60 + now.second() as u32;
        // Round up to whole seconds so the worker wakes inside the window, not just before it.
        self.wait_at(t).map(|d| d + Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(list: &[&str]) -> VideoWindows {
        VideoWindows(list.iter().map(|w| Window::parse(w).unwrap()).collect())
    }

    const H: u32 = 3600;

    #[test]
    fn open_inside_and_waits_outside() {
        let w = windows(&["12:00-13:30"]);
        assert_eq!(w.wait_at(12 * H), None);
        assert_eq!(w.wait_at(13 * H + 1799), None);
        assert_eq!(w.wait_at(13 * H + 1800), Some(Duration::from_secs((22 * H + 1800).into())), "the end is excluded");
        assert_eq!(w.wait_at(11 * H), Some(Duration::from_secs(H.into())));
    }

    #[test]
    fn a_window_may_run_past_midnight_and_the_nearest_opening_wins() {
        let w = windows(&["22:00-06:00", "12:00-13:00"]);
        assert_eq!(w.wait_at(23 * H), None);
        assert_eq!(w.wait_at(2 * H), None);
        assert_eq!(w.wait_at(7 * H), Some(Duration::from_secs((5 * H).into())));
        assert_eq!(w.wait_at(14 * H), Some(Duration::from_secs((8 * H).into())));
        assert_eq!(VideoWindows::default().wait_at(5 * H), None, "no windows: any time");
    }

    #[test]
    fn bad_windows_are_refused_with_the_rule() {
        for bad in ["", "22:00", "2200-0600", "24:00-01:00", "10:60-11:00", "9:00-10:00", "10:00-10:00", "a-b"] {
            let e = Window::parse(bad).unwrap_err();
            assert!(e.contains("HH:MM-HH:MM") || e.contains("must differ"), "{bad}: {e}");
        }
    }
}
