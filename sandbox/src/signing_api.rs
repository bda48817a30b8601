//! The signing flow's HTTP handlers, mounted once per generation (see `lib.rs` for the paths:
//! approve and refuse are keyed by `videoid_pk` in the new generation and by `request_pk` in
//! the old one; the contract, document and sign paths differ too).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Extension, Multipart, Path, Query, State};
use axum::response::Response;
use axum::Json;
use oneshot_protocol::Generation;
use serde_json::{json, Value};

use crate::handlers::{cut, inject, Plan};
use crate::reply;
use crate::server::Kill;
use crate::signing::RaoBody;
use crate::state::lock;
use crate::state::SandboxError;
use crate::Shared;

type Answer = Result<Response, Response>;

/// The largest document the sandbox takes.
const MAX_DOCUMENT: usize = 20 * 1024 * 1024;

fn keyed_by_videoid(g: Generation) -> bool {
    g == Generation::New
}

fn body_of(bytes: &Bytes) -> Result<RaoBody, SandboxError> {
    if bytes.is_empty() {
        return Ok(RaoBody::default());
    }
    serde_json::from_slice(bytes).map_err(|e| SandboxError::InvalidJson(format!("Could not parse JSON body - {e}")))
}

/// One decision of the RAO (approve, validate, refuse) on the request a path names.
fn decide(
    st: &Shared,
    pk: &str,
    body: &Bytes,
    by_videoid: bool,
    decision: fn(&mut crate::SandboxState, u64, &RaoBody) -> Result<(), SandboxError>,
) -> Result<(), SandboxError> {
    let body = body_of(body)?;
    let mut s = lock(st);
    let pk = s.lookup(by_videoid, pk)?;
    decision(&mut s, pk, &body)
}

pub async fn approve(
    State(st): State<Shared>,
    Extension(g): Extension<Generation>,
    Path(pk): Path<String>,
    body: Bytes,
) -> Answer {
    decide(&st, &pk, &body, keyed_by_videoid(g), crate::SandboxState::approve).map_err(|e| e.into_response(g))?;
    Ok(reply::ok(g, "Request approved", Value::Null))
}

/// Two-step mode's first step; the old generation only, keyed by `request_pk`.
pub async fn validate(
    State(st): State<Shared>,
    Extension(g): Extension<Generation>,
    Path(pk): Path<String>,
    body: Bytes,
) -> Answer {
    decide(&st, &pk, &body, false, crate::SandboxState::validate_videoid).map_err(|e| e.into_response(g))?;
    Ok(reply::ok(g, "Videoid validated", Value::Null))
}

pub async fn refuse(
    State(st): State<Shared>,
    Extension(g): Extension<Generation>,
    Path(pk): Path<String>,
    body: Bytes,
) -> Answer {
    decide(&st, &pk, &body, keyed_by_videoid(g), crate::SandboxState::refuse).map_err(|e| e.into_response(g))?;
    Ok(reply::ok(g, "Videoid refused", Value::Null))
}

pub async fn download_video(
    State(st): State<Shared>,
    Extension(g): Extension<Generation>,
    Path(pk): Path<String>,
) -> Answer {
    let s = lock(&st);
    let pk = s.lookup(keyed_by_videoid(g), &pk).map_err(|e| e.into_response(g))?;
    let video = s.videos.get(&pk).cloned().ok_or_else(|| SandboxError::NotFound.into_response(g))?;
    Ok(reply::bytes("video/mp4", video))
}

/// `POST /document/{request_pk}`: PDFs in multipart fields `file`, `file2`, … (at most 10).
/// Documents one upload call may carry.
const MAX_FILES_PER_CALL: usize = 10;

