//! The signing flow after review (the brief's steps 3–9): approve or refuse, documents, the
//! service contract, the OTP, the signature, and retrieving and deleting documents. Bodies follow
//! the schemas `PlApproveReqObject`, `RefuseReqObject_VID` and `SignObject`; the signature's
//! appearance goes in the shape of each generation (`docs/protocol.md`).
//!
//! Files the server sends (PDFs, the video) are streamed to a temporary file beside the target,
//! checked by their first bytes, fsync'd and renamed into place, so a broken transfer never
//! leaves a half-written file under the final name.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use reqwest::header::RETRY_AFTER;
use serde_json::{json, Map, Value};

use super::client::read_capped;
use super::envelope::{clean, interpret, parse_retry_after};
use super::{Client, OneShotError, RequestIds};
use crate::config::{RaoConfig, RaoCredentials, SignatureConfig};
use oneshot_protocol::{Generation, Operation};

/// The largest contract or document the agent takes from the server.
const MAX_PDF: u64 = 64 * 1024 * 1024;

/// How the customer unlocks the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unlock {
    /// The OTP texted to the customer (or a customer code).
    Otp(String),
    /// An external authentication method (`ext_unlock_type`, `ext_unlock_value`).
    External { kind: String, value: String },
}

/// One document the server accepted: the multipart field it came in, its uid and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedDocument {
    pub field: String,
    pub uid: String,
    pub digest: Option<String>,
}

/// Whether `uid` may be put into a path: 1 to 64 letters, digits and dashes.
pub fn valid_uid(uid: &str) -> bool {
    (1..=64).contains(&uid.len()) && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// What a downloaded file must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Pdf,
    Mp4,
}

impl FileKind {
    fn check(self, head: &[u8]) -> bool {
        match self {
            FileKind::Pdf => head.starts_with(b"%PDF-"),
            FileKind::Mp4 => head.len() >= 8 && &head[4..8] == b"ftyp",
        }
    }
}

/// The approve/validate/refuse body: the RAO's token or login, with its id.
pub fn rao_body(rao: &RaoConfig, reason: Option<&str>) -> Value {
    let mut body = Map::new();
    match &rao.credentials {
        RaoCredentials::Token(token) => {
            body.insert("token".into(), token.as_str().into());
        }
        RaoCredentials::Login { username, password, pin } => {
            body.insert("username".into(), username.clone().into());
            body.insert("password".into(), password.as_str().into());
            body.insert("pin".into(), pin.as_str().into());
        }
    }
    body.insert("rao".into(), rao.id.clone().into());
    if let Some(reason) = reason {
        body.insert("reason".into(), reason.into());
    }
    Value::Object(body)
}

/// The sign body of `generation`: the old one puts the appearance per document under `options`
/// (and the text under `signature_format`, switched by `use_signature_text`), the new one under
/// `signature.appearance`. `image_uid` is the uid `POST /image` gave the signature's image.
pub fn sign_body(
    generation: Generation,
    unlock: &Unlock,
    appearance: &SignatureConfig,
    image_uid: Option<&str>,
    uids: &[String],
) -> Value {
    let mut body = Map::new();
    match unlock {
        Unlock::Otp(code) => {
            body.insert("secret".into(), code.clone().into());
        }
        // An external unlock is not an OTP: it goes in its own two fields, never as `secret`.
        Unlock::External { kind, value } => {
            body.insert("ext_unlock_type".into(), kind.clone().into());
            body.insert("ext_unlock_value".into(), value.clone().into());
        }
    }
    let mut look = Map::new();
    if let Some(p) = &appearance.position {
        look.insert("position".into(), p.clone().into());
    }
    if let Some(p) = appearance.page {
        look.insert("page".into(), p.into());
    }
    if let Some(uid) = image_uid {
        look.insert("image".into(), uid.into());
    }
    match generation {
        Generation::Old if !look.is_empty() => {
            let options: Map<String, Value> = uids.iter().map(|u| (u.clone(), Value::Object(look.clone()))).collect();
            body.insert("options".into(), Value::Object(options));
            // The text of the visible signature, and whether it shows at all (its default: yes).
            body.insert("use_signature_text".into(), (!appearance.text.is_empty()).into());
            if !appearance.text.is_empty() {
                let mut format = Map::new();
                format.insert("text_format".into(), json!(appearance.text));
                if let Some(d) = &appearance.date_format {
                    format.insert("date_format".into(), d.clone().into());
                }
                if let Some(t) = &appearance.timezone {
                    format.insert("timezone".into(), t.clone().into());
                }
                body.insert("signature_format".into(), Value::Object(format));
            }
        }
        Generation::Old => {}
        Generation::New => {
            if !appearance.text.is_empty() {
                look.insert("text".into(), json!(appearance.text));
            }
            if let Some(d) = &appearance.date_format {
                look.insert("date".into(), d.clone().into());
            }
            if let Some(t) = &appearance.timezone {
                look.insert("timezone".into(), t.clone().into());
            }
            if !look.is_empty() {
                body.insert("signature".into(), json!({ "appearance": look }));
            }
        }
    }
    Value::Object(body)
}

