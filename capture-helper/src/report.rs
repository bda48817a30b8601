//! What the helper prints and serves, as serde types: the JSON of `capture still --json`,
//! `capture video --json`, `probe-video` and the capture service's answers. `kiosk-agent` and
//! the operator page read these fields; one type per shape keeps them from drifting.

use std::path::PathBuf;
use std::time::Duration;

use kiosk_capture::metrics::{tenths, FaceMetrics};
use kiosk_capture::record::RecordReport;
use kiosk_capture::still::Still;
use kiosk_common::capture::Role;
use serde::Serialize;

/// One still: its quality figures and verdict.
#[derive(Debug, Clone, Serialize)]
pub struct StillReport {
    /// Where the JPEG was written (the CLI; the service gives an id instead).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The service's id for the still, and where its thumbnail is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<String>,
    pub role: &'static str,
    /// The mode the camera delivered, as negotiated: `YUYV 1280x720@12`.
    pub mode: String,
    pub width: u32,
    pub height: u32,
    pub sharpness: f64,
    pub brightness: f64,
    pub glare: f64,
    /// Faces found (selfies only) and the largest one's box with its own sharpness and
    /// brightness.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faces: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face: Option<FaceMetrics>,
    /// `pass` or `retake`.
    pub verdict: &'static str,
    pub reasons: Vec<String>,
    /// The camera's own JPEG bytes were kept (MJPEG at the wanted size).
    pub passthrough: bool,
    pub bytes: usize,
    /// The document's photo, cut around the face found on this document front (the service,
    /// for a `document_front` still that has one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub photo: Option<PhotoReport>,
    /// The document found in the frame and cut out (document stills, when configured): the
    /// still's size above is the cut's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card: Option<CardReport>,
    /// The uncut camera frame, kept for the operator's review (the service, for a cut document
    /// still that passed, with `cameras.document.keep_full_frame`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_frame: Option<PhotoReport>,
    /// The kept frame's time from the camera's first frame, in milliseconds.
    pub frame_ms: u64,
    /// Auto-capture: when, from the camera's first frame, the preview became good for good.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_since_ms: Option<u64>,
}

/// Where the document was found in the camera's frame and how it was cut.
#[derive(Debug, Clone, Serialize)]
pub struct CardReport {
    /// `id1` or `td3`.
    pub format: &'static str,
    /// Its corners in the frame, clockwise from its top left, to a tenth of a pixel.
    pub corners: [[f64; 2]; 4],
    pub frame_width: u32,
    pub frame_height: u32,
    /// The cut's resolution in dots per inch of the document.
    pub dpi: f64,
}

/// A capture the service cut or kept beside a still: the document photo, the uncut frame.
#[derive(Debug, Clone, Serialize)]
pub struct PhotoReport {
    pub id: String,
    pub thumbnail: String,
    pub width: u32,
    pub height: u32,
}

impl StillReport {
    pub fn new(still: &Still, role: Role) -> StillReport {
        let m = &still.metrics;
        StillReport {
            path: None,
            id: None,
            thumbnail: None,
            role: role.as_str(),
            mode: still.mode.to_string(),
            // The still's own size: the cut's, when the document was cut out.
            width: still.card.as_ref().map_or(m.width, |_| still.frame.width),
            height: still.card.as_ref().map_or(m.height, |_| still.frame.height),
            sharpness: tenths(m.sharpness),
            brightness: tenths(m.brightness),
            glare: m.glare,
            faces: m.faces,
            face: m.face,
            verdict: if still.verdict.is_pass() { "pass" } else { "retake" },
            reasons: still.verdict.reasons().to_vec(),
            passthrough: still.passthrough,
            bytes: still.jpeg.len(),
            photo: None,
            card: still.card.as_ref().map(|c| CardReport {
                format: c.format.name(),
                corners: c.corners.0.map(|(x, y)| [tenths(x), tenths(y)]),
                frame_width: c.frame_width,
                frame_height: c.frame_height,
                dpi: tenths(c.dpi),
            }),
            full_frame: None,
            frame_ms: still.frame_time.as_millis() as u64,
            ready_since_ms: None,
        }
    }
}

