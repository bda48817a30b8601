//! `POST /v1/enrollments`: the manifest of `enroll`, with the files in the request instead of
//! paths: either JSON where each image and the video is `{"base64": "…"}`, or
//! `multipart/form-data` with a `manifest` part (images and video left out) and one part per
//! file named by its manifest key (`document_front` … `video`), the way to send a large video.
//!
//! Memory stays bounded whatever a client sends: a JSON body is read only up to
//! `api.max_json_bytes` (at most 64 MiB; it is parsed in memory, with the strict parser that
//! refuses duplicate keys, as `enroll` does), and a multipart body is streamed part by part,
//! each part capped by what it may hold (the manifest 1 MiB, an image `evidence.max_image_bytes`,
//! the video `evidence.max_video_bytes`).
//!
//! The files are kept in memory files (`memfd`: never on a disk, gone with the process) and from
//! there take exactly the path `enroll` takes: the same validation (opened once, decoded,
//! probed), the same enqueue. Only a multipart part larger than [`IN_MEMORY`] (a long video)
//! spills to a private intake directory under the data directory (0700, files 0600), sealed
//! from its first byte under a key that never leaves memory ([`crate::spill`]), and erased
//! whatever happens (and at the daemon's next start after a kill or a power cut, when its key
//! is gone with the process). `202 {id}` means the enrollment is durable.

use std::path::{Path, PathBuf};

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, StatusCode};
use axum::Json;
use base64::Engine as _;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt as _;

use super::cameras::Kept;
use super::{Accepted, ApiError, ApiState};
use crate::evidence::{validate_manifest, EvidenceError, HelperProber, ManifestOptions, IMAGE_NAMES};
use crate::spill::{SealedFiles, Sealer, SpillKey};

/// The slots that carry files.
fn is_file_slot(name: &str) -> bool {
    name == "video" || IMAGE_NAMES.contains(&name)
}

/// A part is kept in memory up to this size; a larger one (a long video sent as multipart)
/// spills to the disk so that the daemon's memory stays bounded.
const IN_MEMORY: u64 = 64 << 20;

/// One submission's files: memory files, and a private directory for what spills (sealed),
/// erased when dropped.
struct Intake {
    dir: PathBuf,
    /// The memory files, open until the submission ends (their paths name them through
    /// `/proc/self/fd`).
    memory: Vec<std::fs::File>,
    /// The spilled files' keys.
    sealed: SealedFiles,
}

impl Intake {
    fn new(data_dir: &Path) -> Intake {
        Intake {
            dir: data_dir.join("intake").join(uuid::Uuid::new_v4().to_string()),
            memory: Vec::new(),
            sealed: SealedFiles::default(),
        }
    }

    /// Keeps `bytes` in a new memory file (written on the blocking pool, as every file is);
    /// returns its path.
    async fn keep(&mut self, name: &str, bytes: Vec<u8>) -> Result<PathBuf, ApiError> {
        let name = name.to_owned();
        let (file, path) = tokio::task::spawn_blocking(move || crate::fsutil::memory_file_holding(&name, &bytes))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        self.memory.push(file);
        Ok(path)
    }

    /// Where a part too large for memory goes on the disk (its directory made on first use).
    fn spill_path(&self, slot: &str) -> PathBuf {
        self.dir.join(format!("{slot}.bin"))
    }
}

impl Drop for Intake {
    fn drop(&mut self) {
        // Sealed, and its key dies with this value: discarding is erasing (no zero pass; see
        // the README's cryptographic erase).
        if let Err(e) = crate::fsutil::discard_dir(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove an intake directory");
        }
    }
}

/// Where a multipart part is being written: memory, until it outgrows [`IN_MEMORY`]; then the
/// disk, sealed.
enum Sink {
    Memory(tokio::fs::File, PathBuf),
    Disk { file: tokio::fs::File, path: PathBuf, sealer: Box<Sealer>, key: std::sync::Arc<SpillKey> },
}

