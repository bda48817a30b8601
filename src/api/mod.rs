//! The kiosk's local control API, served by `kiosk-agent run` beside the worker (see
//! [`crate::daemon`]).
//!
//! Every route but `GET /healthz`, the page and its session needs `Authorization: Bearer
//! <token>` (`api.token_file`, created by `key init`; the API is never served without one) or
//! the page's session cookie ([`session`]). Before any of that, [`guard`] refuses requests from
//! other hosts, sites and origins. Errors are JSON `{code, message, field?}`. [`ROUTES`] is the
//! router's table of routes; `GET /v1/openapi.json` is derived from the handlers' own
//! annotations and wire types ([`openapi`]), and a test checks that both list the same routes.

pub mod cameras;
pub mod feed;
pub mod guard;
mod intake;
mod metrics;
mod openapi;
pub mod session;
mod signing;
pub mod sweep;
pub mod token;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::queue::{Queue, QueueError};
use crate::sync::{blocking, Worker};

/// Every route: method, path, whether it needs the token, what it does.
pub const ROUTES: &[(&str, &str, bool, &str)] = &[
    ("get", "/", false, "The operator page"),
    ("get", "/page.js", false, "The operator page's script"),
    ("get", "/page.css", false, "The operator page's style"),
    ("get", "/healthz", false, "Liveness: 200 while the daemon runs"),
    ("post", "/v1/session", false, "Exchange the token {token} for a session cookie (a random id, not the token)"),
    ("delete", "/v1/session", false, "Log out: end the session of the cookie"),
    ("get", "/v1/status", true, "Online/offline, pending count and bytes, oldest pending age, free disk, last contact"),
    ("get", "/v1/enrollments", true, "Every enrollment, oldest first; ?state= filters"),
    (
        "post",
        "/v1/enrollments",
        true,
        "Queue an enrollment (JSON with Base64 files, or multipart); 202 {id} once durable",
    ),
    ("get", "/v1/enrollments/{id}", true, "One enrollment with its artifacts and history"),
    ("post", "/v1/enrollments/{id}/retry", true, "Re-queue a failed enrollment from the step it failed at"),
    (
        "post",
        "/v1/enrollments/{id}/approve",
        true,
        "Approve the request in review as the RAO of [rao]; queued documents follow",
    ),
    ("post", "/v1/enrollments/{id}/refuse", true, "Refuse the request in review {reason}"),
    (
        "post",
        "/v1/enrollments/{id}/correct",
        true,
        "Correct the request's OCR data before approval {given_name?, surname_1?, surname_2?, birth_date?, serial_number?, country_name?}",
    ),
    ("post", "/v1/enrollments/{id}/documents", true, "Queue a PDF to sign (the body; ?name=); sent once approved"),
    ("post", "/v1/enrollments/{id}/otp", true, "Send the customer the OTP {whatsapp?}"),
    ("post", "/v1/enrollments/{id}/sign", true, "Sign the uploaded documents {otp}"),
    ("get", "/v1/enrollments/{id}/contract.pdf", true, "The service contract, once approved (for the customer to read)"),
    ("get", "/v1/enrollments/{id}/documents", true, "The enrollment's documents to sign: uid, file, state"),
    ("get", "/v1/enrollments/{id}/documents/{uid}/signed.pdf", true, "A signed document's copy, once signed"),
    ("get", "/v1/events", true, "Server-sent events: enrollment changes and online/offline"),
    ("get", "/v1/cameras", true, "The camera roles, their sources and whether they run"),
    (
        "get",
        "/v1/cameras/{role}/preview.mjpg",
        true,
        "Live MJPEG preview of a role's camera (several viewers, at most 10 frames a second)",
    ),
    (
        "get",
        "/v1/cameras/{role}/guidance",
        true,
        "Server-sent events: the role's preview judged a few times a second (hints, the card's outline or the face box, how long it has been good)",
    ),
    ("post", "/v1/captures/still", true, "Take a still {role, kind?, auto?, timeout_secs?}: id, metrics, verdict, reasons, thumbnail URL; a document_front also gives the document photo cut around its face; auto waits for a good moment"),
    ("get", "/v1/captures/{id}/thumbnail.jpg", true, "The still"),
    ("post", "/v1/recordings", true, "Start recording the face camera {max_seconds}: id"),
    ("post", "/v1/recordings/{id}/stop", true, "Stop a recording: frames, dropped, skipped, duration, bytes"),
    ("get", "/v1/recordings/{id}/clip.mp4", true, "A finished recording's clip, to play back before it is used"),
    ("get", "/v1/openapi.json", true, "This API's OpenAPI description"),
    (
        "get",
        "/metrics",
        true,
        "Prometheus metrics: enrollments by state, pending bytes, oldest pending age, server contact, disk",
    ),
];

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub queue: Arc<Queue>,
    pub worker: Arc<Worker>,
    pub config: Arc<crate::config::Config>,
    pub events: broadcast::Sender<wire::Event>,
    pub cameras: Arc<cameras::CaptureService>,
    pub sessions: Arc<session::Sessions>,
}

