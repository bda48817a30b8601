//! What a V4L2 driver says about each buffer, turned into [`Frame`] fields.
//!
//! - **Index**: the driver's sequence number, so a gap is a frame the driver skipped (no buffer
//!   was free, the bus lost it, or it came flagged as damaged). A driver that leaves the number
//!   at 0 or repeats it still yields strictly increasing indexes (consumers rely on that).
//! - **Timestamp**: the driver's capture time (`CLOCK_MONOTONIC`), relative to the stream's
//!   first frame, so a clip's timeline is the sensor's and not the time this process happened to
//!   dequeue a buffer. Drivers that do not stamp frames get the dequeue time instead.
//! - **Rows**: raw frames padded to a wider line (`bytesperline`) are packed, as every consumer
//!   expects rows of exactly the picture's width.

use std::time::{Duration, Instant};

use crate::convert::planes;
use crate::PixelFormat;

/// Turns the driver's per-buffer sequence numbers and timestamps into frame indexes and
/// stream-relative times.
#[derive(Debug, Default)]
pub struct FrameClock {
    /// The last index handed out, and the raw sequence number it came from.
    last: Option<(u64, u32)>,
    /// The first frame's driver time, when the driver stamps frames.
    first_driver_time: Option<Duration>,
    /// When the first frame was dequeued (for drivers that do not stamp frames).
    first_dequeued: Option<Instant>,
    last_time: Duration,
    /// Frames whose sequence number did not advance (a driver that does not count).
    pub unnumbered: u64,
}

impl FrameClock {
    /// Whether a frame has been handed out.
    pub fn started(&self) -> bool {
        self.last.is_some()
    }

    /// The index of a frame the driver numbered `sequence`: the sequence number itself (plus
    /// its wrap-arounds) while it advances, else one past the last index.
    pub fn index(&mut self, sequence: u32) -> u64 {
        let index = match self.last {
            None => u64::from(sequence),
            Some((last_index, last_raw)) if sequence > last_raw => last_index + u64::from(sequence - last_raw),
            // Wrapped: a small number after one near 2^32.
            Some((last_index, last_raw)) if last_raw > u32::MAX - (1 << 16) && sequence < (1 << 16) => {
                last_index + u64::from(sequence) + u64::from(u32::MAX - last_raw) + 1
            }
            Some((last_index, _)) => {
                self.unnumbered += 1;
                last_index + 1
            }
        };
        self.last = Some((index, sequence));
        index
    }

    /// The frame's time since the stream's first frame: from the driver's timestamp when it
    /// gives one (`driver`, `None` when it does not stamp frames), else from the dequeue time.
    /// Never earlier than the previous frame's.
    pub fn time(&mut self, driver: Option<Duration>, dequeued: Instant) -> Duration {
        let first_dequeued = *self.first_dequeued.get_or_insert(dequeued);
        let since_start = match driver.filter(|d| !d.is_zero()) {
            Some(d) => {
                let first = *self.first_driver_time.get_or_insert(d);
                d.saturating_sub(first)
            }
            None => dequeued.saturating_duration_since(first_dequeued),
        };
        self.last_time = since_start.max(self.last_time);
        self.last_time
    }
}

