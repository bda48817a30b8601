//! `capture-service`: the long-lived capture process behind the daemon's camera routes.
//!
//! It owns the cameras (one [`Hub`] per role, opened on first use and reopened after it
//! ends), keeps the previews running, and keeps stills and clips in memory ([`Store`]: never
//! on a disk; retakes not at all). It speaks HTTP on a Unix socket (0660: the daemon reaches it
//! through a shared group); the daemon relays its camera routes here and fetches a capture when
//! an enrollment takes it, then deletes it. A crashing driver or decoder takes this process
//! down, never the queue, and this process holds no key and cannot read the queue.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use kiosk_capture::hub::Hub;
use kiosk_capture::record::Recorder;
use kiosk_common::capture::{CaptureConfig, Role};
use oneshot_protocol::Slot;
use serde_json::Value;

use crate::report::{CameraRole, CameraRoles, ClipReport, ErrorBody, PhotoReport, RecordingStarted, StillReport};
use crate::store::Store;

/// Preview frames per second, at most, per viewer.
const PREVIEW_FPS: u64 = 10;
/// JPEG quality of preview frames.
const PREVIEW_QUALITY: u8 = 70;

#[derive(Clone)]
struct Service {
    cfg: Arc<CaptureConfig>,
    store: Arc<Store>,
    hubs: Arc<Mutex<HashMap<&'static str, Hub>>>,
    /// Recordings in progress, each with the memory file its encoder writes.
    recordings: Arc<Mutex<HashMap<String, (Recorder, std::fs::File)>>>,
}

fn error(
    status: StatusCode,
    code: &'static str,
    field: Option<&'static str>,
    message: impl std::fmt::Display,
) -> Response {
    (status, Json(ErrorBody { code, message: message.to_string(), field })).into_response()
}

impl Service {
    /// The role's camera, opened now if it is not (or no longer) running.
    fn hub(&self, role: Role) -> Result<Hub, Box<Response>> {
        let mut hubs = self.hubs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = hubs.get(role.as_str()) {
            if h.ended().is_none() {
                return Ok(h.clone());
            }
        }
        let r = self.cfg.role(role);
        let hub = Hub::start(&r.source, r.request).map_err(|e| {
            let text = e.to_string();
            let (status, code) = if text.contains("camera disconnected") {
                (StatusCode::SERVICE_UNAVAILABLE, "camera_disconnected")
            } else if text.to_lowercase().contains("busy") {
                (StatusCode::CONFLICT, "camera_busy")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "camera_unavailable")
            };
            Box::new(error(status, code, Some("role"), e))
        })?;
        hubs.insert(role.as_str(), hub.clone());
        Ok(hub)
    }
}

impl Service {
    /// The role a route's path names and its camera (404 for no such role).
    fn camera_of(&self, role: &str) -> Result<(Role, Hub), Box<Response>> {
        let Ok(role) = role.parse::<Role>() else {
            let message = format!("no camera role {role:?}");
            return Err(Box::new(error(StatusCode::NOT_FOUND, "not_found", Some("role"), message)));
        };
        Ok((role, self.hub(role)?))
    }
}

/// Serves on `socket` until the process is stopped; captures unused for `keep` are forgotten.
pub fn run(cfg: CaptureConfig, socket: &Path, keep: Duration) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(socket);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        // Bound under a temporary name and renamed into place once it listens: the daemon
        // waits for the socket's name to appear, and a name that appeared before listen()
        // would refuse its first connection. The owner and its group (the daemon's, in the
        // systemd install) only.
        let pending = socket.with_extension("sock.new");
        let _ = std::fs::remove_file(&pending);
        let listener = tokio::net::UnixListener::bind(&pending)?;
        std::fs::set_permissions(&pending, std::os::unix::fs::PermissionsExt::from_mode(0o660))?;
        std::fs::rename(&pending, socket)?;
        let service = Service {
            cfg: Arc::new(cfg),
            store: Arc::new(Store::new(keep)),
            hubs: Arc::default(),
            recordings: Arc::default(),
        };
        let app = Router::new()
            .route("/health", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
            .route("/cameras", get(cameras))
            .route("/preview/{role}", get(preview))
            .route("/guidance/{role}", get(guidance))
            .route("/stills", post(still))
            .route("/stills/{id}", get(still_bytes).delete(forget))
            .route("/stills/{id}/thumbnail.jpg", get(still_bytes))
            .route("/recordings", post(start_recording))
            .route("/recordings/{id}/stop", post(stop_recording))
            .route("/recordings/{id}/clip.mp4", get(clip_bytes))
            .route("/recordings/{id}", delete(forget))
            .with_state(service);
        axum::serve(listener, app).await?;
        Ok(())
    })
}

