//! V4L2 cameras through nokhwa (native input).
//!
//! Negotiation asks for the configured size and rate in MJPEG first (the camera compresses, so
//! high resolutions fit USB 2 bandwidth), then YUYV, then whatever is closest. Frames keep the
//! camera's layout; timestamps are the capture time on the monotonic clock.

use std::path::Path;
use std::time::Instant;

use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType, Resolution,
};
use nokhwa::Camera;

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
    /// Opens `/dev/video{index}`; `name` is the specification used in messages.
    pub fn open(index: u32, name: &str, want: Request) -> Result<Self, CaptureError> {
        let device = format!("/dev/video{index}");
        if !Path::new(&device).exists() {
            return Err(CaptureError::source(name, format!("{device} does not exist (no such camera)")));
        }
        let res = Resolution::new(want.width, want.height);
        let mut last_error = String::new();
        for fourcc in [FrameFormat::MJPEG, FrameFormat::YUYV] {
            let wanted = RequestedFormat::new::<RgbFormat>(RequestedFormatType::Closest(CameraFormat::new(
                res, fourcc, want.fps,
            )));
            match Camera::with_backend(CameraIndex::Index(index), wanted, ApiBackend::Video4Linux) {
                Ok(mut camera) => {
                    let actual = camera.camera_format();
                    let Some(format) = our_format(actual.format()) else {
                        last_error = format!("unsupported pixel format {}", actual.format());
                        continue;
                    };
                    camera.open_stream().map_err(|e| {
                        CaptureError::source(name, format!("cannot start streaming, busy or unplugged? ({e})"))
                    })?;
                    return Ok(CameraSource {
                        camera,
                        name: name.to_owned(),
                        format: (actual.width(), actual.height(), format),
                        fps: actual.frame_rate().max(1),
                        start: None,
                        next_index: 0,
                    });
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(CaptureError::source(
            name,
            format!("cannot open {device}: busy, no permission, or no usable format ({last_error})"),
        ))
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
        let buffer =
            self.camera.frame().map_err(|e| CaptureError::source(&self.name, format!("frame capture failed ({e})")))?;
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

/// One camera as `kiosk-agent cameras` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraListing {
    pub name: String,
    pub path: String,
    /// `(format, width, height, fps)` the camera offers; empty when it could not be opened.
    pub modes: Vec<(String, u32, u32, u32)>,
    pub error: Option<String>,
}

/// Lists the V4L2 cameras present, with the modes each offers.
pub fn list() -> Result<Vec<CameraListing>, CaptureError> {
    let infos = nokhwa::query(ApiBackend::Video4Linux).map_err(|e| CaptureError::media("listing cameras", e))?;
    let mut out = Vec::new();
    for info in infos {
        let index = info.index().clone();
        let path = match &index {
            CameraIndex::Index(n) => format!("/dev/video{n}"),
            CameraIndex::String(s) => s.clone(),
        };
        let mut listing = CameraListing { name: info.human_name(), path, modes: Vec::new(), error: None };
        let any = RequestedFormat::new::<RgbFormat>(RequestedFormatType::None);
        match Camera::with_backend(index, any, ApiBackend::Video4Linux).and_then(|mut c| c.compatible_camera_formats())
        {
            Ok(formats) => {
                listing.modes = formats
                    .into_iter()
                    .map(|f| (f.format().to_string(), f.width(), f.height(), f.frame_rate()))
                    .collect();
                listing.modes.sort();
                listing.modes.dedup();
            }
            Err(e) => listing.error = Some(e.to_string()),
        }
        out.push(listing);
    }
    Ok(out)
}