impl Sink {
    async fn write(self, chunk: &[u8], written: u64, intake: &Intake, slot: &str) -> Result<Sink, ApiError> {
        use std::io::Seek as _;
        match self {
            Sink::Memory(mut file, path) if written <= IN_MEMORY => {
                file.write_all(chunk).await.map_err(internal)?;
                Ok(Sink::Memory(file, path))
            }
            Sink::Memory(mut file, _) => {
                // Too large for memory: what came so far moves to the disk, sealed, and the rest
                // follows it.
                file.flush().await.map_err(internal)?;
                let mut file = file.into_std().await;
                let path = intake.spill_path(slot);
                let key = std::sync::Arc::new(SpillKey::random());
                let mut sealer = Box::new(key.sealer());
                let (target, dir) = (path.clone(), intake.dir.clone());
                let (disk, sealer) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
                    use std::io::{Read as _, Write as _};
                    use std::os::unix::fs::OpenOptionsExt as _;
                    std::fs::create_dir_all(&dir)?;
                    let mut disk =
                        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&target)?;
                    file.rewind()?;
                    let mut piece = vec![0u8; 1 << 20];
                    loop {
                        let n = file.read(&mut piece)?;
                        if n == 0 {
                            break;
                        }
                        disk.write_all(&sealer.seal(&piece[..n]))?;
                    }
                    Ok((disk, sealer))
                })
                .await
                .map_err(internal)?
                .map_err(internal)?;
                let sink = Sink::Disk { file: tokio::fs::File::from_std(disk), path, sealer, key };
                Box::pin(sink.write(chunk, written, intake, slot)).await
            }
            Sink::Disk { mut file, path, mut sealer, key } => {
                file.write_all(&sealer.seal(chunk)).await.map_err(internal)?;
                Ok(Sink::Disk { file, path, sealer, key })
            }
        }
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "intake failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the submission could not be stored; see the daemon's log",
    )
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::field(StatusCode::BAD_REQUEST, "invalid", field, message)
}

#[utoipa::path(post, path = "/v1/enrollments", tag = "queue", security(("bearer" = []), ("session" = [])),
    request_body(content(
        (super::wire::EnrollmentRequest = "application/json"),
        (super::wire::MultipartEnrollment = "multipart/form-data"),
    ), description = "the manifest with its files inline, or the manifest and one part per file"),
    responses(
        (status = 202, description = "durable in the queue", body = Accepted),
        (status = 400, description = "the manifest breaks rules (each named)", body = super::wire::ErrorBody),
        (status = 404, description = "a capture or recording id that is not (or no longer) kept", body = super::wire::ErrorBody),
        (status = 413, description = "a body or part over its limit", body = super::wire::ErrorBody),
        (status = 507, description = "no space left on the data directory", body = super::wire::ErrorBody),
    ))]
pub async fn submit(State(s): State<ApiState>, request: Request) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let mut intake = Intake::new(s.queue.dir());
    // Stills and clips of the capture service this enrollment takes: forgotten once it is queued.
    let mut used: Vec<(Kept, String)> = Vec::new();
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let manifest = if is_multipart {
        let multipart = Multipart::from_request(request, &()).await.map_err(|e| bad("body", e.body_text()))?;
        from_multipart(multipart, &mut intake, &s.config.evidence).await?
    } else {
        let body = json_body(request, s.config.api.max_json_bytes.min(s.config.api.max_body_bytes)).await?;
        from_json(body, &mut intake, &s, &mut used).await?
    };
    let manifest_path = intake.keep("manifest", serde_json::to_vec(&manifest).expect("JSON values serialize")).await?;
    let queue = std::sync::Arc::clone(&s.queue);
    let limits = s.config.evidence;
    let generation = s.config.oneshot.generation;
    let sealed = std::mem::take(&mut intake.sealed);
    // This daemon's own standby probes the video, FFmpeg already loaded.
    let prober = HelperProber::standby_in(queue.dir());
    let id = tokio::task::spawn_blocking(move || -> Result<String, ApiError> {
        // Every file path in this manifest was written here by the intake (memory files under
        // /proc/self/fd, or the intake directory): none came from the client.
        let options = ManifestOptions { allow_outside: true, video: &prober, generation, sealed: Some(&sealed) };
        let enrollment = validate_manifest(&manifest_path, &limits, options).map_err(evidence_error)?;
        Ok(queue.enqueue(&enrollment)?)
    })
    .await
    .map_err(internal)??;
    drop(intake);
    for (kept, id) in used {
        s.cameras.forget(kept, &id).await;
    }
    s.worker.wake(crate::sync::events::Why::Enrolled);
    Ok((StatusCode::ACCEPTED, Json(Accepted { id })))
}

