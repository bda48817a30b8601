//! The local state of one enrollment (see `docs/design.md`, "One enrollment, locally").

use std::fmt;
use std::str::FromStr;

/// `queued → creating → created → evidences_sent → video_sent → in_review → approved → signed`,
/// with `failed` (operator action needed), `cancelled` and `refused` (the server's decisions)
/// beside them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Queued,
    Creating,
    Created,
    EvidencesSent,
    VideoSent,
    InReview,
    Approved,
    Signed,
    Failed,
    Cancelled,
    Refused,
}

impl State {
    pub const ALL: [State; 11] = [
        State::Queued,
        State::Creating,
        State::Created,
        State::EvidencesSent,
        State::VideoSent,
        State::InReview,
        State::Approved,
        State::Signed,
        State::Failed,
        State::Cancelled,
        State::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Creating => "creating",
            State::Created => "created",
            State::EvidencesSent => "evidences_sent",
            State::VideoSent => "video_sent",
            State::InReview => "in_review",
            State::Approved => "approved",
            State::Signed => "signed",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
            State::Refused => "refused",
        }
    }

    /// States in which the sync worker still has something to send or to confirm.
    pub fn is_pending(self) -> bool {
        matches!(self, State::Queued | State::Creating | State::Created | State::EvidencesSent | State::VideoSent)
    }

    /// The pending states as an SQL list, `('queued', 'creating', …)`, generated from
    /// [`State::is_pending`] so that no query can drift from it.
    pub fn pending_sql() -> &'static str {
        static LIST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        LIST.get_or_init(|| {
            let names: Vec<String> =
                State::ALL.into_iter().filter(|s| s.is_pending()).map(|s| format!("'{}'", s.as_str())).collect();
            format!("({})", names.join(", "))
        })
    }

    /// Whether the worker may move an enrollment from `self` to `to`.
    pub fn can_advance_to(self, to: State) -> bool {
        use State::*;
        match (self, to) {
            (Queued, Creating) | (Creating, Created) | (Created, EvidencesSent) | (EvidencesSent, VideoSent) => true,
            (VideoSent, InReview) | (InReview, Approved) | (VideoSent, Approved) => true,
            (VideoSent | InReview | Approved, Signed) => true,
            // A VIDEOERROR/VIDEOINCOMPLETE answer sends the worker back to re-upload.
            (VideoSent, Created) | (VideoSent, EvidencesSent) => true,
            // The status read before a step shows the server lost the evidences.
            (EvidencesSent, Created) => true,
            // The server ended the request (a terminal status), or a permanent error did.
            (from, Failed | Cancelled | Refused) => from.is_pending() || from == InReview || from == Approved,
            (Failed | Cancelled | Refused | Signed, _) => false,
            _ => false,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        State::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| format!("unknown state {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pending_sql_list_is_the_pending_states() {
        assert_eq!(State::pending_sql(), "('queued', 'creating', 'created', 'evidences_sent', 'video_sent')");
    }
}
