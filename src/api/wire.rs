//! The API's own wire types: what clients see, decoupled from the queue's records so either can
//! change without breaking the other.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::queue::Summary;

/// A request pk: a number as the server sends it (a string if it is not numeric).
fn request_pk_schema() -> utoipa::openapi::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    utoipa::openapi::Schema::OneOf(
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Integer))
            .item(ObjectBuilder::new().schema_type(Type::String))
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .description(Some("the request's pk on the server, once created"))
            .build(),
    )
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
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
    /// The longest clip a recording takes (`capture.video.max_seconds`): the page records this
    /// long unless the operator stops earlier.
    pub video_max_seconds: u64,
}

/// One enrollment, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Enrollment {
    pub id: String,
    pub state: String,
    #[serde(serialize_with = "crate::queue::pk_json::one")]
    #[schema(schema_with = request_pk_schema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EnrollmentDetail {
    #[serde(flatten)]
    pub summary: Enrollment,
    pub artifacts: Vec<Artifact>,
    pub history: Vec<HistoryEvent>,
    pub capture_manifest_valid: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Artifact {
    pub name: String,
    pub kind: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// An enrollment appeared or changed state or attempts.
    Enrollment(Enrollment),
    /// The server became reachable or unreachable.
    Link { online: bool },
    /// A video upload's progress: bytes handed to the connection so far.
    Upload { id: String, sent_bytes: u64, total_bytes: u64 },
    /// This subscriber fell behind and missed events: reread the list and the status.
    Resync,
}

/// Every error: a stable code, a message for people, and the field at fault when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unhealthy` with the reasons (no personal data).
    pub status: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// `POST /v1/session`: the API token, exchanged for a session cookie.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    pub token: Option<String>,
}

/// The answer of `POST` and `DELETE /v1/session` (the session itself is the cookie).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SessionState {
    /// `open`, `closed`, or `none` (there was no session to close).
    pub session: String,
    /// How long an open session may stay unused, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_secs: Option<u64>,
}

/// `202` of `POST /v1/enrollments`: the id, once the enrollment is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Accepted {
    pub id: String,
}

/// A Base64 file, a still (`{"capture": ID}`) or a clip (`{"recording": ID}`) of the capture
/// service, or (multipart) the name of a part.
#[derive(Debug, Clone, ToSchema)]
#[schema(as = EvidenceFile)]
#[allow(dead_code)] // described, not built: the intake reads the manifest strictly itself
pub enum EvidenceFile {
    Base64(String),
    Capture { capture: String },
    Recording { recording: String },
}

/// `POST /v1/enrollments`: the enrollment manifest (see the README's "Enrollment manifest"),
/// its files inline. The intake reads it with the strict parser and validates it as `enroll`
/// does, naming each field that breaks a rule.
#[derive(Debug, Clone, ToSchema)]
#[allow(dead_code)] // described, not built (see above)
pub struct EnrollmentRequest {
    #[schema(value_type = Object)]
    pub customer: serde_json::Value,
    #[schema(value_type = Option<Object>)]
    pub acceptance: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub ocr_data: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub security_checks: Option<serde_json::Value>,
    /// 0-100 (the old generation also takes `low`, `medium`, `high`).
    #[schema(value_type = Option<Object>)]
    pub similarity_level: Option<serde_json::Value>,
    /// Who made each claim about the customer: for every security check given and
    /// `similarity_level`, `"operator"` or `"software:NAME"` (the kiosk's verification
    /// software). Recorded in the signed capture manifest and the audit trail, not sent.
    #[schema(value_type = Option<std::collections::BTreeMap<String, String>>)]
    pub claims_source: Option<serde_json::Value>,
    /// `document_front`, `document_rear`, `document_photo`, `selfie`: each an [`EvidenceFile`].
    pub images: std::collections::BTreeMap<String, EvidenceFile>,
    pub video: EvidenceFile,
}

/// `POST /v1/enrollments/{id}/retry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Retried {
    pub id: String,
    /// The state it was re-queued in.
    pub state: String,
}

/// `POST /v1/enrollments/{id}/refuse`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefuseRequest {
    /// Why (the server records it); required.
    pub reason: Option<String>,
}

/// The answer of an approval or a refusal: the request and its status on the server now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Reviewed {
    pub id: String,
    pub request_pk: String,
    pub status: String,
}

/// `POST /v1/enrollments/{id}/correct`: only the fields given change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Corrected {
    pub id: String,
    pub request_pk: String,
    pub corrected: Vec<String>,
}

/// `POST /v1/enrollments/{id}/documents?name=`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DocumentQuery {
    /// The document's file name (letters, digits, `- _ .` and spaces; `document.pdf` if none).
    pub name: Option<String>,
}

/// `202` of `POST /v1/enrollments/{id}/documents`: the queued documents' ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DocumentsQueued {
    pub id: String,
    pub documents: Vec<String>,
}

