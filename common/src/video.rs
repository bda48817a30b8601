//! What a probe of a clip found: the helper's `probe-video` prints it, `enroll` reads it.

/// The container, codec, size and duration of a playable video.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct VideoFacts {
    pub container: String,
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub duration_secs: f64,
}
