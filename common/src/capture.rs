//! The `[cameras.*]` and `[capture]` sections: camera roles, still and video settings.
//!
//! Validated separately from the rest, so `capture` commands work with no configuration file or
//! with one that only describes the cameras. The capture crate takes these very types, and the
//! agent validates them without linking it (FFmpeg, V4L2), which only the helper does.

use std::time::Duration;

/// The x264 presets, fastest first.
pub const PRESETS: [&str; 9] =
    ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"];

/// What a camera is asked for; the source comes as close as it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CameraMode {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

impl Default for CameraMode {
    fn default() -> Self {
        CameraMode { width: 1280, height: 720, fps: 30 }
    }
}

/// What a role requires of its stills (see `kiosk_capture::metrics`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quality {
    pub min_sharpness: f64,
    pub min_brightness: f64,
    pub max_brightness: f64,
    pub max_glare: f64,
    pub min_width: u32,
    pub min_height: u32,
    /// Selfies only: the face must be found, alone, and at least this wide in pixels.
    pub min_face_width: Option<u32>,
}

impl Quality {
    /// Defaults for ID documents: sharp text, no glare, at least 1280×720.
    pub const DOCUMENT: Quality = Quality {
        min_sharpness: 100.0,
        min_brightness: 60.0,
        max_brightness: 200.0,
        max_glare: 0.01,
        min_width: 1280,
        min_height: 720,
        min_face_width: None,
    };
    /// Defaults for faces: softer edges, a little shine tolerated, at least 640×480.
    pub const FACE: Quality = Quality {
        min_sharpness: 30.0,
        min_brightness: 60.0,
        max_brightness: 200.0,
        max_glare: 0.03,
        min_width: 640,
        min_height: 480,
        min_face_width: Some(150),
    };
}

/// How stills are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StillConfig {
    /// Frames discarded first while auto-exposure and focus settle.
    pub warmup_frames: usize,
    /// Of the frames after warm-up, how many are compared for sharpness.
    pub candidates: usize,
    /// JPEG quality, 1–100.
    pub jpeg_quality: u8,
    /// Auto-capture: how long the preview must have been good, without a break, before the
    /// still is taken by itself.
    pub auto_steady: Duration,
}

impl Default for StillConfig {
    fn default() -> Self {
        StillConfig { warmup_frames: 10, candidates: 5, jpeg_quality: 90, auto_steady: Duration::from_millis(700) }
    }
}

/// How clips are encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoConfig {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub crf: u8,
    pub max_bitrate: u64,
    pub preset: String,
    pub keyframe_secs: u32,
    pub max_duration: Duration,
}

impl Default for VideoConfig {
    fn default() -> Self {
        VideoConfig {
            width: 1280,
            height: 720,
            fps: 30,
            crf: 23,
            max_bitrate: 4_000_000,
            preset: "veryfast".into(),
            keyframe_secs: 2,
            max_duration: Duration::from_secs(120),
        }
    }
}

use crate::config::{ConfigError, Problem, RawCameraRole, RawCameras, RawCapture};

/// Which camera a still is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Document,
    Face,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Document, Role::Face];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Document => "document",
            Role::Face => "face",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that names no camera role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is no camera role; \"document\" or \"face\"")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// One camera role: where frames come from, what size, what quality is required.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraRole {
    pub source: String,
    pub request: CameraMode,
    pub thresholds: Quality,
    /// The document camera's stills are searched for a document of this format and cut out
    /// of the frame, straightened (`None`: the whole frame is kept).
    pub card: Option<CardFormat>,
    /// With `card`: the uncut camera frame is kept beside the cut, for the operator's review.
    pub keep_full_frame: bool,
}

/// Which document the document camera is shown: its outline fixes the cut's aspect ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CardFormat {
    /// ISO/IEC 7810 ID-1, 85.60 × 53.98 mm: identity cards, driving licences.
    #[default]
    Id1,
    /// ICAO 9303 TD3, 125 × 88 mm: a passport's data page.
    Td3,
}

impl CardFormat {
    /// Width and height in millimetres.
    pub fn size_mm(self) -> (f64, f64) {
        match self {
            CardFormat::Id1 => (85.60, 53.98),
            CardFormat::Td3 => (125.0, 88.0),
        }
    }

    pub fn aspect(self) -> f64 {
        let (w, h) = self.size_mm();
        w / h
    }

    pub fn name(self) -> &'static str {
        match self {
            CardFormat::Id1 => "id1",
            CardFormat::Td3 => "td3",
        }
    }
}

/// The rule for `cameras.document.card`.
pub const CARD_RULE: &str =
    "must be \"id1\" (an identity card, 85.60 x 53.98 mm), \"td3\" (a passport's data page) or \"off\" (the whole frame)";