/// The uid in an image upload's answer: a bare uid (the old generation's `details`) or an
/// object with `image_uid` (or `uid`).
pub fn image_uid(payload: &Value) -> Result<String, OneShotError> {
    let uid = match payload {
        Value::String(uid) => Some(uid.as_str()),
        Value::Object(o) => o.get("image_uid").or_else(|| o.get("uid")).and_then(Value::as_str),
        _ => None,
    };
    uid.filter(|u| valid_uid(u)).map(str::to_owned).ok_or_else(|| {
        OneShotError::Protocol(format!("image upload answer has no image uid: {}", clean(&payload.to_string())))
    })
}

/// Reads a file of at most `max` bytes (a signature image: never a device or a FIFO).
fn read_small_file(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    // Non-blocking, so that a FIFO put in its place cannot hang the sign call.
    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32).open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("is not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::other(format!("is larger than {max} bytes")));
    }
    Ok(bytes)
}

/// Reads the uids out of a document upload's answer, whatever its shape: a bare uid (old, one
/// file), a list of `{digest, uid, key, filename}` (old, several), `{"name", "uid"}` or a list
/// of those (new). `fields` are the multipart fields sent, in order.
pub fn parse_uploaded(payload: &Value, fields: &[String]) -> Result<Vec<UploadedDocument>, OneShotError> {
    let one = |v: &Value, fallback: &str| -> Result<UploadedDocument, OneShotError> {
        let (uid, field, digest) = match v {
            Value::String(uid) => (uid.clone(), fallback.to_owned(), None),
            Value::Object(o) => (
                o.get("uid").and_then(Value::as_str).unwrap_or_default().to_owned(),
                o.get("key").or_else(|| o.get("name")).and_then(Value::as_str).unwrap_or(fallback).to_owned(),
                o.get("digest").and_then(Value::as_str).map(str::to_owned),
            ),
            other => return Err(OneShotError::Protocol(format!("document answer: {}", clean(&other.to_string())))),
        };
        if !valid_uid(&uid) {
            return Err(OneShotError::Protocol(format!("document uid {:?} is not a uid", clean(&uid))));
        }
        Ok(UploadedDocument { field, uid, digest })
    };
    let docs = match payload {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| one(v, fields.get(i).map_or("file", String::as_str)))
            .collect::<Result<Vec<_>, _>>()?,
        v => vec![one(v, fields.first().map_or("file", String::as_str))?],
    };
    if docs.len() != fields.len() {
        return Err(OneShotError::Protocol(format!(
            "sent {} documents, the answer names {}",
            fields.len(),
            docs.len()
        )));
    }
    Ok(docs)
}

/// One document of an upload: its file name, its body (streamed) and the body's length.
#[derive(Debug)]
pub struct DocumentBody {
    pub name: String,
    pub body: reqwest::Body,
    pub len: u64,
}

impl Client {
    fn flow_timeout(&self) -> Duration {
        self.cfg.request_timeout
    }

    async fn post_json(&self, op: Operation, ids: &RequestIds, body: &Value) -> Result<Value, OneShotError> {
        let url = self.url(&self.cfg.paths[op], Some(ids))?;
        self.send(op.key(), self.call(op, url).json(body), self.flow_timeout()).await
    }

    /// Approves a VideoID in review (`ENROLLREADY` follows).
    pub async fn approve(&self, ids: &RequestIds, rao: &RaoConfig) -> Result<(), OneShotError> {
        self.post_json(Operation::Approve, ids, &rao_body(rao, None)).await.map(drop)
    }

    /// The first step of two-step approval (old generation only).
    pub async fn validate(&self, ids: &RequestIds, rao: &RaoConfig) -> Result<(), OneShotError> {
        self.post_json(Operation::Validate, ids, &rao_body(rao, None)).await.map(drop)
    }

    /// Refuses a VideoID in review; the reason is required.
    pub async fn refuse(&self, ids: &RequestIds, rao: &RaoConfig, reason: &str) -> Result<(), OneShotError> {
        self.post_json(Operation::Refuse, ids, &rao_body(rao, Some(reason))).await.map(drop)
    }

