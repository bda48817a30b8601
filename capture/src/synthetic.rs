//! The synthetic camera: a deterministic moving test pattern, paced in real time.
//!
//! Each frame carries, as two bands of 64 blocks at the top (one bit a block, most significant
//! first, light = 1), its frame number and its capture time in microseconds, so a test can read
//! both back from a decoded video. Below them, a diagonal gradient moves one pixel a frame (so an
//! encoder sees motion), a static "card" with a fine checkerboard stands in for a document, and
//! a portrait (a public-domain NASA photograph, `synthetic_face.jpg`; see tests/faces/make.sh)
//! gives the face checks and the document-photo crop a real face to find. Levels stay within
//! 30–220 outside the portrait, so the pattern shows neither glare nor crushed blacks.

use std::time::{Duration, Instant};

use crate::{CaptureError, Frame, FrameSource, PixelFormat};

const BITS: u32 = 64;
/// Height of each band of bit blocks.
pub const BAND: u32 = 16;
const LOW: u8 = 40;
const HIGH: u8 = 200;

/// The synthetic camera.
#[derive(Debug, Clone)]
pub struct Synthetic {
    width: u32,
    height: u32,
    fps: u32,
    next: u64,
    paced: bool,
    start: Option<Instant>,
    ramp: Vec<u8>,
    /// The portrait, scaled once: RGB rows of `portrait_size` pixels, and where it goes.
    portrait: std::sync::Arc<Vec<u8>>,
    portrait_size: u32,
    portrait_at: (u32, u32),
}

pub(crate) static FACE_JPEG: &[u8] = include_bytes!("synthetic_face.jpg");

impl Synthetic {
    /// A paced source at `width`×`height`, `fps` frames a second.
    pub fn new(width: u32, height: u32, fps: u32) -> Result<Self, CaptureError> {
        let spec = format!("synthetic:{width}x{height}@{fps}");
        if width < BITS * 2
            || height < 4 * BAND
            || !width.is_multiple_of(2)
            || !height.is_multiple_of(2)
            || width > 7680
            || height > 4320
        {
            return Err(CaptureError::Spec { spec, rule: "size must be even, from 128x64 to 7680x4320".into() });
        }
        if fps == 0 || fps > 240 {
            return Err(CaptureError::Spec { spec, rule: "frame rate must be 1-240".into() });
        }
        // One RGB row of the moving gradient, long enough to take any row's slice from it.
        let ramp: Vec<u8> = (0..(width + 256) as usize)
            .flat_map(|x| {
                let v = (30 + (x % 256) * 190 / 255) as u8;
                [v, 250 - v, 128]
            })
            .collect();
        // A head a little over half the frame's height (a selfie's), left of the middle (an ID
        // card's photo), below the bit bands; in small frames large enough that the face is
        // about 150 px wide or more (the selfie rule's default).
        let below_bands = 2 * BAND + 2;
        let portrait_size = ((height as f64 * 0.55) as u32).max(420).min(height - below_bands).min(width * 7 / 10) & !1;
        let top = (height / 4).min(height - portrait_size).max(below_bands);
        let portrait_at = (width / 16, top);
        let face = Frame {
            width: 256,
            height: 256,
            format: PixelFormat::Mjpeg,
            index: 0,
            timestamp: Duration::ZERO,
            data: FACE_JPEG.to_vec(),
        };
        let portrait = crate::convert::convert(&face, PixelFormat::Rgb24, portrait_size, portrait_size)?.data;
        Ok(Synthetic {
            width,
            height,
            fps,
            next: 0,
            paced: true,
            start: None,
            ramp,
            portrait: std::sync::Arc::new(portrait),
            portrait_size,
            portrait_at,
        })
    }

    /// `synthetic:WxH@FPS`.
    pub fn from_spec(spec: &str) -> Result<Self, CaptureError> {
        let bad = || CaptureError::Spec { spec: spec.into(), rule: "expected synthetic:WIDTHxHEIGHT@FPS".into() };
        let rest = spec.strip_prefix("synthetic:").ok_or_else(bad)?;
        let (size, fps) = rest.split_once('@').ok_or_else(bad)?;
        let (w, h) = size.split_once('x').ok_or_else(bad)?;
        Synthetic::new(w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?, fps.parse().map_err(|_| bad())?)
    }

    /// Frames as fast as they are asked for, stamped at the nominal rate (for tests and benches).
    pub fn unpaced(mut self) -> Self {
        self.paced = false;
        self
    }

