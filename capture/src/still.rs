//! Taking a still: let exposure settle, keep the sharpest of the last frames, measure, encode.

use crate::card::{self, CardFormat, Finding, Quad};
use crate::convert::{convert, luma};
use crate::metrics::{judge, measure, Metrics, Verdict};
use crate::{jpeg, CaptureError, Frame, FrameSource, PixelFormat};
use crate::{Quality, StillConfig};

/// A still image with its quality assessment.
#[derive(Debug, Clone)]
pub struct Still {
    /// The JPEG, without metadata.
    pub jpeg: Vec<u8>,
    pub metrics: Metrics,
    pub verdict: Verdict,
    /// True when the camera's own JPEG bytes were kept (MJPEG at the wanted size).
    pub passthrough: bool,
    /// Which frame of the stream was kept, and its time from the stream's first frame.
    pub frame_index: u64,
    pub frame_time: std::time::Duration,
    /// The kept frame itself (for crops such as the document photo).
    pub frame: Frame,
    /// The mode the source delivered (the negotiated one, for a camera).
    pub mode: crate::negotiate::Mode,
    /// Where the document was found and how it was cut, once [`cut_document`] cut it.
    pub card: Option<CardCut>,
    /// The uncut camera frame's JPEG, once [`cut_document`] cut the still.
    pub uncut: Option<Vec<u8>>,
}

/// A document cut out of a still.
#[derive(Debug, Clone, PartialEq)]
pub struct CardCut {
    pub format: CardFormat,
    /// The document's corners in the camera's frame.
    pub corners: Quad,
    /// The camera's frame it was cut from.
    pub frame_width: u32,
    pub frame_height: u32,
    /// The cut's resolution, in dots per inch of the document.
    pub dpi: f64,
}

/// Finds the document of `format` in a still and makes the still that document, cut out and
/// straightened: its JPEG, its frame (so the document photo is then cut from the straightened
/// card) and its size. A still without a whole, large enough and flat enough document becomes
/// a retake that says which; a still that is a retake already is left as it is, searched only
/// to add that reason.
pub fn cut_document(still: &mut Still, format: CardFormat, jpeg_quality: u8) -> Result<(), CaptureError> {
    let finding = card::find(&still.frame, format)?;
    let Finding::Card(corners) = finding else {
        let reason = finding.retake_reason().unwrap_or_default();
        let mut reasons = still.verdict.reasons().to_vec();
        reasons.push(reason);
        still.verdict = Verdict::Retake(reasons);
        return Ok(());
    };
    let (cut, dpi) = card::rectify(&still.frame, &corners, format)?;
    still.card =
        Some(CardCut { format, corners, frame_width: still.frame.width, frame_height: still.frame.height, dpi });
    still.uncut = Some(std::mem::replace(&mut still.jpeg, jpeg::encode(&cut, jpeg_quality)?));
    still.passthrough = false;
    still.frame = cut;
    Ok(())
}

/// Takes a still from `source`. A source that ends early (a single image file) yields what it
/// has: a one-frame file is judged as it is, without warm-up.
pub fn capture_still(
    source: &mut dyn FrameSource,
    settings: &StillConfig,
    thresholds: &Quality,
) -> Result<Still, CaptureError> {
    let candidates = settings.candidates.max(1);
    let mut recent: Vec<Frame> = Vec::with_capacity(candidates);
    for _ in 0..settings.warmup_frames + candidates {
        match source.next_frame()? {
            Some(frame) => {
                if recent.len() == candidates {
                    recent.remove(0);
                }
                recent.push(frame);
            }
            None => break,
        }
    }
    if recent.is_empty() {
        return Err(CaptureError::NoFrames(source.name()));
    }
    still_from_frames(recent, source, settings, thresholds)
}

