//! The API's own wire types: what clients see, decoupled from the queue's records so either can
//! change without breaking the other.

use serde::Serialize;

use crate::queue::Summary;

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// Whether the One-Shot server is reachable, as far as the worker knows.
    pub online: bool,
    pub pending: usize,
    pub pending_bytes: u64,
    /// Age of the oldest pending enrollment, in seconds.
    pub oldest_pending_secs: Option<u64>,
    pub failed: usize,
    pub free_disk_bytes: u64,
    /// When the server last answered (RFC 3339), if it has since the daemon started.
    pub last_contact: Option<String>,
}

/// One enrollment, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enrollment {
    pub id: String,
    pub state: String,
    #[serde(serialize_with = "crate::queue::pk_json::one")]
    pub request_pk: Option<String>,
    pub server_status: Option<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    pub bytes: u64,
    pub evidence_erased: bool,
}

impl From<&Summary> for Enrollment {
    fn from(s: &Summary) -> Self {
        Enrollment {
            id: s.id.clone(),
            state: s.state.to_string(),
            request_pk: s.request_pk.clone(),
            server_status: s.server_status.as_ref().map(|st| st.as_str().to_owned()),
            attempts: s.attempts,
            last_error: s.last_error.clone(),
            next_attempt_at: s.next_attempt_at.clone(),
            created_at: s.created_at.clone(),
            bytes: s.bytes,
            evidence_erased: s.erased,
        }
    }
}

/// One enrollment in detail: artifacts (name, kind, size, SHA-256) and history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnrollmentDetail {
    #[serde(flatten)]
    pub summary: Enrollment,
    pub artifacts: Vec<Artifact>,
    pub history: Vec<HistoryEvent>,
    pub capture_manifest_valid: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Artifact {
    pub name: String,
    pub kind: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEvent {
    pub at: String,
    pub kind: String,
    pub detail: String,
}

impl From<&Summary> for EnrollmentDetail {
    fn from(s: &Summary) -> Self {
        EnrollmentDetail {
            summary: s.into(),
            artifacts: s
                .artifacts
                .iter()
                .flatten()
                .map(|a| Artifact {
                    name: a.name.clone(),
                    kind: a.kind.clone(),
                    size: a.size,
                    sha256: a.sha256.clone(),
                })
                .collect(),
            history: s
                .history
                .iter()
                .flatten()
                .map(|e| HistoryEvent { at: e.at.clone(), kind: e.kind.clone(), detail: e.detail.clone() })
                .collect(),
            capture_manifest_valid: s.capture_manifest.as_ref().and_then(|m| m["signature_valid"].as_bool()),
        }
    }
}

/// An event on `GET /v1/events`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// An enrollment appeared or changed state or attempts.
    Enrollment(Enrollment),
    /// The server became reachable or unreachable.
    Link { online: bool },
    /// A video upload's progress: bytes handed to the connection so far.
    Upload { id: String, sent_bytes: u64, total_bytes: u64 },
}
