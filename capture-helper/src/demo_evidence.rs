//! `demo-evidence`: what `kiosk-agent demo` captures (hidden; the demo runs it).
//!
//! Document front and rear and a selfie from the synthetic camera (or `--camera`), the document
//! photo cropped from the front, and a short clip, each with its verdict on stdout.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use kiosk_common::capture::{CaptureConfig, Role};
use kiosk_common::helper_args::write_durably;

use crate::commands::{still_line, take_still, take_still_auto, take_video};

/// Captures the demo's evidence into `dir` (the file names the manifest expects) and reports
/// each verdict.
pub fn run(dir: &Path, camera: Option<&str>, clip: Duration, out: &mut impl Write) -> anyhow::Result<()> {
    let mut cfg = CaptureConfig::default();
    for role in [&mut cfg.document, &mut cfg.face] {
        role.source = camera.unwrap_or("synthetic").to_owned();
    }
    let synthetic = camera.is_none();
    if synthetic {
        // The document camera shows a card slid into place on a table: each side is taken by
        // itself once the card rests, and cut out of the frame.
        cfg.document.source = "synthetic-card:1920x1080@15".into();
        cfg.document.card = Some(kiosk_common::capture::CardFormat::Id1);
    }
    let mut line = |label: &str, text: String| writeln!(out, "    {label:<16} {text}");

    let t = Instant::now();
    let document = |cfg: &CaptureConfig| -> anyhow::Result<(kiosk_capture::still::Still, String)> {
        if !synthetic {
            let still = take_still(cfg, Role::Document, None)?;
            let text = still_line(&still);
            return Ok((still, text));
        }
        let (still, ready_since) = take_still_auto(cfg, Role::Document, None, 20.0)?;
        let cut = still.card.as_ref().map_or(String::new(), |c| {
            format!(
                "; cut {}x{} out of the {}x{} frame at {:.0} dpi",
                still.frame.width, still.frame.height, c.frame_width, c.frame_height, c.dpi
            )
        });
        let text = format!(
            "{}; auto-captured {:.1} s after the card came to rest (good from {:.1} s){cut}",
            still_line(&still),
            (still.frame_time.saturating_sub(kiosk_capture::card_scene::Sliding::ARRIVES)).as_secs_f64(),
            ready_since.as_secs_f64()
        );
        Ok((still, text))
    };
    let (front, text) = document(&cfg)?;
    write_durably(&dir.join("front.jpg"), &front.jpeg)?;
    line("document front", text)?;
    let (rear, text) = document(&cfg)?;
    write_durably(&dir.join("rear.jpg"), &rear.jpeg)?;
    line("document rear", text)?;
    // The holder's photo: cut around the face found on the front, wherever the card lies.
    let photo = kiosk_capture::faces::document_photo(&front.frame)?;
    write_durably(&dir.join("photo.jpg"), &kiosk_capture::jpeg::encode(&photo, cfg.still.jpeg_quality)?)?;
    line("document photo", format!("{}x{} cut around the face on the front", photo.width, photo.height))?;
    let selfie = take_still(&cfg, Role::Face, None)?;
    write_durably(&dir.join("selfie.jpg"), &selfie.jpeg)?;
    line("selfie", still_line(&selfie))?;
    let stills_time = t.elapsed();

    let t = Instant::now();
    let clip = take_video(&cfg, None, clip.as_secs_f64(), &dir.join("video.mp4"))?;
    line(
        "video",
        format!(
            "{}x{} H.264/MP4, {} frames, {:.2} s, {} dropped, {} bytes{}",
            cfg.video.width,
            cfg.video.height,
            clip.frames,
            clip.duration.as_secs_f64(),
            clip.dropped,
            clip.bytes,
            if clip.short { " (SHORT)" } else { "" }
        ),
    )?;
    // The capture metadata the signed capture manifest records (no personal data).
    let source = cfg.document.source.clone();
    let still_meta = |s: &kiosk_capture::still::Still| {
        serde_json::json!({
            "camera": source,
            "mode": format!("{}x{} {:?}", s.frame.width, s.frame.height, s.frame.format),
            "frame_index": s.frame_index,
            "sharpness": (s.metrics.sharpness * 10.0).round() / 10.0,
            "brightness": (s.metrics.brightness * 10.0).round() / 10.0,
            "glare": s.metrics.glare,
            "verdict": if s.verdict.is_pass() { "pass" } else { "retake" },
            "reasons": s.verdict.reasons(),
        })
    };
    let capture = serde_json::json!({
        "document_front": still_meta(&front),
        "document_rear": still_meta(&rear),
        "document_photo": { "camera": source, "mode": "cut around the face found on document_front" },
        "document_owner": still_meta(&selfie),
        "video": {
            "camera": cfg.face.source, "mode": format!("{}x{} H.264", cfg.video.width, cfg.video.height),
            "frames": clip.frames, "dropped": clip.dropped,
        },
    });
    write_durably(&dir.join("capture.json"), capture.to_string().as_bytes())?;
    writeln!(
        out,
        "    (stills {} ms, clip {} ms, from {})",
        stills_time.as_millis(),
        t.elapsed().as_millis(),
        if synthetic { "the synthetic camera" } else { camera.unwrap_or("") }
    )?;
    Ok(())
}
