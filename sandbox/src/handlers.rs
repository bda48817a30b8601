//! The sandbox's One-Shot API handlers. Each is mounted once per generation; the generation
//! arrives as an extension and decides the envelope, the keying of uploads and the quirks.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use base64::Engine as _;
use futures_util::StreamExt as _;
use oneshot_protocol::Generation;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::faults::Fault;
use crate::reply;
use crate::server::Kill;
use crate::sniff::{is_image, is_mp4, IMAGE_NAMES};
use crate::state::{lock, sha256_hex, ImageRecord, SandboxError, SandboxState};
use crate::Shared;

/// A handler's answer: the success response, or the refusal already in its envelope.
type Answer = Result<Response, Response>;

/// What a drawn fault leaves for the handler to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    Normal,
    /// Cut the connection while the request body is still arriving (nothing applied).
    Reset,
    /// Apply the request, then cut the connection instead of answering.
    Drop,
}

/// Draws a fault for `op`. Error answers and stalls are produced here; resets and lost answers
/// are left to the handler, which knows when the body has been read and applied.
pub(crate) async fn inject(state: &Shared, generation: Generation, op: &str) -> Result<Plan, Response> {
    let (fault, stall, retry_after) = {
        let mut st = lock(state);
        (st.faults.draw(op), st.faults.stall, st.faults.retry_after)
    };
    let with_retry_after = |mut r: Response| {
        r.headers_mut().insert("retry-after", retry_after.into());
        r
    };
    let error = |status, text| reply::error(generation, status, text);
    match fault {
        None => Ok(Plan::Normal),
        Some(Fault::Status500) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, "Injected fault: internal error")),
        Some(Fault::Status503) => {
            Err(with_retry_after(error(StatusCode::SERVICE_UNAVAILABLE, "Injected fault: try later")))
        }
        Some(Fault::Status429) => {
            Err(with_retry_after(error(StatusCode::TOO_MANY_REQUESTS, "Injected fault: slow down")))
        }
        Some(Fault::Stall) => {
            tokio::time::sleep(stall).await;
            Err(error(StatusCode::INTERNAL_SERVER_ERROR, "Injected fault: stalled"))
        }
        Some(Fault::Reset) => Ok(Plan::Reset),
        Some(Fault::Drop) => Ok(Plan::Drop),
    }
}

/// Cuts the connection; the client never gets an answer.
pub(crate) async fn cut(kill: &Kill) -> Response {
    kill.fire();
    std::future::pending().await
}

/// Reads a whole (JSON) body, or cuts the connection after its first part for a reset.
async fn read_body(body: Body, plan: Plan, kill: &Kill, generation: Generation) -> Result<Bytes, Response> {
    if plan == Plan::Reset {
        let mut stream = body.into_data_stream();
        let _ = stream.next().await;
        return Err(cut(kill).await);
    }
    axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| SandboxError::BadRequest(format!("Could not read body: {e}")).into_response(generation))
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
            let generation = request.extensions().get::<Generation>().copied().unwrap_or(Generation::New);
            return reply::error(generation, StatusCode::UNAUTHORIZED, &format!("missing or wrong {name} header"));
        }
    }
    next.run(request).await
}

/// `GET /hello`: documented for the old generation only; the new one answers it as an unknown path.
/// `GET /version`: the server's version, in the generation's envelope (what identifies it).
pub async fn version(Extension(g): Extension<Generation>) -> Response {
    let version = match g {
        Generation::Old => "kiosk-sandbox old Optimizer",
        Generation::New => "kiosk-sandbox new Optimizer",
    };
    reply::ok(g, "Version", json!({ "version": version }))
}

pub async fn hello(
    State(state): State<Shared>,
    Extension(g): Extension<Generation>,
    Extension(kill): Extension<Kill>,
) -> Answer {
    match inject(&state, g, "hello").await? {
        Plan::Normal if g == Generation::Old => Ok(reply::ok(g, "Hello", Value::Null)),
        Plan::Normal => Err(SandboxError::NotFound.into_response(g)),
        _ => Err(cut(&kill).await),
    }
}

pub async fn not_found(generation: Option<Extension<Generation>>) -> Response {
    match generation {
        Some(Extension(g)) => SandboxError::NotFound.into_response(g),
        None => reply::control(StatusCode::NOT_FOUND, "Not found"),
    }
}

