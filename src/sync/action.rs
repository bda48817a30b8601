//! What the worker does about each server status. Statuses are data ([`RequestStatus`]); this
//! table is the agent's policy, and the one place that names them.

use crate::oneshot::RequestStatus;
use crate::queue::State;

/// The worker's reaction to a request status read after (or before) an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The server holds none of the uploads yet: send them; after both were acknowledged, keep
    /// polling with backoff, bounded by `sync.max_unknown_status_secs` (never a blind re-send).
    AwaitUploads,
    /// The evidences are in, the video is not: re-send the video (bounded).
    ResendVideo,
    /// The server failed the uploads: re-send both (bounded).
    ResendAll,
    /// Done sending: the request is with a reviewer (local `in_review`).
    InReview,
    /// Reviewed and approved, or further along the signing flow (local `approved`).
    Approved,
    /// The document is signed (local `signed`).
    Signed,
    /// The server ended the request: the enrollment ends in this local state with the server's
    /// status as the reason, and is neither polled nor re-sent again.
    Terminal(State),
    /// A status no public source names: recorded, polled with backoff, and failed after
    /// `sync.max_unknown_status_secs`.
    Unknown,
}

/// The action for `status`.
pub fn action(status: &RequestStatus) -> Action {
    use RequestStatus::*;
    match status {
        VideoPending | Created => Action::AwaitUploads,
        VideoIncomplete => Action::ResendVideo,
        VideoError => Action::ResendAll,
        VideoReview | Validated | VideoIdValidated => Action::InReview,
        EnrollReady | Approved | Issued | Valid | DocUploaded | OtpGenerated | Finished => Action::Approved,
        Signed => Action::Signed,
        Cancelled => Action::Terminal(State::Cancelled),
        VideoIdRefused => Action::Terminal(State::Refused),
        // ERROR and a failed VideoID end the request on the server; a suspended or revoked
        // certificate is not something more uploads can mend. An operator decides.
        Error | VideoIdFailed | Suspended | Revoked => Action::Terminal(State::Failed),
        Other(_) => Action::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_an_action_and_none_loops_for_ever() {
        for status in RequestStatus::KNOWN {
            assert_ne!(action(status), Action::Unknown, "{status} is a named status");
        }
        for (word, expected) in [
            ("VIDEOPENDING", Action::AwaitUploads),
            ("VIDEOINCOMPLETE", Action::ResendVideo),
            ("VIDEOERROR", Action::ResendAll),
            ("VIDEOREVIEW", Action::InReview),
            ("ENROLLREADY", Action::Approved),
            ("SIGNED", Action::Signed),
            ("CANCELLED", Action::Terminal(State::Cancelled)),
            ("ERROR", Action::Terminal(State::Failed)),
            ("VIDEOID_REFUSED", Action::Terminal(State::Refused)),
            ("VIDEOARCHIVED", Action::Unknown),
        ] {
            assert_eq!(action(&RequestStatus::parse(word)), expected, "{word}");
        }
    }
}
