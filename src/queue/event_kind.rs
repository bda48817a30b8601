//! The kinds of an enrollment's history events (and of its audit records): one type, so that a
//! writer and a reader (the wait that is noted once, the demo's step times) cannot drift apart.

use std::fmt;

use super::State;

/// What happened to an enrollment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// It entered this state (the kind is the state's name: `queued`, `created`, `failed`, …).
    Entered(State),
    /// A step failed and will be retried (the first of a run of failures).
    Retrying,
    /// The next step waits on purpose (a video window).
    Waiting,
    /// An operator re-queued it (`queue retry`).
    Retry,
    /// A create may have reached the server unanswered.
    PossibleOrphan,
    /// The search for that orphan ran.
    OrphanScan,
    /// An orphan was found on the server.
    Orphan,
    /// The agent cancelled an orphan request it had made.
    RequestCancelled,
    /// The server reported a status the agent does not know.
    UnknownStatus,
    /// Review following ended without a decision.
    ReviewUnfollowed,
    /// Its local evidence was erased after confirmation.
    Erased,
    /// Its local evidence was erased by the retention policy.
    RetentionErased,
    DocumentQueued,
    DocumentResend,
    DocumentUploaded,
    DocumentDeleted,
    /// The server refused a document for good (it is failed with the reason).
    DocumentRefused,
    /// A sign call went to the server (before its answer): `ISSUED` read afterwards means signed.
    SignSent,
}

impl EventKind {
    /// The word stored in the history and the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Entered(state) => state.as_str(),
            EventKind::Retrying => "retrying",
            EventKind::Waiting => "waiting",
            EventKind::Retry => "retry",
            EventKind::PossibleOrphan => "possible_orphan",
            EventKind::OrphanScan => "orphan_scan",
            EventKind::Orphan => "orphan",
            EventKind::RequestCancelled => "request_cancelled",
            EventKind::UnknownStatus => "unknown_status",
            EventKind::ReviewUnfollowed => "review_unfollowed",
            EventKind::Erased => "erased",
            EventKind::RetentionErased => "retention_erased",
            EventKind::DocumentQueued => "document_queued",
            EventKind::DocumentResend => "document_resend",
            EventKind::DocumentUploaded => "document_uploaded",
            EventKind::DocumentDeleted => "document_deleted",
            EventKind::DocumentRefused => "document_refused",
            EventKind::SignSent => "sign_sent",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