    /// Uploads PDFs as multipart fields `file`, `file2`, … (`(file name, bytes)` each).
    pub async fn upload_documents(
        &self,
        ids: &RequestIds,
        files: Vec<DocumentBody>,
    ) -> Result<Vec<UploadedDocument>, OneShotError> {
        let url = self.url(&self.cfg.paths[Operation::DocumentUpload], Some(ids))?;
        let mut form = reqwest::multipart::Form::new();
        let mut fields = Vec::new();
        let mut total = 0u64;
        for (i, DocumentBody { name, body, len }) in files.into_iter().enumerate() {
            let field = if i == 0 { "file".to_owned() } else { format!("file{}", i + 1) };
            total += len;
            // Streamed with its length, so the form is sized without holding the document.
            let part = reqwest::multipart::Part::stream_with_length(body, len)
                .file_name(name)
                .mime_str("application/pdf")
                .expect("application/pdf is a valid MIME type");
            form = form.part(field.clone(), part);
            fields.push(field);
        }
        let payload = self
            .send(
                "document_upload",
                self.call(Operation::DocumentUpload, url).multipart(form),
                self.cfg.upload_timeout_for(total),
            )
            .await?;
        parse_uploaded(&payload, &fields)
    }

    /// Asks the server to text (or WhatsApp) the OTP. A 412 "less than a minute ago" waits the
    /// time the server asks for (`Retry-After`, else `wait`) and tries once more.
    pub async fn generate_otp(&self, ids: &RequestIds, whatsapp: bool, wait: Duration) -> Result<(), OneShotError> {
        let body = json!({"delivery_method": if whatsapp { "whatsapp" } else { "sms" }});
        let pause = match self.post_json(Operation::Otp, ids, &body).await {
            Err(OneShotError::Rejected { status: 412, details }) if details.contains("minute") => wait,
            Err(OneShotError::Server { status: 412, retry_after, .. }) => retry_after.unwrap_or(wait),
            other => return other.map(drop),
        };
        tracing::info!(wait_secs = pause.as_secs(), "the server sent an OTP less than a minute ago; waiting");
        tokio::time::sleep(pause).await;
        self.post_json(Operation::Otp, ids, &body).await.map(drop)
    }

    /// Signs every document of the request.
    pub async fn sign(
        &self,
        ids: &RequestIds,
        unlock: &Unlock,
        appearance: &SignatureConfig,
        uids: &[String],
    ) -> Result<(), OneShotError> {
        // The image first: the sign call names it by the uid the server gives it.
        let image_uid = match &appearance.image {
            Some(path) => Some(self.upload_image(path).await?),
            None => None,
        };
        let body = sign_body(self.generation(), unlock, appearance, image_uid.as_deref(), uids);
        self.post_json(Operation::Sign, ids, &body).await.map(drop)
    }

