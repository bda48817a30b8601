//! H.264/MP4 recording: a capture thread feeds an encoder thread through a bounded channel.
//!
//! - The capture thread opens the source itself (camera handles are thread-affine) and pulls
//!   frames. A live source is never blocked: when the encoder falls behind and the channel is
//!   full, the frame is dropped and counted. A file source waits instead (nothing is dropped).
//! - The encoder thread converts to YUV420P (swscale), encodes with libx264 (CRF with a bitrate
//!   cap, a keyframe every `keyframe_secs`, configurable preset) and muxes MP4 with the index
//!   at the front (`movflags=+faststart`). Presentation times come from the capture times.
//! - The clip is written to a temporary file and renamed into place only once finalized, so
//!   the output path never holds a corrupt file. A source that ends, fails or stalls mid-way
//!   still yields a valid, finalized MP4, flagged short; with no frame at all, no file remains.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ffmpeg_next::codec::threading;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::{codec, encoder, format, Dictionary, Packet, Rational};

use crate::convert::{to_av, Scaler};
use crate::negotiate::Mode;
use crate::{CaptureError, Frame, FrameSource, VideoConfig, PRESETS};

/// Encoder time base: the 90 kHz clock of video transport, fine enough for capture times.
const TIME_BASE: Rational = Rational(1, 90_000);

/// Why a recording ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The requested duration (or the maximum) was reached.
    Completed,
    /// [`Recorder::stop`] was called.
    Stopped,
    /// The source had no more frames.
    SourceEnded,
    /// The source failed mid-way.
    SourceFailed(String),
    /// The source delivered nothing for too long.
    SourceStalled,
}

/// What a recording produced.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordReport {
    pub path: PathBuf,
    pub source: String,
    /// The mode the source delivered (the negotiated one, for a camera).
    pub mode: Mode,
    pub frames: u64,
    /// Frames the source delivered that the encoder could not take in time.
    pub dropped: u64,
    /// Frames that came but could not be decoded (a corrupt MJPEG frame), left out.
    pub damaged: u64,
    /// Frames the source skipped within the clip, as its frame numbers show: for a camera, the
    /// driver's sequence numbers (frames it had no free buffer for, or delivered damaged).
    pub skipped: u64,
    /// The first and last frame numbers the clip spans (for a camera, the driver's sequence
    /// numbers): `frames + dropped + damaged + skipped` is `last - first + 1`.
    pub sequence: Option<(u64, u64)>,
    /// Time from the first to the last of those frames, on the source's clock (a camera's
    /// driver's); longer than the clip when the last frames were dropped.
    pub span: Duration,
    /// Duration of the clip (first to last capture time, plus one frame).
    pub duration: Duration,
    pub requested: Duration,
    pub end: EndReason,
    /// True when the source gave out before the requested duration.
    pub short: bool,
    pub bytes: u64,
}

enum Msg {
    Frame(Frame),
    End(EndReason, Span),
}

/// The frame numbers the capture thread took from the source for the clip.
#[derive(Debug, Default, Clone, Copy)]
struct Span {
    first: Option<u64>,
    last: u64,
    /// The last frame's time since the first's.
    time: Duration,
    /// Frames taken: sent to the encoder or dropped.
    taken: u64,
}

impl Span {
    fn take(&mut self, index: u64, time: Duration) {
        self.first.get_or_insert(index);
        self.last = index;
        self.time = time;
        self.taken += 1;
    }

    /// Numbers missing between the first and the last frame.
    fn skipped(&self) -> u64 {
        self.first.map_or(0, |first| (self.last.saturating_sub(first) + 1).saturating_sub(self.taken))
    }
}

/// A recording in progress.
#[derive(Debug)]
pub struct Recorder {
    stop: Arc<AtomicBool>,
    encoder: JoinHandle<Result<RecordReport, CaptureError>>,
}

impl Recorder {
    /// Opens the source (with `open`, on the capture thread) and starts recording `seconds`
    /// (capped at `settings.max_duration`) into `out`. Returns once the source is open, or with
    /// the error that kept it from opening.
    pub fn start<F>(open: F, out: &Path, settings: &VideoConfig, seconds: Duration) -> Result<Recorder, CaptureError>
    where
        F: FnOnce() -> Result<Box<dyn FrameSource>, CaptureError> + Send + 'static,
    {
        Recorder::start_with(open, out, false, settings, seconds)
    }