pub async fn upload_documents(
    State(st): State<Shared>,
    Extension(g): Extension<Generation>,
    Path(pk): Path<String>,
    mut form: Multipart,
) -> Answer {
    let bad = |m: String| SandboxError::BadRequest(m).into_response(g);
    let mut files = Vec::new();
    while let Some(field) = form.next_field().await.map_err(|e| bad(format!("Malformed multipart body: {e}")))? {
        let name = field.name().unwrap_or_default().to_owned();
        if !name.starts_with("file") {
            continue;
        }
        let filename = field.file_name().unwrap_or("document.pdf").to_owned();
        let bytes = field.bytes().await.map_err(|e| bad(format!("Document upload broke off: {e}")))?;
        if bytes.len() > MAX_DOCUMENT {
            return Err(bad(format!("{filename} is larger than {MAX_DOCUMENT} bytes")));
        }
        files.push((name, filename, bytes.to_vec()));
    }
    // [yaml] upload documents: at most 10 files in one call.
    if files.len() > MAX_FILES_PER_CALL {
        return Err(bad(format!("Too many files: at most {MAX_FILES_PER_CALL} per call")));
    }
    let mut s = lock(&st);
    let pk = s.lookup(false, &pk).map_err(|e| e.into_response(g))?;
    let stored = s.add_documents(pk, files).map_err(|e| e.into_response(g))?;
    // The shapes public sources show: the old one answers a bare uid for one file and a list of
    // {digest, uid, key, filename} for several; the new one {"name": field, "uid"}.
    let payload = match (g, stored.as_slice()) {
        (Generation::Old, [(_, uid, _, _)]) => json!(uid),
        (Generation::Old, many) => json!(many
            .iter()
            .map(|(key, uid, digest, filename)| json!({"digest": digest, "uid": uid, "key": key, "filename": filename}))
            .collect::<Vec<_>>()),
        (Generation::New, [(name, uid, _, _)]) => json!({"name": name, "uid": uid}),
        (Generation::New, many) => {
            json!(many.iter().map(|(name, uid, _, _)| json!({"name": name, "uid": uid})).collect::<Vec<_>>())
        }
    };
    Ok(reply::ok(g, "Document uploaded", payload))
}

/// `POST /image`: a PNG for visible signatures (multipart field `image`); answers its uid, the
/// old generation as a bare `details`, the new one as `{"image_uid"}`.
pub async fn upload_image(
    State(st): State<Shared>,
    Extension(g): Extension<Generation>,
    mut form: Multipart,
) -> Answer {
    let bad = |m: String| SandboxError::BadRequest(m).into_response(g);
    let mut image = None;
    while let Some(field) = form.next_field().await.map_err(|e| bad(format!("Malformed multipart body: {e}")))? {
        if field.name() == Some("image") {
            image = Some(field.bytes().await.map_err(|e| bad(format!("Image upload broke off: {e}")))?);
        }
    }
    let Some(image) = image else { return Err(bad("Missing required parameter: 'image'".into())) };
    if !image.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Err(SandboxError::Unsupported("Image file type not supported".into()).into_response(g));
    }
    let uid = lock(&st).add_image(&image);
    let payload = match g {
        Generation::Old => json!(uid),
        Generation::New => json!({ "image_uid": uid }),
    };
    Ok(reply::ok(g, "Image uploaded", payload))
}

/// `POST /token {username, password, pin}`: a token for the RAO's credentials.
pub async fn create_token(State(st): State<Shared>, Extension(g): Extension<Generation>, body: Bytes) -> Answer {
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| SandboxError::InvalidJson(format!("Could not parse JSON body - {e}")).into_response(g))?;
    let field = |k: &str| body.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let (Some(user), Some(password), Some(pin)) = (field("username"), field("password"), field("pin")) else {
        return Err(SandboxError::Missing(vec!["username", "password", "pin"]).into_response(g));
    };
    let token = lock(&st).create_token(user, password, pin).map_err(|e| e.into_response(g))?;
    Ok(reply::ok(g, "Token created", json!(token)))
}

/// `GET /tokens`: the tokens' uids.
pub async fn list_tokens(State(st): State<Shared>, Extension(g): Extension<Generation>) -> Answer {
    let uids: Vec<Value> = lock(&st).signing.tokens.keys().map(|u| json!({ "uid": u })).collect();
    Ok(reply::ok(g, "Tokens", json!(uids)))
}

/// `DELETE /token/{uid}`.
pub async fn delete_token(
    State(st): State<Shared>,
    Extension(g): Extension<Generation>,
    Path(uid): Path<String>,
) -> Answer {
    match lock(&st).signing.tokens.remove(&uid) {
        Some(_) => Ok(reply::ok(g, "Token deleted", Value::Null)),
        None => Err(SandboxError::NotFound.into_response(g)),
    }
}

