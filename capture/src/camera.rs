//! V4L2 cameras, streamed through the `v4l` crate's memory-mapped buffers.
//!
//! The mode is chosen from what the driver lists ([`crate::negotiate::choose`]: the nearest
//! size, then MJPEG, YUYV, NV12, RGB24, GRAY8 in that order, then the nearest rate), set exactly,
//! and reported. Frames keep the camera's layout, the driver's sequence number as their index
//! and the driver's capture time as their timestamp ([`crate::driver_frames`]). A buffer the
//! driver flags as damaged is skipped (its number is then missing, as a skipped frame's is). A
//! device that goes away mid-stream (unplugged) is reported as disconnected, a driver that ends
//! the stream with an error as such, and one that stops delivering as stalled.
//!
//! Why not nokhwa (the design card's first choice, used until this module needed the driver's
//! sequence numbers): nokhwa 0.10 hands out frames without the driver's sequence number or
//! flags, so a skipped or damaged frame could not be told from a delivered one, and it refuses
//! to open a device left at a rate that is not a whole number. It streams through this same
//! `v4l` binding, so nothing changes in how the device is driven.

use std::path::Path;
use std::time::{Duration, Instant};

use v4l::buffer::Flags;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;

use crate::driver_frames::{packed, FrameClock};
use crate::negotiate::{self, FrameRate, Mode};
use crate::{CameraMode, CaptureError, Frame, FrameSource, PixelFormat};

/// Buffers shared with the driver: enough that a frame is not lost while one is being copied
/// out and another waits, few enough to keep the latency (and memory) of a live view low.
const BUFFERS: u32 = 4;

/// A camera that delivers nothing for this long has stalled (the first frame after the stream
/// starts can take a while on slow machines).
const STALL: Duration = Duration::from_secs(10);

/// Damaged frames in a row after which the camera is given up on.
const DAMAGED_LIMIT: u32 = 30;

/// A live V4L2 camera.
pub struct CameraSource {
    /// Always `Some` until dropped by hand: the `v4l` stream panics when it cannot stop a
    /// stream (see `Drop`).
    stream: Option<Stream<'static>>,
    name: String,
    device: String,
    mode: Mode,
    /// Bytes between the starts of two lines, as the driver lays them out.
    stride: u32,
    clock: FrameClock,
    /// Frames the driver flagged as damaged, skipped.
    damaged: u64,
}

impl std::fmt::Debug for CameraSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraSource").field("name", &self.name).field("mode", &self.mode).finish()
    }
}

impl CameraSource {
    /// Opens `/dev/video{index}` in the mode nearest `want` among `formats` (preference order);
    /// `name` is the specification used in messages.
    pub fn open(index: u32, name: &str, want: CameraMode, formats: &[PixelFormat]) -> Result<Self, CaptureError> {
        let device = format!("/dev/video{index}");
        if !Path::new(&device).exists() {
            return Err(CaptureError::source(name, format!("{device} does not exist (no such camera)")));
        }
        let unusable = |e: &dyn std::fmt::Display| {
            device_error(name, &device, e, "cannot open it: busy, no permission, or no usable format")
        };
        let v4l_device = v4l::Device::new(index as usize).map_err(|e| unusable(&e))?;
        let offered: Vec<Mode> =
            driver_modes(&v4l_device).map_err(|e| unusable(&e))?.into_iter().filter_map(|m| m.usable()).collect();
        let chosen = negotiate::choose(&offered, want, formats).ok_or_else(|| {
            let allowed: Vec<&str> = formats.iter().map(|f| f.name()).collect();
            CaptureError::source(name, format!("{device} offers no mode in {}", allowed.join(", ")))
        })?;
        let set = v4l_device
            .set_format(&v4l::Format::new(chosen.width, chosen.height, fourcc_of(chosen.format)))
            .map_err(|e| unusable(&e))?;
        let format = format_of(&fourcc_name(set.fourcc))
            .ok_or_else(|| CaptureError::source(name, format!("{device} switched to {}", fourcc_name(set.fourcc))))?;
        let (num, den) = chosen.fps.interval();
        let params = v4l_device
            .set_params(&v4l::video::capture::Parameters::new(v4l::Fraction::new(num, den)))
            .map_err(|e| unusable(&e))?;
        let fps =
            FrameRate::from_interval(params.interval.numerator, params.interval.denominator).unwrap_or(chosen.fps);
        let mut stream = Stream::with_buffers(&v4l_device, v4l::buffer::Type::VideoCapture, BUFFERS)
            .map_err(|e| device_error(name, &device, &e, "cannot start streaming: busy?"))?;
        stream.set_timeout(STALL);
        Ok(CameraSource {
            stream: Some(stream),
            name: name.to_owned(),
            device,
            mode: Mode { width: set.width, height: set.height, format, fps },
            stride: set.stride,
            clock: FrameClock::default(),
            damaged: 0,
        })
    }

