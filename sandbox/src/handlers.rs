//! The sandbox's HTTP handlers.

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use futures_util::StreamExt as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::faults::{Fault, FaultPlan};
use super::server::Kill;
use super::state::{ImageRecord, Rule, SandboxState};
use super::Shared;
use crate::sniff::{is_image, is_mp4, IMAGE_NAMES};

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
    let text = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
    (status, Json(json!({"status": text, "details": details.into()}))).into_response()
}

fn bad_request(details: impl Into<String>) -> Response {
    reply(StatusCode::BAD_REQUEST, details.into())
}

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, SandboxState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn refusal(rule: &Rule) -> Response {
    reply(StatusCode::from_u16(rule.status).unwrap_or(StatusCode::BAD_REQUEST), rule.details.clone())
}

/// What a drawn fault leaves for the handler to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Normal,
    /// Cut the connection while the request body is still arriving (nothing applied).
    Reset,
    /// Apply the request, then cut the connection instead of answering.
    Drop,
}

/// Draws a fault for `op`. Error answers and stalls are produced here; resets and lost answers
/// are left to the handler, which knows when the body has been read and applied.
async fn inject(state: &Shared, op: &str) -> Result<Plan, Response> {
    let (fault, stall, retry_after) = {
        let mut st = lock(state);
        (st.faults.draw(op), st.faults.stall, st.faults.retry_after)
    };
    let with_retry_after = |mut r: Response| {
        r.headers_mut().insert("retry-after", retry_after.into());
        r
    };
    match fault {
        None => Ok(Plan::Normal),
        Some(Fault::Status500) => Err(reply(StatusCode::INTERNAL_SERVER_ERROR, "Injected fault: internal error")),
        Some(Fault::Status503) => {
            Err(with_retry_after(reply(StatusCode::SERVICE_UNAVAILABLE, "Injected fault: try later")))
        }
        Some(Fault::Status429) => {
            Err(with_retry_after(reply(StatusCode::TOO_MANY_REQUESTS, "Injected fault: slow down")))
        }
        Some(Fault::Stall) => {
            tokio::time::sleep(stall).await;
            Err(reply(StatusCode::INTERNAL_SERVER_ERROR, "Injected fault: stalled"))
        }
        Some(Fault::Reset) => Ok(Plan::Reset),
        Some(Fault::Drop) => Ok(Plan::Drop),
    }
}

/// Cuts the connection; the client never gets an answer.
async fn cut(kill: &Kill) -> Response {
    kill.fire();
    std::future::pending().await
}

/// Reads a whole (JSON) body, or cuts the connection after its first part for a reset.
async fn read_body(body: Body, plan: Plan, kill: &Kill) -> Result<Bytes, Response> {
    if plan == Plan::Reset {
        let mut stream = body.into_data_stream();
        let _ = stream.next().await;
        return Err(cut(kill).await);
    }
    axum::body::to_bytes(body, usize::MAX).await.map_err(|e| bad_request(format!("Could not read body: {e}")))
}

fn find(state: &SandboxState, key: Key, pk: &str) -> Option<u64> {
    let pk: u64 = pk.parse().ok()?;
    match key {
        Key::Request => state.requests.contains_key(&pk).then_some(pk),
        Key::Videoid => state.requests.values().find(|r| r.videoid_pk == pk).map(|r| r.request_pk),
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
        let sent = request.headers().get(name.as_str()).and_then(|v| v.to_str().ok());
        if sent != Some(value.as_str()) {
            return reply(StatusCode::UNAUTHORIZED, format!("missing or wrong {name} header"));
        }
    }
    next.run(request).await
}

pub async fn hello(State(state): State<Shared>, Extension(kill): Extension<Kill>) -> Response {
    match inject(&state, "hello").await {
        Err(r) => r,
        Ok(Plan::Normal) => reply(StatusCode::OK, "Hello"),
        Ok(_) => cut(&kill).await,
    }
}

pub async fn not_found() -> Response {
    reply(StatusCode::NOT_FOUND, "Not found")
}

