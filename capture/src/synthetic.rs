//! A deterministic moving test pattern. Each frame carries its index in its first row as
//! 64 black/white blocks (one bit each, most significant first), so a test can read it back.

use std::time::Duration;

use crate::{CaptureError, Frame, FrameSource, PixelFormat};

/// The synthetic camera. Unpaced: it yields frames as fast as they are asked for, with
/// timestamps at the nominal frame rate.
#[derive(Debug, Clone)]
pub struct Synthetic {
    width: u32,
    height: u32,
    fps: u32,
    next: u64,
}

const BITS: u32 = 64;

impl Synthetic {
    pub fn new(width: u32, height: u32, fps: u32) -> Result<Self, CaptureError> {
        let spec = format!("synthetic:{width}x{height}@{fps}");
        if width < BITS * 2 || height < 16 || !width.is_multiple_of(2) || !height.is_multiple_of(2)
        {
            return Err(CaptureError::Spec {
                spec,
                rule: "size must be even and at least 128x16".into(),
            });
        }
        if fps == 0 || fps > 240 {
            return Err(CaptureError::Spec {
                spec,
                rule: "frame rate must be 1-240".into(),
            });
        }
        Ok(Synthetic {
            width,
            height,
            fps,
            next: 0,
        })
    }

    /// `synthetic` (1280×720 at 30 fps) or `synthetic:WxH@FPS`.
    pub fn from_spec(spec: &str) -> Result<Self, CaptureError> {
        let Some(rest) = spec.strip_prefix("synthetic:") else {
            return Synthetic::new(1280, 720, 30);
        };
        let bad = || CaptureError::Spec {
            spec: spec.into(),
            rule: "expected synthetic:WIDTHxHEIGHT@FPS".into(),
        };
        let (size, fps) = rest.split_once('@').ok_or_else(bad)?;
        let (w, h) = size.split_once('x').ok_or_else(bad)?;
        Synthetic::new(
            w.parse().map_err(|_| bad())?,
            h.parse().map_err(|_| bad())?,
            fps.parse().map_err(|_| bad())?,
        )
    }

    /// Reads back the frame index written into an RGB24 frame's first row.
    pub fn read_index(frame: &Frame) -> u64 {
        let block = frame.width / BITS;
        (0..BITS).fold(0u64, |acc, bit| {
            let x = bit * block + block / 2;
            let luma = frame.data[(x * 3) as usize];
            (acc << 1) | u64::from(luma > 127)
        })
    }
}

impl FrameSource for Synthetic {
    fn name(&self) -> String {
        format!("synthetic:{}x{}@{}", self.width, self.height, self.fps)
    }

    fn format(&self) -> (u32, u32, PixelFormat) {
        (self.width, self.height, PixelFormat::Rgb24)
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        let (w, h, index) = (self.width, self.height, self.next);
        let mut data = vec![0u8; (w * h * 3) as usize];
        // A diagonal gradient that moves one pixel a frame, so motion is visible to an encoder.
        for y in 0..h {
            for x in 0..w {
                let i = ((y * w + x) * 3) as usize;
                let v = ((x + y + index as u32) % 256) as u8;
                data[i] = v;
                data[i + 1] = 255 - v;
                data[i + 2] = (y % 256) as u8;
            }
        }
        let block = w / BITS;
        for bit in 0..BITS {
            let on = (index >> (BITS - 1 - bit)) & 1 == 1;
            for y in 0..8 {
                for x in bit * block..(bit + 1) * block {
                    let i = ((y * w + x) * 3) as usize;
                    data[i..i + 3].fill(if on { 255 } else { 0 });
                }
            }
        }
        self.next += 1;
        let timestamp = Duration::from_secs(index) / self.fps;
        Ok(Some(Frame {
            width: w,
            height: h,
            format: PixelFormat::Rgb24,
            index,
            timestamp,
            data,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_numbers_read_back_and_timestamps_follow_the_rate() {
        let mut cam = Synthetic::from_spec("synthetic:320x240@25").unwrap();
        for expected in 0..30u64 {
            let f = cam.next_frame().unwrap().unwrap();
            assert_eq!(Synthetic::read_index(&f), expected);
            assert_eq!(f.timestamp, Duration::from_millis(40 * expected));
            assert_eq!(f.data.len(), 320 * 240 * 3);
        }
    }

    #[test]
    fn bad_specs_name_the_rule() {
        for spec in [
            "synthetic:320x240",
            "synthetic:0x240@30",
            "synthetic:320x240@0",
            "synthetic:axb@3",
        ] {
            let err = Synthetic::from_spec(spec).unwrap_err().to_string();
            assert!(err.contains(spec), "{err}");
        }
        assert!(crate::open("v4l2:/dev/video0").is_err());
    }
}
