//! `file:PATH`: any video or image FFmpeg can decode, delivered as fast as it decodes.
//!
//! For replaying recorded sessions and for benchmarks. JPEG streams (a `.jpg` still, an MJPEG
//! video) are delivered as they are, as [`PixelFormat::Mjpeg`] frames, like an MJPEG camera
//! would deliver them; a single image yields that one frame.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ffmpeg_next::{codec, decoder, format, frame, media, Packet, Rational};

use crate::convert::{from_av, from_av_pixel, Scaler};
use crate::{CaptureError, Frame, FrameSource, PixelFormat};

/// A decoding file source.
pub struct FileSource {
    path: PathBuf,
    input: format::context::Input,
    stream: usize,
    decoder: decoder::Video,
    time_base: Rational,
    fps: u32,
    passthrough: bool,
    pending: VecDeque<Frame>,
    scaler: Option<Scaler>,
    next_index: u64,
    finished: bool,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource").field("path", &self.path).field("next_index", &self.next_index).finish()
    }
}

impl FileSource {
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        crate::init_ffmpeg();
        let name = format!("file:{}", path.display());
        if !path.is_file() {
            return Err(CaptureError::source(&name, "no such file"));
        }
        let input = format::input(&path)
            .map_err(|e| CaptureError::source(&name, format!("not a video or image FFmpeg can read ({e})")))?;
        let stream = input
            .streams()
            .best(media::Type::Video)
            .ok_or_else(|| CaptureError::source(&name, "has no video stream"))?;
        let index = stream.index();
        let time_base = stream.time_base();
        let rate = stream.avg_frame_rate();
        let fps = if rate.denominator() > 0 && rate.numerator() > 0 {
            (rate.numerator() as f64 / rate.denominator() as f64).round().max(1.0) as u32
        } else {
            30
        };
        let params = stream.parameters();
        let passthrough = params.id() == codec::Id::MJPEG;
        let decoder = codec::context::Context::from_parameters(params)
            .and_then(|c| c.decoder().video())
            .map_err(|e| CaptureError::source(&name, format!("cannot decode its video ({e})")))?;
        if decoder.width() == 0 || decoder.height() == 0 {
            return Err(CaptureError::source(&name, "video stream has no size"));
        }
        Ok(FileSource {
            path: path.to_owned(),
            input,
            stream: index,
            decoder,
            time_base,
            fps,
            passthrough,
            pending: VecDeque::new(),
            scaler: None,
            next_index: 0,
            finished: false,
        })
    }

    fn timestamp(&self, pts: Option<i64>) -> Duration {
        match pts {
            Some(p) if p >= 0 && self.time_base.denominator() > 0 => {
                let nanos = p as u128 * self.time_base.numerator().max(0) as u128 * 1_000_000_000
                    / self.time_base.denominator() as u128;
                Duration::from_nanos(nanos as u64)
            }
            _ => Duration::from_secs(self.next_index) / self.fps,
        }
    }

    fn take_decoded(&mut self) -> Result<(), CaptureError> {
        let mut decoded = frame::Video::empty();
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            let ts = self.timestamp(decoded.timestamp());
            let frame = match from_av_pixel(decoded.format()) {
                Some(fmt) => from_av(&decoded, fmt, self.next_index, ts),
                None => {
                    let out = Scaler::convert(
                        &mut self.scaler,
                        &decoded,
                        ffmpeg_next::format::Pixel::YUV420P,
                        decoded.width(),
                        decoded.height(),
                    )?;
                    from_av(&out, PixelFormat::Yuv420p, self.next_index, ts)
                }
            };
            self.next_index += 1;
            self.pending.push_back(frame);
        }
        Ok(())
    }
}

impl FrameSource for FileSource {
    fn name(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn format(&self) -> (u32, u32, PixelFormat) {
        let format = if self.passthrough {
            PixelFormat::Mjpeg
        } else {
            from_av_pixel(self.decoder.format()).unwrap_or(PixelFormat::Yuv420p)
        };
        (self.decoder.width(), self.decoder.height(), format)
    }

    fn fps(&self) -> u32 {
        self.fps
    }

    fn is_live(&self) -> bool {
        false
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        let name = self.name();
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Ok(Some(frame));
            }
            if self.finished {
                return Ok(None);
            }
            let mut packet = Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => {
                    if packet.stream() != self.stream {
                        continue;
                    }
                    if self.passthrough {
                        let Some(data) = packet.data() else { continue };
                        let (w, h) = (self.decoder.width(), self.decoder.height());
                        let ts = self.timestamp(packet.pts());
                        let frame = Frame {
                            width: w,
                            height: h,
                            format: PixelFormat::Mjpeg,
                            index: self.next_index,
                            timestamp: ts,
                            data: data.to_vec(),
                        };
                        self.next_index += 1;
                        return Ok(Some(frame));
                    }
                    self.decoder
                        .send_packet(&packet)
                        .map_err(|e| CaptureError::source(&name, format!("decoding failed ({e})")))?;
                    self.take_decoded()?;
                }
                Err(ffmpeg_next::Error::Eof) => {
                    self.finished = true;
                    if !self.passthrough {
                        let _ = self.decoder.send_eof();
                        self.take_decoded()?;
                    }
                }
                Err(e) => return Err(CaptureError::source(&name, format!("read failed ({e})"))),
            }
        }
    }
}

/// What [`probe`] found in a video file.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoFacts {
    /// The demuxer's names, such as `mov,mp4,m4a,3gp,3g2,mj2`.
    pub container: String,
    /// The video codec, such as `h264`.
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub duration: Duration,
}

