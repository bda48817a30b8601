//! V4L2 cameras through nokhwa (native input).
//!
//! The mode is chosen from what the driver lists ([`crate::negotiate::choose`]: the nearest
//! size, then MJPEG, YUYV, NV12, RGB24, GRAY8 in that order, then the nearest rate), set exactly,
//! and reported. Frames keep the camera's layout; timestamps are the capture time on the
//! monotonic clock. A device that goes away mid-stream (unplugged) is reported as disconnected.

use std::path::Path;
use std::time::Instant;

use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType, Resolution,
};
use nokhwa::Camera;

use crate::negotiate::{self, Mode};
use crate::{CaptureError, Frame, FrameSource, PixelFormat, Request};

/// A live V4L2 camera.
pub struct CameraSource {
    camera: Camera,
    name: String,
    format: (u32, u32, PixelFormat),
    fps: u32,
    start: Option<Instant>,
    next_index: u64,
}

impl std::fmt::Debug for CameraSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraSource").field("name", &self.name).field("format", &self.format).finish()
    }
}

fn our_format(f: FrameFormat) -> Option<PixelFormat> {
    match f {
        FrameFormat::MJPEG => Some(PixelFormat::Mjpeg),
        FrameFormat::YUYV => Some(PixelFormat::Yuyv),
        FrameFormat::NV12 => Some(PixelFormat::Nv12),
        FrameFormat::GRAY => Some(PixelFormat::Gray8),
        FrameFormat::RAWRGB => Some(PixelFormat::Rgb24),
        FrameFormat::RAWBGR => None,
    }
}

impl CameraSource {
    /// Opens `/dev/video{index}` in the mode nearest `want` among `formats` (preference order);
    /// `name` is the specification used in messages.
    pub fn open(index: u32, name: &str, want: Request, formats: &[PixelFormat]) -> Result<Self, CaptureError> {
        let device = format!("/dev/video{index}");
        if !Path::new(&device).exists() {
            return Err(CaptureError::source(name, format!("{device} does not exist (no such camera)")));
        }
        let unusable = |e: &dyn std::fmt::Display| {
            device_error(name, &device, e, "cannot open it: busy, no permission, or no usable format")
        };
        let v4l_device = v4l::Device::new(index as usize).map_err(|e| unusable(&e))?;
        // nokhwa streams only whole frame rates: modes at 12.5 fps are listed, not chosen.
        let offered: Vec<Mode> =
            driver_modes(&v4l_device).map_err(|e| unusable(&e))?.into_iter().filter_map(|m| m.usable()).collect();
        let chosen = negotiate::choose(&offered, want, formats).ok_or_else(|| {
            let allowed: Vec<&str> = formats.iter().map(|f| f.name()).collect();
            CaptureError::source(
                name,
                format!("{device} offers no mode in {} at a whole frame rate", allowed.join(", ")),
            )
        })?;
        // Set the mode with the driver first: nokhwa reads the current one when it opens and
        // refuses a device left at a fractional rate by another program.
        v4l::video::Capture::set_format(
            &v4l_device,
            &v4l::Format::new(chosen.width, chosen.height, fourcc_of(chosen.format)),
        )
        .map_err(|e| unusable(&e))?;
        v4l::video::Capture::set_params(&v4l_device, &v4l::video::capture::Parameters::with_fps(chosen.fps))
            .map_err(|e| unusable(&e))?;
        drop(v4l_device);
        let exact =
            CameraFormat::new(Resolution::new(chosen.width, chosen.height), their_format(chosen.format), chosen.fps);
        let wanted = RequestedFormat::new::<RgbFormat>(RequestedFormatType::Exact(exact));
        let mut camera = Camera::with_backend(CameraIndex::Index(index), wanted, ApiBackend::Video4Linux)
            .map_err(|e| unusable(&e))?;
        let actual = camera.camera_format();
        let format = our_format(actual.format())
            .ok_or_else(|| CaptureError::source(name, format!("the camera switched to {}", actual.format())))?;
        camera.open_stream().map_err(|e| device_error(name, &device, &e, "cannot start streaming: busy?"))?;
        Ok(CameraSource {
            camera,
            name: name.to_owned(),
            format: (actual.width(), actual.height(), format),
            fps: actual.frame_rate().max(1),
            start: None,
            next_index: 0,
        })
    }
}

/// A V4L2 error on `device`: "camera disconnected" when it went away, else `what`.
fn device_error(name: &str, device: &str, e: &dyn std::fmt::Display, what: &str) -> CaptureError {
    let e = e.to_string();
    let what = if unplugged(&e) { "camera disconnected: the device is gone" } else { what };
    CaptureError::source(name, format!("{device}: {what} ({e})"))
}

/// Whether a V4L2 error means the device went away (`ENODEV`, or `EIO` on a stream the driver
/// ended): a kiosk operator knows that as an unplugged camera.
fn unplugged(message: &str) -> bool {
    message.contains("No such device") || message.contains("os error 19")
}

fn their_format(f: PixelFormat) -> FrameFormat {
    match f {
        PixelFormat::Mjpeg => FrameFormat::MJPEG,
        PixelFormat::Yuyv => FrameFormat::YUYV,
        PixelFormat::Nv12 => FrameFormat::NV12,
        PixelFormat::Gray8 => FrameFormat::GRAY,
        PixelFormat::Rgb24 | PixelFormat::Yuv420p => FrameFormat::RAWRGB,
    }
}

impl FrameSource for CameraSource {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn format(&self) -> (u32, u32, PixelFormat) {
        self.format
    }
    fn fps(&self) -> u32 {
        self.fps
    }
    fn is_live(&self) -> bool {
        true
    }
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        let buffer = self.camera.frame().map_err(|e| {
            let e = e.to_string();
            // nokhwa starts the stream with the first frame: a refused STREAMON shows here.
            let what = if unplugged(&e) {
                "camera disconnected while streaming"
            } else if self.next_index == 0 {
                "cannot start streaming (the driver refused the first frame)"
            } else {
                "frame capture failed"
            };
            CaptureError::source(&self.name, format!("{what} ({e})"))
        })?;
        let start = *self.start.get_or_insert_with(Instant::now);
        let res = buffer.resolution();
        let format = our_format(buffer.source_frame_format())
            .ok_or_else(|| CaptureError::source(&self.name, "camera switched to an unsupported pixel format"))?;
        let frame = Frame {
            width: res.width(),
            height: res.height(),
            format,
            index: self.next_index,
            timestamp: start.elapsed(),
            data: buffer.buffer().to_vec(),
        };
        self.next_index += 1;
        Ok(Some(frame))
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
    /// converts, at a whole frame rate.
    pub fn usable(&self) -> Option<Mode> {
        let format = format_of(&self.fourcc)?;
        let (num, den) = self.interval;
        (num > 0 && den % num == 0).then_some(Mode { width: self.width, height: self.height, format, fps: den / num })
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
