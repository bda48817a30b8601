//! The sandbox's HTTP handlers.

use axum::body::Bytes;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::state::{ImageRecord, Rule, SandboxState};
use super::Shared;
use crate::evidence::{sniff_image, sniff_video, IMAGE_NAMES};

/// Which id a path is keyed by.
#[derive(Debug, Clone, Copy)]
pub enum Key {
    /// The current layout: `videoid_pk`.
    Videoid,
    /// The legacy layout: `request_pk`.
    Request,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The API's envelope: `{"status": "200 OK", "details": ...}` with the same code as HTTP.
fn reply(status: StatusCode, details: impl Into<Value>) -> Response {
    let text = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    (
        status,
        Json(json!({"status": text, "details": details.into()})),
    )
        .into_response()
}

fn bad_request(details: impl Into<String>) -> Response {
    reply(StatusCode::BAD_REQUEST, details.into())
}

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, SandboxState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn refusal(rule: &Rule) -> Response {
    reply(
        StatusCode::from_u16(rule.status).unwrap_or(StatusCode::BAD_REQUEST),
        rule.details.clone(),
    )
}

fn find(state: &SandboxState, key: Key, pk: &str) -> Option<u64> {
    let pk: u64 = pk.parse().ok()?;
    match key {
        Key::Request => state.requests.contains_key(&pk).then_some(pk),
        Key::Videoid => state
            .requests
            .values()
            .find(|r| r.videoid_pk == pk)
            .map(|r| r.request_pk),
    }
}

/// Rejects API requests without the configured header (`--require-header`), as a gateway would.
pub async fn require_header(
    State(state): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let required = lock(&state).required_header.clone();
    if let Some((name, value)) = required {
        let sent = request
            .headers()
            .get(name.as_str())
            .and_then(|v| v.to_str().ok());
        if sent != Some(value.as_str()) {
            return reply(
                StatusCode::UNAUTHORIZED,
                format!("missing or wrong {name} header"),
            );
        }
    }
    next.run(request).await
}

pub async fn hello() -> Response {
    reply(StatusCode::OK, "Hello")
}

pub async fn not_found() -> Response {
    reply(StatusCode::NOT_FOUND, "Not found")
}

pub async fn create(State(state): State<Shared>, body: Bytes) -> Response {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("Could not parse JSON body");
    };
    let field = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let (Some(_), Some(email), Some(_), Some(_)) = (
        field("mobile_phone_number"),
        field("email"),
        field("registration_authority"),
        field("profile"),
    ) else {
        return bad_request("Missing required parameters");
    };
    if let Some(env) = body.get("env") {
        if env != "sandbox" && env != "prod" {
            return bad_request("env must be sandbox or prod");
        }
    }
    let mut st = lock(&state);
    if let Some(rule) = st.take_rule("create", email) {
        return refusal(&rule);
    }
    let req = st.create(email);
    let details = json!({
        "videoid_pk": req.videoid_pk,
        "videoid_link": format!("https://sandbox.invalid/videoid/{}", req.videoid_pk),
        "request_pk": req.request_pk,
    });
    reply(StatusCode::OK, details)
}

pub async fn evidences_current(state: State<Shared>, pk: Path<String>, body: Bytes) -> Response {
    evidences(state, Key::Videoid, pk, body)
}

pub async fn evidences_legacy(state: State<Shared>, pk: Path<String>, body: Bytes) -> Response {
    evidences(state, Key::Request, pk, body)
}

/// Checks the evidences body the way the API documents it (`UploadData_VID`).
fn check_evidences(body: &Value) -> Result<(Vec<(String, ImageRecord)>, String), String> {
    let obj = body.as_object().ok_or("body must be a JSON object")?;
    if !obj.get("acceptance").is_some_and(Value::is_object) {
        return Err("acceptance must be an object".into());
    }
    let data = obj
        .get("videoid_data")
        .and_then(Value::as_object)
        .ok_or("videoid_data must be an object")?;
    let images = data
        .get("images")
        .and_then(Value::as_object)
        .ok_or("videoid_data.images must be an object")?;
    let mut records = Vec::new();
    for (name, value) in images {
        if !IMAGE_NAMES.contains(&name.as_str()) {
            return Err(format!("videoid_data.images.{name} is not a known image"));
        }
        let text = value
            .as_str()
            .ok_or_else(|| format!("videoid_data.images.{name} must be a Base64 string"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| format!("videoid_data.images.{name} is not valid Base64: {e}"))?;
        if !matches!(sniff_image(&mut bytes.as_slice()), Ok(Some(_))) {
            return Err(format!(
                "videoid_data.images.{name} is not a JPEG or PNG image"
            ));
        }
        records.push((
            name.clone(),
            ImageRecord {
                sha256: sha256_hex(&bytes),
                size: bytes.len() as u64,
            },
        ));
    }
    for required in ["document_front", "document_photo", "document_owner"] {
        if !images.contains_key(required) {
            return Err(format!("videoid_data.images.{required} is required"));
        }
    }
    let ocr = data
        .get("ocr_data")
        .and_then(Value::as_object)
        .ok_or("videoid_data.ocr_data must be an object")?;
    for required in ["given_name", "surname_1", "serial_number"] {
        if ocr
            .get(required)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(format!("videoid_data.ocr_data.{required} is required"));
        }
    }
    if let Some(checks) = data.get("security_checks") {
        if !checks.is_object() {
            return Err("videoid_data.security_checks must be an object".into());
        }
    }
    match data.get("similarity_level") {
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= 100) => {}
        Some(Value::String(s)) if ["low", "medium", "high"].contains(&s.as_str()) => {}
        None => {}
        Some(_) => {
            return Err("videoid_data.similarity_level must be 0-100 or low/medium/high".into())
        }
    }
    let given = ocr
        .get("given_name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok((records, sha256_hex(given.as_bytes())))
}

