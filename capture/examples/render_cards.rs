//! Writes the rendered card scene set to a directory (what `scripts/render-cards` runs): one
//! JPEG a scene and `truth.json` with each scene's kind and true corners. With `--found`, the
//! card search's outline is drawn over each picture in red, written as PNG (for looking at misses).
//!
//! `cargo run --release -p kiosk-capture --example render_cards -- DIR [COUNT] [SEED] [--found]`

use kiosk_capture::card::{self, CardFormat, Point};
use kiosk_capture::card_scene;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let found = args.iter().any(|a| a == "--found");
    let plain: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let Some(dir) = plain.first() else {
        return Err("usage: render_cards DIR [COUNT] [SEED] [--found]".into());
    };
    let count: u64 = plain.get(1).map(|c| c.parse()).transpose()?.unwrap_or(240);
    let seed: u64 = plain.get(2).map(|c| c.parse()).transpose()?.unwrap_or(1);
    std::fs::create_dir_all(dir)?;
    kiosk_capture::init_ffmpeg();
    let mut truth = Vec::new();
    for i in 0..count {
        let mut scene = card_scene::nth(seed, i);
        let name = format!("scene-{i:04}.jpg");
        if found {
            let finding = card::find(&scene.frame, CardFormat::Id1)?;
            if let Some(q) = finding.quad() {
                for s in 0..4 {
                    draw_line(&mut scene.frame, q.0[s], q.0[(s + 1) % 4]);
                }
            }
            println!("{name}: {:?} {}", scene.kind, finding.code());
        }
        if found {
            // Looked at by a person: lossless, and what an image viewer shows.
            let png = std::path::Path::new(dir).join(name.replace(".jpg", ".png"));
            let file = std::io::BufWriter::new(std::fs::File::create(png)?);
            let mut encoder = png::Encoder::new(file, scene.frame.width, scene.frame.height);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header()?;
            writer.write_image_data(&scene.frame.data)?;
            writer.finish()?;
        } else {
            std::fs::write(std::path::Path::new(dir).join(&name), kiosk_capture::jpeg::encode(&scene.frame, 95)?)?;
        }
        truth.push(serde_json::json!({
            "file": name,
            "kind": scene.kind,
            "width": scene.frame.width,
            "height": scene.frame.height,
            "corners": scene.corners.map(|q| q.0),
        }));
    }
    std::fs::write(std::path::Path::new(dir).join("truth.json"), serde_json::to_vec_pretty(&truth)?)?;
    println!("{count} scenes and truth.json written to {dir}");
    Ok(())
}

fn draw_line(frame: &mut kiosk_capture::Frame, a: Point, b: Point) {
    let steps = ((b.0 - a.0).hypot(b.1 - a.1) as usize).max(1);
    for k in 0..=steps {
        let t = k as f64 / steps as f64;
        let (x, y) = ((a.0 + t * (b.0 - a.0)) as i64, (a.1 + t * (b.1 - a.1)) as i64);
        if x >= 0 && y >= 0 && (x as u32) < frame.width && (y as u32) < frame.height {
            let i = (y as usize * frame.width as usize + x as usize) * 3;
            frame.data[i..i + 3].copy_from_slice(&[255, 0, 0]);
        }
    }
}