    /// [`Recorder::start`], the encoder writing straight into `out` (no temporary file, no
    /// rename): for a file that is not a directory entry, e.g. `/proc/self/fd/N` of a memory
    /// file, so the clip never touches a disk.
    pub fn start_direct<F>(
        open: F,
        out: &Path,
        settings: &VideoConfig,
        seconds: Duration,
    ) -> Result<Recorder, CaptureError>
    where
        F: FnOnce() -> Result<Box<dyn FrameSource>, CaptureError> + Send + 'static,
    {
        Recorder::start_with(open, out, true, settings, seconds)
    }

    fn start_with<F>(
        open: F,
        out: &Path,
        direct: bool,
        settings: &VideoConfig,
        seconds: Duration,
    ) -> Result<Recorder, CaptureError>
    where
        F: FnOnce() -> Result<Box<dyn FrameSource>, CaptureError> + Send + 'static,
    {
        crate::init_ffmpeg();
        validate(settings, out)?;
        let limit = seconds.min(settings.max_duration);
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        // Half a second of frames: enough to ride out a hiccup, little memory.
        let (tx, rx) = mpsc::sync_channel::<Msg>((settings.fps as usize / 2).max(4));
        let (opened_tx, opened_rx) = mpsc::sync_channel::<Result<(String, Mode), CaptureError>>(1);
        {
            let (stop, dropped) = (Arc::clone(&stop), Arc::clone(&dropped));
            std::thread::Builder::new()
                .name("capture".into())
                .spawn(move || capture_loop(open, opened_tx, tx, stop, dropped, limit))
                .map_err(|e| CaptureError::media("capture thread", e))?;
        }
        let (source, mode) = opened_rx
            .recv()
            .map_err(|_| CaptureError::media("capture thread", "ended before opening the source"))??;
        let stall = Duration::from_secs(2) + Duration::from_secs_f64(2.0 / mode.fps.as_f64().max(1.0));
        let job = EncodeJob {
            mode,
            out: out.to_owned(),
            direct,
            settings: settings.clone(),
            source,
            requested: limit,
            stall,
            stop: Arc::clone(&stop),
            dropped,
        };
        let encoder = std::thread::Builder::new()
            .name("encoder".into())
            .spawn(move || job.run(rx))
            .map_err(|e| CaptureError::media("encoder thread", e))?;
        Ok(Recorder { stop, encoder })
    }

    /// Stops recording now and returns the finalized clip.
    pub fn stop(self) -> Result<RecordReport, CaptureError> {
        self.stop.store(true, Ordering::SeqCst);
        self.wait()
    }

    /// Whether the recording has ended (its clip is final; [`Recorder::wait`] returns at once).
    pub fn is_finished(&self) -> bool {
        self.encoder.is_finished()
    }

    /// Waits until the recording ends by itself (duration reached, source ended).
    pub fn wait(self) -> Result<RecordReport, CaptureError> {
        self.encoder.join().map_err(|_| CaptureError::media("encoder thread", "panicked"))?
    }
}

/// Records `seconds` from the source `open` yields into `out`.
pub fn record<F>(open: F, out: &Path, settings: &VideoConfig, seconds: Duration) -> Result<RecordReport, CaptureError>
where
    F: FnOnce() -> Result<Box<dyn FrameSource>, CaptureError> + Send + 'static,
{
    Recorder::start(open, out, settings, seconds)?.wait()
}

fn validate(s: &VideoConfig, out: &Path) -> Result<(), CaptureError> {
    let bad = |reason: String| Err(CaptureError::Encode { path: out.to_owned(), reason });
    if s.width < 16 || s.height < 16 || !s.width.is_multiple_of(2) || !s.height.is_multiple_of(2) {
        return bad(format!("size {}x{} must be even and at least 16x16", s.width, s.height));
    }
    if s.fps == 0 || s.fps > 120 {
        return bad(format!("frame rate {} must be 1-120", s.fps));
    }
    if s.crf > 51 {
        return bad(format!("crf {} must be 0-51", s.crf));
    }
    if !PRESETS.contains(&s.preset.as_str()) {
        return bad(format!("preset {:?} must be one of {}", s.preset, PRESETS.join(", ")));
    }
    if s.keyframe_secs == 0 {
        return bad("keyframe interval must be at least 1 second".into());
    }
    Ok(())
}