/// An API error: status, a stable code, a message and the field at fault.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), field: None }
    }

    pub fn field(status: StatusCode, code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), field: Some(field.into()) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "message": self.message});
        if let Some(field) = self.field {
            body["field"] = field.into();
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::NotFound(id) => {
                ApiError::field(StatusCode::NOT_FOUND, "not_found", "id", format!("no enrollment {id}"))
            }
            QueueError::WrongState { .. } => ApiError::new(StatusCode::CONFLICT, "wrong_state", e.to_string()),
            QueueError::Space(_) => ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "spool_full", e.to_string()),
            QueueError::Evidence(e) => intake::evidence_error(e),
            e => {
                tracing::error!(error = %e, "API request failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the request failed; see the daemon's log")
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let code = if r.status() == StatusCode::PAYLOAD_TOO_LARGE { "too_large" } else { "bad_json" };
        ApiError::new(r.status(), code, r.body_text())
    }
}

/// A small JSON request body: empty means `{}`; anything else must be a JSON object (400
/// naming the body otherwise).
pub(crate) fn json_object(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    // The strict parser: a key given twice is refused, as everywhere else.
    match crate::evidence::strict_json::parse(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(ApiError::field(StatusCode::BAD_REQUEST, "bad_json", "body", "must be a JSON object")),
        Err(e) => Err(ApiError::field(StatusCode::BAD_REQUEST, "bad_json", "body", format!("is not valid JSON: {e}"))),
    }
}

/// A small JSON request body read into its wire type (the type the OpenAPI document describes):
/// empty means every field left out; an unknown key or a value of the wrong type is 400 naming
/// the field.
pub(crate) fn typed_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value = json_object(body)?;
    serde_json::from_value::<T>(value.clone()).map_err(|e| {
        let message = e.to_string();
        let field = field_at_fault::<T>(&message, &value).unwrap_or_else(|| "body".into());
        ApiError::field(StatusCode::BAD_REQUEST, "invalid", field, message)
    })
}

/// The key an error of `T`'s deserializer is about: serde names unknown and missing fields;
/// for a value of the wrong type, the key that fails on its own.
fn field_at_fault<T: serde::de::DeserializeOwned>(message: &str, value: &Value) -> Option<String> {
    for prefix in ["unknown field `", "missing field `"] {
        if let Some(rest) = message.strip_prefix(prefix) {
            return rest.split('`').next().map(str::to_owned);
        }
    }
    value
        .as_object()?
        .iter()
        .find_map(|(key, v)| serde_json::from_value::<T>(json!({ key: v })).is_err().then(|| key.clone()))
}

/// The largest body of a small JSON request (a still, a refusal, a session).
const SMALL_BODY: usize = 64 * 1024;