pub async fn contract(State(st): State<Shared>, Extension(g): Extension<Generation>, Path(pk): Path<String>) -> Answer {
    let s = lock(&st);
    let pk = s.lookup(false, &pk).map_err(|e| e.into_response(g))?;
    Ok(reply::bytes("application/pdf", s.contract(pk).map_err(|e| e.into_response(g))?))
}

pub async fn otp(
    State(st): State<Shared>,
    Extension(g): Extension<Generation>,
    Path(pk): Path<String>,
    Extension(kill): Extension<Kill>,
    body: Bytes,
) -> Answer {
    let plan = inject(&st, g, "otp").await?;
    if !body.is_empty() {
        let parsed: Value = serde_json::from_slice(&body)
            .map_err(|e| SandboxError::InvalidJson(format!("Could not parse JSON body - {e}")).into_response(g))?;
        if let Some(m) = parsed.get("delivery_method") {
            if m != "sms" && m != "whatsapp" {
                return Err(SandboxError::BadRequest("delivery_method must be sms or whatsapp".into()).into_response(g));
            }
        }
    }
    let done = {
        let mut s = lock(&st);
        s.lookup(false, &pk).and_then(|pk| s.generate_otp(pk))
    };
    done.map_err(|e| e.into_response(g))?;
    if plan == Plan::Drop {
        return Err(cut(&kill).await);
    }
    Ok(reply::ok(g, "OTP sent", Value::Null))
}

/// A field of the visible signature's appearance in a sign body, as each generation places it:
/// the old one per document under `options`, the new one under `signature.appearance`.
fn appearance_values(g: Generation, body: &Value, field: &str) -> Vec<Value> {
    match g {
        Generation::Old => body
            .get("options")
            .and_then(Value::as_object)
            .map(|o| o.values().filter_map(|v| v.get(field).cloned()).collect())
            .unwrap_or_default(),
        Generation::New => body.pointer(&format!("/signature/appearance/{field}")).cloned().into_iter().collect(),
    }
}

pub async fn sign(
    State(st): State<Shared>,
    Extension(g): Extension<Generation>,
    Path(pk): Path<String>,
    Extension(kill): Extension<Kill>,
    body: Bytes,
) -> Answer {
    let plan = inject(&st, g, "sign").await?;
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| SandboxError::InvalidJson(format!("Could not parse JSON body - {e}")).into_response(g))?;
    let secret = body.get("secret").and_then(Value::as_str);
    let external = body.get("ext_unlock_type").is_some_and(Value::is_string)
        && body.get("ext_unlock_value").is_some_and(Value::is_string);
    if secret.is_none() && !external {
        return Err(SandboxError::BadRequest("Missing required parameters: secret".into()).into_response(g));
    }
    // Each generation's appearance options: the old `options`, the new `signature.appearance`.
    let wrong_shape = match g {
        Generation::Old => body.get("signature").is_some(),
        Generation::New => body.get("options").is_some(),
    };
    if wrong_shape {
        return Err(
            SandboxError::BadRequest("signature appearance in the other generation's shape".into()).into_response(g)
        );
    }
    // The visible signature's page counts from 0 ([yaml] SignObject) and must exist in each
    // document it is put on (-1: the last page).
    let pages = appearance_values(g, &body, "page");
    for page in &pages {
        if !page.is_i64() {
            let loc = vec!["body", "signature", "appearance", "page"];
            let e = SandboxError::WrongType { loc, msg: "Input should be a valid integer", kind: "int_parsing" };
            return Err(e.into_response(g));
        }
    }
    // A signature image is named by the uid `POST /image` gave it, never sent as bytes.
    let images = appearance_values(g, &body, "image");
    let done = {
        let mut s = lock(&st);
        s.lookup(false, &pk).and_then(|pk| {
            if let Some(image) = images.iter().find(|i| !i.as_str().is_some_and(|u| s.has_image(u))) {
                return Err(SandboxError::BadRequest(format!(
                    "Image {} not found: upload it first with POST /image",
                    image
                        .as_str()
                        .map(|u| u.chars().take(40).collect::<String>())
                        .unwrap_or_else(|| "(not a uid)".into())
                )));
            }
            let counts = s.page_counts(pk)?;
            for page in pages.iter().filter_map(Value::as_i64) {
                if let Some(n) = counts.iter().find(|n| page < -1 || page >= **n as i64) {
                    return Err(SandboxError::BadRequest(format!(
                        "Invalid page {page}: the document has {n} page(s), numbered from 0"
                    )));
                }
            }
            s.sign(pk, secret, external)
        })
    };
    done.map_err(|e| e.into_response(g))?;
    if plan == Plan::Drop {
        // Signed, but the answer is lost: the client cannot know whether it went through.
        return Err(cut(&kill).await);
    }
    Ok(reply::ok(g, "Request signed", Value::Null))
}

