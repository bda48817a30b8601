//! Live guidance: the still's checks run on preview frames (reduced to [`WIDTH`] pixels across),
//! turned into hints a person can act on, and the moment to capture by itself: when a frame
//! needs no hint and the picture has stayed still and good for the configured time.

use std::time::{Duration, Instant};

use crate::card::{self, CardFormat, Finding, Quad};
use crate::convert::convert;
use crate::faces;
use crate::hub::Hub;
use crate::{CaptureError, Frame, PixelFormat, Quality};

/// Preview frames are judged at most this often: enough to see a hand move, cheap enough to
/// leave the cores to recording.
pub const JUDGE_EVERY: Duration = Duration::from_millis(200);
/// Preview frames are judged at this width.
pub const WIDTH: u32 = 640;
/// Mean luma change between two judged frames (levels) above which the picture is moving.
pub const MOVING: f64 = 3.0;

/// Something the person in front of the camera can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hint {
    ShowWholeCard,
    MoveCloser,
    HoldFlat,
    TooDark,
    TooBright,
    Glare,
    HoldStill,
    NoFace,
    OneFaceOnly,
}

impl Hint {
    /// A stable name for programs (the page translates by it).
    pub fn code(self) -> &'static str {
        match self {
            Hint::ShowWholeCard => "show_whole_card",
            Hint::MoveCloser => "move_closer",
            Hint::HoldFlat => "hold_flat",
            Hint::TooDark => "too_dark",
            Hint::TooBright => "too_bright",
            Hint::Glare => "glare",
            Hint::HoldStill => "hold_still",
            Hint::NoFace => "no_face",
            Hint::OneFaceOnly => "one_face_only",
        }
    }

    /// The words for the person.
    pub fn words(self) -> &'static str {
        match self {
            Hint::ShowWholeCard => "show the whole card",
            Hint::MoveCloser => "move closer",
            Hint::HoldFlat => "hold the card flat, facing the camera",
            Hint::TooDark => "too dark",
            Hint::TooBright => "too bright",
            Hint::Glare => "glare on the card",
            Hint::HoldStill => "hold still",
            Hint::NoFace => "look at the camera",
            Hint::OneFaceOnly => "one face only",
        }
    }
}

/// One judged preview frame.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Guidance {
    pub frame_index: u64,
    pub brightness: f64,
    pub glare: f64,
    /// Mean luma change since the previous judged frame.
    pub motion: f64,
    /// Faces found (face camera), and the largest one's box in the frame's pixels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faces: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face: Option<[u32; 4]>,
    /// The document's outline in the frame's pixels (document camera, when one is seen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card: Option<Quad>,
    pub hints: Vec<Hint>,
    /// No hint: this frame could be taken.
    pub ready: bool,
    /// The judged frame's size.
    pub frame_width: u32,
    pub frame_height: u32,
}

/// Judges preview frames of one camera role.
#[derive(Debug)]
pub struct Guide {
    thresholds: Quality,
    card: Option<CardFormat>,
    previous: Option<Vec<u8>>,
}

impl Guide {
    /// A guide for a role with these thresholds; `card` for a document camera that cuts.
    pub fn new(thresholds: Quality, card: Option<CardFormat>) -> Guide {
        Guide { thresholds, card, previous: None }
    }

    pub fn judge(&mut self, frame: &Frame) -> Result<Guidance, CaptureError> {
        let scale = (frame.width as f64 / WIDTH as f64).max(1.0);
        let (w, h) = (((frame.width as f64 / scale) as u32) & !1, ((frame.height as f64 / scale) as u32) & !1);
        let small = convert(frame, PixelFormat::Rgb24, w, h)?;
        let luma: Vec<u8> = small
            .data
            .chunks_exact(3)
            .map(|p| ((p[0] as u32 * 77 + p[1] as u32 * 150 + p[2] as u32 * 29) >> 8) as u8)
            .collect();
        let m = crate::metrics::measure(&luma, w, h);
        let motion = match &self.previous {
            Some(p) if p.len() == luma.len() => {
                p.iter().zip(&luma).map(|(a, b)| (*a as i32 - *b as i32).unsigned_abs() as u64).sum::<u64>() as f64
                    / luma.len() as f64
            }
            _ => f64::INFINITY, // nothing to compare with yet: not known to be still
        };
        self.previous = Some(luma.clone());
        let t = &self.thresholds;
        let mut hints = Vec::new();
        let mut outline = None;
        if let Some(format) = self.card {
            let finding = card::find_rgb(&small.data, w, h, format);
            outline = finding.quad().map(|q| Quad(q.0.map(|(x, y)| (x * scale, y * scale))));
            match finding {
                Finding::Card(_) => {}
                Finding::NoCard | Finding::CutOff => hints.push(Hint::ShowWholeCard),
                Finding::TooSmall { .. } => hints.push(Hint::MoveCloser),
                Finding::TooSkewed { .. } => hints.push(Hint::HoldFlat),
            }
        }
        if m.brightness < t.min_brightness {
            hints.push(Hint::TooDark);
        } else if m.brightness > t.max_brightness {
            hints.push(Hint::TooBright);
        }
        if m.glare > t.max_glare {
            hints.push(Hint::Glare);
        }
        let (mut faces_found, mut face) = (None, None);
        if let Some(min_face_width) = t.min_face_width {
            let found = faces::detect(&luma, w, h);
            faces_found = Some(found.len() as u32);
            face = found.first().map(|f| [f.x, f.y, f.width, f.height].map(|v| (v as f64 * scale).round() as u32));
            match (found.len(), face) {
                (0, _) => hints.push(Hint::NoFace),
                (1, Some(b)) if b[2] < min_face_width => hints.push(Hint::MoveCloser),
                (1, _) => {}
                _ => hints.push(Hint::OneFaceOnly),
            }
        }
        if motion > MOVING {
            hints.push(Hint::HoldStill);
        }
        Ok(Guidance {
            frame_index: frame.index,
            brightness: crate::metrics::tenths(m.brightness),
            glare: m.glare,
            motion: if motion.is_finite() { crate::metrics::tenths(motion) } else { -1.0 },
            faces: faces_found,
            face,
            card: outline,
            ready: hints.is_empty(),
            hints,
            frame_width: frame.width,
            frame_height: frame.height,
        })
    }
}