    /// What a failed buffer exchange means to an operator.
    fn stream_error(&self, e: &std::io::Error) -> CaptureError {
        let text = e.to_string();
        let what = if unplugged(&text) {
            "camera disconnected while streaming".to_owned()
        } else if e.kind() == std::io::ErrorKind::TimedOut {
            format!("no frame for {} s: the camera stalled", STALL.as_secs())
        } else if !self.clock.started() && self.damaged == 0 {
            "cannot start streaming (the driver refused)".to_owned()
        } else if e.raw_os_error() == Some(5) {
            "the driver ended the stream with an error".to_owned()
        } else {
            "frame capture failed".to_owned()
        };
        CaptureError::source(&self.name, format!("{}: {what} ({text})", self.device))
    }
}

impl Drop for CameraSource {
    fn drop(&mut self) {
        // Stop the stream ourselves: the `v4l` stream's own drop panics when STREAMOFF fails
        // with anything but ENODEV, and a camera thread must never die of releasing a camera.
        // Once stopped, its second STREAMOFF succeeds.
        if let Some(mut stream) = self.stream.take() {
            let _ = v4l::io::traits::Stream::stop(&mut stream);
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(stream)));
        }
    }
}

/// A V4L2 error on `device`: "camera disconnected" when it went away, else `what`.
fn device_error(name: &str, device: &str, e: &dyn std::fmt::Display, what: &str) -> CaptureError {
    let e = e.to_string();
    let what = if unplugged(&e) { "camera disconnected: the device is gone" } else { what };
    CaptureError::source(name, format!("{device}: {what} ({e})"))
}

/// Whether a V4L2 error means the device went away (`ENODEV`): a kiosk operator knows that as
/// an unplugged camera.
fn unplugged(message: &str) -> bool {
    message.contains("No such device") || message.contains("os error 19")
}

impl FrameSource for CameraSource {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn format(&self) -> (u32, u32, PixelFormat) {
        (self.mode.width, self.mode.height, self.mode.format)
    }
    fn fps(&self) -> u32 {
        self.mode.fps.rounded()
    }
    fn is_live(&self) -> bool {
        true
    }
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        let mut damaged_in_a_row = 0;
        loop {
            let Some(stream) = self.stream.as_mut() else {
                return Ok(None); // released: nothing more comes
            };
            let (buffer, meta) = match stream.next() {
                Ok((buffer, meta)) => (buffer, *meta),
                Err(e) => return Err(self.stream_error(&e)),
            };
            let dequeued = Instant::now();
            let Mode { width, height, format, .. } = self.mode;
            let data = packed(buffer, meta.bytesused as usize, format, width, height, self.stride);
            let (false, Some(data)) = (meta.flags.contains(Flags::ERROR), data) else {
                // Damaged in transfer (or short): its sequence number goes missing, as a
                // skipped frame's does.
                self.damaged += 1;
                damaged_in_a_row += 1;
                if damaged_in_a_row >= DAMAGED_LIMIT {
                    return Err(CaptureError::source(
                        &self.name,
                        format!("{}: the last {DAMAGED_LIMIT} frames all came damaged", self.device),
                    ));
                }
                continue;
            };
            let stamped = meta.flags.contains(Flags::TIMESTAMP_MONOTONIC);
            let timestamp = self.clock.time(stamped.then(|| Duration::from(meta.timestamp)), dequeued);
            let index = self.clock.index(meta.sequence);
            return Ok(Some(Frame { width, height, format, index, timestamp, data }));
        }
    }
    fn mode(&self) -> Mode {
        self.mode
    }
}

/// One mode as the driver lists it, with its exact frame interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverMode {
    /// The driver's four-character code (`YUYV`, `NV12`, `RGB3`, `MJPG`, …).
    pub fourcc: String,
    pub width: u32,
    pub height: u32,
    /// Seconds per frame as a fraction (numerator, denominator): 2/25 is 12.5 fps.
    pub interval: (u32, u32),
}

