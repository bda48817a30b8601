//! The arguments of `kiosk-agent cameras` and `capture still|video`. The commands themselves run
//! in the `kiosk-agent-capture` helper, which links FFmpeg and V4L2 (see `crate::helper`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;

use crate::config::Role;

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
