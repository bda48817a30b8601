//! Auto-capture: the preview is judged a few times a second ([`guidance`](crate::guidance))
//! until it has needed no hint for the steady time; the still is then made of the frames of
//! that good moment, at full resolution, and cut when the role cuts a document. A still the
//! full-resolution checks turn down is not taken: the wait goes on.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::card::CardFormat;
use crate::guidance::{Guidance, Guide, Steady, JUDGE_EVERY};
use crate::still::{cut_document, still_from_frames, Still};
use crate::{CaptureError, Frame, FrameSource, Quality, StillConfig};

/// What came of waiting for a good moment.
#[derive(Debug)]
pub enum Auto {
    /// Taken: the still, and when (from the stream's first frame) the preview became good.
    Taken { still: Box<Still>, ready_since: Duration },
    /// Nothing good enough before the timeout; what still stood in the way.
    TimedOut { waited: Duration, hints: Vec<String> },
    /// `watch` said to stop (the person who asked has gone).
    Cancelled,
}

/// Waits up to `timeout` for the preview of `source` to be good for `settings.auto_steady`,
/// then takes the still; `watch` sees each judged frame (the hints to show meanwhile) and
/// returns whether to go on waiting.
pub fn capture_auto(
    source: &mut dyn FrameSource,
    settings: &StillConfig,
    thresholds: &Quality,
    card: Option<CardFormat>,
    timeout: Duration,
    mut watch: impl FnMut(&Guidance) -> bool,
) -> Result<Auto, CaptureError> {
    let started = Instant::now();
    let mut guide = Guide::new(*thresholds, card);
    let mut steady = Steady::new(settings.auto_steady);
    let keep = settings.candidates.max(1);
    // Frames since the preview was first judged ready (and not judged otherwise since): the
    // still is made of these.
    let mut good: VecDeque<Frame> = VecDeque::with_capacity(keep + 1);
    let mut judged_at: Option<Duration> = None;
    let mut ready_since = None;
    let mut standing: Vec<String> = vec!["no frame judged yet".into()];
    while started.elapsed() < timeout {
        let Some(frame) = source.next_frame()? else {
            break; // a file came to its end
        };
        let due = judged_at.is_none_or(|at| frame.timestamp >= at + JUDGE_EVERY);
        if !due {
            push(&mut good, frame, keep);
            continue;
        }
        judged_at = Some(frame.timestamp);
        let verdict = guide.judge(&frame)?;
        if !watch(&verdict) {
            return Ok(Auto::Cancelled);
        }
        if !verdict.ready {
            standing = verdict.hints.iter().map(|h| h.words().to_owned()).collect();
            good.clear();
            ready_since = None;
            steady.update(false, frame.timestamp);
            continue;
        }
        if ready_since.is_none() {
            // The frames queued since the last verdict were never judged: the card may still have
            // been moving in them. The still is made of this frame and those after it only.
            good.clear();
            ready_since = Some(frame.timestamp);
        }
        let at = frame.timestamp;
        push(&mut good, frame, keep);
        if !steady.update(true, at) {
            continue;
        }
        let mut still = still_from_frames(good.drain(..).collect(), source, settings, thresholds)?;
        if let Some(format) = card {
            cut_document(&mut still, format, settings.jpeg_quality)?;
        }
        if still.verdict.is_pass() {
            let ready_since = ready_since.expect("set by the ready frames");
            return Ok(Auto::Taken { still: Box::new(still), ready_since });
        }
        // The preview looked good but the full frame does not pass: keep waiting.
        standing = still.verdict.reasons().to_vec();
        ready_since = None;
        steady.update(false, at);
    }
    Ok(Auto::TimedOut { waited: started.elapsed(), hints: standing })
}

fn push(good: &mut VecDeque<Frame>, frame: Frame, keep: usize) {
    if good.len() == keep {
        good.pop_front();
    }
    good.push_back(frame);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card_scene::Sliding;

    #[test]
    fn the_sliding_card_is_taken_once_it_rests_and_cut() {
        let mut camera = Sliding::new(1280, 720, 15).unwrap().unpaced();
        let settings = StillConfig::default();
        let mut seen = 0;
        let outcome = capture_auto(
            &mut camera,
            &settings,
            &Quality::DOCUMENT,
            Some(CardFormat::Id1),
            Duration::from_secs(60),
            |_| {
                seen += 1;
                true
            },
        )
        .unwrap();
        let Auto::Taken { still, ready_since } = outcome else { panic!("{outcome:?}") };
        assert!(ready_since >= Sliding::ARRIVES, "{ready_since:?}");
        // The sharpest frame of the good moment, never one from before it.
        assert!(still.frame_time >= ready_since, "{:?}", still.frame_time);
        assert!(still.frame_time <= Sliding::ARRIVES + Duration::from_secs(2), "{:?}", still.frame_time);
        let cut = still.card.as_ref().expect("cut");
        let truth = camera.card_at(Sliding::ARRIVES);
        assert!(cut.corners.corner_error(&truth) <= 0.02 * truth.diagonal(), "{cut:?} vs {truth:?}");
        assert!(seen >= 10, "judged a few times a second: {seen}");
    }

    #[test]
    fn a_card_that_never_shows_times_out_saying_what_is_missing() {
        let mut camera = crate::synthetic::Synthetic::new(640, 360, 10).unwrap().unpaced();
        let outcome = capture_auto(
            &mut camera,
            &StillConfig::default(),
            &Quality::DOCUMENT,
            Some(CardFormat::Id1),
            Duration::from_millis(300),
            |_| true,
        )
        .unwrap();
        let Auto::TimedOut { hints, .. } = outcome else { panic!("{outcome:?}") };
        assert!(hints.iter().any(|h| h == "show the whole card"), "{hints:?}");
    }
}
