//! kiosk-capture: cameras, stills with quality gates, and H.264/MP4 recording for kiosk-agent.
//!
//! This crate owns everything that touches cameras and FFmpeg, so that their native dependencies
//! stay out of the rest of the build. It knows nothing of queues, HTTP or One-Shot.
//!
//! Code map:
//! - [`FrameSource`] and [`open`] — the boundary every source implements, and the parser of
//!   source specifications (`v4l2:/dev/videoN`, `camera:N`, `synthetic[:WxH@FPS]`, `file:PATH`).
//! - [`camera`]    — V4L2 cameras (the `v4l` crate's mmap streaming): negotiation, listing.
//! - [`driver_frames`] — the driver's sequence numbers, timestamps and line padding, as frame
//!   indexes, times and packed rows.
//! - [`synthetic`] — a deterministic moving test pattern with frame number and capture time in
//!   its pixels, paced in real time.
//! - [`file`]      — any video or image FFmpeg decodes, unpaced; JPEG frames pass through.
//! - [`memory`]    — frames held in memory, for tests and replays.
//! - [`convert`]   — pixel-format conversion (swscale), MJPEG decoding, crops.
//! - [`metrics`]   — sharpness, brightness, glare; the pass/retake verdict.
//! - [`card`]      — the ID document found in a still (its four corners) and cut out of it,
//!   its perspective corrected; the retake reasons when it is missing, cut off, small or tilted.
//! - [`card_scene`] — rendered card scenes with known corners, for measuring [`card`], and the
//!   synthetic camera that slides a card into place (`synthetic-card`).
//! - [`guidance`]  — preview frames judged into hints ("move closer", "hold still"), and when
//!   to capture by itself.
//! - [`auto`]      — auto-capture: wait for a steady good preview, then take and cut the still.
//! - [`jpeg`]      — JPEG encoding and metadata stripping.
//! - [`still`]     — a still: warm-up, sharpest of the last frames, metrics, JPEG.
//! - [`record`]    — H.264/MP4 recording on its own encoder thread.

pub mod auto;
pub mod camera;
pub mod card;
pub mod card_scene;
pub mod convert;
pub mod driver_frames;
pub mod faces;
pub mod file;
pub mod guidance;
pub mod hub;
pub mod jpeg;
pub mod memory;
pub mod metrics;
pub mod negotiate;
pub mod record;
pub mod still;
pub mod synthetic;

use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

/// The settings this crate takes are the configuration's own types (`kiosk-common`), so the
/// helper hands them over as they are.
pub use kiosk_common::capture::{CameraMode, Quality, StillConfig, VideoConfig, PRESETS};

/// Pixel layouts a frame can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PixelFormat {
    /// Packed 8-bit RGB, `width * 3` bytes a row.
    Rgb24,
    /// Planar 4:2:0 (I420), planes back to back.
    Yuv420p,
    /// Packed 4:2:2 (Y0 U Y1 V), as most USB cameras deliver uncompressed.
    Yuyv,
    /// Semi-planar 4:2:0: the Y plane, then interleaved U/V.
    Nv12,
    /// 8-bit luma only.
    Gray8,
    /// One JPEG image per frame, as MJPEG cameras deliver.
    Mjpeg,
}

impl PixelFormat {
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Rgb24 => "RGB24",
            PixelFormat::Yuv420p => "YUV420P",
            PixelFormat::Yuyv => "YUYV",
            PixelFormat::Nv12 => "NV12",
            PixelFormat::Gray8 => "GRAY8",
            PixelFormat::Mjpeg => "MJPEG",
        }
    }
}

/// One captured frame.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    /// Position in the source's stream, strictly increasing. For a camera it is the driver's
    /// sequence number, so a gap is a frame the source skipped.
    pub index: u64,
    /// Capture time relative to the stream's first frame (for a camera, the driver's own
    /// monotonic time stamp).
    pub timestamp: Duration,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("size", &format_args!("{}x{}", self.width, self.height))
            .field("format", &self.format)
            .field("index", &self.index)
            .field("timestamp", &self.timestamp)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// Why capture failed. Every variant names the source or file involved.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("invalid camera source {spec:?}: {rule}")]
    Spec { spec: String, rule: String },
    #[error("camera source {source_name}: {reason}")]
    Source { source_name: String, reason: String },
    #[error("camera source {0} delivered no frames")]
    NoFrames(String),
    #[error("encoding {path}: {reason}")]
    Encode { path: PathBuf, reason: String },
    #[error("{context}: {reason}")]
    Media { context: String, reason: String },
}

impl CaptureError {
    /// Whether the error is the caller's input (a bad source, a missing device or file) rather
    /// than a failure while working.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, CaptureError::Spec { .. } | CaptureError::Source { .. } | CaptureError::NoFrames(_))
    }

    pub(crate) fn source(name: &str, reason: impl ToString) -> Self {
        CaptureError::Source { source_name: name.to_owned(), reason: reason.to_string() }
    }

    pub(crate) fn media(context: &str, reason: impl ToString) -> Self {
        CaptureError::Media { context: context.to_owned(), reason: reason.to_string() }
    }
}

