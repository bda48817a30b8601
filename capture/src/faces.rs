//! Faces in stills: SeetaFace's frontal detector through the pure-Rust `rustface` crate, with
//! its model (BSD-2-Clause, 1.2 MB, `models/seeta_fd_frontal_v1.0.bin`, the file the crate
//! ships) built into this crate. It runs in the capture helper only, on luma, downscaled so a
//! still is judged in tens of milliseconds.

use std::sync::OnceLock;

use crate::metrics::{measure, FaceMetrics};

static MODEL: &[u8] = include_bytes!("../models/seeta_fd_frontal_v1.0.bin");

/// Frames are searched at most this wide: larger ones are scaled down first (faces of a kiosk
/// user are large; a face of 150 px in a 1920-px frame is still 50 px here).
const SEARCH_WIDTH: u32 = 640;

/// The detector's own smallest face, in searched pixels (its floor is 20).
const MIN_SEARCH_FACE: u32 = 24;

/// The detector's confidence a face needs. SeetaFace's examples use 2.0; on textured
/// backgrounds (the synthetic camera's stripes) that finds faces scoring 2.4–2.7 where there are
/// none, while real faces here score 20–30 and a small, distant one about 6.
const MIN_SCORE: f64 = 4.0;

/// One face found: its box in the frame's pixels and the detector's confidence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceBox {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    pub score: f64,
}

fn model() -> &'static rustface::Model {
    static PARSED: OnceLock<rustface::Model> = OnceLock::new();
    PARSED.get_or_init(|| rustface::read_model(MODEL).expect("the built-in face model parses"))
}

/// The faces in a full-range luma plane, largest first.
pub fn detect(luma: &[u8], width: u32, height: u32) -> Vec<FaceBox> {
    if width < 40 || height < 40 {
        return Vec::new();
    }
    let scale = (width as f64 / SEARCH_WIDTH as f64).max(1.0);
    let (sw, sh) = ((width as f64 / scale) as u32, (height as f64 / scale) as u32);
    let small =
        if scale > 1.0 { downscale(luma, width, height, sw, sh) } else { luma[..(width * height) as usize].to_vec() };
    let mut detector = rustface::create_detector_with_model(model().clone());
    detector.set_min_face_size(MIN_SEARCH_FACE);
    detector.set_score_thresh(MIN_SCORE);
    detector.set_pyramid_scale_factor(0.8);
    detector.set_slide_window_step(4, 4);
    let mut faces: Vec<FaceBox> = detector
        .detect(&rustface::ImageData::new(&small, sw, sh))
        .into_iter()
        .map(|f| {
            let b = f.bbox();
            let x = (b.x().max(0) as f64 * scale) as u32;
            let y = (b.y().max(0) as f64 * scale) as u32;
            FaceBox {
                x: x.min(width - 1),
                y: y.min(height - 1),
                width: ((b.width() as f64 * scale) as u32).min(width - x.min(width - 1)),
                height: ((b.height() as f64 * scale) as u32).min(height - y.min(height - 1)),
                score: f.score(),
            }
        })
        .collect();
    faces.sort_by_key(|f| std::cmp::Reverse(f.width * f.height));
    faces
}

/// The face's own sharpness and brightness, measured inside its box.
pub fn face_metrics(luma: &[u8], width: u32, face: &FaceBox) -> FaceMetrics {
    let mut crop = Vec::with_capacity((face.width * face.height) as usize);
    for row in face.y..face.y + face.height {
        let start = (row * width + face.x) as usize;
        crop.extend_from_slice(&luma[start..start + face.width as usize]);
    }
    let m = measure(&crop, face.width, face.height);
    FaceMetrics {
        x: face.x,
        y: face.y,
        width: face.width,
        height: face.height,
        sharpness: m.sharpness,
        brightness: m.brightness,
    }
}

/// Box-filter downscale of a luma plane (each output pixel the mean of the input pixels it covers).
fn downscale(luma: &[u8], w: u32, h: u32, sw: u32, sh: u32) -> Vec<u8> {
    let mut out = vec![0u8; (sw * sh) as usize];
    for oy in 0..sh {
        let (y0, y1) = (oy * h / sh, ((oy + 1) * h / sh).max(oy * h / sh + 1));
        for ox in 0..sw {
            let (x0, x1) = (ox * w / sw, ((ox + 1) * w / sw).max(ox * w / sw + 1));
            let mut sum = 0u32;
            for y in y0..y1 {
                let row = &luma[(y * w) as usize..];
                sum += row[x0 as usize..x1 as usize].iter().map(|&v| v as u32).sum::<u32>();
            }
            out[(oy * sw + ox) as usize] = (sum / ((y1 - y0) * (x1 - x0))) as u8;
        }
    }
    out
}

