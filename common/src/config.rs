//! The configuration file's shared part: how a problem is reported, why a file could not be
//! used, and the raw `[cameras.*]`/`[capture]` sections. The agent validates the whole file
//! (`kiosk_agent::config`) with these same types; [`crate::capture::load_capture`] reads only
//! the sections the capture helper needs.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// Environment variable naming the configuration file when `--config` is not given.
pub const CONFIG_ENV: &str = "KIOSK_AGENT_CONFIG";

/// One thing wrong with a configuration: the dotted key and what rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("configuration is not valid TOML: {0}")]
    Parse(String),
    #[error("configuration has {} problem(s):\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCameras {
    pub document: Option<RawCameraRole>,
    pub face: Option<RawCameraRole>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCameraRole {
    pub source: Option<String>,
    /// `id1`, `td3` or `off` (the document camera only).
    pub card: Option<String>,
    /// With `card`: keep the uncut frame too, for the operator's review.
    pub keep_full_frame: Option<bool>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<u32>,
    pub quality: Option<RawQuality>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuality {
    pub min_sharpness: Option<f64>,
    pub min_brightness: Option<f64>,
    pub max_brightness: Option<f64>,
    pub max_glare: Option<f64>,
    pub min_width: Option<u32>,
    pub min_height: Option<u32>,
    pub min_face_width: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapture {
    pub jpeg_quality: Option<u8>,
    pub warmup_frames: Option<usize>,
    pub candidates: Option<usize>,
    pub auto_steady_ms: Option<u64>,
    pub video: Option<RawVideo>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVideo {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<u32>,
    pub crf: Option<u8>,
    pub max_bitrate: Option<u64>,
    pub preset: Option<String>,
    pub keyframe_secs: Option<u32>,
    pub max_seconds: Option<u64>,
}