async fn cameras(State(s): State<Service>) -> Json<CameraRoles> {
    let hubs = s.hubs.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let roles: Vec<CameraRole> = Role::ALL
        .into_iter()
        .map(|role| {
            let r = s.cfg.role(role);
            let hub = hubs.get(role.as_str());
            CameraRole {
                role: role.as_str(),
                source: r.source.clone(),
                running: hub.is_some_and(|h| h.ended().is_none()),
                preview: format!("/v1/cameras/{}/preview.mjpg", role.as_str()),
            }
        })
        .collect();
    Json(CameraRoles { cameras: roles })
}

/// A streamed answer of `content_type` made of what arrives on `rx`, until its sender ends.
fn streamed(rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>, content_type: &'static str) -> Response {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-store")], Body::from_stream(stream))
        .into_response()
}

/// `multipart/x-mixed-replace` JPEGs of the role's camera, at most [`PREVIEW_FPS`] a second;
/// the stream ends when the camera does.
async fn preview(State(s): State<Service>, UrlPath(role): UrlPath<String>) -> Response {
    let (_, hub) = match s.camera_of(&role) {
        Ok(found) => found,
        Err(r) => return *r,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    tokio::spawn(async move {
        let mut last = None;
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / PREVIEW_FPS));
        loop {
            tick.tick().await;
            let h = hub.clone();
            let next = tokio::task::spawn_blocking(move || h.preview_after(last, PREVIEW_QUALITY)).await.ok().flatten();
            let Some((index, jpeg)) = next else { return };
            last = Some(index);
            let mut part =
                format!("--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n", jpeg.len()).into_bytes();
            part.extend_from_slice(&jpeg);
            part.extend_from_slice(b"\r\n");
            if tx.send(Ok(part)).await.is_err() {
                return; // the viewer left
            }
        }
    });
    streamed(rx, "multipart/x-mixed-replace; boundary=frame")
}