/// The still made of the sharpest of `recent` (frames `source` delivered): measured, judged
/// and encoded.
pub fn still_from_frames(
    recent: Vec<Frame>,
    source: &dyn FrameSource,
    settings: &StillConfig,
    thresholds: &Quality,
) -> Result<Still, CaptureError> {
    let (want_w, want_h, _) = source.format();
    let mut best: Option<(Frame, Vec<u8>, Metrics)> = None;
    let mut undecodable = None;
    for frame in recent {
        // A frame that does not decode (a corrupt MJPEG frame) is passed over for the others.
        let y = match luma(&frame) {
            Ok(y) => y,
            Err(e) => {
                undecodable = Some(e);
                continue;
            }
        };
        let m = measure(&y, frame.width, frame.height);
        if best.as_ref().is_none_or(|(_, _, b)| m.sharpness > b.sharpness) {
            best = Some((frame, y, m));
        }
    }
    let Some((frame, y, mut metrics)) = best else {
        return Err(undecodable.unwrap_or_else(|| CaptureError::NoFrames(source.name())));
    };
    if thresholds.min_face_width.is_some() {
        // Only the kept frame is searched: detection costs more than the other metrics.
        let found = crate::faces::detect(&y, frame.width, frame.height);
        metrics.faces = Some(found.len() as u32);
        metrics.face = found.first().map(|f| crate::faces::face_metrics(&y, frame.width, f));
    }
    let passthrough = frame.format == PixelFormat::Mjpeg && frame.width == want_w && frame.height == want_h;
    let jpeg = if passthrough {
        jpeg::strip_metadata(&frame.data)?
    } else if frame.format == PixelFormat::Mjpeg {
        // MJPEG at another size than asked: decode and re-encode (convert keeps the size).
        jpeg::encode(&convert(&frame, PixelFormat::Rgb24, frame.width, frame.height)?, settings.jpeg_quality)?
    } else {
        jpeg::encode(&frame, settings.jpeg_quality)?
    };
    let verdict = judge(&metrics, thresholds);
    Ok(Still {
        jpeg,
        metrics,
        verdict,
        passthrough,
        frame_index: frame.index,
        frame_time: frame.timestamp,
        frame,
        mode: source.mode(),
        card: None,
        uncut: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Frames;
    use crate::synthetic::Synthetic;
    use std::time::Duration;

    fn sharp_frame(w: u32, h: u32) -> Frame {
        Synthetic::new(w, h, 30).unwrap().unpaced().next_frame().unwrap().unwrap()
    }

    /// A 9×9 box blur, three passes (close to a Gaussian): an out-of-focus lens.
    fn blurred(f: &Frame) -> Frame {
        let (w, h) = (f.width as usize, f.height as usize);
        let mut data = f.data.clone();
        for _ in 0..3 {
            let src = data.clone();
            for y in 0..h {
                for x in 0..w {
                    for c in 0..3 {
                        let (mut s, mut n) = (0u32, 0u32);
                        for dy in y.saturating_sub(4)..(y + 5).min(h) {
                            for dx in x.saturating_sub(4)..(x + 5).min(w) {
                                s += src[(dy * w + dx) * 3 + c] as u32;
                                n += 1;
                            }
                        }
                        data[(y * w + x) * 3 + c] = (s / n) as u8;
                    }
                }
            }
        }
        Frame { data, ..f.clone() }
    }

    fn over_exposed(f: &Frame) -> Frame {
        Frame { data: f.data.iter().map(|v| v.saturating_add(110)).collect(), ..f.clone() }
    }

    /// A bright specular patch over a fifth of the card.
    fn glared(f: &Frame) -> Frame {
        let mut g = f.clone();
        let w = f.width as usize;
        for y in f.height as usize / 3..f.height as usize / 2 {
            for x in w / 4..w / 2 {
                g.data[(y * w + x) * 3..(y * w + x) * 3 + 3].fill(255);
            }
        }
        g
    }

    fn still_of(frame: Frame) -> Still {
        let mut source = Frames::new(vec![frame], 30);
        capture_still(
            &mut source,
            &StillConfig::default(),
            &Quality { min_width: 320, min_height: 240, ..Quality::DOCUMENT },
        )
        .unwrap()
    }

    #[test]
    fn verdicts_tell_sharp_blurred_overexposed_and_glared_apart() {
        let sharp = sharp_frame(320, 240);
        let s = still_of(sharp.clone());
        assert!(s.verdict.is_pass(), "{:?} {:?}", s.metrics, s.verdict);
        let b = still_of(blurred(&sharp));
        assert!(b.metrics.sharpness < s.metrics.sharpness / 4.0, "{:?} vs {:?}", b.metrics, s.metrics);
        assert!(b.verdict.reasons().iter().any(|r| r.starts_with("blurred")), "{:?}", b.verdict);
        let o = still_of(over_exposed(&sharp));
        assert!(o.verdict.reasons().iter().any(|r| r.starts_with("over-exposed")), "{:?}", o.verdict);
        let g = still_of(glared(&sharp));
        assert!(g.verdict.reasons().iter().any(|r| r.starts_with("glare")), "{:?}", g.verdict);
        assert!(!g.verdict.reasons().iter().any(|r| r.starts_with("over-exposed")), "{:?}", g.verdict);
    }

    #[test]
    fn the_sharpest_of_the_last_frames_is_kept_after_warmup() {
        let sharp = sharp_frame(320, 240);
        let soft = blurred(&sharp);
        let mut frames: Vec<Frame> =
            (0..8).map(|i| Frame { index: i, timestamp: Duration::from_millis(33 * i), ..soft.clone() }).collect();
        // A sharp frame during warm-up must be ignored; the sharp one among the candidates wins.
        frames[1] = Frame { index: 1, ..sharp.clone() };
        frames[6] = Frame { index: 6, ..sharp.clone() };
        let mut source = Frames::new(frames, 30);
        let settings = StillConfig { warmup_frames: 3, candidates: 5, jpeg_quality: 90, ..Default::default() };
        let s = capture_still(&mut source, &settings, &Quality::FACE).unwrap();
        assert_eq!(s.frame_index, 6);
    }

    #[test]
    fn mjpeg_at_the_wanted_size_keeps_the_camera_bytes_minus_metadata() {
        let sharp = sharp_frame(320, 240);
        let camera_jpeg = jpeg::tests_support::with_exif(&jpeg::encode(&sharp, 80).unwrap());
        let frame = Frame { format: PixelFormat::Mjpeg, data: camera_jpeg.clone(), ..sharp };
        let mut source = Frames::new(vec![frame], 30);
        let s = capture_still(&mut source, &StillConfig::default(), &Quality::FACE).unwrap();
        assert!(s.passthrough);
        assert_eq!(jpeg::scan_data(&s.jpeg).unwrap(), jpeg::scan_data(&camera_jpeg).unwrap());
        assert!(!jpeg::metadata_markers(&s.jpeg).unwrap().contains(&0xE1), "no EXIF survives");
        assert!(s.metrics.sharpness > 0.0);
    }

    #[test]
    fn a_corrupt_mjpeg_frame_is_passed_over_and_only_corrupt_ones_fail() {
        let sharp = sharp_frame(320, 240);
        let good = Frame { format: PixelFormat::Mjpeg, data: jpeg::encode(&sharp, 80).unwrap(), ..sharp.clone() };
        let corrupt = Frame { index: 1, data: vec![0xFF, 0xD8, 0x00, 0x13, 0x37], ..good.clone() };
        let settings = StillConfig { warmup_frames: 0, candidates: 2, jpeg_quality: 90, ..Default::default() };
        let mut source = Frames::new(vec![good.clone(), corrupt.clone()], 30);
        let s = capture_still(&mut source, &settings, &Quality::FACE).unwrap();
        assert_eq!(s.frame_index, 0, "the frame that decodes");
        let mut source = Frames::new(vec![corrupt.clone(), Frame { index: 2, ..corrupt }], 30);
        let err = capture_still(&mut source, &settings, &Quality::FACE).unwrap_err();
        assert!(err.to_string().contains("JPEG"), "{err}");
    }

    #[test]
    fn an_empty_source_is_an_error_naming_it() {
        let mut source = Frames::new(vec![], 30);
        let err = capture_still(&mut source, &StillConfig::default(), &Quality::FACE).unwrap_err();
        assert!(err.to_string().contains("memory"), "{err}");
    }

    #[test]
    fn a_document_still_becomes_the_card_cut_out_and_a_table_a_retake() {
        use crate::card_scene::{render, Kind};
        let scene = render(Kind::Whole, 1920, 1080, 11);
        let mut still = still_of(scene.frame.clone());
        let before = still.verdict.clone();
        cut_document(&mut still, CardFormat::Id1, 90).unwrap();
        assert_eq!(still.verdict, before, "a whole card adds no reason");
        let cut = still.card.as_ref().expect("the card was cut");
        assert!(cut.corners.corner_error(&scene.corners.unwrap()) < 0.02 * cut.corners.diagonal(), "{cut:?}");
        assert_eq!((cut.frame_width, cut.frame_height), (1920, 1080));
        let ratio = still.frame.width as f64 / still.frame.height as f64;
        assert!((ratio - CardFormat::Id1.aspect()).abs() < 0.01, "{:?}", still.frame);
        assert!(!still.passthrough && still.jpeg.starts_with(&[0xFF, 0xD8]));
        // The document photo is then cut from the straightened card: the portrait is on it.
        let photo = crate::faces::document_photo(&still.frame).unwrap();
        assert!(photo.width < still.frame.width / 2, "{photo:?}");

        let mut table = still_of(render(Kind::NoCard, 1280, 720, 12).frame);
        let jpeg = table.jpeg.clone();
        cut_document(&mut table, CardFormat::Id1, 90).unwrap();
        assert!(table.verdict.reasons().iter().any(|r| r.starts_with("no document found")), "{:?}", table.verdict);
        assert_eq!((table.jpeg, table.card), (jpeg, None), "a retake keeps the frame as it was");
    }
}