/// Builds the router over `state` for a listener answering to `hosts`. Bodies are bounded
/// per route before they are read: small JSON everywhere, the enrollment intake and documents
/// with their own limits (see [`intake`]).
pub fn router(state: ApiState, hosts: guard::Hosts) -> Router {
    let intake_limit = state.config.api.max_body_bytes as usize;
    let authed = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/enrollments", get(list_enrollments).post(intake::submit).layer(DefaultBodyLimit::max(intake_limit)))
        .route("/v1/enrollments/{id}", get(show_enrollment))
        .route("/v1/enrollments/{id}/retry", post(retry_enrollment))
        .route("/v1/enrollments/{id}/approve", post(signing::approve))
        .route("/v1/enrollments/{id}/correct", post(signing::correct))
        .route("/v1/enrollments/{id}/refuse", post(signing::refuse))
        .route(
            "/v1/enrollments/{id}/documents",
            get(signing::documents)
                .post(signing::upload_document)
                .layer(DefaultBodyLimit::max(crate::queue::MAX_DOCUMENT_BYTES as usize)),
        )
        .route("/v1/enrollments/{id}/otp", post(signing::otp))
        .route("/v1/enrollments/{id}/sign", post(signing::sign))
        .route("/v1/enrollments/{id}/contract.pdf", get(signing::contract))
        .route("/v1/enrollments/{id}/documents/{uid}/signed.pdf", get(signing::signed_copy))
        .route("/v1/events", get(events))
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/cameras", get(cameras::cameras))
        .route("/v1/cameras/{role}/preview.mjpg", get(cameras::preview))
        .route("/v1/cameras/{role}/guidance", get(cameras::guidance))
        .route("/v1/captures/still", post(cameras::still))
        .route("/v1/captures/{id}/thumbnail.jpg", get(cameras::thumbnail))
        .route("/v1/recordings", post(cameras::start_recording))
        .route("/v1/recordings/{id}/stop", post(cameras::stop_recording))
        .route("/v1/recordings/{id}/clip.mp4", get(cameras::clip))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/", get(page))
        .route("/page.js", get(page_script))
        .route("/page.css", get(page_style))
        .route("/healthz", get(healthz))
        .route("/v1/session", post(open_session).delete(close_session))
        .merge(authed)
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route (see /v1/openapi.json)")
        })
        .layer(DefaultBodyLimit::max(SMALL_BODY))
        .layer(axum::middleware::from_fn_with_state(hosts, guard::guard))
        .with_state(state)
}

/// Serves the API on `listener` (TCP or a Unix socket) until `shutdown` completes, answering
/// to `hosts`. Start [`watch_changes`] once beside it to feed `GET /v1/events`.
pub async fn serve<L>(
    listener: L,
    state: ApiState,
    hosts: guard::Hosts,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    crate::listener::serve(listener, router(state, hosts), shutdown).await
}

#[utoipa::path(get, path = "/healthz", tag = "daemon",
    responses(
        (status = 200, description = "alive and moving", body = wire::Health),
        (status = 503, description = "stalled, or the disk is at storage.min_free_bytes: the reasons", body = wire::Health),
    ))]
/// `GET /healthz` (no token): 200 while the daemon works; 503 with the reasons (no personal
/// data) when the server is reachable and work is pending but nothing moved for
/// `health.stall_secs`, or the disk is at `storage.min_free_bytes`.
async fn healthz(State(s): State<ApiState>) -> Response {
    // The list and the file system's free space, read off the executor (a statvfs can stall on
    // a failing card like any other file call).
    let Ok((list, free)) = blocking(&s.queue, |q| Ok((q.list()?, crate::fsutil::available_bytes(q.dir()).ok()))).await
    else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(wire::Health { status: "unhealthy".into(), reasons: vec!["the queue cannot be read".into()] }),
        )
            .into_response();
    };
    let mut reasons = Vec::new();
    let pending = crate::queue::Backlog::of(&list).pending;
    // Progress: a step that moved an enrollment on (failed attempts are not progress).
    let still = s.worker.without_progress();
    if s.worker.is_online() && pending > 0 && still > s.config.health_stall {
        reasons.push(format!("online with {pending} pending enrollment(s) and no progress for {} s", still.as_secs()));
    }
    let free = free.unwrap_or(u64::MAX);
    if free <= s.config.storage.min_free_bytes {
        reasons.push(format!("{free} bytes free, at the storage.min_free_bytes floor"));
    }
    if reasons.is_empty() {
        Json(wire::Health { status: "ok".into(), reasons }).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(wire::Health { status: "unhealthy".into(), reasons })).into_response()
    }
}

/// The operator page, its script and its style: served from the binary (no CDN; works
/// offline), in three files so the CSP needs no `'unsafe-inline'`.
const PAGE: &str = include_str!("page.html");
const PAGE_JS: &str = include_str!("page.js");
const PAGE_CSS: &str = include_str!("page.css");

/// The page's policy: its own script, style, images and connections only; no inline code, no
/// plugins, no forms sent elsewhere, never framed.
const PAGE_CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; media-src 'self'; \
                        connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CONTENT_SECURITY_POLICY, PAGE_CSP)], body).into_response()
}

#[utoipa::path(get, path = "/", tag = "page",
    responses((status = 200, description = "the operator page", content_type = "text/html", body = String)))]
