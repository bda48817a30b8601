//! kiosk-capture: camera sources behind one boundary, for kiosk-agent.
//!
//! This crate owns everything that touches cameras and video encoding, so that their native
//! dependencies stay out of the rest of the build. It knows nothing of queues, HTTP or One-Shot.
//!
//! Code map:
//! - [`FrameSource`] — the boundary every camera implements (V4L2 through nokhwa, a file, or
//!   the synthetic test pattern).
//! - [`synthetic`]   — a deterministic moving test pattern with the frame number in its pixels.

pub mod synthetic;

use std::time::Duration;

/// Pixel layouts a source can deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// Packed 8-bit RGB.
    Rgb24,
    /// Planar 4:2:0 (I420).
    Yuv420p,
    /// Packed 4:2:2, as most USB cameras deliver uncompressed.
    Yuyv,
    /// Semi-planar 4:2:0.
    Nv12,
    /// One JPEG image per frame.
    Mjpeg,
}

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    /// Position in the source's stream, from 0.
    pub index: u64,
    /// Capture time relative to the first frame of the stream.
    pub timestamp: Duration,
    pub data: Vec<u8>,
}

/// Why a source could not deliver.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("camera source {source_name}: {reason}")]
    Source { source_name: String, reason: String },
    #[error("invalid camera source specification {spec:?}: {rule}")]
    Spec { spec: String, rule: String },
}

/// The boundary between the agent and a camera: something that yields frames in order.
pub trait FrameSource: Send {
    /// A name for messages, such as `synthetic:1280x720@30`.
    fn name(&self) -> String;
    /// The size and format frames will have.
    fn format(&self) -> (u32, u32, PixelFormat);
    /// The next frame; `Ok(None)` when the source has ended.
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError>;
}

/// Opens a source from its specification. Only `synthetic[:WxH@FPS]` exists so far; camera
/// and file sources come with the capture work.
pub fn open(spec: &str) -> Result<Box<dyn FrameSource>, CaptureError> {
    if spec == "synthetic" || spec.starts_with("synthetic:") {
        return Ok(Box::new(synthetic::Synthetic::from_spec(spec)?));
    }
    Err(CaptureError::Spec {
        spec: spec.into(),
        rule: "supported sources: synthetic[:WxH@FPS]".into(),
    })
}