/// Server-sent events, one per judged preview frame ([`crate::live`]): the hints, the card's
/// outline or the face box, and how long the preview has been good.
async fn guidance(State(s): State<Service>, UrlPath(role): UrlPath<String>) -> Response {
    let (role, hub) = match s.camera_of(&role) {
        Ok(found) => found,
        Err(r) => return *r,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let cfg = Arc::clone(&s.cfg);
    tokio::task::spawn_blocking(move || crate::live::stream(hub, &cfg, role, tx));
    streamed(rx, "text/event-stream")
}

async fn still(State(s): State<Service>, body: axum::body::Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(role) = body["role"].as_str().and_then(|r| r.parse::<Role>().ok()) else {
        return error(StatusCode::BAD_REQUEST, "invalid", Some("role"), "must be \"document\" or \"face\"");
    };
    let hub = match s.hub(role) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    // The document photo is cut from the front, around the face found there, not taken apart.
    let front = match body.get("kind").map(|k| k.as_str().map(str::parse::<Slot>)) {
        None => false,
        Some(Some(Ok(slot))) => slot == Slot::DocumentFront && role == Role::Document,
        Some(_) => {
            let rule = format!("must be one of {} (document_front with role document)", Slot::names());
            return error(StatusCode::BAD_REQUEST, "invalid", Some("kind"), rule);
        }
    };
    // Auto-capture: wait for a good moment, up to the timeout; given up when the asker leaves.
    let auto = match (&body["auto"], &body["timeout_secs"]) {
        (Value::Null | Value::Bool(false), Value::Null) => None,
        (Value::Bool(true), Value::Null) => Some(crate::live::AUTO_TIMEOUT),
        (Value::Bool(true), t) => match t.as_f64() {
            Some(t) if t > 0.0 && t <= crate::live::AUTO_TIMEOUT_MAX.as_secs_f64() => Some(Duration::from_secs_f64(t)),
            _ => {
                let rule = format!("must be seconds above 0 and at most {}", crate::live::AUTO_TIMEOUT_MAX.as_secs());
                return error(StatusCode::BAD_REQUEST, "invalid", Some("timeout_secs"), rule);
            }
        },
        (Value::Null | Value::Bool(false), _) => {
            return error(StatusCode::BAD_REQUEST, "invalid", Some("timeout_secs"), "only with \"auto\": true");
        }
        _ => return error(StatusCode::BAD_REQUEST, "invalid", Some("auto"), "must be true or false"),
    };
    let cancelled = crate::live::Cancelled::default();
    let _cancel_on_drop = crate::live::CancelOnDrop(cancelled.clone());
    let cfg = Arc::clone(&s.cfg);
    let store = Arc::clone(&s.store);
    let taken = tokio::task::spawn_blocking(move || {
        let r = cfg.role(role);
        let mut tap = hub.tap();
        let mut ready_since = None;
        let mut still = match auto {
            None => {
                let mut still = kiosk_capture::still::capture_still(&mut tap, &cfg.still, &r.thresholds)?;
                // The document cut out of the frame first: the document photo is cut from it.
                crate::commands::cut_if_configured(&mut still, &cfg, role)?;
                still
            }
            Some(timeout) => {
                use kiosk_capture::auto::{capture_auto, Auto};
                let card = r.card.filter(|_| role == Role::Document);
                let keep_waiting = |_: &kiosk_capture::guidance::Guidance| !cancelled.is_set();
                match capture_auto(&mut tap, &cfg.still, &r.thresholds, card, timeout, keep_waiting)? {
                    Auto::Taken { still, ready_since: at } => {
                        ready_since = Some(at.as_millis() as u64);
                        *still
                    }
                    Auto::TimedOut { waited, hints } => return Ok(Err(AutoGaveUp::timed_out(role, waited, hints))),
                    Auto::Cancelled => return Ok(Err(AutoGaveUp::cancelled(role))),
                }
            }
        };
        let mut report = StillReport { ready_since_ms: ready_since, ..StillReport::new(&still, role) };
        let photo = if front { front_photo(&still, cfg.still.jpeg_quality, &mut report) } else { None };
        // A retake is judged and answered, never kept: nothing can take it for an enrollment.
        if report.verdict != "pass" {
            return Ok(Ok(report));
        }
        let now = Instant::now();
        if let Some(photo) = photo {
            let photo_id = store.put_still(photo.1, now);
            report.photo = Some(PhotoReport {
                thumbnail: format!("/v1/captures/{photo_id}/thumbnail.jpg"),
                id: photo_id,
                width: photo.0.width,
                height: photo.0.height,
            });
        }
        if let (true, Some(uncut)) = (r.keep_full_frame, still.uncut.take()) {
            let card = still.card.as_ref().expect("an uncut frame is kept only with a cut");
            let (width, height) = (card.frame_width, card.frame_height);
            let full_id = store.put_still(uncut, now);
            report.full_frame = Some(PhotoReport {
                thumbnail: format!("/v1/captures/{full_id}/thumbnail.jpg"),
                id: full_id,
                width,
                height,
            });
        }
        let id = store.put_still(std::mem::take(&mut still.jpeg), now);
        let thumbnail = Some(format!("/v1/captures/{id}/thumbnail.jpg"));
        Ok::<_, kiosk_capture::CaptureError>(Ok(StillReport { id: Some(id), thumbnail, ..report }))
    })
    .await;
    match taken {
        Ok(Ok(Ok(report))) => Json(report).into_response(),
        Ok(Ok(Err(gave_up))) => Json(gave_up).into_response(),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, "camera_unavailable", Some("role"), e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", None, e),
    }
}

/// An auto-capture that took nothing: a retake, saying what was still wrong.
#[derive(Debug, serde::Serialize)]
struct AutoGaveUp {
    role: &'static str,
    verdict: &'static str,
    reasons: Vec<String>,
    /// `timed_out`, or `cancelled` (the asker went away).
    auto: &'static str,
}

impl AutoGaveUp {
    fn timed_out(role: Role, waited: Duration, hints: Vec<String>) -> Self {
        let reason = format!("no good moment within {:.0} s: {}", waited.as_secs_f64(), hints.join("; "));
        AutoGaveUp { role: role.as_str(), verdict: "retake", reasons: vec![reason], auto: "timed_out" }
    }

    fn cancelled(role: Role) -> Self {
        AutoGaveUp { role: role.as_str(), verdict: "retake", reasons: vec!["cancelled".into()], auto: "cancelled" }
    }
}

/// The document photo cut around the face on a document front, as a frame and its JPEG. A
/// front without a face to cut is a retake: its reason is added to `report`.
fn front_photo(
    still: &kiosk_capture::still::Still,
    quality: u8,
    report: &mut StillReport,
) -> Option<(kiosk_capture::Frame, Vec<u8>)> {
    let cut = kiosk_capture::faces::document_photo(&still.frame)
        .and_then(|photo| kiosk_capture::jpeg::encode(&photo, quality).map(|jpeg| (photo, jpeg)));
    match cut {
        Ok(photo) => Some(photo),
        Err(e) => {
            report.verdict = "retake";
            report.reasons.push(match e {
                kiosk_capture::CaptureError::Media { reason, .. } => reason,
                other => other.to_string(),
            });
            None
        }
    }
}

fn valid_id(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok()
}

/// A kept still's JPEG (its thumbnail is the still itself).
async fn still_bytes(State(s): State<Service>, UrlPath(id): UrlPath<String>) -> Response {
    match s.store.still(&id, Instant::now()) {
        Some(bytes) if valid_id(&id) => {
            ([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "no-store")], bytes).into_response()
        }
        _ => error(StatusCode::NOT_FOUND, "not_found", Some("id"), "no such capture"),
    }
}

