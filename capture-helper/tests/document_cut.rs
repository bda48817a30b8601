//! The document cut out of the frame, through the helper's `capture still` as an installer
//! would use it: rendered card scenes (kiosk_capture::card_scene) replayed as `file:` cameras,
//! with `cameras.document.card` set in a real configuration file.

use std::path::Path;
use std::process::{Command, Output};

use kiosk_capture::card::Quad;
use kiosk_capture::card_scene::{render, Kind, Scene};
use serde_json::Value;

const HELPER: &str = env!("CARGO_BIN_EXE_kiosk-agent-capture");

fn scene_file(dir: &Path, name: &str, scene: &Scene) -> String {
    kiosk_capture::init_ffmpeg();
    let path = dir.join(name);
    std::fs::write(&path, kiosk_capture::jpeg::encode(&scene.frame, 95).unwrap()).unwrap();
    format!("file:{}", path.display())
}

fn still(dir: &Path, card: &str, camera: &str, extra: &[&str]) -> Output {
    let config = dir.join("kiosk-agent.toml");
    std::fs::write(&config, format!("[cameras.document]\ncard = \"{card}\"\n")).unwrap();
    Command::new(HELPER)
        .arg("--config")
        .arg(&config)
        .args(["capture", "still", "--role", "document", "--camera", camera, "--out", "front.jpg", "--json"])
        .args(extra)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn report(out: &Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_document_front_is_sent_cut_out_straightened_with_its_photo_cut_from_the_card() {
    let dir = tempfile::tempdir().unwrap();
    let scene = render(Kind::Whole, 1920, 1080, 21);
    let camera = scene_file(dir.path(), "scene.jpg", &scene);
    let v = report(&still(dir.path(), "id1", &camera, &["--photo-out", "photo.jpg", "--full-frame-out", "full.jpg"]));
    let card = &v["card"];
    assert_eq!((card["format"].as_str(), card["frame_width"].as_u64()), (Some("id1"), Some(1920)), "{v}");
    let corners: Vec<(f64, f64)> =
        card["corners"].as_array().unwrap().iter().map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap())).collect();
    let found = Quad([corners[0], corners[1], corners[2], corners[3]]);
    let truth = scene.corners.unwrap();
    assert!(found.corner_error(&truth) <= 0.02 * truth.diagonal(), "{found:?} vs {truth:?}");
    // The still is the card, at the ID-1 aspect ratio and the camera's own resolution.
    let (w, h) = (v["width"].as_f64().unwrap(), v["height"].as_f64().unwrap());
    assert!((w / h - 85.60 / 53.98).abs() < 0.01, "{v}");
    assert!((card["dpi"].as_f64().unwrap() - w / (85.60 / 25.4)).abs() < 1.0, "{v}");
    let front = std::fs::read(dir.path().join("front.jpg")).unwrap();
    assert_eq!(front.len() as u64, v["bytes"].as_u64().unwrap());
    // The whole frame it was cut from, when asked for.
    let full = std::fs::read(dir.path().join("full.jpg")).unwrap();
    let mut decoder = zune_jpeg::JpegDecoder::new(zune_jpeg::zune_core::bytestream::ZCursor::new(full.as_slice()));
    let rgb = decoder.decode().unwrap();
    let info = decoder.info().unwrap();
    assert_eq!((info.width, info.height), (1920, 1080));
    assert_eq!(rgb.len(), 1920 * 1080 * 3, "it decodes whole");
    // The holder's photo was cut from the straightened card.
    assert!(std::fs::metadata(dir.path().join("photo.jpg")).unwrap().len() > 1000);
}

#[test]
fn no_card_a_cut_off_card_and_a_small_card_are_retakes_that_say_which() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, seed, needle) in [(Kind::NoCard, 3, "no document found"), (Kind::TooSmall, 5, "document too small")] {
        let camera = scene_file(dir.path(), "scene.jpg", &render(kind, 1280, 720, seed));
        let v = report(&still(dir.path(), "id1", &camera, &[]));
        assert_eq!(v["verdict"], "retake", "{kind:?}: {v}");
        let reasons = v["reasons"].to_string();
        assert!(reasons.contains(needle), "{kind:?}: {reasons}");
        assert!(v.get("card").is_none(), "{v}");
    }
    // A cut-off card is never taken, whatever the words.
    for seed in 0..4 {
        let camera = scene_file(dir.path(), "scene.jpg", &render(Kind::CutOff, 1280, 720, seed));
        let v = report(&still(dir.path(), "id1", &camera, &[]));
        assert_eq!(v["verdict"], "retake", "cut off, seed {seed}: {v}");
    }
}

#[test]
fn with_the_cut_off_the_whole_frame_is_kept_and_a_bad_format_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let camera = scene_file(dir.path(), "scene.jpg", &render(Kind::NoCard, 1280, 720, 3));
    let v = report(&still(dir.path(), "off", &camera, &[]));
    assert_eq!((v["width"].as_u64(), v.get("card")), (Some(1280), None), "{v}");
    assert!(!v["reasons"].to_string().contains("document"), "{v}");
    let out = still(dir.path(), "passport", &camera, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cameras.document.card") && err.contains("id1"), "{err}");
}