fn capture_loop<F>(
    open: F,
    opened: SyncSender<Result<(String, Mode), CaptureError>>,
    tx: SyncSender<Msg>,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    limit: Duration,
) where
    F: FnOnce() -> Result<Box<dyn FrameSource>, CaptureError>,
{
    let mut source = match open() {
        Ok(s) => s,
        Err(e) => {
            let _ = opened.send(Err(e));
            return;
        }
    };
    let _ = opened.send(Ok((source.name(), source.mode())));
    let live = source.is_live();
    let mut first: Option<Duration> = None;
    let mut span = Span::default();
    let end = loop {
        if stop.load(Ordering::SeqCst) {
            break EndReason::Stopped;
        }
        let frame = match source.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break EndReason::SourceEnded,
            Err(e) => break EndReason::SourceFailed(e.to_string()),
        };
        let start = *first.get_or_insert(frame.timestamp);
        if frame.timestamp.saturating_sub(start) >= limit {
            break EndReason::Completed;
        }
        span.take(frame.index, frame.timestamp.saturating_sub(start));
        if live {
            match tx.try_send(Msg::Frame(frame)) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        } else if tx.send(Msg::Frame(frame)).is_err() {
            return;
        }
    };
    let _ = tx.send(Msg::End(end, span));
}

struct EncodeJob {
    mode: Mode,
    out: PathBuf,
    /// Written straight into `out`, not through a temporary file renamed into place.
    direct: bool,
    settings: VideoConfig,
    source: String,
    requested: Duration,
    stall: Duration,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
}

/// The open output: muxer, encoder and what is needed to timestamp packets.
struct Output {
    octx: format::context::Output,
    encoder: encoder::Video,
    stream_tb: Rational,
    scaler: Option<Scaler>,
    last_pts: Option<i64>,
}