pub async fn create(State(state): State<Shared>, Extension(kill): Extension<Kill>, body: Body) -> Response {
    let plan = match inject(&state, "create").await {
        Ok(plan) => plan,
        Err(r) => return r,
    };
    let body = match read_body(body, plan, &kill).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("Could not parse JSON body");
    };
    let field = |k: &str| body.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let (Some(phone), Some(email), Some(_), Some(_)) =
        (field("mobile_phone_number"), field("email"), field("registration_authority"), field("profile"))
    else {
        return bad_request("Missing required parameters");
    };
    if let Some(env) = body.get("env") {
        if env != "sandbox" && env != "prod" {
            return bad_request("env must be sandbox or prod");
        }
    }
    let details = {
        let mut st = lock(&state);
        if let Some(rule) = st.take_rule("create", email) {
            return refusal(&rule);
        }
        let req = st.create(email, phone);
        json!({
            "videoid_pk": req.videoid_pk,
            "videoid_link": format!("https://sandbox.invalid/videoid/{}", req.videoid_pk),
            "request_pk": req.request_pk,
        })
    };
    if plan == Plan::Drop {
        return cut(&kill).await;
    }
    reply(StatusCode::OK, details)
}

pub async fn evidences_current(state: State<Shared>, pk: Path<String>, kill: Extension<Kill>, body: Body) -> Response {
    evidences(state, Key::Videoid, pk, kill, body).await
}

pub async fn evidences_legacy(state: State<Shared>, pk: Path<String>, kill: Extension<Kill>, body: Body) -> Response {
    evidences(state, Key::Request, pk, kill, body).await
}

/// Checks the evidences body the way the API documents it (`UploadData_VID`).
fn check_evidences(body: &Value) -> Result<(Vec<(String, ImageRecord)>, String), String> {
    let obj = body.as_object().ok_or("body must be a JSON object")?;
    if !obj.get("acceptance").is_some_and(Value::is_object) {
        return Err("acceptance must be an object".into());
    }
    let data = obj.get("videoid_data").and_then(Value::as_object).ok_or("videoid_data must be an object")?;
    let images = data.get("images").and_then(Value::as_object).ok_or("videoid_data.images must be an object")?;
    let mut records = Vec::new();
    for (name, value) in images {
        if !IMAGE_NAMES.contains(&name.as_str()) {
            return Err(format!("videoid_data.images.{name} is not a known image"));
        }
        let text = value.as_str().ok_or_else(|| format!("videoid_data.images.{name} must be a Base64 string"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| format!("videoid_data.images.{name} is not valid Base64: {e}"))?;
        if !is_image(&bytes) {
            return Err(format!("videoid_data.images.{name} is not a JPEG or PNG image"));
        }
        records.push((name.clone(), ImageRecord { sha256: sha256_hex(&bytes), size: bytes.len() as u64 }));
    }
    for required in ["document_front", "document_photo", "document_owner"] {
        if !images.contains_key(required) {
            return Err(format!("videoid_data.images.{required} is required"));
        }
    }
    let ocr = data.get("ocr_data").and_then(Value::as_object).ok_or("videoid_data.ocr_data must be an object")?;
    for required in ["given_name", "surname_1", "serial_number"] {
        if ocr.get(required).and_then(Value::as_str).is_none_or(str::is_empty) {
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
        Some(_) => return Err("videoid_data.similarity_level must be 0-100 or low/medium/high".into()),
    }
    let given = ocr.get("given_name").and_then(Value::as_str).unwrap_or_default();
    Ok((records, sha256_hex(given.as_bytes())))
}

async fn evidences(
    State(state): State<Shared>,
    key: Key,
    Path(pk): Path<String>,
    Extension(kill): Extension<Kill>,
    body: Body,
) -> Response {
    let plan = match inject(&state, "evidences").await {
        Ok(plan) => plan,
        Err(r) => return r,
    };
    let body = match read_body(body, plan, &kill).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(format!("Could not parse JSON body - {e}")),
    };
    let (images, given_name_sha) = match check_evidences(&parsed) {
        Ok(x) => x,
        Err(msg) => return bad_request(msg),
    };
    {
        let mut st = lock(&state);
        let Some(request_pk) = find(&st, key, &pk) else {
            return reply(StatusCode::NOT_FOUND, "Request not found");
        };
        match st.take_rule_for_request("evidences", request_pk) {
            Some(Rule { lose_as: Some(status), .. }) => {
                st.requests.get_mut(&request_pk).expect("found above").status = status;
            }
            Some(rule) => return refusal(&rule),
            None => {
                let req = st.requests.get_mut(&request_pk).expect("found above");
                req.evidences_uploads += 1;
                req.images = images.into_iter().collect();
                req.given_name_sha256 = Some(given_name_sha);
                SandboxState::settle(req);
            }
        }
    }
    if plan == Plan::Drop {
        return cut(&kill).await;
    }
    reply(StatusCode::OK, "Videoid evidences uploaded")
}

pub async fn video_current(state: State<Shared>, pk: Path<String>, kill: Extension<Kill>, form: Multipart) -> Response {
    video(state, Key::Videoid, pk, kill, form).await
}

pub async fn video_legacy(state: State<Shared>, pk: Path<String>, kill: Extension<Kill>, form: Multipart) -> Response {
    video(state, Key::Request, pk, kill, form).await
}

async fn video(
    State(state): State<Shared>,
    key: Key,
    Path(pk): Path<String>,
    Extension(kill): Extension<Kill>,
    mut form: Multipart,
) -> Response {
    let plan = match inject(&state, "video").await {
        Ok(plan) => plan,
        Err(r) => return r,
    };
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
            Err(e) => {
                lock(&state).broken_uploads += 1;
                return bad_request(format!("Malformed or broken multipart body: {e}"));
            }
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
                Ok(Some(_)) if plan == Plan::Reset => {
                    lock(&state).broken_uploads += 1;
                    return cut(&kill).await;
                }
                Ok(Some(chunk)) => {
                    if head.len() < 12 {
                        let take = (12 - head.len()).min(chunk.len());
                        head.extend_from_slice(&chunk[..take]);
                    }
                    hasher.update(&chunk);
                    size += chunk.len() as u64;
                }
                Ok(None) => break,
                Err(e) => {
                    lock(&state).broken_uploads += 1;
                    return bad_request(format!("Video upload broke off: {e}"));
                }
            }
        }
        if !is_mp4(&head) {
            return bad_request("video is not an MP4 file");
        }
        record = Some(ImageRecord { sha256: hex::encode(hasher.finalize()), size });
    }
    let Some(record) = record else {
        return bad_request("Missing required parameter: video");
    };
    {
        let mut st = lock(&state);
        let req = st.requests.get_mut(&request_pk).expect("requests are never removed");
        if let Some(status) = lose_as {
            req.status = status;
        } else {
            req.video_uploads += 1;
            req.video = Some(record);
            SandboxState::settle(req);
        }
    }
    if plan == Plan::Drop {
        return cut(&kill).await;
    }
    reply(StatusCode::OK, "Videoid video upload completed")
}

