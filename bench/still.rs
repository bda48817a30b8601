//! Still benchmark: a 1920×1080 still with quality metrics and JPEG encoding, in process.
//! Run with `cargo bench -p kiosk-capture --bench still` (bench/run does). Prints figures only.

use std::time::Instant;

use kiosk_capture::memory::Frames;
use kiosk_capture::still::capture_still;
use kiosk_capture::synthetic::Synthetic;
use kiosk_capture::Quality;
use kiosk_capture::StillConfig;
use kiosk_capture::{FrameSource, PixelFormat};

fn main() {
    kiosk_capture::init_ffmpeg();
    let rgb = Synthetic::new(1920, 1080, 30).unwrap().unpaced().next_frame().unwrap().unwrap();
    let yuyv = kiosk_capture::convert::convert(&rgb, PixelFormat::Yuyv, 1920, 1080).unwrap();
    let settings = StillConfig { warmup_frames: 0, candidates: 1, jpeg_quality: 90, ..Default::default() };
    let runs = 40;
    println!("== 1920x1080 still: luma, sharpness/brightness/glare, verdict, JPEG q90 ==");
    for (label, frame) in [("RGB24 frame", &rgb), ("YUYV frame (camera layout)", &yuyv)] {
        let mut times = Vec::with_capacity(runs);
        let mut bytes = 0;
        for _ in 0..runs {
            let mut source = Frames::new(vec![frame.clone()], 30);
            let t = Instant::now();
            let still = capture_still(&mut source, &settings, &Quality::DOCUMENT).unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            bytes = still.jpeg.len();
        }
        times.sort_by(|a, b| a.total_cmp(b));
        println!(
            "  {label:<28} median {:.1} ms, p90 {:.1} ms over {runs} stills ({bytes} bytes JPEG)  (aim < 100 ms)",
            times[runs / 2],
            times[runs * 9 / 10]
        );
    }
    // The sharpest-of-five selection a camera still does: five frames measured, one encoded.
    let mut source = Frames::new(vec![yuyv.clone(); 5], 30);
    let t = Instant::now();
    let five = StillConfig { warmup_frames: 0, candidates: 5, jpeg_quality: 90, ..Default::default() };
    capture_still(&mut source, &five, &Quality::DOCUMENT).unwrap();
    println!("  sharpest of 5 YUYV frames:   {:.1} ms", t.elapsed().as_secs_f64() * 1000.0);
    let _ = source.next_frame();
}