    /// Renders frame `index` with `micros` as its capture time.
    pub fn render(&self, index: u64, micros: u64) -> Vec<u8> {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut data = vec![0u8; w * h * 3];
        for y in 0..h {
            let offset = (y + index as usize) % 256;
            data[y * w * 3..(y + 1) * w * 3].copy_from_slice(&self.ramp[offset * 3..(offset + w) * 3]);
        }
        // The card: a checkerboard of 8-pixel squares over the middle of the frame.
        let (cx0, cx1, cy0, cy1) = (w / 4, 3 * w / 4, h / 3, 5 * h / 6);
        for y in cy0..cy1 {
            let row = &mut data[y * w * 3..(y + 1) * w * 3];
            for x in cx0..cx1 {
                let v = if ((x / 8) + (y / 8)) % 2 == 0 { 50 } else { 210 };
                row[x * 3..x * 3 + 3].fill(v);
            }
        }
        let (px, py, ps) = (self.portrait_at.0 as usize, self.portrait_at.1 as usize, self.portrait_size as usize);
        for row in 0..ps.min(h.saturating_sub(py)) {
            let to = ((py + row) * w + px) * 3;
            data[to..to + ps * 3].copy_from_slice(&self.portrait[row * ps * 3..(row + 1) * ps * 3]);
        }
        for (band, value) in [(0usize, index), (1usize, micros)] {
            let block = w / BITS as usize;
            for bit in 0..BITS as usize {
                let on = (value >> (BITS as usize - 1 - bit)) & 1 == 1;
                let level = if on { HIGH } else { LOW };
                for y in band * BAND as usize..(band + 1) * BAND as usize {
                    data[(y * w + bit * block) * 3..(y * w + (bit + 1) * block) * 3].fill(level);
                }
            }
        }
        data
    }

    /// Reads the frame number and capture time (µs) back from a frame's luma plane.
    pub fn read_stamp(luma: &[u8], width: usize) -> (u64, u64) {
        let block = width / BITS as usize;
        let threshold = (LOW as u32 + HIGH as u32) / 2;
        let read = |band: usize| {
            let y = band * BAND as usize + BAND as usize / 2;
            (0..BITS as usize).fold(0u64, |acc, bit| {
                let x = bit * block + block / 2;
                (acc << 1) | u64::from(luma[y * width + x] as u32 > threshold)
            })
        };
        (read(0), read(1))
    }
}

impl FrameSource for Synthetic {
    fn name(&self) -> String {
        format!("synthetic:{}x{}@{}", self.width, self.height, self.fps)
    }

    fn format(&self) -> (u32, u32, PixelFormat) {
        (self.width, self.height, PixelFormat::Rgb24)
    }

    fn fps(&self) -> u32 {
        self.fps
    }

    fn is_live(&self) -> bool {
        self.paced
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        let index = self.next;
        let nominal = Duration::from_secs(index) / self.fps;
        let timestamp = if self.paced {
            match self.start {
                // The first frame's capture is the clock's origin: its stamp is zero by
                // definition. (Read back as `start.elapsed()` it was late by however long this
                // thread had been descheduled, and every later frame then seemed early by as
                // much: a ten-second clip took a 301st frame under load.)
                None => {
                    self.start = Some(Instant::now());
                    Duration::ZERO
                }
                // Sleep until the frame is due, like a sensor's frame clock; the stamp is the
                // real capture time, never before it was due, which an encoder must follow.
                Some(start) => {
                    let due = start + nominal;
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    start.elapsed().max(nominal)
                }
            }
        } else {
            nominal
        };
        self.next += 1;
        let data = self.render(index, timestamp.as_micros() as u64);
        Ok(Some(Frame { width: self.width, height: self.height, format: PixelFormat::Rgb24, index, timestamp, data }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn luma_of_rgb(f: &Frame) -> Vec<u8> {
        f.data.chunks(3).map(|p| ((p[0] as u32 * 77 + p[1] as u32 * 150 + p[2] as u32 * 29) >> 8) as u8).collect()
    }

    #[test]
    fn frame_numbers_and_times_read_back() {
        let mut cam = Synthetic::from_spec("synthetic:320x240@25").unwrap().unpaced();
        for expected in 0..30u64 {
            let f = cam.next_frame().unwrap().unwrap();
            assert_eq!(f.timestamp, Duration::from_millis(40 * expected));
            let (index, micros) = Synthetic::read_stamp(&luma_of_rgb(&f), 320);
            assert_eq!((index, micros), (expected, 40_000 * expected));
            assert_eq!(f.data.len(), 320 * 240 * 3);
        }
    }

    #[test]
    fn paced_frames_follow_the_clock() {
        let mut cam = Synthetic::new(128, 64, 50).unwrap();
        assert!(cam.is_live());
        let frames: Vec<Frame> = (0..5).map(|_| cam.next_frame().unwrap().unwrap()).collect();
        // The first frame is the clock's origin, whatever the scheduler did between reading
        // the clock and stamping it (a later frame must never look early against it).
        assert_eq!(frames[0].timestamp, Duration::ZERO);
        // Each frame is stamped no earlier than it was due.
        for f in &frames {
            assert!(f.timestamp >= Duration::from_millis(20 * f.index), "{f:?}");
        }
    }

    #[test]
    fn bad_specs_name_the_rule() {
        for spec in [
            "synthetic:320x240",
            "synthetic:0x240@30",
            "synthetic:320x240@0",
            "synthetic:axb@3",
            "synthetic:321x240@30",
        ] {
            let err = Synthetic::from_spec(spec).unwrap_err().to_string();
            assert!(err.contains(spec), "{err}");
        }
    }
}
