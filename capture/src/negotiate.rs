//! Choosing a camera's mode when the configured one is not offered: the nearest size first,
//! then the first pixel format in the order of preference, then the nearest frame rate. Pure,
//! so the rule is tested without a camera; `camera.rs` applies it to what the driver lists.

use std::fmt;

use crate::{CameraMode, PixelFormat};

/// Frames per second exactly as a driver states it, a fraction in lowest terms: 25/2 is
/// 12.5 fps, 30000/1001 the 29.97 of video capture cards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameRate {
    frames: u32,
    seconds: u32,
}

impl FrameRate {
    /// `fps` frames a second.
    pub const fn whole(fps: u32) -> FrameRate {
        FrameRate { frames: fps, seconds: 1 }
    }

    /// The rate of a frame interval of `num`/`den` seconds (V4L2's `timeperframe`); `None`
    /// for an interval of zero.
    pub fn from_interval(num: u32, den: u32) -> Option<FrameRate> {
        if num == 0 || den == 0 {
            return None;
        }
        let g = gcd(num, den);
        Some(FrameRate { frames: den / g, seconds: num / g })
    }

    /// The frame interval, `(num, den)` seconds, as V4L2 takes it.
    pub fn interval(self) -> (u32, u32) {
        (self.seconds, self.frames)
    }

    pub fn as_f64(self) -> f64 {
        f64::from(self.frames) / f64::from(self.seconds.max(1))
    }

    /// The nearest whole rate, at least 1 (what an encoder's nominal rate takes).
    pub fn rounded(self) -> u32 {
        (self.as_f64().round() as u32).max(1)
    }

    /// Thousandths of a frame a second, for comparing distances between rates.
    fn millis(self) -> u64 {
        (u64::from(self.frames) * 1000 + u64::from(self.seconds) / 2) / u64::from(self.seconds.max(1))
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Ord for FrameRate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (u64::from(self.frames) * u64::from(other.seconds)).cmp(&(u64::from(other.frames) * u64::from(self.seconds)))
    }
}

impl PartialOrd for FrameRate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// `30`, `12.5`, `29.97`: whole rates as integers, others to two decimals at most.
impl fmt::Display for FrameRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.seconds == 1 {
            return write!(f, "{}", self.frames);
        }
        let text = format!("{:.2}", self.as_f64());
        f.write_str(text.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// One mode a camera offers (or was set to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mode {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    pub fps: FrameRate,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}x{}@{}", self.format.name(), self.width, self.height, self.fps)
    }
}

/// The formats a camera is asked for, most wanted first: MJPEG (the camera compresses, so high
/// resolutions fit USB 2 bandwidth), then the uncompressed layouts this crate converts.
pub const FORMAT_ORDER: [PixelFormat; 5] =
    [PixelFormat::Mjpeg, PixelFormat::Yuyv, PixelFormat::Nv12, PixelFormat::Rgb24, PixelFormat::Gray8];

/// The mode to use: among `offered` modes in one of `formats` (preference order), the size
/// nearest the request (sum of the width and height differences; the larger on a tie), then the
/// first format of `formats`, then the nearest rate (the higher on a tie). `None` when no offered
/// mode has an allowed format.
pub fn choose(offered: &[Mode], want: CameraMode, formats: &[PixelFormat]) -> Option<Mode> {
    let usable: Vec<&Mode> = offered.iter().filter(|m| formats.contains(&m.format)).collect();
    let size_distance = |m: &Mode| {
        (m.width.abs_diff(want.width) + m.height.abs_diff(want.height), u64::MAX - m.width as u64 * m.height as u64)
    };
    let best_size = usable.iter().map(|m| size_distance(m)).min()?;
    let at_size: Vec<&&Mode> = usable.iter().filter(|m| size_distance(m) == best_size).collect();
    let format = formats.iter().find(|f| at_size.iter().any(|m| m.format == **f))?;
    at_size
        .into_iter()
        .filter(|m| m.format == *format)
        .min_by_key(|m| (m.fps.millis().abs_diff(u64::from(want.fps) * 1000), std::cmp::Reverse(m.fps)))
        .map(|m| **m)
}

