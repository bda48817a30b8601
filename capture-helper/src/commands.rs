//! `cameras`, `capture still …`, `capture video …`: the commands behind the helper.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use kiosk_common::video::{VideoFacts, SEALED_KEY_VAR};

use crate::report::{ClipReport, StillReport};
use kiosk_capture::record::{RecordReport, Recorder};
use kiosk_capture::still::{capture_still, Still};
use kiosk_common::capture::{CaptureConfig, Role};
use kiosk_common::helper_args::{write_durably, CaptureCommand};
use kiosk_common::BadInput;

/// Takes a still for `role` from `camera` (or the role's configured source).
pub fn take_still(cfg: &CaptureConfig, role: Role, camera: Option<&str>) -> Result<Still, kiosk_capture::CaptureError> {
    let r = cfg.role(role);
    let mut source = kiosk_capture::open(camera.unwrap_or(&r.source), r.request)?;
    let mut still = capture_still(source.as_mut(), &cfg.still, &r.thresholds)?;
    cut_if_configured(&mut still, cfg, role)?;
    Ok(still)
}

/// Waits up to `timeout` seconds for a good moment in front of `role`'s camera and takes the
/// still then (cut, for a document camera that cuts); hints go to stderr as they change.
/// Returns the still and when the good moment began.
pub fn take_still_auto(
    cfg: &CaptureConfig,
    role: Role,
    camera: Option<&str>,
    timeout: f64,
) -> anyhow::Result<(Still, Duration)> {
    let r = cfg.role(role);
    let mut source = kiosk_capture::open(camera.unwrap_or(&r.source), r.request)?;
    let card = r.card.filter(|_| role == Role::Document);
    let mut shown = None;
    let outcome = kiosk_capture::auto::capture_auto(
        source.as_mut(),
        &cfg.still,
        &r.thresholds,
        card,
        Duration::from_secs_f64(timeout),
        |g| {
            let words: Vec<&str> = g.hints.iter().map(|h| h.words()).collect();
            let line = if words.is_empty() { "good, hold it there".to_owned() } else { words.join("; ") };
            if shown.as_ref() != Some(&line) {
                eprintln!("capture still --auto: {line}");
                shown = Some(line);
            }
            true
        },
    )?;
    match outcome {
        kiosk_capture::auto::Auto::Taken { still, ready_since } => Ok((*still, ready_since)),
        kiosk_capture::auto::Auto::TimedOut { waited, hints } => Err(anyhow::anyhow!(
            "capture still --auto: no good moment within {:.1} s; still wrong: {}",
            waited.as_secs_f64(),
            hints.join("; ")
        )),
        kiosk_capture::auto::Auto::Cancelled => unreachable!("the CLI waits until the timeout"),
    }
}

/// Cuts the document out of a document still when the role says which document it shows.
pub fn cut_if_configured(
    still: &mut Still,
    cfg: &CaptureConfig,
    role: Role,
) -> Result<(), kiosk_capture::CaptureError> {
    match cfg.role(role).card {
        Some(format) if role == Role::Document => {
            kiosk_capture::still::cut_document(still, format, cfg.still.jpeg_quality)
        }
        _ => Ok(()),
    }
}

/// The JSON `capture still --json` prints.
pub fn still_json(still: &Still, role: Role, path: &Path) -> StillReport {
    StillReport { path: Some(path.to_owned()), ..StillReport::new(still, role) }
}

/// One line per still for people: the verdict and the figures behind it.
pub fn still_line(still: &Still) -> String {
    let m = &still.metrics;
    let verdict = if still.verdict.is_pass() {
        "pass".to_owned()
    } else {
        format!("RETAKE ({})", still.verdict.reasons().join("; "))
    };
    format!(
        "{}x{} (camera mode {})  sharpness {:.0}  brightness {:.0}  glare {:.2}%  → {verdict}",
        m.width,
        m.height,
        still.mode,
        m.sharpness,
        m.brightness,
        m.glare * 100.0
    )
}

/// Records `seconds` of video from `camera` (or the face camera) into `out`.
pub fn take_video(cfg: &CaptureConfig, camera: Option<&str>, seconds: f64, out: &Path) -> anyhow::Result<RecordReport> {
    let max = cfg.video.max_duration.as_secs_f64();
    if !(seconds > 0.0 && seconds <= max) {
        return Err(BadInput(format!(
            "--seconds: must be more than 0 and at most {max} (capture.video.max_seconds), not {seconds}"
        ))
        .into());
    }
    let spec = camera.unwrap_or(&cfg.face.source).to_owned();
    let wanted = kiosk_capture::CameraMode { width: cfg.video.width, height: cfg.video.height, fps: cfg.video.fps };
    let length = Duration::from_secs_f64(seconds);
    let recorder = Recorder::start(move || kiosk_capture::open(&spec, wanted), out, &cfg.video.clone(), length)?;
    // From the moment the camera is open: a bar at a terminal, lines in a log.
    let started = std::time::Instant::now();
    let progress = kiosk_common::progress::Progress::new(
        "capture video: recording",
        length.as_millis() as u64,
        kiosk_common::progress::Unit::Millis,
    );
    while !recorder.is_finished() {
        progress.set((started.elapsed().min(length)).as_millis() as u64);
        std::thread::sleep(Duration::from_millis(100));
    }
    progress.finish();
    Ok(recorder.wait()?)
}

