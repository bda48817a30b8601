//! Recording proofs: decode what was recorded and check it frame by frame.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ffmpeg_next::{codec, format, frame, media};
use kiosk_capture::memory::Frames;
use kiosk_capture::record::{record, EndReason, RecordReport, Recorder};
use kiosk_capture::synthetic::Synthetic;
use kiosk_capture::VideoConfig;
use kiosk_capture::{convert, CaptureError, Frame, FrameSource, PixelFormat};

/// Recording tests share the machine's two cores; running them one at a time keeps a paced
/// source from being starved by a neighbour test.
static HEAVY: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a decoder sees in a recorded file.
#[derive(Debug)]
struct Probe {
    codec: codec::Id,
    pixel: ffmpeg_next::format::Pixel,
    width: u32,
    height: u32,
    avg_fps: f64,
    duration: f64,
    /// (frame number, capture µs) read back from each decoded frame's pixels.
    stamps: Vec<(u64, u64)>,
    /// Presentation times (s) of the key frames.
    keyframes: Vec<f64>,
}

fn probe(path: &Path) -> Probe {
    kiosk_capture::init_ffmpeg();
    let mut input = format::input(&path).unwrap();
    let stream = input.streams().best(media::Type::Video).unwrap();
    let index = stream.index();
    let tb = stream.time_base();
    let rate = stream.avg_frame_rate();
    let avg_fps = rate.numerator() as f64 / rate.denominator() as f64;
    let duration = stream.duration() as f64 * tb.numerator() as f64 / tb.denominator() as f64;
    let params = stream.parameters();
    let codec_id = params.id();
    let mut decoder = codec::context::Context::from_parameters(params).unwrap().decoder().video().unwrap();
    let (width, height, pixel) = (decoder.width(), decoder.height(), decoder.format());
    let mut stamps = Vec::new();
    let mut keyframes = Vec::new();
    let mut take = |decoder: &mut ffmpeg_next::decoder::Video| {
        let mut f = frame::Video::empty();
        while decoder.receive_frame(&mut f).is_ok() {
            let ours = convert::from_av(&f, PixelFormat::Yuv420p, 0, Duration::ZERO);
            stamps.push(Synthetic::read_stamp(&ours.data, f.width() as usize));
        }
    };
    for (s, packet) in input.packets() {
        if s.index() == index {
            if packet.is_key() {
                keyframes.push(packet.pts().unwrap_or(0) as f64 * tb.numerator() as f64 / tb.denominator() as f64);
            }
            decoder.send_packet(&packet).unwrap();
            take(&mut decoder);
        }
    }
    decoder.send_eof().unwrap();
    take(&mut decoder);
    Probe { codec: codec_id, pixel, width, height, avg_fps, duration, stamps, keyframes }
}

/// Top-level ISO-BMFF box types in file order.
fn top_level_boxes(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let (mut i, mut out) = (0usize, Vec::new());
    while i + 8 <= bytes.len() {
        let mut size = u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap()) as u64;
        if size == 1 {
            size = u64::from_be_bytes(bytes[i + 8..i + 16].try_into().unwrap());
        }
        out.push(String::from_utf8_lossy(&bytes[i + 4..i + 8]).into_owned());
        if size < 8 {
            break;
        }
        i += size as usize;
    }
    out
}

fn synthetic(w: u32, h: u32, fps: u32) -> impl FnOnce() -> Result<Box<dyn FrameSource>, CaptureError> + Send {
    move || Ok(Box::new(Synthetic::new(w, h, fps)?) as Box<dyn FrameSource>)
}

