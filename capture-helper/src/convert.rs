//! The agent's capture configuration mapped onto the capture crate's settings.

use kiosk_agent::config::{CameraMode, Quality, StillConfig, VideoConfig};
use kiosk_capture::metrics::{FaceRule, Thresholds};
use kiosk_capture::record::VideoSettings;
use kiosk_capture::still::StillSettings;
use kiosk_capture::Request;

pub fn request(m: CameraMode) -> Request {
    Request { width: m.width, height: m.height, fps: m.fps }
}

pub fn thresholds(q: &Quality) -> Thresholds {
    Thresholds {
        min_sharpness: q.min_sharpness,
        min_brightness: q.min_brightness,
        max_brightness: q.max_brightness,
        max_glare: q.max_glare,
        min_width: q.min_width,
        min_height: q.min_height,
        faces: q.min_face_width.map(|min_face_width| FaceRule { min_face_width }),
    }
}

pub fn still_settings(s: &StillConfig) -> StillSettings {
    StillSettings { warmup_frames: s.warmup_frames, candidates: s.candidates, jpeg_quality: s.jpeg_quality }
}

pub fn video_settings(v: &VideoConfig) -> VideoSettings {
    VideoSettings {
        width: v.width,
        height: v.height,
        fps: v.fps,
        crf: v.crf,
        max_bitrate: v.max_bitrate,
        preset: v.preset.clone(),
        keyframe_secs: v.keyframe_secs,
        max_duration: v.max_duration,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The agent's defaults and presets agree with the capture crate's.
    #[test]
    fn defaults_and_presets_agree() {
        assert_eq!(video_settings(&VideoConfig::default()), VideoSettings::default());
        assert_eq!(kiosk_agent::config::PRESETS, kiosk_capture::record::PRESETS);
        assert_eq!(thresholds(&Quality::DOCUMENT), Thresholds::DOCUMENT);
        assert_eq!(thresholds(&Quality::FACE), Thresholds::FACE);
    }
}