/// A JSON enrollment: at most `limit` bytes read (413 beyond, naming the way for large media),
/// parsed strictly (a key given twice is refused, as `enroll` refuses it).
async fn json_body(request: Request, limit: u64) -> Result<Value, ApiError> {
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::field(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_content_type",
            "content-type",
            "an enrollment is application/json or multipart/form-data",
        ));
    }
    let too_large = || {
        ApiError::field(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "body",
            format!("a JSON enrollment is at most {limit} bytes (api.max_json_bytes, api.max_body_bytes); send large media as multipart/form-data"),
        )
    };
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(request.into_body(), limit as usize).await.map_err(|_| too_large())?;
    // Parsing holds the text and the values at once; it is bounded by `limit` and runs off the
    // executor threads.
    tokio::task::spawn_blocking(move || crate::evidence::strict_json::parse(&bytes))
        .await
        .map_err(internal)?
        .map_err(|e| bad("body", format!("is not valid JSON: {e}")))
}

pub(crate) fn evidence_error(e: EvidenceError) -> ApiError {
    let field = e.violations().first().map(|v| v.field.clone()).unwrap_or_else(|| "manifest".into());
    ApiError::field(StatusCode::BAD_REQUEST, "invalid", field, e.to_string())
}

/// JSON: each file slot holds `{"base64": "…"}`; the files are decoded into the intake and the
/// slot becomes their path. `{"capture": ID}` and `{"recording": ID}` name captures the capture
/// service keeps; they are fetched from it (an unknown id is refused by name).
async fn from_json(
    mut body: Value,
    intake: &mut Intake,
    s: &ApiState,
    used: &mut Vec<(Kept, String)>,
) -> Result<Value, ApiError> {
    if !body.is_object() {
        return Err(bad("manifest", "must be a JSON object"));
    }
    let slots = IMAGE_NAMES.iter().map(|n| (format!("images.{n}"), *n)).chain([("video".to_owned(), "video")]);
    for (field, slot) in slots {
        let value =
            if slot == "video" { body.get_mut("video") } else { body.get_mut("images").and_then(|i| i.get_mut(slot)) };
        let Some(value) = value else { continue };
        let bytes = match capture_file(&field, slot, value)? {
            Some((kept, id)) => {
                let limit = if kept == Kept::Clip {
                    s.config.evidence.max_video_bytes
                } else {
                    s.config.evidence.max_image_bytes
                };
                let bytes = s.cameras.fetch(kept, &id, limit).await.map_err(|e| match e.status {
                    StatusCode::NOT_FOUND => bad(&field, format!("unknown capture or recording id {id:?}")),
                    _ => e,
                })?;
                used.push((kept, id));
                bytes.to_vec()
            }
            None => decode_slot(&field, value)?,
        };
        let path = intake.keep(slot, bytes).await?;
        *value = Value::String(path.display().to_string());
    }
    Ok(body)
}

/// The capture behind `{"capture": ID}` (a still) or `{"recording": ID}` (a clip), if the slot
/// names one; an id that is not a UUID, or of the wrong kind for the slot, is refused.
fn capture_file(field: &str, slot: &str, value: &Value) -> Result<Option<(Kept, String)>, ApiError> {
    let (id, ext) = match value {
        Value::Object(o) if o.len() == 1 && o.get("capture").is_some_and(Value::is_string) => (&o["capture"], "jpg"),
        Value::Object(o) if o.len() == 1 && o.get("recording").is_some_and(Value::is_string) => {
            (&o["recording"], "mp4")
        }
        _ => return Ok(None),
    };
    if (slot == "video") != (ext == "mp4") {
        return Err(bad(
            field,
            if ext == "mp4" { "a recording can only be the video" } else { "the video must be a recording" },
        ));
    }
    let id = id.as_str().expect("checked");
    let id =
        super::cameras::capture_id(id).map_err(|_| bad(field, format!("unknown capture or recording id {id:?}")))?;
    Ok(Some((if ext == "mp4" { Kept::Clip } else { Kept::Still }, id)))
}