pub fn run(cfg: &CaptureConfig, command: CaptureCommand) -> anyhow::Result<ExitCode> {
    match command {
        CaptureCommand::Still { camera, role, out, photo_out, full_frame_out, auto, timeout, json } => {
            let (still, ready_since) = if auto {
                let (still, ready_since) = take_still_auto(cfg, role, camera.as_deref(), timeout)?;
                (still, Some(ready_since))
            } else {
                (take_still(cfg, role, camera.as_deref())?, None)
            };
            // The photo first: a front without a face fails before anything is written.
            let photo = match &photo_out {
                Some(_) => Some(
                    kiosk_capture::faces::document_photo(&still.frame)
                        .and_then(|p| kiosk_capture::jpeg::encode(&p, cfg.still.jpeg_quality))
                        .map_err(|e| BadInput(e.to_string()))?,
                ),
                None => None,
            };
            write_durably(&out, &still.jpeg)?;
            if let (Some(path), Some(jpeg)) = (&photo_out, &photo) {
                write_durably(path, jpeg)?;
            }
            if let Some(path) = &full_frame_out {
                write_durably(path, still.uncut.as_deref().unwrap_or(&still.jpeg))?;
            }
            if json {
                let mut report = still_json(&still, role, &out);
                report.ready_since_ms = ready_since.map(|t| t.as_millis() as u64);
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{}: {}", out.display(), still_line(&still));
            }
        }
        CaptureCommand::Video { camera, seconds, out, json } => {
            let report = take_video(cfg, camera.as_deref(), seconds, &out)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&ClipReport::of_file(&report))?);
            } else {
                println!(
                    "{}: {} frames, {:.2} s, {} dropped, {} damaged, {} skipped by the camera, {} bytes{}",
                    report.path.display(),
                    report.frames,
                    report.duration.as_secs_f64(),
                    report.dropped,
                    report.damaged,
                    report.skipped,
                    report.bytes,
                    if report.short {
                        format!(" — SHORT: the source gave out ({:?})", report.end)
                    } else {
                        String::new()
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `kiosk-agent cameras`: the devices present and the configured roles.
pub fn cameras(cfg: &CaptureConfig, from: &str) -> anyhow::Result<ExitCode> {
    let devices = kiosk_capture::camera::list().map_err(|e| anyhow::anyhow!(e))?;
    if devices.is_empty() {
        println!("No cameras found: there are no V4L2 video devices (/dev/video*) on this machine.");
    } else {
        println!("Cameras:");
        for d in &devices {
            println!("  {}  {}", d.path, d.name);
            if let Some(e) = &d.error {
                println!("    cannot query formats: {e}");
            }
            // One line per format and size, with its rates: `YUYV 1280x720 @ 1, 2, 5, 10, 12.5 fps`.
            let mut i = 0;
            while i < d.modes.len() {
                let m = &d.modes[i];
                let same: Vec<&kiosk_capture::camera::DriverMode> = d.modes[i..]
                    .iter()
                    .take_while(|n| (n.fourcc.as_str(), n.width, n.height) == (m.fourcc.as_str(), m.width, m.height))
                    .collect();
                let rates: Vec<String> = same.iter().map(|n| format!("{}", n.fps())).collect();
                let usable = if same.iter().any(|n| n.usable().is_some()) { "" } else { "  (not used here)" };
                println!("    {:<6} {}x{} @ {} fps{usable}", m.fourcc, m.width, m.height, rates.join(", "));
                i += same.len();
            }
        }
    }
    println!("\nRoles ({from}):");
    for role in Role::ALL {
        let r = cfg.role(role);
        let t = &r.thresholds;
        println!(
            "  {:<9} {}  {}x{} @ {} fps  (min sharpness {}, brightness {}-{}, max glare {}%, min {}x{})",
            role.as_str(),
            r.source,
            r.request.width,
            r.request.height,
            r.request.fps,
            t.min_sharpness,
            t.min_brightness,
            t.max_brightness,
            t.max_glare * 100.0,
            t.min_width,
            t.min_height
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Packets read before a video whose first frame will not decode is refused.
const PROBE_MAX_PACKETS: usize = 600;

/// `probe-video`: the video is this process's standard input, a file `enroll` opened once and
/// checked; reopening it through `/dev/stdin` reaches that same file, never a path that could
/// have been swapped.
///
/// With a key in [`SEALED_KEY_VAR`] the file is a sealed spill: FFmpeg's `crypto:` protocol
/// decrypts it as it reads (seeking included), so its clear text exists only in this process.
pub fn probe_video() -> anyhow::Result<ExitCode> {
    let sealed = std::env::var(SEALED_KEY_VAR).ok();
    // Nothing here needs it in the environment after this line.
    std::env::remove_var(SEALED_KEY_VAR);
    if sealed.as_deref().is_some_and(|k| !kiosk_common::video::is_sealed_key(k)) {
        return Err(BadInput(format!("{SEALED_KEY_VAR} must be 64 hex digits (AES-128 key and IV)")).into());
    }
    let facts = probe_file(Path::new("/dev/stdin"), sealed.as_deref())?;
    println!("{}", serde_json::to_string(&facts).expect("plain values serialize"));
    Ok(ExitCode::SUCCESS)
}

/// The facts of the video at `path` (a sealed spill under the hex key `sealed`), or the rule
/// it breaks, for `probe-video` and `probe-standby` alike.
pub fn probe_file(path: &Path, sealed: Option<&str>) -> Result<VideoFacts, BadInput> {
    let facts = kiosk_capture::file::probe(path, sealed, PROBE_MAX_PACKETS).map_err(|e| BadInput(e.to_string()))?;
    Ok(VideoFacts {
        container: facts.container,
        codec: facts.codec,
        width: facts.width,
        height: facts.height,
        duration_secs: facts.duration.as_secs_f64(),
    })
}