/// The new generation's routes, as Starlette matches them, for `redirect_slashes`.
const NEW_ROUTES: [&str; 18] = [
    "/version",
    "/token",
    "/tokens",
    "/token/*",
    "/image",
    "/requests",
    "/videoid",
    "/videoid/*/evidences",
    "/videoid/*/video",
    "/request/*",
    "/videoid/*/refuse",
    "/videoid/*/download/video",
    "/otp/*",
    "/videoid/*/approve",
    "/document/*",
    "/document/*/*",
    "/contract/*",
    "/sign/*",
];

fn matches_route(path: &str, route: &str) -> bool {
    let (p, r): (Vec<&str>, Vec<&str>) = (path.split('/').collect(), route.split('/').collect());
    p.len() == r.len() && p.iter().zip(&r).all(|(a, b)| *b == "*" && !a.is_empty() || a == b)
}

/// The new generation's fallback, as a FastAPI application answers: a path that matches a
/// route once its trailing slash is added or taken away gets a 307 to that spelling. The
/// `Location` is built from the path inside the application, so it lacks the `/oneshot` mount
/// prefix (as behind a proxy that mounts the app without telling it); anything else is 404.
pub async fn not_found_or_slash_redirect(uri: axum::http::Uri) -> Response {
    let path = uri.path();
    let other = match path.strip_suffix('/') {
        Some(bare) if !bare.is_empty() => bare.to_owned(),
        Some(_) => String::new(),
        None => format!("{path}/"),
    };
    if !other.is_empty() && NEW_ROUTES.iter().any(|r| matches_route(other.trim_end_matches('/'), r)) && other != path {
        let location = format!("{}{other}", Generation::New.base_path().trim_start_matches("/oneshot"));
        return (StatusCode::TEMPORARY_REDIRECT, [(axum::http::header::LOCATION, location)]).into_response();
    }
    SandboxError::NotFound.into_response(Generation::New)
}

/// Checks the create body (`CreateReqObject_VID`) and the billing credentials.
fn check_create(st: &SandboxState, g: Generation, body: &[u8]) -> Result<(String, String), SandboxError> {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
        return Err(SandboxError::InvalidJson("Could not parse JSON body".into()));
    };
    let field = |k: &str| body.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let required = ["mobile_phone_number", "email", "registration_authority", "profile"];
    let missing: Vec<&'static str> = required.into_iter().filter(|k| field(k).is_none()).collect();
    if !missing.is_empty() {
        return Err(SandboxError::Missing(missing));
    }
    let (Some(phone), Some(email)) = (field("mobile_phone_number"), field("email")) else {
        unreachable!("checked just above")
    };
    if let Some(env) = body.get("env") {
        if env != "sandbox" && env != "prod" {
            return Err(SandboxError::BadRequest("env must be sandbox or prod".into()));
        }
    }
    if body.get("videoid_mode").is_some_and(|m| !m.is_u64()) {
        return Err(SandboxError::BadRequest("videoid_mode must be an integer".into()));
    }
    // `webhook_url` exists only in the old generation; the new one takes the URL from the RA.
    if g == Generation::Old && body.get("webhook_url").is_some_and(|u| !u.is_string()) {
        return Err(SandboxError::BadRequest("webhook_url must be a string".into()));
    }
    let password = match field("billing_password") {
        None => None,
        Some(b64) => {
            let clear = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| SandboxError::Billing("billing_password is not valid Base64".into()))?;
            Some(clear)
        }
    };
    if let Some((user, expected)) = &st.billing {
        if field("billing_username") != Some(user.as_str()) || password.as_deref() != Some(expected.as_str()) {
            return Err(SandboxError::Billing("Invalid billing credentials".into()));
        }
    }
    Ok((email.to_owned(), phone.to_owned()))
}

pub async fn create(
    State(state): State<Shared>,
    Extension(g): Extension<Generation>,
    Extension(kill): Extension<Kill>,
    body: Body,
) -> Answer {
    let plan = inject(&state, g, "create").await?;
    let body = read_body(body, plan, &kill, g).await?;
    let details = {
        let mut st = lock(&state);
        let (email, phone) = check_create(&st, g, &body).map_err(|e| e.into_response(g))?;
        if let Some(rule) = st.take_rule("create", &email) {
            return Err(SandboxError::Refused { status: rule.status, details: rule.details }.into_response(g));
        }
        let req = st.create(&email, &phone);
        let request_pk = req.request_pk;
        let details = json!({
            "request_pk": req.request_pk,
            "videoid_pk": req.videoid_pk,
            // Empty in External mode: the kiosk, not a browser, does the video identification.
            "videoid_link": "",
        });
        st.generations.insert(request_pk, g);
        details
    };
    if plan == Plan::Drop {
        return Err(cut(&kill).await);
    }
    let message = format!("VideoID created with pk {}", details["request_pk"]);
    Ok(reply::ok(g, &message, details))
}