/// Follows a camera's preview for a viewer: judges its latest frame every [`JUDGE_EVERY`]
/// (read from the hub without copying it, sleeping in between, so it never holds the camera
/// back or slows a recording: a slow judgement only means fewer of them) and gives each
/// verdict to `send` with how long the preview has been good, until `send` returns false or
/// the camera ends.
pub fn follow(hub: &Hub, mut guide: Guide, steady: Duration, mut send: impl FnMut(&Guidance, Duration) -> bool) {
    let mut steadiness = Steady::new(steady);
    let mut seen = None;
    loop {
        let began = Instant::now();
        let frame = match hub.frame_after(seen) {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => return, // the camera ended or went silent: the viewer reconnects
        };
        seen = Some(frame.index);
        let Ok(g) = guide.judge(&frame) else { return };
        steadiness.update(g.ready, frame.timestamp);
        if !send(&g, steadiness.ready_for(frame.timestamp)) {
            return;
        }
        if let Some(rest) = JUDGE_EVERY.checked_sub(began.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

/// When to capture by itself: once frames have been ready, one after another, for `steady`.
#[derive(Debug, Clone)]
pub struct Steady {
    steady: Duration,
    since: Option<Duration>,
}

impl Steady {
    pub fn new(steady: Duration) -> Steady {
        Steady { steady, since: None }
    }

    /// Takes a judged frame's readiness at its capture time; true once ready for long enough.
    pub fn update(&mut self, ready: bool, at: Duration) -> bool {
        if !ready {
            self.since = None;
            return false;
        }
        let since = *self.since.get_or_insert(at);
        at.saturating_sub(since) >= self.steady
    }

    /// How long frames have been ready without a break, as of `at`.
    pub fn ready_for(&self, at: Duration) -> Duration {
        self.since.map_or(Duration::ZERO, |since| at.saturating_sub(since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card_scene::Sliding;
    use crate::FrameSource;

    #[test]
    fn steadiness_restarts_whenever_a_frame_is_not_ready() {
        let mut s = Steady::new(Duration::from_millis(700));
        let ms = Duration::from_millis;
        assert!(!s.update(true, ms(0)));
        assert!(!s.update(true, ms(600)));
        assert!(!s.update(false, ms(650)), "moved");
        assert!(!s.update(true, ms(700)));
        assert!(!s.update(true, ms(1300)));
        assert!(s.update(true, ms(1400)));
    }

    #[test]
    fn a_card_sliding_in_is_cut_off_then_moving_then_ready() {
        let mut camera = Sliding::new(1280, 720, 10).unwrap().unpaced();
        let mut guide = Guide::new(Quality::DOCUMENT, Some(CardFormat::Id1));
        let mut seen = Vec::new();
        for _ in 0..30 {
            let frame = camera.next_frame().unwrap().unwrap();
            let g = guide.judge(&frame).unwrap();
            seen.push((frame.timestamp, g.hints.clone()));
        }
        assert!(seen[0].1.contains(&Hint::ShowWholeCard), "{seen:?}");
        assert!(seen.iter().any(|(_, h)| h == &vec![Hint::HoldStill]), "whole but moving: {seen:?}");
        for (t, hints) in &seen {
            if *t < Sliding::ARRIVES {
                assert!(!hints.is_empty(), "never ready while it moves: {t:?} {seen:?}");
            } else if *t > Sliding::ARRIVES + Duration::from_millis(150) {
                assert!(hints.is_empty(), "at rest it is ready: {t:?} {hints:?}");
            }
        }
    }
}