impl std::str::FromStr for CardFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "id1" => Ok(CardFormat::Id1),
            "td3" => Ok(CardFormat::Td3),
            _ => Err(CARD_RULE.into()),
        }
    }
}

/// Everything capture needs.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureConfig {
    pub document: CameraRole,
    pub face: CameraRole,
    pub still: StillConfig,
    pub video: VideoConfig,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        validate_capture(None, None).expect("defaults are valid")
    }
}

impl CaptureConfig {
    pub fn role(&self, role: Role) -> &CameraRole {
        match role {
            Role::Document => &self.document,
            Role::Face => &self.face,
        }
    }
}

/// Validates the capture sections; `None` means "not in the file": defaults.
pub fn validate_capture(
    cameras: Option<RawCameras>,
    capture: Option<RawCapture>,
) -> Result<CaptureConfig, Vec<Problem>> {
    let mut problems = Vec::new();
    let cameras = cameras.unwrap_or_default();
    let document = role(
        "cameras.document",
        cameras.document,
        CameraMode { width: 1920, height: 1080, fps: 30 },
        Quality::DOCUMENT,
        &mut problems,
    );
    let face = role(
        "cameras.face",
        cameras.face,
        CameraMode { width: 1280, height: 720, fps: 30 },
        Quality::FACE,
        &mut problems,
    );

    let c = capture.unwrap_or_default();
    let mut problem = |key: &str, message: String| problems.push(Problem { key: key.into(), message });
    let still = StillConfig::default();
    let jpeg_quality = match c.jpeg_quality {
        None => still.jpeg_quality,
        Some(q) if (1..=100).contains(&q) => q,
        Some(q) => {
            problem("capture.jpeg_quality", format!("must be 1-100, not {q}"));
            90
        }
    };
    let candidates = match c.candidates {
        None => 5,
        Some(n) if (1..=60).contains(&n) => n,
        Some(n) => {
            problem("capture.candidates", format!("must be 1-60, not {n}"));
            5
        }
    };
    let warmup_frames = match c.warmup_frames {
        Some(n) if n > 600 => {
            problem("capture.warmup_frames", format!("must be at most 600, not {n}"));
            10
        }
        n => n.unwrap_or(10),
    };
    let auto_steady = match c.auto_steady_ms {
        None => still.auto_steady,
        Some(ms) if (100..=5000).contains(&ms) => Duration::from_millis(ms),
        Some(ms) => {
            problem("capture.auto_steady_ms", format!("must be 100-5000 (milliseconds), not {ms}"));
            still.auto_steady
        }
    };
    let v = c.video.unwrap_or_default();
    let defaults = VideoConfig::default();
    let mut video = VideoConfig {
        width: v.width.unwrap_or(defaults.width),
        height: v.height.unwrap_or(defaults.height),
        fps: v.fps.unwrap_or(defaults.fps),
        crf: v.crf.unwrap_or(defaults.crf),
        max_bitrate: v.max_bitrate.unwrap_or(defaults.max_bitrate),
        preset: v.preset.unwrap_or(defaults.preset.clone()),
        keyframe_secs: v.keyframe_secs.unwrap_or(defaults.keyframe_secs),
        max_duration: v.max_seconds.map(Duration::from_secs).unwrap_or(defaults.max_duration),
    };
    if !(16..=3840).contains(&video.width) || !video.width.is_multiple_of(2) {
        problem("capture.video.width", format!("must be even and 16-3840, not {}", video.width));
        video.width = defaults.width;
    }
    if !(16..=2160).contains(&video.height) || !video.height.is_multiple_of(2) {
        problem("capture.video.height", format!("must be even and 16-2160, not {}", video.height));
        video.height = defaults.height;
    }
    if !(1..=120).contains(&video.fps) {
        problem("capture.video.fps", format!("must be 1-120, not {}", video.fps));
        video.fps = defaults.fps;
    }
    if video.crf > 51 {
        problem("capture.video.crf", format!("must be 0-51, not {}", video.crf));
    }
    if video.max_bitrate < 100_000 {
        problem("capture.video.max_bitrate", format!("must be at least 100000 bits/s, not {}", video.max_bitrate));
    }
    if !PRESETS.contains(&video.preset.as_str()) {
        problem("capture.video.preset", format!("must be one of {}, not {:?}", PRESETS.join(", "), video.preset));
    }
    if !(1..=10).contains(&video.keyframe_secs) {
        problem("capture.video.keyframe_secs", format!("must be 1-10, not {}", video.keyframe_secs));
    }
    if video.max_duration.is_zero() || video.max_duration > Duration::from_secs(3600) {
        problem("capture.video.max_seconds", format!("must be 1-3600, not {}", video.max_duration.as_secs()));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(CaptureConfig {
        document,
        face,
        still: StillConfig { warmup_frames, candidates, jpeg_quality, auto_steady },
        video,
    })
}

fn role(
    prefix: &str,
    raw: Option<RawCameraRole>,
    size: CameraMode,
    defaults: Quality,
    problems: &mut Vec<Problem>,
) -> CameraRole {
    let raw = raw.unwrap_or_default();
    let mut problem = |key: &str, message: String| problems.push(Problem { key: format!("{prefix}.{key}"), message });
    let source = raw.source.unwrap_or_else(|| "camera:0".into());
    if !["v4l2:", "camera:", "synthetic", "file:"].iter().any(|p| source.starts_with(p)) {
        problem(
            "source",
            format!("must be v4l2:/dev/videoN, camera:N, synthetic[:WxH@FPS] or file:PATH, not {source:?}"),
        );
    }
    let mut request = CameraMode {
        width: raw.width.unwrap_or(size.width),
        height: raw.height.unwrap_or(size.height),
        fps: raw.fps.unwrap_or(size.fps),
    };
    if !(128..=7680).contains(&request.width) || !request.width.is_multiple_of(2) {
        problem("width", format!("must be even and 128-7680, not {}", request.width));
        request.width = size.width;
    }
    if !(64..=4320).contains(&request.height) || !request.height.is_multiple_of(2) {
        problem("height", format!("must be even and 64-4320, not {}", request.height));
        request.height = size.height;
    }
    if !(1..=120).contains(&request.fps) {
        problem("fps", format!("must be 1-120, not {}", request.fps));
        request.fps = size.fps;
    }
    let q = raw.quality.unwrap_or_default();
    let t = Quality {
        min_sharpness: q.min_sharpness.unwrap_or(defaults.min_sharpness),
        min_brightness: q.min_brightness.unwrap_or(defaults.min_brightness),
        max_brightness: q.max_brightness.unwrap_or(defaults.max_brightness),
        max_glare: q.max_glare.unwrap_or(defaults.max_glare),
        min_width: q.min_width.unwrap_or(defaults.min_width),
        min_height: q.min_height.unwrap_or(defaults.min_height),
        min_face_width: defaults.min_face_width.map(|d| q.min_face_width.unwrap_or(d)),
    };
    match (q.min_face_width, defaults.min_face_width) {
        (Some(_), None) => {
            problem("quality.min_face_width", "only the face camera's stills are checked for faces".into())
        }
        (Some(w), Some(_)) if !(40..=4000).contains(&w) => {
            problem("quality.min_face_width", format!("must be 40-4000 pixels, not {w}"))
        }
        _ => {}
    }
    if t.min_sharpness.is_nan() || t.min_sharpness < 0.0 {
        problem("quality.min_sharpness", "must be a number ≥ 0".into());
    }
    if !(0.0..=255.0).contains(&t.min_brightness)
        || !(0.0..=255.0).contains(&t.max_brightness)
        || t.min_brightness > t.max_brightness
    {
        problem("quality.max_brightness", "brightness bounds must be 0-255 with min ≤ max".into());
    }
    if !(0.0..=1.0).contains(&t.max_glare) {
        problem("quality.max_glare", format!("must be a share 0-1, not {}", t.max_glare));
    }
    // Only the document camera's stills hold a document to cut out.
    let card = match (raw.card.as_deref(), defaults.min_face_width.is_none()) {
        (None | Some("off"), _) => None,
        (Some(name), true) => match name.parse() {
            Ok(format) => Some(format),
            Err(rule) => {
                problem("card", format!("{rule}, not {name:?}"));
                None
            }
        },
        (Some(_), false) => {
            problem("card", "only the document camera's stills are cut out of the frame".into());
            None
        }
    };
    let keep_full_frame = raw.keep_full_frame.unwrap_or(false);
    if keep_full_frame && card.is_none() {
        problem(
            "keep_full_frame",
            "only with card = \"id1\" or \"td3\": without a cut, the still is the full frame".into(),
        );
    }
    CameraRole { source, request, thresholds: t, card, keep_full_frame }
}

/// Reads a file and validates only its camera and capture sections (for the capture helper,
/// which needs no server or storage settings; the agent validates the rest, unknown keys
/// included, when it loads the same file).
pub fn load_capture(path: &std::path::Path) -> Result<CaptureConfig, ConfigError> {
    /// The two sections; every other table is the agent's and is left alone here.
    #[derive(serde::Deserialize)]
    struct CaptureSections {
        cameras: Option<RawCameras>,
        capture: Option<RawCapture>,
    }
    let text = crate::fsutil::read_bounded_text(path, crate::fsutil::MAX_CONFIG_BYTES)
        .map_err(|error| ConfigError::Read { path: path.to_owned(), error })?;
    let raw: CaptureSections = toml::from_str(&text).map_err(|e| ConfigError::Parse(e.to_string()))?;
    validate_capture(raw.cameras, raw.capture).map_err(ConfigError::Invalid)
}