/// The bytes of a file slot given as `{"base64": "…"}`.
fn decode_slot(field: &str, value: &Value) -> Result<Vec<u8>, ApiError> {
    let text = match value {
        Value::Object(o) if o.len() == 1 && o.get("base64").is_some_and(Value::is_string) => {
            o["base64"].as_str().expect("checked")
        }
        Value::Object(o) if o.len() == 1 && (o.contains_key("capture") || o.contains_key("recording")) => {
            return Err(bad(field, "a capture or recording id must be a string"));
        }
        _ => return Err(bad(field, "must be {\"base64\": \"…\"} (or a capture or recording id)")),
    };
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| bad(format!("{field}.base64"), format!("is not valid Base64: {e}")))
}

/// The largest manifest part (the manifest without its files).
const MAX_MANIFEST_PART: u64 = 1 << 20;

/// Multipart: a `manifest` part and one part per file slot, streamed to the intake, each part
/// refused (413 naming it) as soon as it outgrows what it may hold.
async fn from_multipart(
    mut multipart: Multipart,
    intake: &mut Intake,
    limits: &crate::config::EvidenceLimits,
) -> Result<Value, ApiError> {
    let mut manifest: Option<Value> = None;
    let mut given: Vec<(String, PathBuf)> = Vec::new();
    while let Some(mut field) = multipart.next_field().await.map_err(|e| multipart_error(&e))? {
        let name = field.name().unwrap_or_default().to_owned();
        let cap = match name.as_str() {
            "manifest" => MAX_MANIFEST_PART,
            "video" => limits.max_video_bytes,
            _ => limits.max_image_bytes,
        };
        let too_large = |name: &str| {
            ApiError::field(StatusCode::PAYLOAD_TOO_LARGE, "too_large", name, format!("the part is over {cap} bytes"))
        };
        if name == "manifest" {
            let mut bytes = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(&e))? {
                if (bytes.len() + chunk.len()) as u64 > cap {
                    return Err(too_large(&name));
                }
                bytes.extend_from_slice(&chunk);
            }
            let value = crate::evidence::strict_json::parse(&bytes).map_err(|e| bad("manifest", e))?;
            manifest = Some(value);
        } else if is_file_slot(&name) {
            if given.iter().any(|(n, _)| *n == name) {
                return Err(bad(&name, "the part is given twice"));
            }
            let (file, path) = crate::fsutil::memory_file(&name).map_err(internal)?;
            let mut sink = Sink::Memory(tokio::fs::File::from_std(file), path);
            let mut written = 0u64;
            while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(&e))? {
                written += chunk.len() as u64;
                if written > cap {
                    return Err(too_large(&name));
                }
                sink = sink.write(&chunk, written, intake, &name).await?;
            }
            let path = match sink {
                Sink::Memory(mut file, path) => {
                    file.flush().await.map_err(internal)?;
                    intake.memory.push(file.into_std().await);
                    path
                }
                Sink::Disk { mut file, path, sealer, key } => {
                    file.write_all(&sealer.finish()).await.map_err(internal)?;
                    file.flush().await.map_err(internal)?;
                    intake.sealed.insert(&path, key);
                    path
                }
            };
            given.push((name, path));
        } else {
            return Err(bad(name, "unknown part (expected manifest, document_front, document_rear, document_photo, document_owner, video)"));
        }
    }
    let mut manifest = manifest.ok_or_else(|| bad("manifest", "the manifest part is required"))?;
    if !manifest.is_object() {
        return Err(bad("manifest", "must be a JSON object"));
    }
    // Files come only as parts: a path in the manifest would name a file of the intake.
    if manifest.get("video").is_some() {
        return Err(bad("video", "send the video as a part named video, not in the manifest"));
    }
    match manifest.get("images") {
        None => manifest["images"] = Value::Object(Map::new()),
        Some(Value::Object(images)) if images.is_empty() => {}
        Some(Value::Object(images)) => {
            let slot = images.keys().next().expect("not empty");
            return Err(bad(
                format!("images.{slot}"),
                format!("send the image as a part named {slot}, not in the manifest"),
            ));
        }
        Some(_) => return Err(bad("images", "must be a JSON object")),
    }
    for (name, path) in &given {
        let path = Value::String(path.display().to_string());
        if name == "video" {
            manifest["video"] = path;
        } else {
            manifest["images"][name.as_str()] = path;
        }
    }
    Ok(manifest)
}

fn multipart_error(e: &axum::extract::multipart::MultipartError) -> ApiError {
    let status = e.status();
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "too_large" } else { "bad_multipart" };
    ApiError::field(status, code, "body", e.body_text())
}