#[test]
fn a_paced_ten_second_recording_keeps_every_frame_in_order() {
    let _heavy = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("clip.mp4");
    let settings = VideoConfig::default();
    let report = record(synthetic(1280, 720, 30), &out, &settings, Duration::from_secs(10)).unwrap();
    assert_eq!(report.end, EndReason::Completed);
    assert_eq!(report.dropped, 0, "{report:?}");
    assert!(!report.short);
    assert_eq!(report.frames, 300, "{report:?}");

    let p = probe(&out);
    assert_eq!(p.codec, codec::Id::H264);
    assert_eq!(p.pixel, ffmpeg_next::format::Pixel::YUV420P);
    assert_eq!((p.width, p.height), (1280, 720));
    assert!((p.avg_fps - 30.0).abs() < 0.5, "average frame rate {}", p.avg_fps);
    assert!((p.duration - 10.0).abs() <= 1.0 / 30.0 + 1e-6, "duration {} s", p.duration);
    let numbers: Vec<u64> = p.stamps.iter().map(|s| s.0).collect();
    assert_eq!(numbers, (0..300).collect::<Vec<u64>>(), "no frame lost, duplicated or out of order");
    // Capture times increase with the frame numbers and span the ten seconds.
    assert!(p.stamps.windows(2).all(|w| w[1].1 > w[0].1));
    // A key frame every 2 s, on capture time: at 0, 2, 4, 6 and 8 s (within a frame).
    assert_eq!(p.keyframes.len(), 5, "{:?}", p.keyframes);
    for (i, t) in p.keyframes.iter().enumerate() {
        assert!((t - 2.0 * i as f64).abs() <= 1.0 / 30.0 + 0.01, "key frames at {:?}", p.keyframes);
    }
    let boxes = top_level_boxes(&out);
    let (moov, mdat) =
        (boxes.iter().position(|b| b == "moov").unwrap(), boxes.iter().position(|b| b == "mdat").unwrap());
    assert!(moov < mdat, "faststart: moov before mdat in {boxes:?}");
    assert_eq!(report.bytes, std::fs::metadata(&out).unwrap().len());
}

fn stamped_frames(n: u64, w: u32, h: u32) -> Vec<Frame> {
    let mut s = Synthetic::new(w, h, 30).unwrap().unpaced();
    (0..n).map(|_| s.next_frame().unwrap().unwrap()).collect()
}

fn small_settings() -> VideoConfig {
    VideoConfig { width: 320, height: 240, ..VideoConfig::default() }
}

/// Records `frames` (held in memory, at 30 fps) into `out`, asking for 5 s.
fn record_frames(frames: Vec<Frame>, out: &Path) -> RecordReport {
    record(
        move || Ok(Box::new(Frames::new(frames, 30)) as Box<dyn FrameSource>),
        out,
        &small_settings(),
        Duration::from_secs(5),
    )
    .unwrap()
}

#[test]
fn a_source_that_ends_early_gives_a_valid_short_clip() {
    let _heavy = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("short.mp4");
    let frames = stamped_frames(20, 320, 240);
    let report = record_frames(frames, &out);
    assert_eq!(report.end, EndReason::SourceEnded);
    assert!(report.short && report.frames == 20, "{report:?}");
    let p = probe(&out);
    assert_eq!(p.stamps.iter().map(|s| s.0).collect::<Vec<_>>(), (0..20).collect::<Vec<_>>());
}

#[test]
fn a_source_that_fails_mid_way_gives_a_valid_short_clip() {
    let _heavy = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("failed.mp4");
    let frames = stamped_frames(15, 320, 240);
    let report = record(
        move || Ok(Box::new(Frames::new(frames, 30).then_fail("USB device disconnected")) as Box<dyn FrameSource>),
        &out,
        &small_settings(),
        Duration::from_secs(5),
    )
    .unwrap();
    assert!(matches!(&report.end, EndReason::SourceFailed(r) if r.contains("USB device disconnected")), "{report:?}");
    assert!(report.short);
    assert_eq!(probe(&out).stamps.len(), 15);
}

/// Delivers some frames, then blocks forever, like a camera whose driver hangs.
struct Hanging {
    frames: Vec<Frame>,
}

impl FrameSource for Hanging {
    fn name(&self) -> String {
        "hanging".into()
    }
    fn format(&self) -> (u32, u32, PixelFormat) {
        (320, 240, PixelFormat::Rgb24)
    }
    fn fps(&self) -> u32 {
        30
    }
    fn is_live(&self) -> bool {
        true
    }
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        match self.frames.pop() {
            Some(f) => Ok(Some(f)),
            None => loop {
                std::thread::park();
            },
        }
    }
}

