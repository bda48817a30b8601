//! The camera routes: relayed to the capture service, a `kiosk-agent-capture capture-service`
//! child (or its own unit) that owns the cameras (the daemon itself never opens one). The
//! service speaks HTTP on `api.capture_socket` (in the data directory, 0700, when this daemon
//! starts it; in a directory shared through a group in the systemd install) and keeps stills
//! and clips in its memory only; an enrollment that takes one fetches it from there and then
//! deletes it. If the service is not running, or died, the route answers 503 and the service
//! is started again; enrollments are unaffected.

use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;

use super::{ApiError, ApiState};
use crate::config::Role;

/// The capture service a daemon supervises.
#[derive(Debug)]
pub struct CaptureService {
    socket: PathBuf,
    /// How long the service keeps a capture nobody took.
    keep: Duration,
    config: Option<PathBuf>,
    /// Whether this daemon starts the service or another unit runs it.
    spawn: bool,
    child: tokio::sync::Mutex<Option<tokio::process::Child>>,
}

impl CaptureService {
    pub fn new(api: &crate::config::ApiConfig, config: Option<PathBuf>) -> CaptureService {
        CaptureService {
            socket: api.capture_socket.clone(),
            keep: api.capture_ttl,
            config,
            spawn: api.capture_service == crate::config::CaptureServiceMode::Spawn,
            child: Default::default(),
        }
    }

    /// The bytes of a capture (`Kept::Still`) or a recording (`Kept::Clip`), at most `limit`.
    pub async fn fetch(&self, kept: Kept, id: &str, limit: u64) -> Result<axum::body::Bytes, ApiError> {
        let path = match kept {
            Kept::Still => format!("/stills/{id}"),
            Kept::Clip => format!("/recordings/{id}/clip.mp4"),
        };
        let kind = if kept == Kept::Still { Answer::Jpeg } else { Answer::Mp4 };
        let response = self.call(Method::GET, &path, Vec::new(), kind).await?;
        if !response.status().is_success() {
            return Err(ApiError::field(
                StatusCode::NOT_FOUND,
                "not_found",
                "id",
                format!("no capture or recording {id:?}"),
            ));
        }
        axum::body::to_bytes(response.into_body(), limit as usize).await.map_err(unavailable)
    }

    /// Tells the service to forget a capture or recording an enrollment took.
    pub async fn forget(&self, kept: Kept, id: &str) {
        let path = match kept {
            Kept::Still => format!("/stills/{id}"),
            Kept::Clip => format!("/recordings/{id}"),
        };
        if let Err(e) = self.call(Method::DELETE, &path, Vec::new(), Answer::Json).await {
            tracing::warn!(error = %e.message, "the capture service did not forget a capture; it expires unused");
        }
    }

    /// Starts the service unless it runs; waits a moment for its socket. An external service
    /// (its own unit) is only looked for: systemd restarts it.
    async fn ensure_running(&self) -> Result<(), ApiError> {
        if !self.spawn {
            return if self.socket.exists() {
                Ok(())
            } else {
                Err(unavailable(format!(
                    "{} does not exist (is kiosk-agent-capture-service running?)",
                    self.socket.display()
                )))
            };
        }
        let mut child = self.child.lock().await;
        let alive = match child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        };
        if alive {
            return Ok(());
        }
        if child.is_some() {
            tracing::warn!("the capture service ended; starting it again");
        }
        let _ = tokio::fs::remove_file(&self.socket).await;
        let mut cmd = tokio::process::Command::from(crate::helper::command().map_err(unavailable)?);
        if let Some(config) = &self.config {
            cmd.arg("--config").arg(config);
        }
        cmd.arg("capture-service")
            .arg("--socket")
            .arg(&self.socket)
            .arg("--keep-secs")
            .arg(self.keep.as_secs().to_string())
            .kill_on_drop(true);
        *child = Some(cmd.spawn().map_err(unavailable)?);
        for _ in 0..50 {
            if tokio::fs::try_exists(&self.socket).await.unwrap_or(false) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(unavailable("it did not open its socket within a second"))
    }

