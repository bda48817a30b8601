//! The kiosk's local control API, served by `kiosk-agent run` beside the worker (see
//! [`crate::daemon`]).
//!
//! Every route but `GET /healthz` needs `Authorization: Bearer <token>` when a token is
//! configured (`api.token_file` or the unit's `api.token` credential); without one the API only
//! listens on loopback. Errors are JSON `{code, message, field?}`. [`ROUTES`] is the one list of
//! routes: the router is checked against it and `GET /v1/openapi.json` is generated from it.

pub mod cameras;
mod intake;
mod metrics;
mod signing;
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
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::queue::{Queue, QueueError};
use crate::sync::{blocking, Worker};

/// Every route: method, path, whether it needs the token, what it does.
pub const ROUTES: &[(&str, &str, bool, &str)] = &[
    ("get", "/", false, "The operator page"),
    ("get", "/healthz", false, "Liveness: 200 while the daemon runs"),
    ("post", "/v1/session", false, "Exchange the token {token} for the operator page's session cookie"),
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
    ("post", "/v1/enrollments/{id}/documents", true, "Queue a PDF to sign (the body; ?name=); sent once approved"),
    ("post", "/v1/enrollments/{id}/otp", true, "Send the customer the OTP {whatsapp?}"),
    ("post", "/v1/enrollments/{id}/sign", true, "Sign the uploaded documents {otp}"),
    ("get", "/v1/events", true, "Server-sent events: enrollment changes and online/offline"),
    ("get", "/v1/cameras", true, "The camera roles, their sources and whether they run"),
    (
        "get",
        "/v1/cameras/{role}/preview.mjpg",
        true,
        "Live MJPEG preview of a role's camera (several viewers, at most 10 frames a second)",
    ),
    ("post", "/v1/captures/still", true, "Take a still {role, kind?}: id, metrics, verdict, reasons, thumbnail URL; a document_front also gives the document photo cut around its face"),
    ("get", "/v1/captures/{id}/thumbnail.jpg", true, "The still"),
    ("post", "/v1/recordings", true, "Start recording the face camera {max_seconds}: id"),
    ("post", "/v1/recordings/{id}/stop", true, "Stop a recording: frames, dropped, skipped, duration, bytes"),
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
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(ApiError::field(StatusCode::BAD_REQUEST, "bad_json", "body", "must be a JSON object")),
        Err(e) => Err(ApiError::field(StatusCode::BAD_REQUEST, "bad_json", "body", format!("is not valid JSON: {e}"))),
    }
}

/// Builds the router over `state`.
pub fn router(state: ApiState) -> Router {
    let limit = state.config.api.max_body_bytes as usize;
    let authed = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/enrollments", get(list_enrollments).post(intake::submit))
        .route("/v1/enrollments/{id}", get(show_enrollment))
        .route("/v1/enrollments/{id}/retry", post(retry_enrollment))
        .route("/v1/enrollments/{id}/approve", post(signing::approve))
        .route("/v1/enrollments/{id}/refuse", post(signing::refuse))
        .route("/v1/enrollments/{id}/documents", post(signing::upload_document))
        .route("/v1/enrollments/{id}/otp", post(signing::otp))
        .route("/v1/enrollments/{id}/sign", post(signing::sign))
        .route("/v1/events", get(events))
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/cameras", get(cameras::cameras))
        .route("/v1/cameras/{role}/preview.mjpg", get(cameras::preview))
        .route("/v1/captures/still", post(cameras::still))
        .route("/v1/captures/{id}/thumbnail.jpg", get(cameras::thumbnail))
        .route("/v1/recordings", post(cameras::start_recording))
        .route("/v1/recordings/{id}/stop", post(cameras::stop_recording))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/v1/session", post(session))
        .merge(authed)
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route (see /v1/openapi.json)")
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves the API on `listener` (TCP or a Unix socket) until `shutdown` completes. Start
/// [`watch_changes`] once beside it to feed `GET /v1/events`.
pub async fn serve<L>(
    listener: L,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

/// `GET /healthz` (no token): 200 while the daemon works; 503 with the reasons (no personal
/// data) when the server is reachable and work is pending but nothing moved for
/// `health.stall_secs`, or the disk is at `storage.min_free_bytes`.
async fn healthz(State(s): State<ApiState>) -> Response {
    let Ok(list) = blocking(&s.queue, |q| q.list()).await else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unhealthy", "reasons": ["the queue cannot be read"]})),
        )
            .into_response();
    };
    let mut reasons = Vec::new();
    let pending = crate::queue::Backlog::of(&list).pending;
    // Progress: a step that moved an enrollment on (failed attempts are not progress).
    let still = Duration::from_millis((crate::queue::now_ms() - s.worker.last_progress_ms()).max(0) as u64);
    if s.worker.is_online() && pending > 0 && still > s.config.health_stall {
        reasons.push(format!("online with {pending} pending enrollment(s) and no progress for {} s", still.as_secs()));
    }
    let free = crate::fsutil::available_bytes(s.queue.dir()).unwrap_or(u64::MAX);
    if free <= s.config.storage.min_free_bytes {
        reasons.push(format!("{free} bytes free, at the storage.min_free_bytes floor"));
    }
    if reasons.is_empty() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unhealthy", "reasons": reasons}))).into_response()
    }
}

/// The operator page: one file, served from the binary (no CDN; works offline).
const PAGE: &str = include_str!("page.html");

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            // Only this origin's scripts, styles, images and connections; never framed.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' blob:; frame-ancestors 'none'",
            ),
        ],
        PAGE,
    )
}

