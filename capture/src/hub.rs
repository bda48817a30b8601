//! One camera shared by everyone who wants its frames: the preview viewers, a still and a
//! recording at the same time.
//!
//! A [`Hub`] owns the source on its own thread and keeps only the latest frame. Each consumer
//! takes a [`Tap`], a live [`FrameSource`] that yields the frames that arrive after it last
//! looked, so a slow consumer skips frames instead of holding the camera back, and no consumer
//! can disturb another (a preview viewer cannot stall a recording). The preview's JPEG of the
//! latest frame is encoded once however many viewers ask for it. A source that is not live (a
//! file) is played at its own pace, as a camera would deliver it.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::{CameraMode, CaptureError, Frame, FrameSource, PixelFormat};

/// A consumer that waits this long for a frame concludes the camera stopped.
const FRAME_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Latest {
    frame: Option<Arc<Frame>>,
    /// Set when the source ended or failed; consumers end their streams.
    ended: Option<String>,
    /// The preview JPEG of the frame with this index.
    preview: Option<(u64, Arc<Vec<u8>>)>,
}

#[derive(Debug)]
struct Shared {
    name: String,
    mode: crate::negotiate::Mode,
    latest: Mutex<Latest>,
    arrived: Condvar,
}

/// A camera shared between consumers; the source stops when the hub is dropped.
#[derive(Debug, Clone)]
pub struct Hub(Arc<Shared>);

impl Hub {
    /// Opens `spec` (as [`crate::open`]) on a thread of its own; returns once it is open.
    pub fn start(spec: &str, request: CameraMode) -> Result<Hub, CaptureError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let spec = spec.to_owned();
        std::thread::Builder::new()
            .name(format!("camera {spec}"))
            .spawn(move || {
                let mut source = match crate::open(&spec, request) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let shared = Arc::new(Shared {
                    name: source.name(),
                    mode: source.mode(),
                    latest: Mutex::default(),
                    arrived: Condvar::new(),
                });
                if tx.send(Ok(Hub(Arc::clone(&shared)))).is_err() {
                    return;
                }
                // A file used as a camera plays in real time, as a camera would deliver it.
                let paced = !source.is_live();
                let started = std::time::Instant::now();
                let end = loop {
                    // Nobody holds the hub any more: release the camera.
                    if Arc::strong_count(&shared) == 1 {
                        break "stopped".to_owned();
                    }
                    match source.next_frame() {
                        Ok(Some(frame)) => {
                            if paced {
                                if let Some(wait) = frame.timestamp.checked_sub(started.elapsed()) {
                                    std::thread::sleep(wait);
                                }
                            }
                            shared.lock().frame = Some(Arc::new(frame));
                            shared.arrived.notify_all();
                        }
                        Ok(None) => break format!("{} ended", shared.name),
                        Err(e) => break e.to_string(),
                    }
                };
                shared.lock().ended = Some(end);
                shared.arrived.notify_all();
            })
            .map_err(|e| CaptureError::media("camera thread", e))?;
        rx.recv().map_err(|_| CaptureError::media("camera thread", "ended before opening"))?
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Why the source ended, if it has.
    pub fn ended(&self) -> Option<String> {
        self.0.lock().ended.clone()
    }

    /// A live source of this camera's frames from now on.
    pub fn tap(&self) -> Tap {
        Tap { hub: self.clone(), seen: None }
    }

    /// The latest frame newer than `after` (frame index), shared rather than copied, for a
    /// consumer that only reads it (live guidance); `None` once the camera ended, an error when
    /// it went silent.
    pub fn frame_after(&self, after: Option<u64>) -> Result<Option<Arc<Frame>>, CaptureError> {
        self.0.wait_newer(after)
    }