/// Parses a format list such as `NV12` or `YUYV,NV12` (names as [`PixelFormat::name`]).
pub fn parse_formats(text: &str) -> Result<Vec<PixelFormat>, String> {
    text.split(',')
        .map(|name| {
            FORMAT_ORDER.iter().copied().find(|f| f.name().eq_ignore_ascii_case(name.trim())).ok_or_else(|| {
                let names: Vec<&str> = FORMAT_ORDER.iter().map(|f| f.name()).collect();
                format!("unknown pixel format {name:?} (one of {})", names.join(", "))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use PixelFormat::*;

    fn m(format: PixelFormat, width: u32, height: u32, fps: u32) -> Mode {
        Mode { width, height, format, fps: FrameRate::whole(fps) }
    }

    /// A vivid-like webcam: no MJPEG; YUYV and NV12 at every size, RGB24 at two; lower rates at
    /// larger sizes.
    fn webcam() -> Vec<Mode> {
        let mut modes = Vec::new();
        for (w, h, top) in [(320, 180, 60), (640, 360, 40), (640, 480, 25), (1280, 720, 12), (1920, 1080, 5)] {
            for fps in [5, 10, top] {
                modes.push(m(Yuyv, w, h, fps));
                modes.push(m(Nv12, w, h, fps));
                if w <= 640 {
                    modes.push(m(Rgb24, w, h, fps));
                }
            }
        }
        modes
    }

    #[test]
    fn the_exact_mode_when_offered() {
        let want = CameraMode { width: 640, height: 480, fps: 25 };
        assert_eq!(choose(&webcam(), want, &FORMAT_ORDER), Some(m(Yuyv, 640, 480, 25)));
        assert_eq!(choose(&webcam(), want, &[Nv12]), Some(m(Nv12, 640, 480, 25)));
    }

    #[test]
    fn nearest_size_then_format_order_then_nearest_rate() {
        // 1000x700: 1280x720 is 300 away, 640x480 580: the size wins over the rate.
        let want = CameraMode { width: 1000, height: 700, fps: 30 };
        assert_eq!(choose(&webcam(), want, &FORMAT_ORDER), Some(m(Yuyv, 1280, 720, 12)));
        // Format order decides at that size (RGB24 is not offered there, so NV12 wins).
        assert_eq!(choose(&webcam(), want, &[Rgb24, Nv12]), Some(m(Nv12, 1280, 720, 12)));
        // Only RGB24 allowed: the nearest size that has it.
        assert_eq!(choose(&webcam(), want, &[Rgb24]), Some(m(Rgb24, 640, 480, 25)));
        // A tie in size goes to the larger; a tie in rate to the higher.
        let tie = vec![m(Yuyv, 600, 400, 10), m(Yuyv, 700, 500, 10), m(Yuyv, 700, 500, 20)];
        assert_eq!(
            choose(&tie, CameraMode { width: 650, height: 450, fps: 15 }, &FORMAT_ORDER),
            Some(m(Yuyv, 700, 500, 20))
        );
    }

    #[test]
    fn fractional_rates_are_exact_and_the_nearest_wins() {
        let rate = |num, den| FrameRate::from_interval(num, den).unwrap();
        assert_eq!(rate(2, 25).to_string(), "12.5");
        assert_eq!(rate(1001, 30000).to_string(), "29.97");
        assert_eq!(rate(333_333, 10_000_000).rounded(), 30);
        assert_eq!(rate(2, 60), FrameRate::whole(30), "kept in lowest terms");
        assert_eq!(rate(2, 25).interval(), (2, 25));
        assert!(rate(1001, 30000) < FrameRate::whole(30) && rate(2, 25) > FrameRate::whole(12));
        assert_eq!(FrameRate::from_interval(0, 30), None);
        let mut offered = vec![m(Yuyv, 1280, 720, 10)];
        offered.push(Mode { fps: rate(2, 25), ..offered[0] });
        offered.push(Mode { fps: rate(1001, 30000), ..m(Yuyv, 640, 480, 1) });
        let want = |fps| CameraMode { width: 1280, height: 720, fps };
        assert_eq!(choose(&offered, want(30), &FORMAT_ORDER).unwrap().fps, rate(2, 25));
        assert_eq!(choose(&offered, want(10), &FORMAT_ORDER).unwrap().fps, FrameRate::whole(10));
        let capture_card = CameraMode { width: 640, height: 480, fps: 30 };
        assert_eq!(choose(&offered, capture_card, &FORMAT_ORDER).unwrap().to_string(), "YUYV 640x480@29.97");
    }

    #[test]
    fn nothing_usable_is_none() {
        assert_eq!(choose(&webcam(), CameraMode::default(), &[Mjpeg]), None);
        assert_eq!(choose(&[], CameraMode::default(), &FORMAT_ORDER), None);
    }

    #[test]
    fn format_lists_parse_by_name() {
        assert_eq!(parse_formats("nv12, YUYV"), Ok(vec![Nv12, Yuyv]));
        assert!(parse_formats("H264").unwrap_err().contains("one of MJPEG, YUYV, NV12, RGB24, GRAY8"));
    }
}