fn get_document(st: &Shared, pk: &str, uid: &str, kind: &str) -> Result<Response, SandboxError> {
    let signed = match kind {
        "signed" => true,
        "original" => false,
        other => {
            return Err(SandboxError::BadRequest(format!("document type must be original or signed, not {other}")))
        }
    };
    let s = lock(st);
    let pk = s.lookup(false, pk)?;
    Ok(reply::bytes("application/pdf", s.document(pk, uid, signed)?))
}

/// New: `GET /document/{pk}/{uid}?document_type=signed|original`.
pub async fn document_new(
    State(st): State<Shared>,
    Extension(g): Extension<Generation>,
    Path((pk, uid)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Answer {
    get_document(&st, &pk, &uid, q.get("document_type").map_or("original", String::as_str))
        .map_err(|e| e.into_response(g))
}

/// Old: `GET /document/{pk}/{type}/{uid}`.
pub async fn document_old(
    State(st): State<Shared>,
    Extension(g): Extension<Generation>,
    Path((pk, kind, uid)): Path<(String, String, String)>,
) -> Answer {
    get_document(&st, &pk, &uid, &kind).map_err(|e| e.into_response(g))
}

fn delete(st: &Shared, g: Generation, pk: &str, uid: Option<&str>) -> Response {
    let deleted = {
        let mut s = lock(st);
        s.lookup(false, pk).and_then(|pk| s.delete_documents(pk, uid))
    };
    match deleted {
        Ok(n) => reply::ok(g, &format!("{n} document(s) deleted"), Value::Null),
        Err(e) => e.into_response(g),
    }
}

/// New: `DELETE /document/{pk}/{uid}`.
pub async fn delete_new(
    State(st): State<Shared>,
    Extension(g): Extension<Generation>,
    Path((pk, uid)): Path<(String, String)>,
) -> Answer {
    Ok(delete(&st, g, &pk, Some(&uid)))
}

/// Old: `DELETE /document/{pk}/{original|signed}/{uid}`: that copy only.
pub async fn delete_old(
    State(st): State<Shared>,
    Extension(g): Extension<Generation>,
    Path((pk, kind, uid)): Path<(String, String, String)>,
) -> Answer {
    let signed = match kind.as_str() {
        "signed" => true,
        "original" => false,
        _ => return Err(SandboxError::BadRequest(format!("Invalid document type: {kind}")).into_response(g)),
    };
    let deleted = {
        let mut s = lock(&st);
        s.lookup(false, &pk).and_then(|pk| s.delete_copy(pk, &uid, signed))
    };
    deleted.map(|n| reply::ok(g, &format!("{n} document(s) deleted"), Value::Null)).map_err(|e| e.into_response(g))
}

/// All of a request's documents: new `DELETE /document/{pk}`, old `DELETE /documents/{pk}`.
pub async fn delete_all(
    State(st): State<Shared>,
    Extension(g): Extension<Generation>,
    Path(pk): Path<String>,
) -> Answer {
    Ok(delete(&st, g, &pk, None))
}

/// Control API: `GET /_sandbox/requests/{pk}/otp` — the OTP a real server would text the customer.
pub async fn read_otp(State(st): State<Shared>, Path(pk): Path<u64>) -> Response {
    match lock(&st).otp(pk) {
        Some(code) => axum::response::IntoResponse::into_response(Json(json!({"request_pk": pk, "otp": code}))),
        None => reply::control(axum::http::StatusCode::NOT_FOUND, format!("no OTP for request {pk}")),
    }
}