impl DriverMode {
    pub fn fps(&self) -> f64 {
        self.interval.1 as f64 / self.interval.0.max(1) as f64
    }

    /// The mode in this crate's terms, when frames can be taken in it: a layout this crate
    /// converts (at any rate the driver states, 12.5 fps included).
    pub fn usable(&self) -> Option<Mode> {
        let format = format_of(&self.fourcc)?;
        let fps = FrameRate::from_interval(self.interval.0, self.interval.1)?;
        Some(Mode { width: self.width, height: self.height, format, fps })
    }
}

fn format_of(fourcc: &str) -> Option<PixelFormat> {
    match fourcc {
        "MJPG" => Some(PixelFormat::Mjpeg),
        "YUYV" => Some(PixelFormat::Yuyv),
        "NV12" => Some(PixelFormat::Nv12),
        "RGB3" => Some(PixelFormat::Rgb24),
        "GREY" => Some(PixelFormat::Gray8),
        _ => None,
    }
}

fn fourcc_of(format: PixelFormat) -> v4l::FourCC {
    v4l::FourCC::new(match format {
        PixelFormat::Mjpeg => b"MJPG",
        PixelFormat::Yuyv => b"YUYV",
        PixelFormat::Nv12 => b"NV12",
        PixelFormat::Rgb24 | PixelFormat::Yuv420p => b"RGB3",
        PixelFormat::Gray8 => b"GREY",
    })
}

/// A four-character code as V4L2 tools print it: `YUYV`, or `AR15-BE` for a big-endian variant
/// (the code's top bit set).
fn fourcc_name(fourcc: v4l::FourCC) -> String {
    let mut bytes = fourcc.repr;
    let big_endian = bytes[3] & 0x80 != 0;
    bytes[3] &= 0x7f;
    // Short codes are padded with spaces (`Y10 `), kept as the tools show them.
    let base: String = bytes.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '?' }).collect();
    if big_endian {
        format!("{base}-BE")
    } else {
        base
    }
}

/// Every (format, size, interval) the driver lists, discrete or stepwise sizes expanded.
pub fn driver_modes(device: &v4l::Device) -> std::io::Result<Vec<DriverMode>> {
    use v4l::video::Capture as _;
    let mut modes = Vec::new();
    for description in device.enum_formats()? {
        let fourcc = description.fourcc;
        let name = fourcc_name(fourcc);
        for size in device.enum_framesizes(fourcc)? {
            for d in size.size.to_discrete() {
                for interval in device.enum_frameintervals(fourcc, d.width, d.height)? {
                    let fractions = match interval.interval {
                        v4l::frameinterval::FrameIntervalEnum::Discrete(f) => vec![f],
                        v4l::frameinterval::FrameIntervalEnum::Stepwise(s) => vec![s.min, s.max],
                    };
                    for f in fractions {
                        modes.push(DriverMode {
                            fourcc: name.clone(),
                            width: d.width,
                            height: d.height,
                            interval: (f.numerator, f.denominator),
                        });
                    }
                }
            }
        }
    }
    modes.dedup();
    Ok(modes)
}

/// One camera as `kiosk-agent cameras` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraListing {
    /// The driver's name for the device (the card name, as in /sys/class/video4linux/*/name).
    pub name: String,
    pub path: String,
    /// What the driver offers, as it lists it; empty when the device could not be queried.
    pub modes: Vec<DriverMode>,
    pub error: Option<String>,
}

/// Lists the V4L2 capture devices present, with the modes each offers.
pub fn list() -> Result<Vec<CameraListing>, CaptureError> {
    let mut out = Vec::new();
    for node in v4l::context::enum_devices() {
        let path = node.path().display().to_string();
        let name = node.name().unwrap_or_else(|| path.clone());
        let mut listing = CameraListing { name, path, modes: Vec::new(), error: None };
        match v4l::Device::with_path(node.path()) {
            Ok(device) => {
                let caps = v4l::Device::query_caps(&device).ok();
                if caps.is_some_and(|c| !c.capabilities.contains(v4l::capability::Flags::VIDEO_CAPTURE)) {
                    continue; // a metadata or output node, not a camera
                }
                match driver_modes(&device) {
                    Ok(modes) => listing.modes = modes,
                    Err(e) => listing.error = Some(e.to_string()),
                }
            }
            Err(e) => listing.error = Some(e.to_string()),
        }
        out.push(listing);
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}
