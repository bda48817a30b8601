//! Frames held in memory: a source for tests and for replaying what was captured.

use std::collections::VecDeque;

use crate::{CaptureError, Frame, FrameSource, PixelFormat};

/// Yields the given frames in order, then ends (or fails, when built with an error).
#[derive(Debug)]
pub struct Frames {
    frames: VecDeque<Frame>,
    format: (u32, u32, PixelFormat),
    fps: u32,
    live: bool,
    error_at_end: Option<String>,
}

impl Frames {
    pub fn new(frames: Vec<Frame>, fps: u32) -> Self {
        let first = frames.first().map(|f| (f.width, f.height, f.format)).unwrap_or((0, 0, PixelFormat::Rgb24));
        Frames { frames: frames.into(), format: first, fps, live: false, error_at_end: None }
    }

    /// Behave like a camera: consumers must not block it.
    pub fn live(mut self) -> Self {
        self.live = true;
        self
    }

    /// After the frames, fail with `reason` instead of ending, like a camera unplugged mid-way.
    pub fn then_fail(mut self, reason: &str) -> Self {
        self.error_at_end = Some(reason.to_owned());
        self
    }
}

impl FrameSource for Frames {
    fn name(&self) -> String {
        "memory".into()
    }
    fn format(&self) -> (u32, u32, PixelFormat) {
        self.format
    }
    fn fps(&self) -> u32 {
        self.fps
    }
    fn is_live(&self) -> bool {
        self.live
    }
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        match self.frames.pop_front() {
            Some(f) => Ok(Some(f)),
            None => match &self.error_at_end {
                Some(reason) => Err(CaptureError::source("memory", reason)),
                None => Ok(None),
            },
        }
    }
}