async fn page(State(s): State<ApiState>, headers: axum::http::HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let language = s.config.api.language.unwrap_or_else(|| page_language(accept));
    // The page's script reads its language from the document (its texts are one table there).
    let body = PAGE.replacen("<html lang=\"en\">", &format!("<html lang=\"{language}\">"), 1);
    let mut response = static_file("text/html; charset=utf-8", PAGE).into_response();
    *response.body_mut() = axum::body::Body::from(body);
    response.headers_mut().insert(header::VARY, header::HeaderValue::from_static("Accept-Language"));
    response
}

/// The page's language for an `Accept-Language` header: the first of its languages (in the
/// order of their weights) that the page ships, else English.
fn page_language(accept: &str) -> &'static str {
    let mut wanted: Vec<(f32, &str)> = accept
        .split(',')
        .filter_map(|item| {
            let mut parts = item.split(';');
            let tag = parts.next()?.trim();
            let q =
                parts.find_map(|p| p.trim().strip_prefix("q=")).map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())?;
            Some((q, tag))
        })
        .collect();
    wanted.sort_by(|a, b| b.0.total_cmp(&a.0));
    wanted
        .iter()
        .filter(|(q, _)| *q > 0.0)
        .find_map(|(_, tag)| {
            let primary = tag.split('-').next()?.to_ascii_lowercase();
            crate::config::PAGE_LANGUAGES.iter().copied().find(|l| *l == primary)
        })
        .unwrap_or("en")
}

#[utoipa::path(get, path = "/page.js", tag = "page",
    responses((status = 200, description = "the page's script", content_type = "text/javascript", body = String)))]
async fn page_script() -> Response {
    static_file("text/javascript; charset=utf-8", PAGE_JS)
}

#[utoipa::path(get, path = "/page.css", tag = "page",
    responses((status = 200, description = "the page's style", content_type = "text/css", body = String)))]
async fn page_style() -> Response {
    static_file("text/css; charset=utf-8", PAGE_CSS)
}

/// `POST /v1/session {token}`: the token for a session: a random id in an HttpOnly,
/// SameSite=Strict cookie, bound to this `Host`, ending after [`session::IDLE`] unused or
/// [`session::LIFETIME`]. Wrong tokens are throttled (429 with `Retry-After`).
#[utoipa::path(post, path = "/v1/session", tag = "session", request_body = wire::SessionRequest,
    responses(
        (status = 200, description = "the session cookie is set", body = wire::SessionState),
        (status = 400, description = "not a JSON object, or an unknown field", body = wire::ErrorBody),
        (status = 401, description = "wrong token", body = wire::ErrorBody),
    ))]
async fn open_session(State(s): State<ApiState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let body: wire::SessionRequest = match typed_body(&body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let Some(token) = &s.config.api.token else {
        // Unreachable: `run` does not serve the API without a token. Refuse all the same.
        return unauthorized().into_response();
    };
    let given = body.token.as_deref().unwrap_or_default();
    let now = std::time::Instant::now();
    match s.sessions.check_token(given, token, now) {
        Err(wait) => throttled(wait),
        Ok(false) => {
            tracing::warn!("a wrong API token was given for a session");
            ApiError::field(StatusCode::UNAUTHORIZED, "unauthorized", "token", "wrong token").into_response()
        }
        Ok(true) => {
            let host = guard::host(&headers).unwrap_or_default().to_ascii_lowercase();
            let id = s.sessions.open(&host, now);
            let cookie = format!(
                "{}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
                session::COOKIE,
                session::LIFETIME.as_secs()
            );
            let state = wire::SessionState { session: "open".into(), idle_secs: Some(session::IDLE.as_secs()) };
            ([(header::SET_COOKIE, cookie)], Json(state)).into_response()
        }
    }
}

/// `DELETE /v1/session`: ends the cookie's session and clears the cookie.
#[utoipa::path(delete, path = "/v1/session", tag = "session",
    responses((status = 200, description = "logged out (the cookie cleared)", body = wire::SessionState)))]
async fn close_session(State(s): State<ApiState>, headers: HeaderMap) -> Response {
    let ended = session_cookie(&headers).is_some_and(|id| s.sessions.close(id));
    let cookie = format!("{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0", session::COOKIE);
    let state = wire::SessionState { session: if ended { "closed" } else { "none" }.into(), idle_secs: None };
    ([(header::SET_COOKIE, cookie)], Json(state)).into_response()
}

fn throttled(wait: session::Throttled) -> Response {
    let secs = wait.0.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "throttled",
        format!("too many wrong tokens; try again in {secs} s"),
    )
    .into_response();
    response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    response
}