pub async fn status(State(state): State<Shared>, Path(pk): Path<String>, Extension(kill): Extension<Kill>) -> Response {
    match inject(&state, "status").await {
        Err(r) => return r,
        Ok(Plan::Normal) => {}
        Ok(_) => return cut(&kill).await,
    }
    let st = lock(&state);
    match find(&st, Key::Request, &pk) {
        Some(pk) => {
            let req = &st.requests[&pk];
            // The real API's request details carry the signer's contact data too.
            let (email, phone) = st.contact(pk);
            reply(
                StatusCode::OK,
                json!({"pk": req.request_pk, "status": req.status, "videoid_mode": true,
                       "email": email, "mobile_phone_number": phone}),
            )
        }
        None => reply(StatusCode::NOT_FOUND, "Request not found"),
    }
}

pub async fn records(State(state): State<Shared>) -> Response {
    let st = lock(&state);
    Json(json!({
        "creates": st.creates,
        "requests": st.requests.values().collect::<Vec<_>>(),
        "faults_injected": st.faults.injected,
        "broken_uploads": st.broken_uploads,
    }))
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

/// `POST /_sandbox/faults` with a SPEC body (see [`super::faults`]) replaces the fault plan.
pub async fn set_faults(State(state): State<Shared>, body: String) -> Response {
    match FaultPlan::parse(&body) {
        Ok(plan) => {
            lock(&state).faults = plan;
            reply(StatusCode::OK, "faults set")
        }
        Err(e) => bad_request(e),
    }
}

pub async fn clear_faults(State(state): State<Shared>) -> Response {
    lock(&state).faults = FaultPlan::default();
    reply(StatusCode::OK, "faults cleared")
}

/// `POST /_sandbox/offline?secs=N`: refuse connections for N seconds (default 5), then return.
pub async fn go_offline(
    State(state): State<Shared>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let secs: f64 = match q.get("secs").map(|s| s.parse()) {
        None => 5.0,
        Some(Ok(s)) if (0.0..=3600.0).contains(&s) => s,
        Some(_) => return bad_request("secs must be a number of seconds, 0-3600"),
    };
    let st = state.clone();
    tokio::spawn(async move {
        // Let this answer leave before the socket closes.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        super::server::set_online(&st, false);
        tokio::time::sleep(std::time::Duration::from_secs_f64(secs)).await;
        super::server::set_online(&st, true);
    });
    reply(StatusCode::OK, format!("going offline for {secs} s"))
}

pub async fn clear_rules(State(state): State<Shared>) -> Response {
    lock(&state).rules.clear();
    reply(StatusCode::OK, "rules cleared")
}