    /// A JPEG of a frame newer than `after` (frame index), encoded once for all viewers; `None`
    /// when the camera ended or sent nothing in time.
    pub fn preview_after(&self, after: Option<u64>, quality: u8) -> Option<(u64, Arc<Vec<u8>>)> {
        let frame = self.0.wait_newer(after).ok()??;
        let mut latest = self.0.lock();
        if let Some((index, jpeg)) = &latest.preview {
            if *index >= frame.index {
                return Some((*index, Arc::clone(jpeg)));
            }
        }
        drop(latest);
        let jpeg = match frame.format {
            PixelFormat::Mjpeg => frame.data.clone(),
            _ => crate::jpeg::encode(&frame, quality).ok()?,
        };
        let jpeg = Arc::new(jpeg);
        latest = self.0.lock();
        latest.preview = Some((frame.index, Arc::clone(&jpeg)));
        Some((frame.index, jpeg))
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Latest> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The latest frame if it is newer than `after`, waiting up to [`FRAME_WAIT`] for one;
    /// `Ok(None)` when the source ended, `Err` when it went silent.
    fn wait_newer(&self, after: Option<u64>) -> Result<Option<Arc<Frame>>, CaptureError> {
        let mut latest = self.lock();
        let deadline = std::time::Instant::now() + FRAME_WAIT;
        loop {
            if let Some(f) = &latest.frame {
                if after.is_none_or(|seen| f.index > seen) {
                    return Ok(Some(Arc::clone(f)));
                }
            }
            if latest.ended.is_some() {
                return Ok(None);
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(CaptureError::source(&self.name, "delivered no frame for 5 s"));
            }
            latest = self.arrived.wait_timeout(latest, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

/// One consumer's view of a [`Hub`].
#[derive(Debug)]
pub struct Tap {
    hub: Hub,
    seen: Option<u64>,
}

impl FrameSource for Tap {
    fn name(&self) -> String {
        self.hub.0.name.clone()
    }

    fn format(&self) -> (u32, u32, PixelFormat) {
        let mode = self.hub.0.mode;
        (mode.width, mode.height, mode.format)
    }

    fn fps(&self) -> u32 {
        self.hub.0.mode.fps.rounded()
    }

    fn mode(&self) -> crate::negotiate::Mode {
        self.hub.0.mode
    }

    fn is_live(&self) -> bool {
        true
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        match self.hub.0.wait_newer(self.seen)? {
            Some(frame) => {
                self.seen = Some(frame.index);
                Ok(Some((*frame).clone()))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_share_one_camera_and_each_sees_new_frames() {
        let hub = Hub::start("synthetic:320x240@30", CameraMode::default()).unwrap();
        let (mut a, mut b) = (hub.tap(), hub.tap());
        let first = a.next_frame().unwrap().unwrap();
        let second = a.next_frame().unwrap().unwrap();
        assert!(second.index > first.index, "a tap never yields the same frame twice");
        let other = b.next_frame().unwrap().unwrap();
        assert!(other.index >= first.index, "another tap sees the same stream");
        let (i1, jpeg1) = hub.preview_after(None, 80).unwrap();
        let (i2, jpeg2) = hub.preview_after(Some(i1), 80).unwrap();
        assert!(i2 > i1 && jpeg1 != jpeg2 && jpeg1.starts_with(&[0xFF, 0xD8]), "the preview moves");
        assert_eq!(a.format(), (320, 240, a.format().2));
    }

    #[test]
    fn a_source_that_cannot_open_is_an_error_at_start() {
        let hub = Hub::start("file:/nonexistent.mp4", CameraMode::default());
        assert!(hub.is_err());
    }

    #[test]
    fn a_source_that_ends_ends_every_tap() {
        let dir = tempfile::tempdir().unwrap();
        let clip = dir.path().join("still.jpg");
        let frame = crate::synthetic::Synthetic::new(320, 240, 30).unwrap().next_frame().unwrap().unwrap();
        std::fs::write(&clip, crate::jpeg::encode(&frame, 80).unwrap()).unwrap();
        let hub = Hub::start(&format!("file:{}", clip.display()), CameraMode::default()).unwrap();
        let mut tap = hub.tap();
        // A single image is one frame, then the end.
        let mut frames = 0;
        while let Some(_f) = tap.next_frame().unwrap() {
            frames += 1;
        }
        assert_eq!(frames, 1);
        assert!(hub.ended().is_some());
    }
}