/// Checks the evidences body the way the API documents it (`UploadData_VID`).
fn check_evidences(g: Generation, body: &[u8]) -> Result<(BTreeMap<String, ImageRecord>, String), SandboxError> {
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| SandboxError::InvalidJson(format!("Could not parse JSON body - {e}")))?;
    let bad = |m: String| SandboxError::BadRequest(m);
    let obj = body.as_object().ok_or_else(|| bad("body must be a JSON object".into()))?;
    if !obj.get("acceptance").is_some_and(Value::is_object) {
        return Err(bad("acceptance must be an object".into()));
    }
    let data = obj
        .get("videoid_data")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("videoid_data must be an object".into()))?;
    let images = data
        .get("images")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("videoid_data.images must be an object".into()))?;
    let mut records = BTreeMap::new();
    for (name, value) in images {
        if !IMAGE_NAMES.contains(&name.as_str()) {
            return Err(bad(format!("videoid_data.images.{name} is not a known image")));
        }
        let text = value.as_str().ok_or_else(|| bad(format!("videoid_data.images.{name} must be a Base64 string")))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| bad(format!("videoid_data.images.{name} is not valid Base64: {e}")))?;
        if !is_image(&bytes) {
            return Err(bad(format!("videoid_data.images.{name} is not a JPEG or PNG image")));
        }
        records.insert(name.clone(), ImageRecord { sha256: sha256_hex(&bytes), size: bytes.len() as u64 });
    }
    for required in oneshot_protocol::Slot::ALL.into_iter().filter(|s| s.required()).map(|s| s.as_str()) {
        if !images.contains_key(required) {
            return Err(bad(format!("videoid_data.images.{required} is required")));
        }
    }
    let ocr = data
        .get("ocr_data")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("videoid_data.ocr_data must be an object".into()))?;
    for required in ["given_name", "surname_1", "serial_number"] {
        if ocr.get(required).and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(bad(format!("videoid_data.ocr_data.{required} is required")));
        }
    }
    if data.get("security_checks").is_some_and(|c| !c.is_object()) {
        return Err(bad("videoid_data.security_checks must be an object".into()));
    }
    // The schema declares an integer 0-100; the old server's own example sends "high", which
    // it takes, while the typed new one refuses anything but an integer.
    match data.get("similarity_level") {
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= 100) => {}
        Some(Value::String(s)) if g == Generation::Old && ["low", "medium", "high"].contains(&s.as_str()) => {}
        None => {}
        Some(_) if g == Generation::New => {
            return Err(SandboxError::WrongType {
                loc: vec!["body", "videoid_data", "similarity_level"],
                msg: "Input should be a valid integer between 0 and 100",
                kind: "int_parsing",
            })
        }
        Some(_) => return Err(bad("videoid_data.similarity_level must be 0-100 or low/medium/high".into())),
    }
    let given = ocr.get("given_name").and_then(Value::as_str).unwrap_or_default();
    Ok((records, sha256_hex(given.as_bytes())))
}

/// Uploads of the new generation are keyed by `videoid_pk`, of the old one by `request_pk`.
fn uploads_by_videoid(g: Generation) -> bool {
    g == Generation::New
}

pub async fn evidences(
    State(state): State<Shared>,
    Extension(g): Extension<Generation>,
    Path(pk): Path<String>,
    Extension(kill): Extension<Kill>,
    body: Body,
) -> Answer {
    let plan = inject(&state, g, "evidences").await?;
    let body = read_body(body, plan, &kill, g).await?;
    let (images, given_name_sha) = check_evidences(g, &body).map_err(|e| e.into_response(g))?;
    {
        let mut st = lock(&state);
        let request_pk = st.lookup(uploads_by_videoid(g), &pk).map_err(|e| e.into_response(g))?;
        st.receive_evidences(request_pk, images, given_name_sha).map_err(|e| e.into_response(g))?;
        // The document's country, which request details show (and an update must repeat).
        let country = serde_json::from_slice::<Value>(&body).ok().and_then(|b| {
            b.pointer("/videoid_data/ocr_data/id_document_country").and_then(Value::as_str).map(str::to_owned)
        });
        if let (Some(country), Some(req)) = (country, st.requests.get_mut(&request_pk)) {
            req.country_name = Some(country);
        }
    }
    if plan == Plan::Drop {
        return Err(cut(&kill).await);
    }
    Ok(reply::ok(g, "Videoid evidences uploaded", Value::Null))
}

