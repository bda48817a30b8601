//! Image quality metrics on luma, and the pass/retake verdict against per-role thresholds.
//!
//! - sharpness: variance of the 4-neighbour Laplacian (focus and motion blur lower it);
//! - brightness: mean luma, 0–255 (under- and over-exposure);
//! - glare: share of pixels at or above [`GLARE_LEVEL`] (specular reflections on a laminated
//!   card hide its data);
//! - resolution: width and height.

use crate::Quality;

/// Luma at or above this counts as saturated (glare).
pub const GLARE_LEVEL: u8 = 250;

/// Measured quality of one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    pub sharpness: f64,
    pub brightness: f64,
    pub glare: f64,
    pub width: u32,
    pub height: u32,
    /// Faces found, when the role looks for them (`None` for documents).
    pub faces: Option<u32>,
    /// The largest face: its box, and its own sharpness and brightness.
    pub face: Option<FaceMetrics>,
}

/// A face's box in the image and its own quality. It is also what the helper reports (the
/// still's JSON), with the figures to a tenth.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct FaceMetrics {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    #[serde(serialize_with = "to_tenths")]
    pub sharpness: f64,
    #[serde(serialize_with = "to_tenths")]
    pub brightness: f64,
}

/// A figure rounded to a tenth, which is all a report (or a person) can use of it.
pub fn tenths(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn to_tenths<S: serde::Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(tenths(*x))
}

/// Pass, or retake with every reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Retake(Vec<String>),
}

impl Verdict {
    pub fn is_pass(&self) -> bool {
        matches!(self, Verdict::Pass)
    }

    pub fn reasons(&self) -> &[String] {
        match self {
            Verdict::Pass => &[],
            Verdict::Retake(r) => r,
        }
    }
}

/// Measures a full-range luma plane of `width`×`height`.
pub fn measure(luma: &[u8], width: u32, height: u32) -> Metrics {
    let (w, h) = (width as usize, height as usize);
    let n = (w * h).max(1) as f64;
    let (mut sum, mut saturated) = (0u64, 0u64);
    for &v in &luma[..w * h] {
        sum += v as u64;
        saturated += u64::from(v >= GLARE_LEVEL);
    }
    // Laplacian over the interior, accumulated as sums of x and x² in integers (exact, fast).
    let (mut s1, mut s2, mut count) = (0i64, 0i64, 0i64);
    for y in 1..h.saturating_sub(1) {
        let (up, row, down) = (&luma[(y - 1) * w..y * w], &luma[y * w..(y + 1) * w], &luma[(y + 1) * w..(y + 2) * w]);
        for x in 1..w - 1 {
            let l = up[x] as i64 + down[x] as i64 + row[x - 1] as i64 + row[x + 1] as i64 - 4 * row[x] as i64;
            s1 += l;
            s2 += l * l;
        }
        count += (w - 2) as i64;
    }
    let sharpness = if count > 0 {
        let mean = s1 as f64 / count as f64;
        s2 as f64 / count as f64 - mean * mean
    } else {
        0.0
    };
    Metrics {
        sharpness,
        brightness: sum as f64 / n,
        glare: saturated as f64 / n,
        width,
        height,
        faces: None,
        face: None,
    }
}

/// Judges metrics against thresholds; every failed rule becomes a reason.
pub fn judge(m: &Metrics, t: &Quality) -> Verdict {
    let mut reasons = Vec::new();
    if m.sharpness < t.min_sharpness {
        reasons.push(format!("blurred: sharpness {:.0} below {:.0}", m.sharpness, t.min_sharpness));
    }
    if m.brightness < t.min_brightness {
        reasons.push(format!("too dark: brightness {:.0} below {:.0}", m.brightness, t.min_brightness));
    }
    if m.brightness > t.max_brightness {
        reasons.push(format!("over-exposed: brightness {:.0} above {:.0}", m.brightness, t.max_brightness));
    }
    if m.glare > t.max_glare {
        reasons.push(format!("glare: {:.1}% saturated pixels above {:.1}%", m.glare * 100.0, t.max_glare * 100.0));
    }
    if m.width < t.min_width || m.height < t.min_height {
        reasons.push(format!("resolution {}x{} below {}x{}", m.width, m.height, t.min_width, t.min_height));
    }
    // The face rule follows ISO/IEC 19794-5's guidance on the head's width for a usable
    // portrait: exactly one face, at least `min_face_width` wide (150 px by default).
    if let Some(min_face_width) = t.min_face_width {
        match (m.faces, m.face) {
            (Some(0), _) => reasons.push("no face found: the customer must look at the camera".into()),
            (Some(n), _) if n > 1 => reasons.push(format!("{n} faces found: only the customer may be in the picture")),
            (Some(_), Some(f)) if f.width < min_face_width => reasons.push(format!(
                "face too small: {} px wide, at least {} (come closer to the camera)",
                f.width, min_face_width
            )),
            (Some(_), _) => {}
            (None, _) => reasons.push("faces were not looked for".into()),
        }
    }
    if reasons.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Retake(reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_images_have_no_sharpness_and_edges_do() {
        let flat = vec![128u8; 64 * 64];
        let m = measure(&flat, 64, 64);
        assert_eq!((m.sharpness, m.brightness, m.glare), (0.0, 128.0, 0.0));
        let edges: Vec<u8> = (0..64 * 64).map(|i| if (i % 64 / 4 + i / 64 / 4) % 2 == 0 { 20 } else { 230 }).collect();
        assert!(measure(&edges, 64, 64).sharpness > 1000.0);
        let white = vec![255u8; 64 * 64];
        assert_eq!(measure(&white, 64, 64).glare, 1.0);
    }

    #[test]
    fn every_failed_rule_is_a_reason() {
        let m =
            Metrics { sharpness: 5.0, brightness: 230.0, glare: 0.2, width: 640, height: 480, faces: None, face: None };
        let v = judge(&m, &Quality::DOCUMENT);
        let reasons = v.reasons().join("; ");
        for needle in ["blurred", "over-exposed", "glare", "resolution 640x480"] {
            assert!(reasons.contains(needle), "{reasons}");
        }
        let good = Metrics {
            sharpness: 500.0,
            brightness: 120.0,
            glare: 0.0,
            width: 1920,
            height: 1080,
            faces: None,
            face: None,
        };
        assert!(judge(&good, &Quality::DOCUMENT).is_pass());
    }

    #[test]
    fn a_selfie_needs_exactly_one_large_enough_face() {
        let face = |width| FaceMetrics { x: 0, y: 0, width, height: width, sharpness: 50.0, brightness: 120.0 };
        let selfie = |faces, f| Metrics {
            sharpness: 500.0,
            brightness: 120.0,
            glare: 0.0,
            width: 1280,
            height: 720,
            faces: Some(faces),
            face: f,
        };
        assert!(judge(&selfie(1, Some(face(200))), &Quality::FACE).is_pass());
        let reasons = |m| judge(&m, &Quality::FACE).reasons().join("; ");
        assert!(reasons(selfie(0, None)).contains("no face found"));
        assert!(reasons(selfie(2, Some(face(200)))).contains("2 faces found"));
        assert!(reasons(selfie(1, Some(face(120)))).contains("face too small: 120 px wide, at least 150"));
        let strict = Quality { min_face_width: Some(250), ..Quality::FACE };
        assert!(!judge(&selfie(1, Some(face(200))), &strict).is_pass(), "the rule is configurable");
    }
}
