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

/// The environment variable that gives `probe-video` the key of a sealed spill (AES-128 key and
/// IV in hex, as FFmpeg's `crypto:` protocol takes them): its standard input is then that
/// sealed file, read in clear only inside FFmpeg.
pub const SEALED_KEY_VAR: &str = "KIOSK_AGENT_SEALED_KEY";