/// Checks that `path` is a video that will play: a container FFmpeg reads, a video stream, a
/// duration above zero and a first frame that decodes. It reads at most `max_packets` packets.
///
/// `sealed`: the file is AES-128-CBC encrypted under this key and IV (32 + 32 hex digits), and
/// is read through FFmpeg's `crypto:` protocol, which decrypts as it reads and seeks.
pub fn probe(path: &Path, sealed: Option<&str>, max_packets: usize) -> Result<VideoFacts, CaptureError> {
    crate::init_ffmpeg();
    let name = "video";
    let opened = match sealed {
        None => format::input(&path),
        Some(hex) => {
            let mut options = ffmpeg_next::Dictionary::new();
            options.set("key", &hex[..hex.len() / 2]);
            options.set("iv", &hex[hex.len() / 2..]);
            format::input_with_dictionary(&format!("crypto:{}", path.display()), options)
        }
    };
    let mut input = opened.map_err(|e| CaptureError::source(name, format!("not a container FFmpeg can read ({e})")))?;
    let container = input.format().name().to_owned();
    let stream =
        input.streams().best(media::Type::Video).ok_or_else(|| CaptureError::source(name, "has no video stream"))?;
    let index = stream.index();
    let time_base = stream.time_base();
    let stream_duration = stream.duration();
    let params = stream.parameters();
    let codec = params.id().name().to_owned();
    let mut decoder = codec::context::Context::from_parameters(params)
        .and_then(|c| c.decoder().video())
        .map_err(|e| CaptureError::source(name, format!("its {codec} stream cannot be decoded ({e})")))?;
    let (width, height) = (decoder.width(), decoder.height());
    if width == 0 || height == 0 {
        return Err(CaptureError::source(name, "video stream has no size"));
    }
    let duration = if stream_duration > 0 && time_base.denominator() > 0 && time_base.numerator() > 0 {
        Duration::from_secs_f64(stream_duration as f64 * time_base.numerator() as f64 / time_base.denominator() as f64)
    } else if input.duration() > 0 {
        Duration::from_micros(input.duration() as u64)
    } else {
        Duration::ZERO
    };
    if duration.is_zero() {
        return Err(CaptureError::source(name, "has no duration"));
    }
    let mut decoded = frame::Video::empty();
    for _ in 0..max_packets {
        let mut packet = Packet::empty();
        match packet.read(&mut input) {
            Ok(()) if packet.stream() == index => {
                // A broken packet is not fatal yet: decoders resynchronise on the next key frame.
                if decoder.send_packet(&packet).is_ok() && decoder.receive_frame(&mut decoded).is_ok() {
                    return Ok(VideoFacts { container, codec, width, height, duration });
                }
            }
            Ok(()) => {}
            Err(ffmpeg_next::Error::Eof) => {
                let _ = decoder.send_eof();
                if decoder.receive_frame(&mut decoded).is_ok() {
                    return Ok(VideoFacts { container, codec, width, height, duration });
                }
                break;
            }
            Err(e) => return Err(CaptureError::source(name, format!("read failed ({e})"))),
        }
    }
    Err(CaptureError::source(name, format!("no frame of its {codec} stream decodes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A YUV4MPEG2 file of `n` frames whose luma encodes the frame number (as the bench makes
    /// with ffmpeg, written here by hand so tests need no CLI).
    fn write_y4m(path: &Path, w: usize, h: usize, n: usize) {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
        writeln!(f, "YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg").unwrap();
        for i in 0..n {
            f.write_all(b"FRAME\n").unwrap();
            f.write_all(&vec![(i * 10 % 256) as u8; w * h]).unwrap();
            f.write_all(&vec![128u8; w * h / 2]).unwrap();
        }
    }

    #[test]
    fn y4m_frames_arrive_in_order_unpaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.y4m");
        write_y4m(&path, 64, 48, 12);
        let mut src = FileSource::open(&path).unwrap();
        assert_eq!(src.format(), (64, 48, PixelFormat::Yuv420p));
        assert_eq!(src.fps(), 30);
        assert!(!src.is_live());
        let mut n = 0;
        while let Some(f) = src.next_frame().unwrap() {
            assert_eq!(f.index, n);
            assert_eq!(f.data[0], (n * 10 % 256) as u8);
            assert_eq!(f.timestamp, Duration::from_secs(n) / 30);
            n += 1;
        }
        assert_eq!(n, 12);
    }

    #[test]
    fn a_jpeg_file_is_one_mjpeg_frame() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("still.jpg");
        let frame = crate::synthetic::Synthetic::new(320, 240, 30).unwrap().unpaced().next_frame().unwrap().unwrap();
        std::fs::write(&path, crate::jpeg::encode(&frame, 90).unwrap()).unwrap();
        let mut src = FileSource::open(&path).unwrap();
        let f = src.next_frame().unwrap().unwrap();
        assert_eq!((f.format, f.width, f.height), (PixelFormat::Mjpeg, 320, 240));
        assert!(src.next_frame().unwrap().is_none());
    }

    #[test]
    fn missing_and_non_video_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.mp4");
        let err = FileSource::open(&missing).unwrap_err().to_string();
        assert!(err.contains("nope.mp4") && err.contains("no such file"), "{err}");
        let text = dir.path().join("notes.mp4");
        std::fs::write(&text, "this is not a video at all, just some words").unwrap();
        let err = FileSource::open(&text).unwrap_err().to_string();
        assert!(err.contains("notes.mp4"), "{err}");
    }
}
