//! Card search benchmark: the rendered scene set (`kiosk_capture::card_scene`, the same one
//! `scripts/render-cards` writes out), searched one still at a time. Prints how often a whole
//! card's corners are found within 2 % of its diagonal, how often a still without a whole card
//! is a retake (and with which reason), and the time per still beside the time to encode the
//! same still as JPEG (the still path's own reference cost), both measured here.
//! Run with `cargo bench -p kiosk-capture --bench card [COUNT]` (bench/run does; 240 scenes).

use std::collections::BTreeMap;
use std::time::Instant;

use kiosk_capture::card::{self, CardFormat, Finding};
use kiosk_capture::card_scene::{self, Kind};

fn main() {
    kiosk_capture::init_ffmpeg();
    let count: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(240);
    let (mut whole, mut found, mut others, mut retakes) = (0, 0, 0, 0);
    let mut reasons: BTreeMap<(String, &str), u32> = BTreeMap::new();
    let mut errors: Vec<f64> = Vec::new();
    let mut times: BTreeMap<u32, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    let verbose = std::env::var_os("CARD_BENCH_VERBOSE").is_some();
    for i in 0..count {
        let scene = card_scene::nth(1, i);
        let t = Instant::now();
        let finding = card::find(&scene.frame, CardFormat::Id1).expect("RGB needs no conversion");
        let search = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        let _ = kiosk_capture::jpeg::encode(&scene.frame, 90).unwrap();
        let encode = t.elapsed().as_secs_f64() * 1000.0;
        let slot = times.entry(scene.frame.width).or_default();
        slot.0.push(search);
        slot.1.push(encode);
        if scene.kind == Kind::Whole {
            whole += 1;
            let truth = scene.corners.unwrap();
            let error = match &finding {
                Finding::Card(q) => q.corner_error(&truth) / truth.diagonal(),
                _ => f64::INFINITY,
            };
            errors.push(error);
            if error <= 0.02 {
                found += 1;
            } else if verbose {
                println!(
                    "  miss #{i} {:?}: {} {:.3}\n    truth {:?}\n    found {:?}",
                    scene.frame.width,
                    finding.code(),
                    error,
                    truth.0,
                    finding.quad().map(|q| q.0)
                );
            }
        } else {
            others += 1;
            retakes += u32::from(!matches!(finding, Finding::Card(_)));
            *reasons.entry((format!("{:?}", scene.kind), finding.code())).or_default() += 1;
        }
    }
    errors.sort_by(|a, b| a.total_cmp(b));
    println!("== card search on {count} rendered scenes (ID-1, cluttered table, ±30° roll, tilt, blur, noise) ==");
    println!(
        "  whole cards found within 2% of the diagonal: {found}/{whole} = {:.1}%  (target >= 97%)",
        100.0 * found as f64 / whole as f64
    );
    let pct = |q: f64| errors[((errors.len() - 1) as f64 * q) as usize] * 100.0;
    println!("  corner error / diagonal: median {:.2}%, p90 {:.2}%, p97 {:.2}%", pct(0.5), pct(0.9), pct(0.97));
    println!(
        "  stills without a whole card that are retakes: {retakes}/{others} = {:.1}%  (target 100%)",
        100.0 * retakes as f64 / others as f64
    );
    for ((kind, code), n) in &reasons {
        println!("    {kind:<10} -> {code:<10} {n}");
    }
    for (width, (search, encode)) in &mut times {
        search.sort_by(|a, b| a.total_cmp(b));
        encode.sort_by(|a, b| a.total_cmp(b));
        let (s, e) = (search[search.len() / 2], encode[encode.len() / 2]);
        println!(
            "  {width} px wide: search median {s:.1} ms, p90 {:.1} ms; JPEG q90 of the same still {e:.1} ms; ratio {:.2}",
            search[search.len() * 9 / 10],
            s / e
        );
    }
}