fn unauthorized() -> Response {
    let mut response = ApiError::field(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "authorization",
        "a valid bearer token or session is required",
    )
    .into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

/// The session id a request's cookie carries.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(session::COOKIE).and_then(|r| r.strip_prefix('=')))
}

/// A bearer token (scripts, the CLI's callers) or the page's session cookie.
async fn require_token(State(state): State<ApiState>, headers: HeaderMap, request: Request, next: Next) -> Response {
    let Some(token) = &state.config.api.token else {
        return unauthorized();
    };
    let now = std::time::Instant::now();
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let allowed = match bearer {
        Some(given) => match state.sessions.check_token(given, token, now) {
            Ok(right) => right,
            Err(wait) => return throttled(wait),
        },
        None => session_cookie(&headers).is_some_and(|id| {
            let host = guard::host(&headers).unwrap_or_default().to_ascii_lowercase();
            state.sessions.valid(id, &host, now)
        }),
    };
    if !allowed {
        return unauthorized();
    }
    next.run(request).await
}

#[utoipa::path(get, path = "/v1/status", tag = "queue", security(("bearer" = []), ("session" = [])),
    responses((status = 200, description = "the link, the backlog and the disk", body = wire::Status)))]
async fn status(State(s): State<ApiState>) -> Result<Json<wire::Status>, ApiError> {
    let (backlog, free) = blocking(&s.queue, |q| {
        Ok((crate::queue::Backlog::of(&q.list()?), crate::fsutil::available_bytes(q.dir()).unwrap_or(0)))
    })
    .await?;
    Ok(Json(wire::Status {
        online: s.worker.is_online(),
        pending: backlog.pending,
        pending_bytes: backlog.pending_bytes,
        oldest_pending_secs: backlog.oldest_pending.map(|d| d.as_secs()),
        failed: backlog.failed,
        free_disk_bytes: free,
        last_contact: s.worker.last_contact_ms().map(crate::queue::format_ms),
        video_max_seconds: s.config.capture.video.max_duration.as_secs(),
    }))
}

#[utoipa::path(get, path = "/v1/enrollments", tag = "queue", security(("bearer" = []), ("session" = [])), params(wire::ListQuery),
    responses(
        (status = 200, description = "every enrollment, oldest first", body = Vec<wire::Enrollment>),
        (status = 400, description = "an unknown state", body = wire::ErrorBody),
    ))]
async fn list_enrollments(
    State(s): State<ApiState>,
    query: Result<Query<wire::ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<wire::Enrollment>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::field(StatusCode::BAD_REQUEST, "bad_query", "state", e.body_text()))?;
    if let Some(state) = &q.state {
        if state.parse::<crate::queue::State>().is_err() {
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "bad_query",
                "state",
                format!("unknown state {state:?}"),
            ));
        }
    }
    let list = blocking(&s.queue, |q| q.list()).await?;
    Ok(Json(
        list.iter()
            .filter(|e| q.state.as_deref().is_none_or(|st| e.state.to_string() == st))
            .map(wire::Enrollment::from)
            .collect(),
    ))
}

#[utoipa::path(get, path = "/v1/enrollments/{id}", tag = "queue", security(("bearer" = []), ("session" = [])), params(("id" = String, Path, description = "the enrollment's id")),
    responses(
        (status = 200, description = "the enrollment with its artifacts and history", body = wire::EnrollmentDetail),
        (status = 404, description = "no such enrollment", body = wire::ErrorBody),
    ))]
async fn show_enrollment(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<wire::EnrollmentDetail>, ApiError> {
    let shown = blocking(&s.queue, move |q| q.show(&id)).await?;
    Ok(Json((&shown).into()))
}

#[utoipa::path(post, path = "/v1/enrollments/{id}/retry", tag = "queue", security(("bearer" = []), ("session" = [])), params(("id" = String, Path, description = "the enrollment's id")),
    responses(
        (status = 200, description = "re-queued from the step it failed at", body = wire::Retried),
        (status = 404, description = "no such enrollment", body = wire::ErrorBody),
        (status = 409, description = "not failed", body = wire::ErrorBody),
    ))]
async fn retry_enrollment(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Json<wire::Retried>, ApiError> {
    let id2 = id.clone();
    let state = blocking(&s.queue, move |q| {
        let state = q.retry(&id2)?;
        q.audit(Some(&id2), "retry requested through the API").ok();
        Ok(state)
    })
    .await?;
    s.worker.wake(crate::sync::events::Why::RetryRequested);
    Ok(Json(wire::Retried { id, state: state.to_string() }))
}

#[utoipa::path(get, path = "/v1/events", tag = "queue", security(("bearer" = []), ("session" = [])),
    responses((status = 200, description = "server-sent events, each `data:` one of these", content_type = "text/event-stream", body = wire::Event)))]
