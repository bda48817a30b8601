//! Documents to be signed, queued like evidence: encrypted at rest under their own data key
//! (the enrollment's key is erased after review), durable before `document upload` answers, and
//! sent once the request is approved.
//!
//! A document goes `queued → uploading → uploaded → deleted`. `uploading` is committed before the
//! upload is sent; the uid is committed with `uploaded` after the server answered. The API cannot
//! deduplicate uploads, so a document found in `uploading` after a crash is sent again and its
//! history says a duplicate may exist on the server (at-least-once, like the create). Once
//! uploaded, the local encrypted copy and its key are erased; name, size, SHA-256, uid and
//! digest stay for audit. A crash before the commit leaves at most an encrypted file without a
//! row, removed by [`Queue::open`] once it is older than [`super::ORPHAN_SPOOL_AGE`].

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{add_event, io_err, now_ms, EventKind, Queue, QueueError};
use crate::crypto::{encrypt_stream, DecryptingReader, SecretKey};

/// The largest document accepted.
pub const MAX_DOCUMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Where a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentState {
    Queued,
    Uploading,
    Uploaded,
    Deleted,
    /// The server refused it for good (a 4xx that no resend changes): its reason is kept; an
    /// operator removes it (`document ID delete-queued FILE`) or queues a corrected one.
    Failed,
}

impl DocumentState {
    fn parse(s: &str) -> DocumentState {
        match s {
            "uploading" => DocumentState::Uploading,
            "uploaded" => DocumentState::Uploaded,
            "deleted" => DocumentState::Deleted,
            "failed" => DocumentState::Failed,
            _ => DocumentState::Queued,
        }
    }
}

/// One document as `document ID list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentRecord {
    /// The server's uid; `None` while the document is queued.
    pub uid: Option<String>,
    pub file: String,
    pub state: DocumentState,
    // What `list --json` prints is {uid, file, state} (and `error` when there is one); the rest is for `queue show`.
    #[serde(skip)]
    pub id: String,
    #[serde(skip)]
    pub size: u64,
    #[serde(skip)]
    pub sha256: String,
    #[serde(skip)]
    pub digest: Option<String>,
    /// Why the server refused it (a failed document), or why its last upload failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn aad(doc_id: &str) -> String {
    format!("document/{doc_id}")
}

/// A queued document on its way to the server: its file name, its size in clear, and its
/// ciphertext open for decryption as it is sent.
#[derive(Debug)]
pub struct OutgoingDocument {
    pub name: String,
    pub size: u64,
    pub reader: DecryptingReader,
}

impl Queue {
    fn documents_dir(&self) -> PathBuf {
        self.dir.join("documents")
    }

    fn document_path(&self, doc_id: &str) -> PathBuf {
        self.documents_dir().join(format!("{doc_id}.enc"))
    }