/// `POST /v1/enrollments/{id}/otp`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OtpRequest {
    /// Send it by WhatsApp instead of SMS.
    pub whatsapp: Option<bool>,
}

/// The answer of `POST /v1/enrollments/{id}/otp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OtpSent {
    pub id: String,
    /// `sms` or `whatsapp`.
    pub sent_by: String,
}

/// `POST /v1/enrollments/{id}/sign`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// The code the customer received; required.
    pub otp: Option<String>,
}

/// The answer of `POST /v1/enrollments/{id}/sign`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Signed {
    pub id: String,
    pub status: String,
}

/// `GET /v1/enrollments/{id}/documents`: one document to sign, as the queue knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Document {
    /// The server's uid (`null` while the document is queued): its signed copy is
    /// `/v1/enrollments/{id}/documents/{uid}/signed.pdf`.
    pub uid: Option<String>,
    pub file: String,
    /// `queued`, `uploading`, `uploaded`, `failed`, `deleted`.
    pub state: String,
}

/// `GET /v1/enrollments?state=`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only enrollments in this state.
    pub state: Option<String>,
}

/// `POST /v1/captures/still`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[allow(dead_code)] // described; the capture service reads it
pub struct StillRequest {
    /// `document` or `face`.
    pub role: String,
    /// `document_front`, `document_rear` or `selfie`.
    pub kind: Option<String>,
    /// Wait for a good moment (the guidance needs no hint for `capture.auto_steady_ms`) and
    /// take the still then; a wait that times out answers a retake saying what was wrong.
    pub auto: Option<bool>,
    /// With `auto`: how long to wait, seconds (default 30, at most 120).
    pub timeout_secs: Option<f64>,
}

/// One judged preview frame: an event `guidance` of `GET /v1/cameras/{role}/guidance`. The
/// daemon reads each event of the capture service into this type and writes it again, so the
/// stream carries these fields and nothing else.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Guidance {
    /// `document` or `face`.
    pub role: String,
    pub frame_index: u64,
    /// The camera frame's size: `card` and `face` are in its pixels.
    pub frame_width: u32,
    pub frame_height: u32,
    /// Mean luma, 0–255.
    pub brightness: f64,
    /// Share of saturated pixels, 0–1.
    pub glare: f64,
    /// Mean change since the previous judged frame, in levels (-1 for the first).
    pub motion: f64,
    /// Faces seen (face camera).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faces: Option<u32>,
    /// The largest face's box: x, y, width, height.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub face: Option<[u32; 4]>,
    /// The document's outline, clockwise from its top left (document camera, when it cuts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<[[f64; 2]; 4]>,
    /// What the person should change, most important first; empty when nothing.
    pub hints: Vec<GuidanceHint>,
    /// No hint on this frame.
    pub ready: bool,
    /// How long the preview has needed no hint, and how long auto-capture waits for (ms).
    pub ready_ms: u64,
    pub steady_ms: u64,
}

/// A hint: `show_whole_card`, `move_closer`, `hold_flat`, `too_dark`, `too_bright`, `glare`,
/// `hold_still`, `no_face` or `one_face_only`, with its words in English.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GuidanceHint {
    pub code: String,
    pub words: String,
}

/// `POST /v1/recordings`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[allow(dead_code)] // described; the capture service reads it
pub struct RecordingRequest {
    /// The clip's longest length, in seconds (> 0).
    pub max_seconds: f64,
}

/// The errors every step of the signing flow can answer.
#[derive(Debug, utoipa::IntoResponses)]
#[allow(dead_code)] // described: the handlers answer these as `ApiError`s
pub enum FlowErrors {
    /// no such enrollment
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// refused: wrong state, a raw request pk, or the server refused the step (its words)
    #[response(status = 409)]
    Refused(ErrorBody),
    /// the One-Shot server could not be reached or answered in error
    #[response(status = 502)]
    ServerError(ErrorBody),
}

/// A binary body (a PDF, a JPEG).
#[derive(Debug)]
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for Binary {}

/// `POST /v1/enrollments` as `multipart/form-data`: the manifest without its files, and one
/// part per file, named by its slot.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // described, not built: the intake streams the parts itself
pub struct MultipartEnrollment {
    /// The manifest (JSON) with `images` and `video` left out.
    manifest: String,
    #[schema(value_type = Option<Binary>)]
    document_front: Option<Vec<u8>>,
    #[schema(value_type = Option<Binary>)]
    document_rear: Option<Vec<u8>>,
    #[schema(value_type = Option<Binary>)]
    document_photo: Option<Vec<u8>>,
    #[schema(value_type = Option<Binary>)]
    selfie: Option<Vec<u8>>,
    #[schema(value_type = Binary)]
    video: Vec<u8>,
}