    /// Uploads the visible signature's image (a PNG, at most 1 MiB) and returns its uid.
    pub async fn upload_image(&self, path: &Path) -> Result<String, OneShotError> {
        const MAX: u64 = 1024 * 1024;
        let bytes = read_small_file(path, MAX)
            .map_err(|e| OneShotError::Local(format!("signature.image {}: {e}", path.display())))?;
        if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Err(OneShotError::Local(format!("signature.image {}: is not a PNG", path.display())));
        }
        let url = self.url(&self.cfg.paths[Operation::ImageUpload], None)?;
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name("signature.png")
            .mime_str("image/png")
            .expect("image/png is a valid MIME type");
        let form = reqwest::multipart::Form::new().part("image", part);
        let payload = self
            .send("image_upload", self.call(Operation::ImageUpload, url).multipart(form), self.flow_timeout())
            .await?;
        image_uid(&payload)
    }

    /// Deletes one document (`Some(uid)`) or all of them. Where the server deletes one copy at
    /// a time (the old generation: original, then signed), both go: a signed copy left behind
    /// would stay on the server unseen. A signed copy that does not exist is not an error.
    pub async fn delete_documents(&self, ids: &RequestIds, uid: Option<&str>) -> Result<(), OneShotError> {
        let url = match uid {
            Some(uid) => self.doc_url(&self.cfg.paths[Operation::DocumentDelete], ids, uid)?,
            None => self.url(&self.cfg.paths[Operation::DocumentsDelete], Some(ids))?,
        };
        let op = if uid.is_some() { Operation::DocumentDelete } else { Operation::DocumentsDelete };
        self.send("document_delete", self.call(op, url), self.flow_timeout()).await?;
        let signed_copy = &self.cfg.paths[Operation::DocumentDeleteSigned];
        if let (Some(uid), false) = (uid, signed_copy.is_empty()) {
            let url = self.doc_url(signed_copy, ids, uid)?;
            match self
                .send("document_delete", self.call(Operation::DocumentDeleteSigned, url), self.flow_timeout())
                .await
            {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn doc_url(&self, template: &str, ids: &RequestIds, uid: &str) -> Result<String, OneShotError> {
        if !valid_uid(uid) {
            return Err(OneShotError::Local(format!("document uid {:?} is not a uid", clean(uid))));
        }
        Ok(self.url(template, Some(ids))?.replace("{uid}", uid))
    }

    /// Downloads the service contract to `out`.
    pub async fn download_contract(&self, ids: &RequestIds, out: &Path) -> Result<u64, OneShotError> {
        let url = self.url(&self.cfg.paths[Operation::Contract], Some(ids))?;
        self.download("contract", url, out, FileKind::Pdf, MAX_PDF).await
    }

    /// Downloads a signed (or the original) document to `out`.
    pub async fn download_document(
        &self,
        ids: &RequestIds,
        uid: &str,
        signed: bool,
        out: &Path,
    ) -> Result<u64, OneShotError> {
        let op = if signed { Operation::DocumentSigned } else { Operation::DocumentOriginal };
        let url = self.doc_url(&self.cfg.paths[op], ids, uid)?;
        self.download("document", url, out, FileKind::Pdf, MAX_PDF).await
    }

    /// Downloads the request's video to `out`.
    pub async fn download_video(&self, ids: &RequestIds, out: &Path, max: u64) -> Result<u64, OneShotError> {
        let url = self.url(&self.cfg.paths[Operation::VideoDownload], Some(ids))?;
        self.download("video_download", url, out, FileKind::Mp4, max).await
    }

    /// The service contract, in memory (for the operator page: never written to a disk).
    pub async fn contract_bytes(&self, ids: &RequestIds) -> Result<Vec<u8>, OneShotError> {
        let url = self.url(&self.cfg.paths[Operation::Contract], Some(ids))?;
        self.pdf_in_memory("contract", url).await
    }

    /// A signed (or the original) document, in memory (for the operator page).
    pub async fn document_bytes(&self, ids: &RequestIds, uid: &str, signed: bool) -> Result<Vec<u8>, OneShotError> {
        let op = if signed { Operation::DocumentSigned } else { Operation::DocumentOriginal };
        let url = self.doc_url(&self.cfg.paths[op], ids, uid)?;
        self.pdf_in_memory("document", url).await
    }

    /// A PDF answer held in memory (at most [`MAX_PDF`]).
    async fn pdf_in_memory(&self, op: &'static str, url: String) -> Result<Vec<u8>, OneShotError> {
        let mut out = Vec::new();
        self.fetch_file(op, url, FileKind::Pdf, MAX_PDF, &mut |chunk| {
            out.extend_from_slice(chunk);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// Streams a file answer into `out` durably (temp file, fsync, rename, fsync of the folder).
    async fn download(
        &self,
        op: &'static str,
        url: String,
        out: &Path,
        kind: FileKind,
        max: u64,
    ) -> Result<u64, OneShotError> {
        let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut tmp =
            tempfile::NamedTempFile::new_in(dir).map_err(|e| OneShotError::Local(format!("{}: {e}", dir.display())))?;
        let written = self.fetch_file(op, url, kind, max, &mut |chunk| tmp.write_all(chunk)).await?;
        tmp.as_file().sync_all().map_err(|e| OneShotError::Local(e.to_string()))?;
        tmp.persist(out).map_err(|e| OneShotError::Local(format!("{}: {}", out.display(), e.error)))?;
        crate::fsutil::sync_dir(dir).map_err(|e| OneShotError::Local(e.to_string()))?;
        Ok(written)
    }

    /// Streams a file answer into `sink`: at most `max` bytes, and it must be a `kind` file (the
    /// sink may have taken the first chunks before that shows: the caller keeps nothing then).
    async fn fetch_file(
        &self,
        op: &'static str,
        url: String,
        kind: FileKind,
        max: u64,
        sink: &mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
    ) -> Result<u64, OneShotError> {
        let mut resp = self.start(op, self.http.get(url), self.cfg.upload_timeout_for(max)).await?;
        let status = resp.status().as_u16();
        if !resp.status().is_success() {
            let retry_after = resp.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
            let body = read_capped(&mut resp, status).await?;
            return Err(match interpret(status, retry_after, &body) {
                Err(e) => e,
                Ok(_) => OneShotError::Protocol(format!("HTTP {status} without the {op}")),
            });
        }
        let mut written = 0u64;
        let mut head = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(OneShotError::from_reqwest)? {
            written += chunk.len() as u64;
            if written > max {
                return Err(OneShotError::Protocol(format!("the {op} is larger than {max} bytes; not kept")));
            }
            if head.len() < 16 {
                head.extend_from_slice(&chunk[..chunk.len().min(16 - head.len())]);
            }
            sink(&chunk).map_err(|e| OneShotError::Local(e.to_string()))?;
        }
        if !kind.check(&head) {
            return Err(OneShotError::Protocol(format!("the {op} the server sent is not a {kind:?} file")));
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_answers_of_every_shape() {
        let fields = |n: usize| {
            (0..n).map(|i| if i == 0 { "file".to_owned() } else { format!("file{}", i + 1) }).collect::<Vec<_>>()
        };
        let uid = "db1c8aea-9cc0-4460-925c-72c6c918e5ae";
        assert_eq!(parse_uploaded(&json!(uid), &fields(1)).unwrap()[0].uid, uid);
        let new = parse_uploaded(&json!({"name": "file", "uid": uid}), &fields(1)).unwrap();
        assert_eq!((new[0].field.as_str(), new[0].uid.as_str()), ("file", uid));
        let old_many = json!([
            {"digest": "8cb5", "uid": "ec27331a-a78a-4461-b897-8e2ca158cef7", "key": "file2", "filename": "b.pdf"},
            {"digest": "8cb6", "uid": "7c0acde7-2f56-49b3-a129-a00d910912ef", "key": "file", "filename": "a.pdf"}
        ]);
        let docs = parse_uploaded(&old_many, &fields(2)).unwrap();
        assert_eq!((docs[0].field.as_str(), docs[0].digest.as_deref()), ("file2", Some("8cb5")));
        assert!(parse_uploaded(&json!("../etc"), &fields(1)).is_err());
        assert!(parse_uploaded(&json!([uid]), &fields(2)).is_err(), "a count that does not match");
    }

    #[test]
    fn sign_bodies_in_the_shape_of_each_generation() {
        let look = SignatureConfig {
            text: vec!["Signed".into()],
            date_format: Some("%d/%m/%Y".into()),
            position: Some("10,10,200,60".into()),
            page: Some(0),
            ..Default::default()
        };
        let uids = vec!["u1".to_owned()];
        let image = Some("0f0f0f0f-0000-4000-8000-000000000000");
        let old = sign_body(Generation::Old, &Unlock::Otp("123456".into()), &look, image, &uids);
        assert_eq!(
            old,
            json!({"secret": "123456",
                   "options": {"u1": {"position": "10,10,200,60", "page": 0, "image": image}},
                   "use_signature_text": true,
                   "signature_format": {"text_format": ["Signed"], "date_format": "%d/%m/%Y"}})
        );
        let new = sign_body(Generation::New, &Unlock::Otp("123456".into()), &look, None, &uids);
        assert_eq!(
            new,
            json!({"secret": "123456", "signature": {"appearance": {"position": "10,10,200,60", "page": 0, "text": ["Signed"], "date": "%d/%m/%Y"}}})
        );
        let ext = sign_body(
            Generation::New,
            &Unlock::External { kind: "bank".into(), value: "v-1".into() },
            &SignatureConfig::default(),
            None,
            &uids,
        );
        assert_eq!(ext, json!({"ext_unlock_type": "bank", "ext_unlock_value": "v-1"}));
    }

    #[test]
    fn image_uids_are_read_from_either_generations_answer() {
        let uid = "bfd74f73-7b22-40a6-ad37-6fc867263309";
        assert_eq!(image_uid(&json!(uid)).unwrap(), uid);
        assert_eq!(image_uid(&json!({"image_uid": uid})).unwrap(), uid);
        assert!(image_uid(&json!({"image_uid": "../x"})).is_err());
        assert!(image_uid(&json!(null)).is_err());
    }

    #[test]
    fn rao_bodies() {
        let token = RaoConfig { id: "1400".into(), credentials: RaoCredentials::Token("t".to_owned().into()) };
        assert_eq!(rao_body(&token, None), json!({"token": "t", "rao": "1400"}));
        let login = RaoConfig {
            id: "1400".into(),
            credentials: RaoCredentials::Login {
                username: "u".into(),
                password: "p".to_owned().into(),
                pin: "1".to_owned().into(),
            },
        };
        assert_eq!(
            rao_body(&login, Some("blurred")),
            json!({"username": "u", "password": "p", "pin": "1", "rao": "1400", "reason": "blurred"})
        );
    }
}