pub async fn video(
    State(state): State<Shared>,
    Extension(g): Extension<Generation>,
    Path(pk): Path<String>,
    Extension(kill): Extension<Kill>,
    mut form: Multipart,
) -> Answer {
    let plan = inject(&state, g, "video").await?;
    let (request_pk, lose_as) = {
        let mut st = lock(&state);
        let request_pk = st.lookup(uploads_by_videoid(g), &pk).map_err(|e| e.into_response(g))?;
        (request_pk, st.admit_video(request_pk).map_err(|e| e.into_response(g))?)
    };
    let broken = |e: String| {
        lock(&state).broken_uploads += 1;
        SandboxError::BadRequest(e).into_response(g)
    };
    let mut record = None;
    while let Some(mut field) =
        form.next_field().await.map_err(|e| broken(format!("Malformed or broken multipart body: {e}")))?
    {
        if field.name() != Some("video") {
            continue;
        }
        // Streamed: hashed chunk by chunk, never held whole.
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut head = Vec::with_capacity(12);
        // Kept for "download video" while small; a large one is hashed only.
        let mut kept = Some(Vec::new());
        while let Some(chunk) = field.chunk().await.map_err(|e| broken(format!("Video upload broke off: {e}")))? {
            if plan == Plan::Reset {
                lock(&state).broken_uploads += 1;
                return Err(cut(&kill).await);
            }
            if head.len() < 12 {
                let take = (12 - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
            }
            hasher.update(&chunk);
            size += chunk.len() as u64;
            kept = kept.filter(|_| size <= crate::state::VIDEO_KEEP_LIMIT).map(|mut k| {
                k.extend_from_slice(&chunk);
                k
            });
        }
        if !is_mp4(&head) {
            return Err(SandboxError::BadRequest("video is not an MP4 file".into()).into_response(g));
        }
        record = Some((ImageRecord { sha256: hex::encode(hasher.finalize()), size }, kept));
    }
    let (record, kept) =
        record.ok_or_else(|| SandboxError::BadRequest("Missing required parameter: video".into()).into_response(g))?;
    {
        let mut st = lock(&state);
        if lose_as.is_none() {
            match kept {
                Some(bytes) => st.videos.insert(request_pk, bytes),
                None => st.videos.remove(&request_pk),
            };
        }
        st.receive_video(request_pk, record, lose_as).map_err(|e| e.into_response(g))?;
    }
    if plan == Plan::Drop {
        return Err(cut(&kill).await);
    }
    Ok(reply::ok(g, "Videoid video upload completed", Value::Null))
}

/// The request's details. The old generation shows the phone as a number without `+` (the
/// vendor's example: `34600123123`); the new one's shape is not published, so it answers the
/// phone as it was given.
/// `GET /requests?email=&mobile_phone_number=`: the requests of one customer (both must match;
/// the phone by its digits), as request details. Without both, nothing: the sandbox never lists
/// other customers' requests.
pub async fn search(
    State(state): State<Shared>,
    Extension(g): Extension<Generation>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Answer {
    let (Some(email), Some(phone)) = (q.get("email"), q.get("mobile_phone_number")) else {
        return Err(SandboxError::Missing(vec!["email", "mobile_phone_number"]).into_response(g));
    };
    let digits = |p: &str| p.chars().filter(char::is_ascii_digit).collect::<String>();
    let st = lock(&state);
    let found: Vec<Value> = st
        .requests
        .values()
        .filter(|r| {
            let (e, p) = st.contact(r.request_pk);
            e.is_some_and(|e| e.eq_ignore_ascii_case(email.trim())) && p.is_some_and(|p| digits(p) == digits(phone))
        })
        .map(|r| json!({"pk": r.request_pk, "status": r.status, "email": email, "mobile_phone_number": phone}))
        .collect();
    Ok(reply::ok(g, "Requests", json!(found)))
}

/// `PUT /request/{pk}` (`UpdateReqObject_VID`): corrects a request's data while it is in
/// review. The body must carry the request's `scratchcard` and `country_name`, `email`,
/// `profile`, `registration_authority`.
pub async fn update(
    State(state): State<Shared>,
    Extension(g): Extension<Generation>,
    Path(pk): Path<String>,
    body: Bytes,
) -> Answer {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return Err(SandboxError::InvalidJson("Could not parse JSON body".into()).into_response(g));
    };
    let required = ["scratchcard", "country_name", "email", "profile", "registration_authority"];
    let missing: Vec<&'static str> =
        required.into_iter().filter(|k| body.get(*k).and_then(Value::as_str).is_none_or(str::is_empty)).collect();
    if !missing.is_empty() {
        return Err(SandboxError::Missing(missing).into_response(g));
    }
    let mut st = lock(&state);
    let request_pk = st.lookup(false, &pk).map_err(|e| e.into_response(g))?;
    let req = st.requests.get_mut(&request_pk).expect("looked up");
    if req.status != oneshot_protocol::RequestStatus::VideoReview || req.videoid_status.is_some() {
        return Err(SandboxError::InvalidStatus(req.status.clone()).into_response(g));
    }
    if body.get("scratchcard").and_then(Value::as_str) != Some(req.scratchcard.as_str()) {
        return Err(SandboxError::BadRequest("Invalid scratchcard".into()).into_response(g));
    }
    for field in ["given_name", "surname_1", "surname_2", "birth_date", "serial_number"] {
        if body.get(field).is_some() {
            req.corrected.push(field.to_owned());
        }
    }
    // The country is required in every update: a change only when it differs.
    let country = body.get("country_name").and_then(Value::as_str).map(str::to_owned);
    if country.is_some() && country != req.country_name {
        req.corrected.push("country_name".to_owned());
        req.country_name = country;
    }
    if let Some(given) = body.get("given_name").and_then(Value::as_str) {
        req.given_name_sha256 = Some(sha256_hex(given.as_bytes()));
    }
    Ok(reply::ok(g, "Request updated", Value::Null))
}

pub async fn status(
    State(state): State<Shared>,
    Extension(g): Extension<Generation>,
    Path(pk): Path<String>,
    Extension(kill): Extension<Kill>,
) -> Answer {
    match inject(&state, g, "status").await? {
        Plan::Normal => {}
        _ => return Err(cut(&kill).await),
    }
    let mut st = lock(&state);
    let request_pk = st.lookup(false, &pk).map_err(|e| e.into_response(g))?;
    st.requests.get_mut(&request_pk).expect("looked up").status_reads += 1;
    let req = &st.requests[&request_pk];
    let (email, phone) = st.contact(request_pk);
    let phone = match (g, phone) {
        (Generation::Old, Some(p)) => {
            let digits: String = p.chars().filter(char::is_ascii_digit).collect();
            digits.parse::<u64>().map_or(Value::Null, Value::from)
        }
        (_, p) => json!(p),
    };
    let mut details = json!({"pk": req.request_pk, "status": req.status, "videoid_mode": true,
                             "email": email, "mobile_phone_number": phone});
    if let Some(videoid_status) = &req.videoid_status {
        details["videoid_data"] = json!({"status": videoid_status});
    }
    details["scratchcard"] = json!(req.scratchcard);
    if let Some(country) = &req.country_name {
        details["country_name"] = json!(country);
    }
    Ok(reply::ok(g, "Request details", details))
}

/// `DELETE /request/{pk}`: the old Optimizer removes the request's directory; the sandbox keeps
/// its record (tests read it) with the status `CANCELLED`.
pub async fn cancel(
    State(state): State<Shared>,
    Extension(g): Extension<Generation>,
    Path(pk): Path<String>,
) -> Answer {
    let mut st = lock(&state);
    let request_pk = st.lookup(false, &pk).map_err(|e| e.into_response(g))?;
    st.set_status(request_pk, oneshot_protocol::RequestStatus::Cancelled).map_err(|e| e.into_response(g))?;
    let message = match g {
        Generation::Old => "Request directory removed successfully",
        Generation::New => "Request cancelled",
    };
    Ok(reply::ok(g, message, Value::Null))
}
