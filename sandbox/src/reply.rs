//! Answers in the envelope of each Optimizer generation, as public sources show them
//! (`docs/protocol.md`): the old one answers `{"status": "200 OK", "details": …}` and
//! `{"status": "<code> <reason>", "details": "<text>"}`, and documents "not found" as HTTP 400
//! with a `404 Not Found` envelope; the new one, a FastAPI application, answers
//! `{"status": "success", "message": …, "detail": …}` and its errors are FastAPI's
//! `{"detail": …}` (a text; a list of `{loc, msg, type}` for a body that fails validation, 422).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use oneshot_protocol::Generation;
use serde_json::{json, Value};

use crate::state::SandboxError;

/// A success: `message` is the human text, `payload` the data (`null` for none).
pub fn ok(generation: Generation, message: &str, payload: Value) -> Response {
    let body = match generation {
        // The old Optimizer puts either the data or the text into `details`.
        Generation::Old => {
            json!({"status": "200 OK", "details": if payload.is_null() { json!(message) } else { payload }})
        }
        Generation::New => json!({"status": "success", "message": message, "detail": payload}),
    };
    (StatusCode::OK, Json(body)).into_response()
}

/// An error with this HTTP status and text.
pub fn error(generation: Generation, status: StatusCode, text: &str) -> Response {
    let body = match generation {
        Generation::Old => {
            json!({"status": format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("")), "details": text})
        }
        Generation::New => json!({"detail": text}),
    };
    (status, Json(body)).into_response()
}

/// FastAPI's answer to a body that fails its schema: 422 with one `{loc, msg, type}` per field.
pub fn unprocessable(problems: &[(&[&str], &str, &str)]) -> Response {
    let detail: Vec<Value> =
        problems.iter().map(|(loc, msg, kind)| json!({"loc": loc, "msg": msg, "type": kind})).collect();
    (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "detail": detail }))).into_response()
}

/// A file (a PDF or the video).
pub fn bytes(content_type: &'static str, body: Vec<u8>) -> Response {
    (StatusCode::OK, [(axum::http::header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The control API's own answers (not part of either generation).
pub fn control(status: StatusCode, text: impl Into<String>) -> Response {
    (status, Json(json!({"status": status.as_u16(), "message": text.into()}))).into_response()
}

impl SandboxError {
    /// This refusal as the given generation words it.
    pub fn into_response(self, generation: Generation) -> Response {
        match (self, generation) {
            (SandboxError::NotFound, Generation::Old) => {
                (StatusCode::BAD_REQUEST, Json(json!({"status": "404 Not Found", "details": "Request not found"})))
                    .into_response()
            }
            (SandboxError::NotFound, Generation::New) => {
                (StatusCode::NOT_FOUND, Json(json!({"detail": "Not Found"}))).into_response()
            }
            (SandboxError::InvalidJson(text), Generation::Old) => {
                (StatusCode::BAD_REQUEST, Json(json!({"status": "Invalid JSON", "details": text}))).into_response()
            }
            // FastAPI: a body that is not JSON is a 422 `json_invalid` at the body's first byte.
            (SandboxError::InvalidJson(_), Generation::New) => {
                unprocessable(&[(&["body", "0"], "JSON decode error", "json_invalid")])
            }
            (SandboxError::BadRequest(text), g) => error(g, StatusCode::BAD_REQUEST, &text),
            (SandboxError::InvalidStatus(status), g) => {
                error(g, StatusCode::BAD_REQUEST, &format!("Invalid request status ({status})"))
            }
            // The old Optimizer answers 500 for bad billing credentials ([yaml] create
            // examples); the new one's answer is not published: assumed a 400 error.
            (SandboxError::Billing(text), Generation::Old) => {
                error(Generation::Old, StatusCode::INTERNAL_SERVER_ERROR, &text)
            }
            (SandboxError::Billing(text), Generation::New) => error(Generation::New, StatusCode::BAD_REQUEST, &text),
            (SandboxError::RaForbidden(msg), _) => {
                (StatusCode::FORBIDDEN, Json(json!({"result": null, "error": {"msg": msg, "code": 403}})))
                    .into_response()
            }
            (SandboxError::OtpInvalid, g) => error(g, StatusCode::FORBIDDEN, "Confirmation Code invalid"),
            (SandboxError::Precondition(text), g) => error(g, StatusCode::PRECONDITION_FAILED, &text),
            (SandboxError::Unsupported(text), g) => error(g, StatusCode::UNSUPPORTED_MEDIA_TYPE, &text),
            (SandboxError::WrongType { loc, msg, kind }, Generation::New) => unprocessable(&[(&loc, msg, kind)]),
            (SandboxError::Missing(fields), Generation::New) => {
                let locs: Vec<[&str; 2]> = fields.iter().map(|f| ["body", f]).collect();
                let problems: Vec<(&[&str], &str, &str)> =
                    locs.iter().map(|l| (&l[..], "Field required", "missing")).collect();
                unprocessable(&problems)
            }
            (SandboxError::Missing(_), Generation::Old) => {
                error(Generation::Old, StatusCode::BAD_REQUEST, "Missing required parameters")
            }
            (SandboxError::WrongType { loc, msg, .. }, Generation::Old) => {
                error(Generation::Old, StatusCode::BAD_REQUEST, &format!("{}: {msg}", loc.join(".")))
            }
            (SandboxError::DocumentNotFound(uid), g) => {
                error(g, StatusCode::NOT_FOUND, &format!("Document {uid} not found"))
            }
            (SandboxError::Refused { status, details }, g) => {
                error(g, StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), &details)
            }
        }
    }
}