/// One judged preview frame, as the guidance stream sends it (one event each).
#[derive(Debug, Clone, Serialize)]
pub struct GuidanceReport {
    pub role: &'static str,
    pub frame_index: u64,
    /// The camera frame's size: the outline and the face box are in its pixels.
    pub frame_width: u32,
    pub frame_height: u32,
    pub brightness: f64,
    pub glare: f64,
    /// Mean change since the previous judged frame (levels; -1 for the first).
    pub motion: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faces: Option<u32>,
    /// The largest face's box: x, y, width, height.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face: Option<[u32; 4]>,
    /// The document's outline, clockwise from its top left (document camera, when seen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card: Option<[[f64; 2]; 4]>,
    /// What the person should change, most important first; empty when nothing.
    pub hints: Vec<HintReport>,
    pub ready: bool,
    /// How long the preview has needed no hint, and how long auto-capture waits for.
    pub ready_ms: u64,
    pub steady_ms: u64,
}

/// One hint: a stable code and its words.
#[derive(Debug, Clone, Serialize)]
pub struct HintReport {
    pub code: &'static str,
    pub words: &'static str,
}

impl GuidanceReport {
    pub fn new(g: &kiosk_capture::guidance::Guidance, role: Role, ready_for: Duration, steady: Duration) -> Self {
        GuidanceReport {
            role: role.as_str(),
            frame_index: g.frame_index,
            frame_width: g.frame_width,
            frame_height: g.frame_height,
            brightness: g.brightness,
            glare: g.glare,
            motion: g.motion,
            faces: g.faces,
            face: g.face,
            card: g.card.as_ref().map(|q| q.0.map(|(x, y)| [tenths(x), tenths(y)])),
            hints: g.hints.iter().map(|h| HintReport { code: h.code(), words: h.words() }).collect(),
            ready: g.ready,
            ready_ms: ready_for.as_millis() as u64,
            steady_ms: steady.as_millis() as u64,
        }
    }
}

/// One clip, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct ClipReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The mode the camera delivered, as negotiated.
    pub mode: String,
    pub frames: u64,
    /// Frames the encoder could not take in time.
    pub dropped: u64,
    /// Frames that came but could not be decoded (a corrupt MJPEG frame), left out.
    pub damaged: u64,
    /// Frames the camera skipped within the clip, by its sequence numbers.
    pub skipped: u64,
    /// The first and last frame numbers the clip spans (the driver's sequence numbers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<[u64; 2]>,
    /// Time between the first and the last of those frames, on the camera's clock.
    pub span_secs: f64,
    pub duration_secs: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_secs: Option<f64>,
    /// Why the recording ended (`Duration`, `Stopped`, `SourceEnded`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// The source gave out before the clip was as long as asked.
    pub short: bool,
    pub bytes: u64,
}

impl ClipReport {
    /// The CLI's full report of a clip written to a path.
    pub fn of_file(r: &RecordReport) -> ClipReport {
        ClipReport {
            path: Some(r.path.clone()),
            id: None,
            source: Some(r.source.clone()),
            mode: r.mode.to_string(),
            frames: r.frames,
            dropped: r.dropped,
            damaged: r.damaged,
            skipped: r.skipped,
            sequence: r.sequence.map(|(a, b)| [a, b]),
            span_secs: r.span.as_secs_f64(),
            duration_secs: r.duration.as_secs_f64(),
            requested_secs: Some(r.requested.as_secs_f64()),
            end: Some(format!("{:?}", r.end)),
            short: r.short,
            bytes: r.bytes,
        }
    }

    /// The service's report of a recording it held under `id`: the same figures, without the
    /// file's path, the source or why it ended.
    pub fn of_recording(id: String, r: &RecordReport) -> ClipReport {
        ClipReport { path: None, id: Some(id), source: None, requested_secs: None, end: None, ..ClipReport::of_file(r) }
    }
}

/// One configured camera role, as the service lists it.
#[derive(Debug, Clone, Serialize)]
pub struct CameraRole {
    pub role: &'static str,
    pub source: String,
    pub running: bool,
    pub preview: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CameraRoles {
    pub cameras: Vec<CameraRole>,
}

/// A recording the service started.
#[derive(Debug, Clone, Serialize)]
pub struct RecordingStarted {
    pub id: String,
    pub max_seconds: f64,
}

/// The service's error body, as the daemon's API writes its own: `{code, message, field}`.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
}