impl EncodeJob {
    /// Creates the temporary file the encoder writes, beside `out`: a new file of ours (random
    /// name, `O_EXCL`, mode 0600), so a symlink planted at a predictable name cannot redirect the
    /// clip and nobody else can read it while it is written.
    fn temp_path(&self) -> Result<PathBuf, CaptureError> {
        let name = self.out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "clip".into());
        let dir = self.out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempfile_in(dir)
            .map_err(|e| self.err(format!("cannot create a file in {}: {e}", dir.display())))?;
        tmp.into_temp_path().keep().map_err(|e| self.err(e))
    }

    fn err(&self, reason: impl ToString) -> CaptureError {
        CaptureError::Encode { path: self.out.clone(), reason: reason.to_string() }
    }

    fn run(self, rx: Receiver<Msg>) -> Result<RecordReport, CaptureError> {
        let tmp = if self.direct { self.out.clone() } else { self.temp_path()? };
        let result = self.encode_all(&tmp, rx);
        match result {
            Ok(report) => Ok(report),
            Err(e) => {
                if !self.direct {
                    let _ = std::fs::remove_file(&tmp);
                }
                Err(e)
            }
        }
    }

    fn encode_all(&self, tmp: &Path, rx: Receiver<Msg>) -> Result<RecordReport, CaptureError> {
        let mut out = self.open_output(tmp)?;
        let (mut frames, mut first, mut last) = (0u64, None::<Duration>, Duration::ZERO);
        let (mut span, mut damaged) = (Span::default(), 0u64);
        let end = loop {
            match rx.recv_timeout(self.stall) {
                Ok(Msg::Frame(frame)) => {
                    // A frame that does not decode (a corrupt MJPEG frame from a USB camera) is
                    // left out and counted; it must not cost the whole clip.
                    let Ok(picture) = self.picture(&mut out, &frame) else {
                        damaged += 1;
                        continue;
                    };
                    let start = *first.get_or_insert(frame.timestamp);
                    last = frame.timestamp.saturating_sub(start);
                    self.encode_picture(&mut out, picture, last)?;
                    frames += 1;
                }
                Ok(Msg::End(reason, taken)) => {
                    span = taken;
                    break reason;
                }
                Err(RecvTimeoutError::Timeout) => {
                    // The camera hangs: finish with what we have rather than hang with it.
                    self.stop.store(true, Ordering::SeqCst);
                    break EndReason::SourceStalled;
                }
                Err(RecvTimeoutError::Disconnected) => break EndReason::SourceFailed("capture thread ended".into()),
            }
        };
        if frames == 0 {
            drop(out);
            if !self.direct {
                let _ = std::fs::remove_file(tmp);
            }
            return Err(CaptureError::NoFrames(self.source.clone()));
        }
        out.encoder.send_eof().map_err(|e| self.err(e))?;
        self.drain(&mut out)?;
        out.octx.write_trailer().map_err(|e| self.err(e))?;
        drop(out);
        // Durable, then atomically in place (a direct output is neither on disk nor named).
        if !self.direct {
            std::fs::File::open(tmp).and_then(|f| f.sync_all()).map_err(|e| self.err(e))?;
            std::fs::rename(tmp, &self.out).map_err(|e| self.err(e))?;
            if let Some(dir) = self.out.parent().filter(|p| !p.as_os_str().is_empty()) {
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
        }
        let frame_time = Duration::from_secs(1) / self.settings.fps;
        let duration = last + frame_time;
        let short = matches!(end, EndReason::SourceEnded | EndReason::SourceFailed(_) | EndReason::SourceStalled)
            && duration + frame_time < self.requested;
        Ok(RecordReport {
            path: self.out.clone(),
            source: self.source.clone(),
            mode: self.mode,
            frames,
            dropped: self.dropped.load(Ordering::Relaxed),
            damaged,
            skipped: span.skipped(),
            sequence: span.first.map(|first| (first, span.last)),
            span: span.time,
            duration,
            requested: self.requested,
            end,
            short,
            bytes: std::fs::metadata(&self.out).map(|m| m.len()).unwrap_or(0),
        })
    }

    fn open_output(&self, tmp: &Path) -> Result<Output, CaptureError> {
        let s = &self.settings;
        let err = |e: ffmpeg_next::Error| self.err(e);
        let mut octx = format::output_as(&tmp, "mp4").map_err(err)?;
        let codec = encoder::find_by_name("libx264").ok_or_else(|| self.err("this FFmpeg has no libx264 encoder"))?;
        let global_header = octx.format().flags().contains(format::Flags::GLOBAL_HEADER);
        let mut enc = codec::context::Context::new_with_codec(codec).encoder().video().map_err(err)?;
        enc.set_width(s.width);
        enc.set_height(s.height);
        enc.set_format(Pixel::YUV420P);
        enc.set_time_base(TIME_BASE);
        enc.set_frame_rate(Some((s.fps as i32, 1)));
        enc.set_gop(s.fps * s.keyframe_secs);
        enc.set_threading(threading::Config::kind(threading::Type::Frame));
        if global_header {
            enc.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let mut opts = Dictionary::new();
        opts.set("preset", &s.preset);
        opts.set("crf", &s.crf.to_string());
        opts.set("maxrate", &s.max_bitrate.to_string());
        opts.set("bufsize", &(2 * s.max_bitrate).to_string());
        // No key frames beyond the fixed interval's (scene cuts would make the GOP irregular).
        opts.set("sc_threshold", "0");
        let encoder = enc.open_as_with(codec, opts).map_err(err)?;
        {
            let mut ost = octx.add_stream(codec).map_err(err)?;
            ost.set_parameters(&encoder);
            ost.set_time_base(TIME_BASE);
            ost.set_avg_frame_rate((s.fps as i32, 1));
            ost.set_rate((s.fps as i32, 1));
        }
        let mut mux = Dictionary::new();
        mux.set("movflags", "+faststart");
        octx.write_header_with(mux).map_err(err)?;
        let stream_tb = octx.stream(0).map(|st| st.time_base()).unwrap_or(TIME_BASE);
        Ok(Output { octx, encoder, stream_tb, scaler: None, last_pts: None })
    }

    /// The frame as the encoder takes it: YUV420P at the clip's size.
    fn picture(&self, out: &mut Output, frame: &Frame) -> Result<ffmpeg_next::frame::Video, CaptureError> {
        let s = &self.settings;
        let src = to_av(frame)?;
        if src.format() == Pixel::YUV420P && src.width() == s.width && src.height() == s.height {
            Ok(src)
        } else {
            Scaler::convert(&mut out.scaler, &src, Pixel::YUV420P, s.width, s.height)
        }
    }

    fn encode_picture(
        &self,
        out: &mut Output,
        mut yuv: ffmpeg_next::frame::Video,
        since_start: Duration,
    ) -> Result<(), CaptureError> {
        let mut pts = (since_start.as_secs_f64() * TIME_BASE.1 as f64).round() as i64;
        if let Some(last) = out.last_pts {
            // Capture clocks can repeat a value; presentation times must strictly increase.
            pts = pts.max(last + 1);
        }
        out.last_pts = Some(pts);
        yuv.set_pts(Some(pts));
        out.encoder.send_frame(&yuv).map_err(|e| self.err(e))?;
        self.drain(out)
    }

    fn drain(&self, out: &mut Output) -> Result<(), CaptureError> {
        let mut packet = Packet::empty();
        while out.encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(0);
            packet.rescale_ts(TIME_BASE, out.stream_tb);
            packet.write_interleaved(&mut out.octx).map_err(|e| self.err(e))?;
        }
        Ok(())
    }
}