    /// Sends one request to the service and returns its answer, body streamed, under the
    /// content type `kind` says it must have: the service's own header is never relayed, so
    /// whatever it answered cannot become a page on the API's origin.
    async fn call(&self, method: Method, path: &str, body: Vec<u8>, kind: Answer) -> Result<Response, ApiError> {
        self.ensure_running().await?;
        let stream = tokio::net::UnixStream::connect(&self.socket).await.map_err(unavailable)?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(unavailable)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "capture-service")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(axum::body::Bytes::from(body)))
            .map_err(unavailable)?;
        let response = sender.send_request(request).await.map_err(unavailable)?;
        let (mut parts, body) = response.into_parts();
        let content_type = kind.content_type(parts.status, parts.headers.get(header::CONTENT_TYPE))?;
        parts.headers.clear();
        parts.headers.insert(header::CONTENT_TYPE, content_type);
        let stream = body.into_data_stream();
        Ok(Response::from_parts(parts, Body::from_stream(stream)))
    }
}

/// What the capture service keeps for an enrollment to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    Still,
    Clip,
}

/// What a capture-service route answers, and so the only content type relayed for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Json,
    Jpeg,
    Mp4,
    /// `multipart/x-mixed-replace` with the service's boundary (checked to be a plain token).
    MjpegStream,
    /// `text/event-stream`, each event read and written again by the daemon ([`guidance`]).
    EventStream,
}

impl Answer {
    fn content_type(self, status: StatusCode, given: Option<&HeaderValue>) -> Result<HeaderValue, ApiError> {
        // Errors are JSON whatever the route.
        if !status.is_success() || self == Answer::Json {
            return Ok(HeaderValue::from_static("application/json"));
        }
        match self {
            Answer::Json => unreachable!("handled above"),
            Answer::Jpeg => Ok(HeaderValue::from_static("image/jpeg")),
            Answer::Mp4 => Ok(HeaderValue::from_static("video/mp4")),
            Answer::EventStream => Ok(HeaderValue::from_static("text/event-stream")),
            Answer::MjpegStream => {
                let boundary = given
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("multipart/x-mixed-replace; boundary="))
                    .filter(|b| {
                        !b.is_empty()
                            && b.len() <= 70
                            && b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
                    });
                match boundary {
                    Some(b) => {
                        HeaderValue::from_str(&format!("multipart/x-mixed-replace; boundary={b}")).map_err(unavailable)
                    }
                    None => Err(unavailable("its preview answer is not an MJPEG stream")),
                }
            }
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "capture_service_unavailable",
        format!("the capture service is not available: {e}"),
    )
}

#[utoipa::path(get, path = "/v1/cameras", tag = "cameras", security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "the camera roles, their sources and whether they run (the capture service's answer)", body = Object),
        (status = 503, description = "the capture service or the camera is not there", body = super::wire::ErrorBody),
    ))]
pub async fn cameras(State(s): State<ApiState>) -> Result<Response, ApiError> {
    s.cameras.call(Method::GET, "/cameras", Vec::new(), Answer::Json).await
}

#[utoipa::path(get, path = "/v1/cameras/{role}/preview.mjpg", tag = "cameras", security(("bearer" = []), ("session" = [])),
    params(("role" = String, Path, description = "`document` or `face`")),
    responses(
        (status = 200, description = "MJPEG, at most 10 frames a second", content_type = "multipart/x-mixed-replace", body = String),
        (status = 404, description = "no such role", body = super::wire::ErrorBody),
        (status = 503, description = "the capture service or the camera is not there", body = super::wire::ErrorBody),
    ))]