async fn events(State(s): State<ApiState>) -> impl IntoResponse {
    use futures_util::StreamExt;
    let stream = subscriber_events(s.events.subscribe()).map(|event| {
        let data = serde_json::to_string(&event).expect("JSON values serialize");
        Ok::<_, std::convert::Infallible>(SseEvent::default().data(data))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// One subscriber's events, in order. A subscriber that falls behind misses events, not the
/// connection: in their place it is told [`wire::Event::Resync`], to reread what it shows.
fn subscriber_events(mut rx: broadcast::Receiver<wire::Event>) -> impl futures_util::Stream<Item = wire::Event> {
    async_stream(move |tx| async move {
        loop {
            let event = match rx.recv().await {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(_)) => wire::Event::Resync,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
    })
}

/// A stream fed by a task through a small channel (no extra crate for generators).
fn async_stream<T, F, Fut>(f: F) -> impl futures_util::Stream<Item = T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The OpenAPI description of every route, derived from the handlers ([`openapi`]).
pub fn openapi_document() -> Value {
    openapi::document()
}

#[utoipa::path(get, path = "/v1/openapi.json", tag = "daemon", security(("bearer" = []), ("session" = [])),
    responses((status = 200, description = "this document", body = Object)))]
async fn openapi() -> Json<Value> {
    Json(openapi_document())
}

pub use wire::Accepted;

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_speaks_the_first_language_it_ships_that_the_browser_accepts() {
        for (accept, expected) in [
            ("", "en"),
            ("es-ES,es;q=0.9,en;q=0.8", "es"),
            ("fr-FR,fr;q=0.9,es;q=0.5", "es"),
            ("en-GB,es;q=0.9", "en"),
            ("es;q=0.2, en;q=0.7", "en"),
            ("ES", "es"),
            ("es;q=0", "en"),
            ("de, fr", "en"),
            ("es;q=zz", "en"),
        ] {
            assert_eq!(super::page_language(accept), expected, "{accept:?}");
        }
    }

    use super::*;

    /// A small body is read into its wire type, and what is wrong with it is named.
    #[test]
    fn small_bodies_are_read_strictly_into_their_wire_type_naming_the_field() {
        let field = |body: &[u8]| typed_body::<wire::OtpRequest>(body).map(|_| ()).unwrap_err().field;
        assert_eq!(typed_body::<wire::OtpRequest>(b"").unwrap().whatsapp, None, "empty is every field left out");
        assert_eq!(typed_body::<wire::OtpRequest>(br#"{"whatsapp": true}"#).unwrap().whatsapp, Some(true));
        assert_eq!(field(br#"{"whatsapp": "yes"}"#).as_deref(), Some("whatsapp"), "a wrong type");
        assert_eq!(field(br#"{"whatsap": true}"#).as_deref(), Some("whatsap"), "an unknown key");
        assert_eq!(field(br#"{"whatsapp": true, "whatsapp": false}"#).as_deref(), Some("body"), "a key twice");
        assert_eq!(field(b"[1]").as_deref(), Some("body"), "not an object");
        let e = typed_body::<wire::SignRequest>(br#"{"otp": 123456}"#).map(|_| ()).unwrap_err();
        assert_eq!((e.status, e.field.as_deref()), (StatusCode::BAD_REQUEST, Some("otp")), "{}", e.message);
    }

    /// A subscriber that fell behind is told to reread in place of what it missed, then gets
    /// what is still there, in order, and from then on everything as sent.
    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_to_reread() {
        use futures_util::StreamExt;
        let link = |online| wire::Event::Link { online };
        let (tx, rx) = broadcast::channel(2);
        let mut events = subscriber_events(rx);
        // Four sent before the subscriber runs at all: the channel holds the last two.
        for online in [true, false, true, false] {
            tx.send(link(online)).unwrap();
        }
        let seen: Vec<_> = events.by_ref().take(3).collect().await;
        assert_eq!(seen, [wire::Event::Resync, link(true), link(false)], "two of four missed");
        tx.send(link(true)).unwrap();
        assert_eq!(events.next().await, Some(link(true)), "in step again");
        drop(tx);
        assert_eq!(events.next().await, None, "the stream ends with the bus");
    }
}