/// `POST /v1/session {token}`: the token for a session cookie, so the page's previews and
/// event stream are authorized. Without a configured token the API is open on loopback and
/// the cookie is not needed.
async fn session(State(s): State<ApiState>, body: Result<Json<Value>, JsonRejection>) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(r) => return ApiError::from(r).into_response(),
    };
    let Some(token) = &s.config.api.token else {
        return Json(json!({"session": "not needed"})).into_response();
    };
    let given = body["token"].as_str().unwrap_or_default();
    if !same(given.as_bytes(), token.as_bytes()) {
        return ApiError::field(StatusCode::UNAUTHORIZED, "unauthorized", "token", "wrong token").into_response();
    }
    let cookie = format!("{SESSION_COOKIE}={given}; HttpOnly; SameSite=Strict; Path=/");
    ([(header::SET_COOKIE, cookie)], Json(json!({"session": "open"}))).into_response()
}

/// Compares constant-time: a wrong token takes as long to refuse whatever its prefix.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The cookie the operator page's session carries (HttpOnly, SameSite=Strict): the page's
/// `<img>` previews and its event stream cannot send an Authorization header.
const SESSION_COOKIE: &str = "kiosk_session";

/// The token a request presents: the bearer header, or the page's session cookie.
fn presented(headers: &HeaderMap) -> Option<&str> {
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    bearer.or_else(|| {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix(SESSION_COOKIE).and_then(|r| r.strip_prefix('=')))
    })
}

async fn require_token(State(state): State<ApiState>, headers: HeaderMap, request: Request, next: Next) -> Response {
    if let Some(token) = &state.config.api.token {
        let given = presented(&headers);
        if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
            let mut response = ApiError::field(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "authorization",
                "a valid bearer token is required",
            )
            .into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

async fn status(State(s): State<ApiState>) -> Result<Json<wire::Status>, ApiError> {
    let backlog = blocking(&s.queue, |q| q.list()).await.map(|list| crate::queue::Backlog::of(&list))?;
    let free = crate::fsutil::available_bytes(s.queue.dir()).unwrap_or(0);
    Ok(Json(wire::Status {
        online: s.worker.is_online(),
        pending: backlog.pending,
        pending_bytes: backlog.pending_bytes,
        oldest_pending_secs: backlog.oldest_pending.map(|d| d.as_secs()),
        failed: backlog.failed,
        free_disk_bytes: free,
        last_contact: s.worker.last_contact_ms().map(crate::queue::format_ms),
    }))
}

#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    state: Option<String>,
}

async fn list_enrollments(
    State(s): State<ApiState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
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

async fn show_enrollment(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<wire::EnrollmentDetail>, ApiError> {
    let shown = blocking(&s.queue, move |q| q.show(&id)).await?;
    Ok(Json((&shown).into()))
}

async fn retry_enrollment(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id2 = id.clone();
    let state = blocking(&s.queue, move |q| q.retry(&id2)).await?;
    s.queue.audit(Some(&id), "retry requested through the API").ok();
    s.worker.waker().notify_one();
    Ok(Json(json!({"id": id, "state": state.to_string()})))
}

async fn events(State(s): State<ApiState>) -> impl IntoResponse {
    let mut rx = s.events.subscribe();
    let stream = async_stream(move |tx| async move {
        loop {
            match rx.recv().await {
                Ok(event) => {
                    let data = serde_json::to_string(&event).expect("JSON values serialize");
                    if tx.send(Ok::<_, std::convert::Infallible>(SseEvent::default().data(data))).await.is_err() {
                        return;
                    }
                }
                // A slow client misses events, not the connection: it can reread the list.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
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

/// Watches the queue and the link and publishes what changed. Polling the queue (twice a
/// second) also sees changes made by other processes (`enroll`, `queue retry`).
pub async fn watch_changes(s: ApiState) {
    let mut last: std::collections::HashMap<String, wire::Enrollment> = Default::default();
    let mut online = s.worker.is_online();
    let mut first = true;
    let mut uploads: std::collections::HashMap<String, u64> = Default::default();
    loop {
        if let Ok(list) = blocking(&s.queue, |q| q.list()).await {
            for e in &list {
                let view = wire::Enrollment::from(e);
                if last.get(&view.id) != Some(&view) {
                    if !first {
                        let _ = s.events.send(wire::Event::Enrollment(view.clone()));
                    }
                    last.insert(view.id.clone(), view);
                }
            }
        }
        first = false;
        let progress = s.worker.upload_progress();
        uploads.retain(|id, _| progress.iter().any(|(p, _, _)| p == id));
        for (id, sent, total) in progress {
            if uploads.insert(id.clone(), sent) != Some(sent) {
                let _ = s.events.send(wire::Event::Upload { id, sent_bytes: sent, total_bytes: total });
            }
        }
        let now_online = s.worker.is_online();
        if now_online != online {
            online = now_online;
            let _ = s.events.send(wire::Event::Link { online });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The OpenAPI description, generated from [`ROUTES`].
pub fn openapi_document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, authed, summary) in ROUTES {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        let mut op = json!({"summary": summary, "responses": {"200": {"description": "OK"}}});
        if *authed {
            op["security"] = json!([{"bearer": []}]);
            op["responses"]["401"] = json!({"description": "missing or wrong token", "content": error_schema()});
        }
        for param in ["id", "role"] {
            if path.contains(&format!("{{{param}}}")) {
                op["parameters"] =
                    json!([{"name": param, "in": "path", "required": true, "schema": {"type": "string"}}]);
            }
        }
        entry[*method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "kiosk-agent local API", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    })
}

fn error_schema() -> Value {
    json!({"application/json": {"schema": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}}}})
}

async fn openapi() -> Json<Value> {
    Json(openapi_document())
}

/// `202 Accepted` of `POST /v1/enrollments`: the id, once the enrollment is durable.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub id: String,
}