/// The document's photo, cut around the face found on a document front (the largest one, as a
/// card may carry a second, smaller ghost image). No face is an error that says what to do.
pub fn document_photo(front: &crate::Frame) -> Result<crate::Frame, crate::CaptureError> {
    let luma = crate::convert::luma(front)?;
    let found = detect(&luma, front.width, front.height);
    let face = found.first().ok_or_else(|| {
        crate::CaptureError::media(
            "document photo",
            "no face found on the document front: retake it with the holder's photo visible and unobstructed",
        )
    })?;
    let (x, y, w, h) = portrait_around(face, front.width, front.height);
    crate::convert::crop(front, x, y, w, h)
}

/// Where to cut the document photo around the face found on a document front: the face with
/// room for hair and shoulders, at the 3:4 of an ID photo, kept inside the frame.
pub fn portrait_around(face: &FaceBox, width: u32, height: u32) -> (u32, u32, u32, u32) {
    let crop_w = (face.width as f64 * 1.8).min(width as f64) as u32;
    let crop_h = ((crop_w as f64 * 4.0 / 3.0) as u32).min(height);
    let cx = face.x + face.width / 2;
    let cy = face.y + face.height / 2;
    let x = cx.saturating_sub(crop_w / 2).min(width - crop_w);
    // The eyes sit a little above the middle of an ID photo.
    let y = cy.saturating_sub(crop_h * 9 / 20).min(height - crop_h);
    (x & !1, y & !1, crop_w & !1, crop_h & !1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::still::capture_still;
    use crate::Quality;
    use crate::StillConfig;

    /// The face test images (`tests/faces/`, made by its `make.sh` from a public-domain photo).
    fn still(name: &str, thresholds: &Quality) -> crate::still::Still {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/faces/");
        let mut source = crate::open(&format!("file:{path}{name}"), crate::CameraMode::default()).unwrap();
        capture_still(source.as_mut(), &StillConfig::default(), thresholds).unwrap()
    }

    #[test]
    fn one_large_face_passes_with_its_box_and_its_own_metrics() {
        let s = still("one.jpg", &Quality::FACE);
        assert_eq!(s.metrics.faces, Some(1), "{:?}", s.metrics);
        let f = s.metrics.face.unwrap();
        // The head was drawn 600 px square at (340, 60); the face is inside it.
        assert!(f.x >= 340 && f.x + f.width <= 940 && f.y >= 60 && f.y + f.height <= 660, "{f:?}");
        assert!(f.width >= 150 && f.sharpness > 0.0 && f.brightness > 40.0, "{f:?}");
        assert!(s.verdict.is_pass(), "{:?}", s.verdict);
    }

    #[test]
    fn no_face_two_faces_and_a_small_face_are_retakes_saying_why() {
        let reasons = |name| still(name, &Quality::FACE).verdict.reasons().join("; ");
        assert!(reasons("none.jpg").contains("no face found"), "{}", reasons("none.jpg"));
        assert!(reasons("two.jpg").contains("2 faces found"), "{}", reasons("two.jpg"));
        let small = reasons("small.jpg");
        assert!(small.contains("face too small") && small.contains("at least 150"), "{small}");
        // Documents are not searched for faces.
        assert_eq!(still("none.jpg", &Quality::DOCUMENT).metrics.faces, None);
    }

    #[test]
    fn the_document_photo_is_cut_around_the_face() {
        let s = still("document.jpg", &Quality::DOCUMENT);
        let y = crate::convert::luma(&s.frame).unwrap();
        let faces = detect(&y, s.frame.width, s.frame.height);
        assert_eq!(faces.len(), 1, "{faces:?}");
        let (x, y, w, h) = portrait_around(&faces[0], s.frame.width, s.frame.height);
        // The head was drawn 520 px square at (180, 300): the portrait holds the face and is
        // 3:4, inside the frame.
        let f = faces[0];
        assert!(x <= f.x && y <= f.y && x + w >= f.x + f.width && y + h >= f.y + f.height, "{:?} {f:?}", (x, y, w, h));
        assert!(x < 700 && (w as f64 / h as f64 - 0.75).abs() < 0.02 && y + h <= 1080, "{:?}", (x, y, w, h));
    }
}
