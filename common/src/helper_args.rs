//! The arguments of `kiosk-agent cameras` and `capture still|video`. The commands themselves run
//! in the `kiosk-agent-capture` helper, which links FFmpeg and V4L2 (see `kiosk_agent::helper`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;

use crate::capture::Role;

/// The commands the capture helper runs: `kiosk-agent` hands them over with its own arguments,
/// and the helper parses only these (see `kiosk_agent::helper`).
#[derive(Debug, Subcommand)]
pub enum HelperCommand {
    /// List the cameras present and the configured camera roles.
    Cameras,
    /// Take a still or record a clip.
    Capture {
        #[command(subcommand)]
        command: CaptureCommand,
    },
    /// Capture the demo's evidence into a directory (run by `demo` through the helper).
    #[command(hide = true)]
    DemoEvidence {
        /// Where to write the evidence.
        #[arg(long)]
        dir: PathBuf,
        /// The camera instead of the synthetic one.
        #[arg(long)]
        camera: Option<String>,
        /// Length of the clip.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Probe the video on standard input and print what it holds as JSON (run by `enroll`
    /// through the helper, which links FFmpeg).
    #[command(hide = true)]
    ProbeVideo,
    /// Wait, FFmpeg loaded, on the listening socket given as standard input for one probe
    /// request (the file passed with `SCM_RIGHTS`), answer it and exit (kept ready by `run`).
    #[command(hide = true)]
    ProbeStandby,
    /// The long-lived capture service behind the API's camera routes (run by `run` through the
    /// helper, or its own unit): HTTP on a Unix socket (0660), stills and clips kept in memory.
    #[command(hide = true)]
    CaptureService {
        /// The Unix socket to serve on.
        #[arg(long)]
        socket: PathBuf,
        /// A still or clip no enrollment took is forgotten after this many seconds unused.
        #[arg(long, default_value_t = 900)]
        keep_secs: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaptureCommand {
    /// Take a still: warm up, keep the sharpest frame, judge its quality, write a JPEG.
    Still {
        /// Source: `v4l2:/dev/videoN`, `camera:N`, `synthetic[:WxH@FPS]` or `file:PATH` (default: the
        /// role's configured camera).
        #[arg(long)]
        camera: Option<String>,
        /// Which thresholds (and default camera) apply.
        #[arg(long, value_enum)]
        role: Role,
        /// Where to write the JPEG (0600).
        #[arg(long)]
        out: PathBuf,
        /// Also write the document's photo, cut around the face found on this still (a document
        /// front); exit 2 when there is no face on it.
        #[arg(long, value_name = "PATH")]
        photo_out: Option<PathBuf>,
        /// Also write the whole camera frame (0600): the frame a document was cut out of, when
        /// cameras.document.card cut one; otherwise the same image as --out.
        #[arg(long, value_name = "PATH")]
        full_frame_out: Option<PathBuf>,
        /// Wait for a good moment and take the still by itself: the preview is judged a few
        /// times a second (hints go to stderr) until it has needed no hint for
        /// capture.auto_steady_ms.
        #[arg(long)]
        auto: bool,
        /// With --auto: give up after this many seconds (exit 1, saying what was still wrong).
        #[arg(long, requires = "auto", value_name = "SECONDS", default_value_t = 30.0,
              value_parser = parse_timeout)]
        timeout: f64,
        /// Print the metrics and verdict as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Record an H.264/MP4 clip.
    Video {
        /// Source, as for `still` (default: the face camera).
        #[arg(long)]
        camera: Option<String>,
        /// Length of the clip, at most capture.video.max_seconds.
        #[arg(long)]
        seconds: f64,
        /// Where to write the MP4 (0600).
        #[arg(long)]
        out: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `--timeout`: seconds, more than 0 and at most an hour.
fn parse_timeout(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 3600.0 => Ok(s),
        _ => Err(format!("must be seconds, more than 0 and at most 3600, not {text:?}")),
    }
}

/// Writes `bytes` to `path` durably and atomically (temporary file, fsync, rename).
pub fn write_durably(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).with_context(|| format!("cannot write {}", path.display()))?;
    crate::fsutil::sync_dir(dir)?;
    Ok(())
}