#[test]
fn a_source_that_hangs_is_finalized_not_waited_for() {
    let _heavy = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stalled.mp4");
    let mut frames = stamped_frames(10, 320, 240);
    frames.reverse();
    let started = Instant::now();
    let report = record(
        move || Ok(Box::new(Hanging { frames }) as Box<dyn FrameSource>),
        &out,
        &small_settings(),
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(report.end, EndReason::SourceStalled);
    assert!(report.short);
    // Bounded by the stall timeout, not by the 30 s asked for (a bound against a hang, generous).
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(probe(&out).stamps.len(), 10);
}

#[test]
fn stop_from_code_and_the_maximum_duration_end_a_recording() {
    let _heavy = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stopped.mp4");
    let recorder = Recorder::start(synthetic(320, 240, 30), &out, &small_settings(), Duration::from_secs(60)).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let report = recorder.stop().unwrap();
    assert_eq!(report.end, EndReason::Stopped);
    assert!(!report.short && report.frames > 5 && report.duration < Duration::from_secs(60), "{report:?}");
    assert_eq!(probe(&out).stamps.len() as u64, report.frames);

    let capped = dir.path().join("capped.mp4");
    let settings = VideoConfig { max_duration: Duration::from_secs(1), ..small_settings() };
    let report = record(synthetic(320, 240, 30), &capped, &settings, Duration::from_secs(30)).unwrap();
    assert_eq!(report.end, EndReason::Completed);
    assert_eq!(report.frames, 30);
    assert_eq!(report.requested, Duration::from_secs(1));
}

#[test]
fn nothing_to_record_leaves_no_file_and_bad_settings_are_named() {
    let _heavy = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("empty.mp4");
    let err = record(
        || Ok(Box::new(Frames::new(vec![], 30)) as Box<dyn FrameSource>),
        &out,
        &small_settings(),
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert!(matches!(err, CaptureError::NoFrames(_)), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no file and no temporary left");

    let bad = VideoConfig { preset: "warp".into(), ..small_settings() };
    let err = record(synthetic(320, 240, 30), &out, &bad, Duration::from_secs(1)).unwrap_err().to_string();
    assert!(err.contains("preset") && err.contains("warp"), "{err}");
    let err = record(
        || kiosk_capture::open("v4l2:/dev/video99", Default::default()),
        &out,
        &small_settings(),
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert!(err.is_bad_input() && err.to_string().contains("/dev/video99"), "{err}");
}

#[test]
fn recording_from_a_file_is_unpaced_and_drops_nothing() {
    let _heavy = serial();
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.mp4");
    let frames = stamped_frames(45, 320, 240);
    record(
        move || Ok(Box::new(Frames::new(frames, 30)) as Box<dyn FrameSource>),
        &first,
        &small_settings(),
        Duration::from_secs(10),
    )
    .unwrap();
    // Replay the recorded file through the file source into a second clip.
    let second = dir.path().join("second.mp4");
    let path = first.clone();
    let report = record(
        move || kiosk_capture::open(&format!("file:{}", path.display()), Default::default()),
        &second,
        &small_settings(),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!((report.frames, report.dropped), (45, 0), "{report:?}");
    assert_eq!(probe(&second).stamps.iter().map(|s| s.0).collect::<Vec<_>>(), (0..45).collect::<Vec<_>>());
}

/// A camera that skips frames (its driver had no free buffer, or delivered one damaged) leaves
/// gaps in its frame numbers: the report counts them, and frames, drops and skips add up to
/// the span of numbers the clip covers.
#[test]
fn frames_the_source_skipped_are_counted_from_its_frame_numbers() {
    let _heavy = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gaps.mp4");
    // Numbered from 100 (a driver's count does not restart with the clip), 4 numbers missing.
    let frames: Vec<Frame> = stamped_frames(30, 320, 240)
        .into_iter()
        .filter(|f| ![3, 4, 17, 25].contains(&f.index))
        .map(|f| Frame { index: f.index + 100, ..f })
        .collect();
    let report = record_frames(frames, &out);
    assert_eq!((report.frames, report.dropped, report.skipped), (26, 0, 4), "{report:?}");
    assert_eq!(report.sequence, Some((100, 129)));
    assert_eq!(report.span, Duration::from_secs(29) / 30, "the last frame's time on the source's clock");
    assert_eq!(probe(&out).stamps.len(), 26);
}

/// A frame that does not decode (a USB camera's corrupt MJPEG frame) is left out and counted;
/// the clip holds the others.
#[test]
fn a_corrupt_mjpeg_frame_is_left_out_not_the_clip() {
    let _heavy = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mjpeg.mp4");
    let mut frames: Vec<Frame> = stamped_frames(20, 320, 240)
        .into_iter()
        .map(|f| Frame { format: PixelFormat::Mjpeg, data: kiosk_capture::jpeg::encode(&f, 85).unwrap(), ..f })
        .collect();
    frames[7].data = vec![0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x02, 0x13, 0x37];
    let report = record_frames(frames, &out);
    assert_eq!((report.frames, report.damaged, report.skipped), (19, 1, 0), "{report:?}");
    let stamps: Vec<u64> = probe(&out).stamps.iter().map(|s| s.0).collect();
    assert_eq!(stamps, (0..20).filter(|i| *i != 7).collect::<Vec<_>>());
}