/// The boundary between the agent and a camera: something that yields frames in order.
///
/// Not `Send`: camera and decoder handles belong to the thread that opened them, so a recorder
/// opens its source on its own capture thread (see [`record::Recorder::start`]).
pub trait FrameSource {
    /// A name for messages, such as `synthetic:1280x720@30`.
    fn name(&self) -> String;
    /// The size and format frames will have.
    fn format(&self) -> (u32, u32, PixelFormat);
    /// The nominal frame rate.
    fn fps(&self) -> u32;
    /// Whether frames arrive in real time (a camera): a consumer that falls behind must drop
    /// frames rather than block the source. File sources are not live.
    fn is_live(&self) -> bool;
    /// The next frame; `Ok(None)` when the source has ended.
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError>;
    /// The mode frames come in (as negotiated, for a camera), for reports.
    fn mode(&self) -> negotiate::Mode {
        let (width, height, format) = self.format();
        negotiate::Mode { width, height, format, fps: negotiate::FrameRate::whole(self.fps()) }
    }
}

/// Opens a source from its specification:
///
/// - `v4l2:/dev/videoN` or `camera:N` — a V4L2 camera, negotiated towards `request`;
/// - `synthetic` or `synthetic:WxH@FPS` — the test pattern (size from `request` when not given);
/// - `synthetic-card` or `synthetic-card:WxH@FPS` — a card slid into place on a table;
/// - `file:PATH` — a video or image file.
pub fn open(spec: &str, request: CameraMode) -> Result<Box<dyn FrameSource>, CaptureError> {
    init_ffmpeg();
    if spec == "synthetic" {
        return Ok(Box::new(synthetic::Synthetic::new(request.width, request.height, request.fps)?));
    }
    if spec == "synthetic-card" || spec.starts_with("synthetic-card:") {
        return Ok(Box::new(card_scene::Sliding::from_spec(spec)?));
    }
    if spec.starts_with("synthetic:") {
        return Ok(Box::new(synthetic::Synthetic::from_spec(spec)?));
    }
    if let Some(path) = spec.strip_prefix("file:") {
        return Ok(Box::new(file::FileSource::open(std::path::Path::new(path))?));
    }
    // `?format=NV12` (or a list, `?format=YUYV,NV12`) limits and orders the pixel formats.
    let (device, formats) = match spec.split_once('?') {
        None => (spec, negotiate::FORMAT_ORDER.to_vec()),
        Some((device, query)) => {
            let list = query.strip_prefix("format=").ok_or_else(|| CaptureError::Spec {
                spec: spec.into(),
                rule: "the only option is ?format=NAME[,NAME…]".into(),
            })?;
            let formats =
                negotiate::parse_formats(list).map_err(|rule| CaptureError::Spec { spec: spec.into(), rule })?;
            (device, formats)
        }
    };
    if let Some(rest) = device.strip_prefix("camera:") {
        let index = rest.parse().map_err(|_| CaptureError::Spec {
            spec: spec.into(),
            rule: "camera:N takes a device number, as in /dev/videoN".into(),
        })?;
        return Ok(Box::new(camera::CameraSource::open(index, spec, request, &formats)?));
    }
    if let Some(path) = device.strip_prefix("v4l2:") {
        let index = path.strip_prefix("/dev/video").and_then(|n| n.parse().ok()).ok_or_else(|| CaptureError::Spec {
            spec: spec.into(),
            rule: "v4l2: takes a device path /dev/videoN".into(),
        })?;
        return Ok(Box::new(camera::CameraSource::open(index, spec, request, &formats)?));
    }
    Err(CaptureError::Spec {
        spec: spec.into(),
        rule: "expected v4l2:/dev/videoN[?format=…], camera:N[?format=…], synthetic[:WxH@FPS], synthetic-card[:WxH@FPS] or file:PATH".into(),
    })
}

/// Initializes FFmpeg once and keeps its own logging quiet: errors reach callers as values.
pub fn init_ffmpeg() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        ffmpeg_next::init().expect("FFmpeg initialization");
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Fatal);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_parsed_and_bad_ones_named() {
        let s = open("synthetic:320x240@15", CameraMode::default()).unwrap();
        assert_eq!(s.format(), (320, 240, PixelFormat::Rgb24));
        assert_eq!(s.fps(), 15);
        let s = open("synthetic", CameraMode { width: 640, height: 360, fps: 25 }).unwrap();
        assert_eq!((s.format().0, s.fps()), (640, 25));
        for spec in ["webcam", "camera:x", "v4l2:/dev/cam", "synthetic:1x1"] {
            let Err(e) = open(spec, CameraMode::default()) else { panic!("{spec} must be refused") };
            assert!(e.to_string().contains(spec), "{e}");
            assert!(e.is_bad_input());
        }
    }

    #[test]
    fn a_missing_device_is_named() {
        let Err(e) = open("v4l2:/dev/video97", CameraMode::default()) else { panic!("no such device") };
        assert!(e.to_string().contains("v4l2:/dev/video97") && e.is_bad_input(), "{e}");
    }
}