pub async fn preview(State(s): State<ApiState>, UrlPath(role): UrlPath<String>) -> Result<Response, ApiError> {
    if role.parse::<Role>().is_err() {
        return Err(ApiError::field(StatusCode::NOT_FOUND, "not_found", "role", format!("no camera role {role:?}")));
    }
    s.cameras.call(Method::GET, &format!("/preview/{role}"), Vec::new(), Answer::MjpegStream).await
}

#[utoipa::path(get, path = "/v1/cameras/{role}/guidance", tag = "cameras", security(("bearer" = []), ("session" = [])),
    params(("role" = String, Path, description = "`document` or `face`")),
    responses(
        (status = 200, description = "server-sent events `guidance`, each a `Guidance` object, a few a second while the camera runs", content_type = "text/event-stream", body = super::wire::Guidance),
        (status = 404, description = "no such role", body = super::wire::ErrorBody),
        (status = 503, description = "the capture service or the camera is not there", body = super::wire::ErrorBody),
    ))]
pub async fn guidance(State(s): State<ApiState>, UrlPath(role): UrlPath<String>) -> Result<Response, ApiError> {
    if role.parse::<Role>().is_err() {
        return Err(ApiError::field(StatusCode::NOT_FOUND, "not_found", "role", format!("no camera role {role:?}")));
    }
    let response = s.cameras.call(Method::GET, &format!("/guidance/{role}"), Vec::new(), Answer::EventStream).await?;
    if !response.status().is_success() {
        return Ok(response);
    }
    let (mut parts, body) = response.into_parts();
    parts.headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let events = futures_util::stream::unfold(
        (body.into_data_stream(), Vec::<u8>::new()),
        |(mut body, mut pending)| async move {
            use futures_util::StreamExt as _;
            loop {
                if let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                    let event: Vec<u8> = pending.drain(..end + 2).collect();
                    match rewrite_guidance(&event) {
                        Some(out) => return Some((Ok::<_, std::io::Error>(out), (body, pending))),
                        None => continue, // not a guidance event: dropped
                    }
                }
                // An event is a few hundred bytes: a service that sends more without one ends.
                if pending.len() > 64 * 1024 {
                    return None;
                }
                match body.next().await {
                    Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
                    _ => return None,
                }
            }
        },
    );
    Ok(Response::from_parts(parts, Body::from_stream(events)))
}

/// One event of the capture service's guidance stream, read into the API's own type and
/// written again; `None` for anything else.
fn rewrite_guidance(event: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(event).ok()?;
    let data = text.lines().find_map(|l| l.strip_prefix("data: "))?;
    let guidance: super::wire::Guidance = serde_json::from_str(data).ok()?;
    let json = serde_json::to_string(&guidance).ok()?;
    Some(format!("event: guidance\ndata: {json}\n\n").into_bytes())
}

#[utoipa::path(post, path = "/v1/captures/still", tag = "cameras", security(("bearer" = []), ("session" = [])), request_body = super::wire::StillRequest,
    responses(
        (status = 200, description = "id, metrics, verdict, reasons, thumbnail URL; a document front also gives the document photo cut around its face (the capture service's answer)", body = Object),
        (status = 400, description = "a bad role or kind", body = super::wire::ErrorBody),
        (status = 503, description = "the capture service or the camera is not there", body = super::wire::ErrorBody),
    ))]
pub async fn still(State(s): State<ApiState>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::field(StatusCode::BAD_REQUEST, "bad_json", "body", e.to_string()))?;
    let response = s
        .cameras
        .call(Method::POST, "/stills", serde_json::to_vec(&value).expect("JSON values serialize"), Answer::Json)
        .await?;
    if !response.status().is_success() {
        return Ok(response);
    }
    // The answer is a small JSON object: read it to count its verdict, then pass it on as is.
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.map_err(unavailable)?;
    if let Ok(still) = serde_json::from_slice::<serde_json::Value>(&bytes) {
        let role = still["role"].as_str().filter(|r| r.parse::<Role>().is_ok());
        let verdict = still["verdict"].as_str().filter(|v| matches!(*v, "pass" | "retake"));
        if let (Some(role), Some(verdict)) = (role, verdict) {
            let (role, verdict) = (role.to_owned(), verdict.to_owned());
            let labels = move |q: &crate::queue::Queue| {
                q.count(crate::queue::counters::names::CAPTURES, &[("role", &role), ("verdict", &verdict)])
            };
            if let Err(e) = crate::sync::blocking(&s.queue, labels).await {
                tracing::warn!(error = %e, "cannot count a capture verdict");
            }
        }
    }
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