/// The bytes of a raw frame with rows packed to the picture's width, from a driver buffer
/// whose lines are `stride` bytes apart (`None` when the buffer is too short to hold it).
/// MJPEG frames are the first `used` bytes.
pub fn packed(
    buffer: &[u8],
    used: usize,
    format: PixelFormat,
    width: u32,
    height: u32,
    stride: u32,
) -> Option<Vec<u8>> {
    let used = if used == 0 || used > buffer.len() { buffer.len() } else { used };
    if format == PixelFormat::Mjpeg {
        return (used > 0).then(|| buffer[..used].to_vec());
    }
    let layout = planes(format, width as usize, height as usize);
    let packed_stride = layout[0].0;
    let stride = (stride as usize).max(packed_stride);
    if stride == packed_stride {
        let len: usize = layout.iter().map(|(row, rows)| row * rows).sum();
        return (used >= len).then(|| buffer[..len].to_vec());
    }
    // Every plane of the layouts this crate takes from drivers keeps the first plane's line
    // length (YUYV, RGB24 and GRAY8 have one plane; NV12's chroma lines are as long as its luma
    // lines), so one stride serves them all.
    let buffer = &buffer[..used];
    let mut out = Vec::with_capacity(layout.iter().map(|(row, rows)| row * rows).sum());
    let mut offset = 0;
    for (row, rows) in layout {
        for r in 0..rows {
            let start = offset + r * stride;
            out.extend_from_slice(buffer.get(start..start + row)?);
        }
        offset += rows * stride;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_follow_the_driver_and_keep_its_gaps() {
        let mut clock = FrameClock::default();
        let got: Vec<u64> = [5, 6, 8, 9].into_iter().map(|s| clock.index(s)).collect();
        assert_eq!(got, [5, 6, 8, 9]);
        assert_eq!(clock.unnumbered, 0);
    }

    #[test]
    fn a_driver_that_does_not_count_still_gives_increasing_indexes() {
        let mut clock = FrameClock::default();
        let got: Vec<u64> = [0, 0, 0, 0].into_iter().map(|s| clock.index(s)).collect();
        assert_eq!(got, [0, 1, 2, 3]);
        assert_eq!(clock.unnumbered, 3);
        // A number that goes back (a driver restarting its count) never moves the index back.
        assert_eq!(clock.index(0), 4);
    }

    #[test]
    fn sequence_numbers_that_wrap_keep_counting() {
        let mut clock = FrameClock::default();
        assert_eq!(clock.index(u32::MAX - 1), u64::from(u32::MAX) - 1);
        assert_eq!(clock.index(u32::MAX), u64::from(u32::MAX));
        assert_eq!(clock.index(1), u64::from(u32::MAX) + 2, "0 was skipped");
        assert_eq!(clock.unnumbered, 0);
    }

    #[test]
    fn times_are_the_drivers_relative_to_the_first_frame() {
        let mut clock = FrameClock::default();
        let now = Instant::now();
        let later = now + Duration::from_millis(900);
        assert_eq!(clock.time(Some(Duration::from_millis(10_000)), now), Duration::ZERO);
        // Dequeued late, but the driver says 40 ms after the first.
        assert_eq!(clock.time(Some(Duration::from_millis(10_040)), later), Duration::from_millis(40));
        // A stamp that goes back never moves the clip's time back.
        assert_eq!(clock.time(Some(Duration::from_millis(10_030)), later), Duration::from_millis(40));
    }

    #[test]
    fn unstamped_frames_take_the_dequeue_time() {
        let mut clock = FrameClock::default();
        let now = Instant::now();
        assert_eq!(clock.time(None, now), Duration::ZERO);
        assert_eq!(clock.time(Some(Duration::ZERO), now + Duration::from_millis(33)), Duration::from_millis(33));
    }

    #[test]
    fn padded_lines_are_packed_and_short_buffers_refused() {
        // YUYV 2x2 (4 bytes a line) in lines of 6 bytes.
        let buffer = [1, 2, 3, 4, 0, 0, 5, 6, 7, 8, 0, 0];
        assert_eq!(packed(&buffer, 12, PixelFormat::Yuyv, 2, 2, 6).unwrap(), [1, 2, 3, 4, 5, 6, 7, 8]);
        // NV12 2x2 in lines of 4: two luma lines, one chroma line.
        let nv12 = [1, 2, 0, 0, 3, 4, 0, 0, 5, 6, 0, 0];
        assert_eq!(packed(&nv12, 12, PixelFormat::Nv12, 2, 2, 4).unwrap(), [1, 2, 3, 4, 5, 6]);
        assert!(packed(&buffer[..8], 8, PixelFormat::Yuyv, 2, 2, 6).is_none());
        assert!(packed(&[1, 2, 3], 3, PixelFormat::Yuyv, 2, 2, 4).is_none(), "a truncated frame");
        assert_eq!(packed(&[9, 9, 9, 0, 0], 3, PixelFormat::Mjpeg, 2, 2, 0).unwrap(), [9, 9, 9]);
    }
}