/// A finished recording's MP4.
async fn clip_bytes(State(s): State<Service>, UrlPath(id): UrlPath<String>) -> Response {
    let store = Arc::clone(&s.store);
    match tokio::task::spawn_blocking(move || store.clip(&id, Instant::now())).await {
        Ok(Some(Ok(bytes))) => {
            ([(header::CONTENT_TYPE, "video/mp4"), (header::CACHE_CONTROL, "no-store")], bytes).into_response()
        }
        Ok(Some(Err(e))) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", None, e),
        _ => error(StatusCode::NOT_FOUND, "not_found", Some("id"), "no such recording"),
    }
}

/// Forgets a still or a clip (an enrollment took it).
async fn forget(State(s): State<Service>, UrlPath(id): UrlPath<String>) -> Response {
    if s.store.remove(&id, Instant::now()) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, "not_found", Some("id"), "no such capture or recording")
    }
}

async fn start_recording(State(s): State<Service>, body: axum::body::Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let max = s.cfg.video.max_duration.as_secs_f64();
    let seconds = match body["max_seconds"].as_f64() {
        Some(n) if n > 0.0 && n <= max => n,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid",
                Some("max_seconds"),
                format!("must be a number of seconds above 0 and at most {max}"),
            )
        }
    };
    let hub = match s.hub(Role::Face) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let id = uuid::Uuid::new_v4().to_string();
    let (file, out) = match kiosk_common::fsutil::memory_file("kiosk-clip") {
        Ok(f) => f,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", None, e),
    };
    let settings = s.cfg.video.clone();
    let started = tokio::task::spawn_blocking(move || {
        Recorder::start_direct(move || Ok(Box::new(hub.tap()) as _), &out, &settings, Duration::from_secs_f64(seconds))
    })
    .await;
    match started {
        Ok(Ok(recorder)) => {
            s.recordings.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), (recorder, file));
            (StatusCode::CREATED, Json(RecordingStarted { id, max_seconds: seconds })).into_response()
        }
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, "camera_unavailable", None, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", None, e),
    }
}

async fn stop_recording(State(s): State<Service>, UrlPath(id): UrlPath<String>) -> Response {
    let recorder = s.recordings.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    let Some((recorder, file)) = recorder else {
        return error(StatusCode::NOT_FOUND, "not_found", Some("id"), "no such recording");
    };
    match tokio::task::spawn_blocking(move || recorder.stop()).await {
        Ok(Ok(report)) => {
            s.store.put_clip(id.clone(), file, Instant::now());
            Json(ClipReport::of_recording(id, &report)).into_response()
        }
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, "recording_failed", None, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", None, e),
    }
}
