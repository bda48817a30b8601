//! `capture still --auto` as an installer would run it: the synthetic camera slides a card into
//! place in real time; the still must be taken soon after the card rests, never before.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use kiosk_capture::card::Quad;
use kiosk_capture::card_scene::Sliding;
use serde_json::Value;

const HELPER: &str = env!("CARGO_BIN_EXE_kiosk-agent-capture");

fn auto(dir: &Path, camera: &str, extra: &[&str]) -> Output {
    let config = dir.join("kiosk-agent.toml");
    std::fs::write(&config, "[cameras.document]\ncard = \"id1\"\n").unwrap();
    Command::new(HELPER)
        .arg("--config")
        .arg(&config)
        .args(["capture", "still", "--role", "document", "--camera", camera, "--out", "front.jpg"])
        .args(extra)
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn a_card_slid_into_place_is_taken_within_two_seconds_of_resting_and_never_before() {
    let dir = tempfile::tempdir().unwrap();
    let out = auto(dir.path(), "synthetic-card:1280x720@15", &["--auto", "--timeout", "20", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rests = Sliding::ARRIVES.as_millis() as u64;
    let (taken, ready) = (v["frame_ms"].as_u64().unwrap(), v["ready_since_ms"].as_u64().unwrap());
    assert!(ready >= rests, "judged good while it still moved: {v}");
    assert!(taken >= ready && taken <= rests + 2000, "taken at {taken} ms, the card rests from {rests} ms: {v}");
    assert_eq!(v["verdict"], "pass", "{v}");
    // The corners are where the resting card is: not a frame from the slide.
    let corners: Vec<(f64, f64)> = v["card"]["corners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
        .collect();
    let found = Quad([corners[0], corners[1], corners[2], corners[3]]);
    let truth = Sliding::new(1280, 720, 15).unwrap().card_at(Sliding::ARRIVES + Duration::from_secs(1));
    assert!(found.corner_error(&truth) <= 0.02 * truth.diagonal(), "{found:?} vs {truth:?}");
    assert!(std::fs::metadata(dir.path().join("front.jpg")).unwrap().len() as u64 == v["bytes"].as_u64().unwrap());
    // The person was told what to change, in order, before the good moment.
    let whole = stderr.find("show the whole card").expect(&stderr);
    let good = stderr.find("good, hold it there").expect(&stderr);
    assert!(whole < good, "{stderr}");
}

#[test]
fn no_card_times_out_saying_what_is_still_wrong_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = auto(dir.path(), "synthetic:640x360@15", &["--auto", "--timeout", "1.5"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no good moment within") && stderr.contains("show the whole card"), "{stderr}");
    assert!(!dir.path().join("front.jpg").exists());
}

#[test]
fn a_timeout_without_auto_or_out_of_range_is_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (&["--timeout", "5"][..], "--auto"),
        (&["--auto", "--timeout", "0"][..], "--timeout"),
        (&["--auto", "--timeout", "soon"][..], "--timeout"),
    ] {
        let out = auto(dir.path(), "synthetic-card", args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!dir.path().join("front.jpg").exists());
    }
}
