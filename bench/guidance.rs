//! Live guidance's cost: the capture service's work per second of preview for one viewer, with
//! guidance off (the MJPEG preview alone, 10 JPEGs a second) and on (the preview and the
//! guidance stream, five judgements a second), for a document camera at 720p and 1080p with
//! the card search on. The camera is `synthetic-card` on its own thread (a real camera's frames
//! cost the service nothing until read), so the figures are CPU seconds of the viewer threads
//! per wall second, read from the kernel's per-thread counters, beside the whole process's.
//! Run with `cargo bench -p kiosk-capture --bench guidance [SECONDS]` (bench/run does; 10 s).

use std::time::{Duration, Instant};

use kiosk_capture::card::CardFormat;
use kiosk_capture::guidance::{follow, Guide};
use kiosk_capture::hub::Hub;
use kiosk_capture::{CameraMode, Quality};

/// CPU seconds of the calling thread (or the process), from /proc: user + system ticks.
fn cpu(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).expect("/proc is mounted");
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')').expect("stat has a command") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ is 100 on Linux
}

struct Run {
    preview: f64,
    guidance: Option<(f64, u32)>,
    process: f64,
}

/// One viewer on `hub` for `secs`: the preview, and the guidance when `guided`.
fn run(hub: &Hub, secs: f64, guided: bool) -> Run {
    let length = Duration::from_secs_f64(secs);
    let process_before = cpu("/proc/self/stat");
    let started = Instant::now();
    let preview = {
        let hub = hub.clone();
        std::thread::spawn(move || {
            let before = cpu("/proc/thread-self/stat");
            let mut last = None;
            while started.elapsed() < length {
                let tick = Instant::now();
                if let Some((index, _jpeg)) = hub.preview_after(last, 70) {
                    last = Some(index);
                }
                if let Some(rest) = Duration::from_millis(100).checked_sub(tick.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
            cpu("/proc/thread-self/stat") - before
        })
    };
    let guidance = guided.then(|| {
        let hub = hub.clone();
        std::thread::spawn(move || {
            let before = cpu("/proc/thread-self/stat");
            let mut judged = 0u32;
            let guide = Guide::new(Quality::DOCUMENT, Some(CardFormat::Id1));
            follow(&hub, guide, Duration::from_millis(700), |_, _| {
                judged += 1;
                started.elapsed() < length
            });
            (cpu("/proc/thread-self/stat") - before, judged)
        })
    });
    let preview = preview.join().unwrap();
    let guidance = guidance.map(|g| g.join().unwrap());
    let wall = started.elapsed().as_secs_f64();
    Run {
        preview: preview / wall,
        guidance: guidance.map(|(c, n)| (c / wall, n)),
        process: (cpu("/proc/self/stat") - process_before) / wall,
    }
}

fn main() {
    kiosk_capture::init_ffmpeg();
    let secs: f64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10.0);
    println!("live guidance: CPU (cores) per second of preview, one viewer, {secs} s each");
    println!(
        "{:<10} {:>14} {:>14} {:>14} {:>16} {:>10}",
        "camera", "preview only", "with guidance", "guidance", "judged /s", "target"
    );
    for (w, h) in [(1280u32, 720u32), (1920, 1080)] {
        let hub = Hub::start(&format!("synthetic-card:{w}x{h}@30"), CameraMode::default()).unwrap();
        // Let the card come to rest, so the search runs on a card as it would at the counter.
        std::thread::sleep(Duration::from_secs(2));
        let off = run(&hub, secs, false);
        let on = run(&hub, secs, true);
        let (guide, judged) = on.guidance.unwrap();
        println!(
            "{:<10} {:>14.3} {:>14.3} {:>14.3} {:>16.1} {:>10}",
            format!("{h}p"),
            off.preview,
            on.preview + guide,
            guide,
            judged as f64 / secs,
            if guide <= 0.25 { "≤ 0.25 ✓" } else { "> 0.25 ✗" }
        );
        println!(
            "{:<10} process, camera thread included: {:.3} cores off, {:.3} on (+{:.3}); guidance / preview = {:.2}",
            "",
            off.process,
            on.process,
            on.process - off.process,
            guide / off.preview.max(1e-9)
        );
    }
}