fn evidences(
    State(state): State<Shared>,
    key: Key,
    Path(pk): Path<String>,
    body: Bytes,
) -> Response {
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(format!("Could not parse JSON body - {e}")),
    };
    let (images, given_name_sha) = match check_evidences(&parsed) {
        Ok(x) => x,
        Err(msg) => return bad_request(msg),
    };
    let mut st = lock(&state);
    let Some(request_pk) = find(&st, key, &pk) else {
        return reply(StatusCode::NOT_FOUND, "Request not found");
    };
    match st.take_rule_for_request("evidences", request_pk) {
        Some(Rule {
            lose_as: Some(status),
            ..
        }) => {
            st.requests
                .get_mut(&request_pk)
                .expect("found above")
                .status = status;
            return reply(StatusCode::OK, "Videoid evidences uploaded");
        }
        Some(rule) => return refusal(&rule),
        None => {}
    }
    let req = st.requests.get_mut(&request_pk).expect("found above");
    req.evidences_uploads += 1;
    req.images = images.into_iter().collect();
    req.given_name_sha256 = Some(given_name_sha);
    SandboxState::settle(req);
    reply(StatusCode::OK, "Videoid evidences uploaded")
}

pub async fn video_current(state: State<Shared>, pk: Path<String>, form: Multipart) -> Response {
    video(state, Key::Videoid, pk, form).await
}

pub async fn video_legacy(state: State<Shared>, pk: Path<String>, form: Multipart) -> Response {
    video(state, Key::Request, pk, form).await
}

async fn video(
    State(state): State<Shared>,
    key: Key,
    Path(pk): Path<String>,
    mut form: Multipart,
) -> Response {
    let (request_pk, lose_as) = {
        let mut st = lock(&state);
        let Some(request_pk) = find(&st, key, &pk) else {
            return reply(StatusCode::NOT_FOUND, "Request not found");
        };
        let rule = st.take_rule_for_request("video", request_pk);
        if let Some(rule @ Rule { lose_as: None, .. }) = &rule {
            return refusal(rule);
        }
        (request_pk, rule.and_then(|r| r.lose_as))
    };
    let mut record = None;
    loop {
        let mut field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return bad_request(format!("Malformed multipart body: {e}")),
        };
        if field.name() != Some("video") {
            continue;
        }
        // Streamed: hashed chunk by chunk, never held whole.
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut head = Vec::with_capacity(12);
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    if head.len() < 12 {
                        let take = (12 - head.len()).min(chunk.len());
                        head.extend_from_slice(&chunk[..take]);
                    }
                    hasher.update(&chunk);
                    size += chunk.len() as u64;
                }
                Ok(None) => break,
                Err(e) => return bad_request(format!("Video upload broke off: {e}")),
            }
        }
        if !matches!(sniff_video(&mut head.as_slice()), Ok(Some(_))) {
            return bad_request("video is not an MP4 file");
        }
        record = Some(ImageRecord {
            sha256: hex::encode(hasher.finalize()),
            size,
        });
    }
    let Some(record) = record else {
        return bad_request("Missing required parameter: video");
    };
    let mut st = lock(&state);
    let req = st
        .requests
        .get_mut(&request_pk)
        .expect("requests are never removed");
    if let Some(status) = lose_as {
        req.status = status;
        return reply(StatusCode::OK, "Videoid video upload completed");
    }
    req.video_uploads += 1;
    req.video = Some(record);
    SandboxState::settle(req);
    reply(StatusCode::OK, "Videoid video upload completed")
}

pub async fn status(State(state): State<Shared>, Path(pk): Path<String>) -> Response {
    let st = lock(&state);
    match find(&st, Key::Request, &pk) {
        Some(pk) => {
            let req = &st.requests[&pk];
            reply(
                StatusCode::OK,
                json!({"pk": req.request_pk, "status": req.status, "videoid_mode": true}),
            )
        }
        None => reply(StatusCode::NOT_FOUND, "Request not found"),
    }
}

pub async fn records(State(state): State<Shared>) -> Response {
    let st = lock(&state);
    Json(json!({"creates": st.creates, "requests": st.requests.values().collect::<Vec<_>>()}))
        .into_response()
}

pub async fn add_rule(State(state): State<Shared>, Json(rule): Json<Rule>) -> Response {
    if !["create", "evidences", "video"].contains(&rule.op.as_str()) {
        return bad_request("op must be create, evidences or video");
    }
    if rule.lose_as.is_some() && (rule.status != 200 || rule.op == "create") {
        return bad_request("lose_as needs status 200 and op evidences or video");
    }
    lock(&state).rules.push(rule);
    reply(StatusCode::OK, "rule added")
}

pub async fn clear_rules(State(state): State<Shared>) -> Response {
    lock(&state).rules.clear();
    reply(StatusCode::OK, "rules cleared")
}