#[utoipa::path(get, path = "/v1/captures/{id}/thumbnail.jpg", tag = "cameras", security(("bearer" = []), ("session" = [])),
    params(("id" = String, Path, description = "the still's id")),
    responses(
        (status = 200, description = "the still", content_type = "image/jpeg", body = super::wire::Binary),
        (status = 404, description = "no such still (or no longer kept)", body = super::wire::ErrorBody),
    ))]
pub async fn thumbnail(State(s): State<ApiState>, UrlPath(id): UrlPath<String>) -> Result<Response, ApiError> {
    let id = capture_id(&id)?;
    s.cameras.call(Method::GET, &format!("/stills/{id}/thumbnail.jpg"), Vec::new(), Answer::Jpeg).await
}

#[utoipa::path(get, path = "/v1/recordings/{id}/clip.mp4", tag = "cameras", security(("bearer" = []), ("session" = [])),
    params(("id" = String, Path, description = "the recording's id")),
    responses(
        (status = 200, description = "the finished clip (H.264/MP4), from the capture service's memory", content_type = "video/mp4", body = super::wire::Binary),
        (status = 404, description = "no such recording (or no longer kept)", body = super::wire::ErrorBody),
    ))]
pub async fn clip(State(s): State<ApiState>, UrlPath(id): UrlPath<String>) -> Result<Response, ApiError> {
    let id = capture_id(&id)?;
    s.cameras.call(Method::GET, &format!("/recordings/{id}/clip.mp4"), Vec::new(), Answer::Mp4).await
}

#[utoipa::path(post, path = "/v1/recordings", tag = "cameras", security(("bearer" = []), ("session" = [])), request_body = super::wire::RecordingRequest,
    responses(
        (status = 201, description = "recording: its id (the capture service's answer)", body = Object),
        (status = 400, description = "a bad max_seconds", body = super::wire::ErrorBody),
        (status = 503, description = "the capture service or the camera is not there", body = super::wire::ErrorBody),
    ))]
pub async fn start_recording(State(s): State<ApiState>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::field(StatusCode::BAD_REQUEST, "bad_json", "body", e.to_string()))?;
    s.cameras
        .call(Method::POST, "/recordings", serde_json::to_vec(&value).expect("JSON values serialize"), Answer::Json)
        .await
}

#[utoipa::path(post, path = "/v1/recordings/{id}/stop", tag = "cameras", security(("bearer" = []), ("session" = [])),
    params(("id" = String, Path, description = "the recording's id")),
    responses(
        (status = 200, description = "frames, dropped, skipped, duration, bytes (the capture service's answer)", body = Object),
        (status = 404, description = "no such recording", body = super::wire::ErrorBody),
    ))]
pub async fn stop_recording(State(s): State<ApiState>, UrlPath(id): UrlPath<String>) -> Result<Response, ApiError> {
    let id = capture_id(&id)?;
    s.cameras
        .call(Method::POST, &format!("/recordings/{id}/stop"), Vec::new(), Answer::Json)
        .await
        .map(IntoResponse::into_response)
}

/// A capture or recording id: a UUID, so it can name a file and nothing else.
pub fn capture_id(id: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(id).map(|u| u.to_string()).map_err(|_| {
        ApiError::field(StatusCode::NOT_FOUND, "not_found", "id", format!("no capture or recording {id:?}"))
    })
}