    /// Queues PDFs for an enrollment (each checked: a regular file starting `%PDF-`, at most
    /// [`MAX_DOCUMENT_BYTES`]); returns their local ids once they are durable. Nothing is
    /// queued unless every file is good.
    pub fn enqueue_documents(&self, enrollment: &str, files: &[PathBuf]) -> Result<Vec<String>, QueueError> {
        let named: Vec<(PathBuf, String)> = files
            .iter()
            .map(|p| {
                let name =
                    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "document.pdf".into());
                (p.clone(), name)
            })
            .collect();
        self.enqueue_named_documents(enrollment, &named)
    }

    /// [`Queue::enqueue_documents`] with each file's document name given (the API's PDFs come
    /// from memory files, whose paths name nothing).
    pub fn enqueue_named_documents(
        &self,
        enrollment: &str,
        files: &[(PathBuf, String)],
    ) -> Result<Vec<String>, QueueError> {
        if !self.exists(enrollment)? {
            return Err(QueueError::NotFound(enrollment.into()));
        }
        for (path, _) in files {
            check_pdf(path)?;
        }
        let dir = self.documents_dir();
        crate::fsutil::create_dir_all_durable(&dir).map_err(io_err(&dir))?;
        let mut rows = Vec::new();
        let written: Result<(), QueueError> = files.iter().try_for_each(|(path, name)| {
            let id = uuid::Uuid::new_v4().to_string();
            let key = SecretKey::random();
            let size = std::fs::metadata(path).map_err(io_err(path))?.len();
            let target = self.document_path(&id);
            let mut input = BufReader::new(File::open(path).map_err(io_err(path))?);
            let mut out = BufWriter::new(File::create(&target).map_err(io_err(&target))?);
            let summary =
                encrypt_stream(&key, aad(&id).as_bytes(), &mut input, &mut out, size).map_err(io_err(path))?;
            out.flush().map_err(io_err(&target))?;
            out.get_ref().sync_all().map_err(io_err(&target))?;
            rows.push((
                id.clone(),
                name.clone(),
                summary.plaintext_len,
                summary.sha256,
                self.master.wrap(&key, id.as_bytes()),
            ));
            Ok(())
        });
        let committed = written.and_then(|()| {
            crate::fsutil::sync_dir(&dir).map_err(io_err(&dir))?;
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            let now = now_ms();
            for (id, name, size, sha, wrapped) in &rows {
                tx.execute(
                    "INSERT INTO documents (id, enrollment_id, file_name, size, sha256, wrapped_key, state, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7, ?7)",
                    params![id, enrollment, name, *size as i64, sha, wrapped, now],
                )?;
                add_event(&tx, enrollment, EventKind::DocumentQueued, &format!("{name} ({size} bytes, sha256 {sha})"))?;
            }
            tx.commit()?;
            Ok(())
        });
        match committed {
            Ok(()) => Ok(rows.into_iter().map(|r| r.0).collect()),
            Err(e) => {
                for (id, ..) in &rows {
                    let _ = std::fs::remove_file(self.document_path(id));
                }
                Err(e)
            }
        }
    }

    /// The documents of an enrollment, oldest first.
    pub fn documents(&self, enrollment: &str) -> Result<Vec<DocumentRecord>, QueueError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, uid, file_name, state, size, sha256, digest, last_error FROM documents WHERE enrollment_id = ?1
             ORDER BY created_at, rowid",
        )?;
        let rows = stmt.query_map([enrollment], |r| {
            Ok(DocumentRecord {
                id: r.get(0)?,
                uid: r.get(1)?,
                file: r.get(2)?,
                state: DocumentState::parse(&r.get::<_, String>(3)?),
                size: r.get::<_, i64>(4)? as u64,
                sha256: r.get(5)?,
                digest: r.get(6)?,
                error: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Enrollments that are approved and have documents to send now (none waiting its backoff;
    /// a wait planned more than `horizon_ms` ahead was planned by a clock that went back since,
    /// and is over).
    pub fn enrollments_with_documents_to_send(&self, horizon_ms: i64) -> Result<Vec<String>, QueueError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT DISTINCT e.id FROM enrollments e JOIN documents d ON d.enrollment_id = e.id
             WHERE e.state = 'approved' AND d.state IN ('queued', 'uploading')
               AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= ?1 OR d.next_attempt_at > ?1 + ?2)
             ORDER BY e.created_at",
        )?;
        let rows = stmt.query_map([now_ms(), horizon_ms], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// When the next document waiting its backoff is due (ms since the epoch), if one is.
    pub fn next_document_attempt(&self) -> Result<Option<i64>, QueueError> {
        Ok(self.conn().query_row(
            "SELECT min(d.next_attempt_at) FROM documents d JOIN enrollments e ON e.id = d.enrollment_id
             WHERE e.state = 'approved' AND d.state IN ('queued', 'uploading') AND d.next_attempt_at IS NOT NULL",
            [],
            |r| r.get(0),
        )?)
    }

    /// Documents the server refused for good: failed with its words (redacted by the caller),
    /// sent no more.
    pub fn record_documents_refused(&self, doc_ids: &[String], reason: &str) -> Result<(), QueueError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for id in doc_ids {
            let (enrollment, name): (String, String) =
                tx.query_row("SELECT enrollment_id, file_name FROM documents WHERE id = ?1", [id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            tx.execute(
                "UPDATE documents SET state = 'failed', last_error = ?2, next_attempt_at = NULL, updated_at = ?3
                 WHERE id = ?1",
                params![id, reason, now_ms()],
            )?;
            add_event(&tx, &enrollment, EventKind::DocumentRefused, &format!("{name}: {reason}"))?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Documents whose upload failed for a passing reason: each waits `delay` (the caller's
    /// backoff for its attempts) before it is sent again.
    pub fn record_document_attempt(
        &self,
        doc_ids: &[String],
        reason: &str,
        delay_for: impl Fn(u32) -> std::time::Duration,
    ) -> Result<(), QueueError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for id in doc_ids {
            let attempts: u32 = tx.query_row(
                "UPDATE documents SET attempts = attempts + 1, last_error = ?2, updated_at = ?3 WHERE id = ?1
                 RETURNING attempts",
                params![id, reason, now_ms()],
                |r| r.get(0),
            )?;
            let next = now_ms() + delay_for(attempts).as_millis() as i64;
            tx.execute("UPDATE documents SET next_attempt_at = ?2 WHERE id = ?1", params![id, next])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Removes a document that never reached the server (queued, or failed): its key and its
    /// sealed file go, the row stays as `deleted` for the record. Returns its file name.
    pub fn delete_queued_document(&self, enrollment: &str, file: &str) -> Result<String, QueueError> {
        let id: Option<(String, String)> = self
            .conn()
            .query_row(
                "SELECT id, state FROM documents WHERE enrollment_id = ?1 AND (file_name = ?2 OR id = ?2)
                 ORDER BY created_at DESC LIMIT 1",
                params![enrollment, file],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((id, state)) = id else {
            return Err(QueueError::BadDocument {
                path: file.into(),
                rule: format!("enrollment {enrollment} has no such document (see `document ID list`)"),
            });
        };
        if !matches!(state.as_str(), "queued" | "failed") {
            return Err(QueueError::BadDocument {
                path: file.into(),
                rule: format!("is {state}: only a document that never reached the server is removed here (`document ID delete UID` deletes one on the server)"),
            });
        }
        {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            tx.execute(
                "UPDATE documents SET state = 'deleted', wrapped_key = NULL, next_attempt_at = NULL, updated_at = ?2
                 WHERE id = ?1",
                params![id, now_ms()],
            )?;
            add_event(&tx, enrollment, EventKind::DocumentDeleted, &format!("{file}: removed before it was sent"))?;
            tx.commit()?;
        }
        let path = self.document_path(&id);
        let _ = crate::fsutil::discard_file(&path);
        Ok(file.to_owned())
    }

    /// Verifies every document whose sealed copy is kept (not yet on the server): it must
    /// decrypt (AEAD, chunk by chunk) and match its recorded size and SHA-256. Returns the ones
    /// that do not, as (enrollment id, file name, what is wrong); changes nothing.
    pub fn verify_documents(&self) -> Result<Vec<(String, String, String)>, QueueError> {
        let kept: Vec<(String, String, String, i64, String, Vec<u8>)> = {
            let conn = self.conn();
            let mut stmt = conn.prepare(
                "SELECT id, enrollment_id, file_name, size, sha256, wrapped_key FROM documents
                 WHERE wrapped_key IS NOT NULL ORDER BY created_at",
            )?;
            let rows =
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut damaged = Vec::new();
        for (id, enrollment, name, size, sha256, wrapped) in kept {
            let check = (|| -> Result<Option<String>, QueueError> {
                let key = self.master.unwrap_key(&wrapped, id.as_bytes())?;
                let (read, found) =
                    DecryptingReader::open(&key, aad(&id).as_bytes(), &self.document_path(&id))?.size_and_sha256()?;
                Ok((read != size as u64 || found != sha256)
                    .then(|| format!("{read} bytes with SHA-256 {found}, expected {size} bytes {sha256}")))
            })();
            match check {
                Ok(None) => {}
                Ok(Some(mismatch)) => damaged.push((enrollment, name, mismatch)),
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => damaged.push((enrollment, name, format!("cannot be read: {e}"))),
            }
        }
        Ok(damaged)
    }

    /// Marks documents as being sent (committed before the upload) and opens each for reading:
    /// the plaintext is decrypted (and verified) chunk by chunk as it is sent, never held whole.
    pub fn begin_document_upload(&self, doc_ids: &[String]) -> Result<Vec<OutgoingDocument>, QueueError> {
        let mut out = Vec::new();
        for id in doc_ids {
            let (wrapped, name, state, enrollment, size): (Vec<u8>, String, String, String, i64) =
                self.conn().query_row(
                    "SELECT wrapped_key, file_name, state, enrollment_id, size FROM documents WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )?;
            let key = self.master.unwrap_key(&wrapped, id.as_bytes())?;
            let reader = DecryptingReader::open(&key, aad(id).as_bytes(), &self.document_path(id))?;
            let mut conn = self.conn();
            // The resend's note and the new state together, or neither.
            let tx = conn.transaction()?;
            if state == "uploading" {
                add_event(
                    &tx,
                    &enrollment,
                    EventKind::DocumentResend,
                    &format!("{name}: an earlier upload was interrupted; the server may hold a duplicate"),
                )?;
            }
            tx.execute(
                "UPDATE documents SET state = 'uploading', updated_at = ?2 WHERE id = ?1",
                params![id, now_ms()],
            )?;
            tx.commit()?;
            out.push(OutgoingDocument { name, size: size as u64, reader });
        }
        Ok(out)
    }

    /// Records the server's uid for a document, erases its local copy and key.
    pub fn record_document_uploaded(&self, doc_id: &str, uid: &str, digest: Option<&str>) -> Result<(), QueueError> {
        {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            let enrollment: String =
                tx.query_row("SELECT enrollment_id FROM documents WHERE id = ?1", [doc_id], |r| r.get(0))?;
            tx.execute(
                "UPDATE documents SET state = 'uploaded', uid = ?2, digest = ?3, wrapped_key = NULL, updated_at = ?4
                 WHERE id = ?1",
                params![doc_id, uid, digest, now_ms()],
            )?;
            add_event(&tx, &enrollment, EventKind::DocumentUploaded, &format!("uid {uid}"))?;
            tx.commit()?;
        }
        let path = self.document_path(doc_id);
        crate::fsutil::discard_file(&path).map_err(io_err(&path))?;
        self.destroy_freed_data();
        Ok(())
    }

    /// Marks documents deleted on the server (all of the enrollment's when `uid` is `None`).
    pub fn record_documents_deleted(&self, enrollment: &str, uid: Option<&str>) -> Result<usize, QueueError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE documents SET state = 'deleted', updated_at = ?3
             WHERE enrollment_id = ?1 AND state = 'uploaded' AND (?2 IS NULL OR uid = ?2)",
            params![enrollment, uid, now_ms()],
        )?;
        add_event(
            &tx,
            enrollment,
            EventKind::DocumentDeleted,
            &format!("{} on the server", uid.unwrap_or("all documents")),
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// Removes encrypted documents that no row names (an upload that crashed before its commit),
    /// once they are old enough not to belong to one in progress.
    pub(super) fn remove_orphan_documents(&self) -> Result<(), QueueError> {
        let dir = self.documents_dir();
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(()) };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".enc") else { continue };
            let known: Option<i64> =
                self.conn().query_row("SELECT 1 FROM documents WHERE id = ?1", [id], |r| r.get(0)).optional()?;
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > super::ORPHAN_SPOOL_AGE);
            if known.is_none() && old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

/// A document must be a regular file that starts like a PDF and is not too large.
fn check_pdf(path: &Path) -> Result<(), QueueError> {
    let bad = |rule: String| QueueError::BadDocument { path: path.to_owned(), rule };
    let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
    if !meta.is_file() {
        return Err(bad("is not a regular file".into()));
    }
    if meta.len() > MAX_DOCUMENT_BYTES {
        return Err(bad(format!("is {} bytes, more than the {MAX_DOCUMENT_BYTES} allowed", meta.len())));
    }
    let mut head = [0u8; 5];
    let n = File::open(path).and_then(|mut f| f.read(&mut head)).map_err(|e| bad(format!("cannot be read: {e}")))?;
    if &head[..n] != b"%PDF-" {
        return Err(bad("is not a PDF (it does not start with %PDF-)".into()));
    }
    Ok(())
}
