//! Real-camera tests. They run only with `KIOSK_HW_TESTS=1` (and a camera at
//! `KIOSK_HW_CAMERA`, default `camera:0`); otherwise each returns at once, saying so.

use std::time::Duration;

use kiosk_capture::metrics::Thresholds;
use kiosk_capture::record::{record, VideoSettings};
use kiosk_capture::still::{capture_still, StillSettings};
use kiosk_capture::{camera, open, Request};

fn hardware() -> Option<String> {
    if std::env::var("KIOSK_HW_TESTS").as_deref() == Ok("1") {
        Some(std::env::var("KIOSK_HW_CAMERA").unwrap_or_else(|_| "camera:0".into()))
    } else {
        eprintln!("skipped: set KIOSK_HW_TESTS=1 to run real-camera tests");
        None
    }
}

#[test]
fn hw_cameras_are_listed_with_modes() {
    let Some(_) = hardware() else { return };
    let cams = camera::list().unwrap();
    assert!(!cams.is_empty(), "KIOSK_HW_TESTS=1 but no camera is listed");
    assert!(cams.iter().any(|c| !c.modes.is_empty()), "{cams:?}");
}

#[test]
fn hw_still_from_the_camera() {
    let Some(spec) = hardware() else { return };
    let mut source = open(&spec, Request { width: 1280, height: 720, fps: 30 }).unwrap();
    let still = capture_still(source.as_mut(), &StillSettings::default(), &Thresholds::FACE).unwrap();
    assert!(still.metrics.width >= 320 && still.jpeg.len() > 1000, "{:?}", still.metrics);
    assert!(!kiosk_capture::jpeg::metadata_markers(&still.jpeg).unwrap().contains(&0xE1), "no EXIF");
}

#[test]
fn hw_three_second_clip_from_the_camera() {
    let Some(spec) = hardware() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hw.mp4");
    let report =
        record(move || open(&spec, Request::default()), &out, &VideoSettings::default(), Duration::from_secs(3))
            .unwrap();
    assert!(report.frames > 30 && !report.short, "{report:?}");
}
