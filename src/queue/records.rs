//! Reading and updating enrollments: what the worker claims, what operators see.

use std::time::{Duration, UNIX_EPOCH};

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::counters::{self, Class};
use super::{add_event, now_ms, EventKind, Queue, QueueError, State};
use oneshot_protocol::RequestStatus;

/// What the sync worker needs to take the next step of an enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub state: State,
    pub request_pk: Option<String>,
    pub videoid_pk: Option<String>,
    pub attempts: u32,
    pub resends: u32,
    /// A create's answer was lost: look for the orphan request it may have left.
    pub orphan_scan: bool,
    /// Highest request_pk known locally when the first create went out.
    pub create_floor: Option<u64>,
    /// Where an interrupted orphan scan resumes.
    pub scan_next: Option<u64>,
}

/// One artifact's audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArtifactRecord {
    pub name: String,
    pub kind: String,
    pub size: u64,
    pub sha256: String,
}

/// One entry of an enrollment's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub at: String,
    pub kind: String,
    pub detail: String,
}

/// What `queue list` and `queue show` print for one enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub id: String,
    pub state: State,
    #[serde(serialize_with = "pk_json::one")]
    pub request_pk: Option<String>,
    #[serde(serialize_with = "pk_json::one")]
    pub videoid_pk: Option<String>,
    pub server_status: Option<RequestStatus>,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub bytes: u64,
    pub erased: bool,
    /// Requests the server holds for this enrollment beyond the one in use (creates whose
    /// answer was lost), by request_pk.
    #[serde(serialize_with = "pk_json::many")]
    pub orphans: Vec<String>,
    /// A create's answer was lost and the orphan it may have left is still to be looked for.
    pub orphan_check_pending: bool,
    /// The video upload in progress, if one is (written by the daemon about once a second).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadProgress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<Vec<ArtifactRecord>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<Event>>,
    /// The signed capture manifest (`queue show` only), with whether its signature holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_manifest: Option<serde_json::Value>,
}

/// The queue at a glance: what `queue list`, `GET /v1/status`, the metrics and systemd's
/// `STATUS=` all report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pub pending: usize,
    pub pending_bytes: u64,
    pub failed: usize,
    /// Age of the oldest pending enrollment.
    pub oldest_pending: Option<Duration>,
}

impl Backlog {
    pub fn of(list: &[Summary]) -> Backlog {
        let pending: Vec<&Summary> = list.iter().filter(|e| e.state.is_pending()).collect();
        let oldest_pending = pending
            .iter()
            .filter_map(|e| humantime::parse_rfc3339(&e.created_at).ok())
            .min()
            .and_then(|t| std::time::SystemTime::now().duration_since(t).ok());
        Backlog {
            pending: pending.len(),
            pending_bytes: pending.iter().map(|e| e.bytes).sum(),
            failed: list.iter().filter(|e| e.state == State::Failed).count(),
            oldest_pending,
        }
    }
}

/// How much of a video has been handed to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UploadProgress {
    pub sent: u64,
    pub total: u64,
}

/// Primary keys as JSON shows them: numbers, as the server sent them. The queue keeps them as
/// text (so a server that ever sends a non-numeric key loses nothing), and such a key stays a
/// string here too.
pub mod pk_json {
    use serde::Serializer;

    pub fn one<S: Serializer>(pk: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        match pk.as_deref() {
            None => s.serialize_none(),
            Some(text) => match text.parse::<u64>() {
                Ok(n) => s.serialize_u64(n),
                Err(_) => s.serialize_str(text),
            },
        }
    }

    pub fn many<S: Serializer>(pks: &[String], s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(pks.len()))?;
        for pk in pks {
            match pk.parse::<u64>() {
                Ok(n) => seq.serialize_element(&n)?,
                Err(_) => seq.serialize_element(pk)?,
            }
        }
        seq.end()
    }
}

/// RFC 3339 with milliseconds, UTC.
pub fn format_ms(ms: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)).to_string()
}

fn state_of(row: &Row<'_>, idx: usize) -> rusqlite::Result<State> {
    let s: String = row.get(idx)?;
    s.parse().map_err(|e: String| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e.into()))
}

const SUMMARY_SQL: &str = "SELECT e.id, e.state, e.request_pk, e.videoid_pk, e.server_status, e.attempts, e.last_error,
        e.next_attempt_at, e.created_at, e.updated_at,
        (SELECT COALESCE(SUM(size), 0) FROM artifacts a WHERE a.enrollment_id = e.id), e.erased_at IS NOT NULL,
        (SELECT group_concat(request_pk, ',') FROM orphans o WHERE o.enrollment_id = e.id), e.orphan_scan,
        e.upload_sent, e.upload_total
    FROM enrollments e";

fn artifact_rows(conn: &rusqlite::Connection, id: &str) -> Result<Vec<ArtifactRecord>, QueueError> {
    let mut stmt =
        conn.prepare_cached("SELECT name, kind, size, sha256 FROM artifacts WHERE enrollment_id = ?1 ORDER BY rowid")?;
    let rows = stmt.query_map([id], |r| {
        Ok(ArtifactRecord { name: r.get(0)?, kind: r.get(1)?, size: r.get::<_, i64>(2)? as u64, sha256: r.get(3)? })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn summary_row(row: &Row<'_>) -> rusqlite::Result<Summary> {
    let state = state_of(row, 1)?;
    Ok(Summary {
        id: row.get(0)?,
        state,
        request_pk: row.get(2)?,
        videoid_pk: row.get(3)?,
        server_status: row.get::<_, Option<String>>(4)?.map(|s| RequestStatus::parse(&s)),
        attempts: row.get(5)?,
        last_error: row.get(6)?,
        next_attempt_at: if state.is_pending() { row.get::<_, Option<i64>>(7)?.map(format_ms) } else { None },
        created_at: format_ms(row.get(8)?),
        updated_at: format_ms(row.get(9)?),
        bytes: row.get::<_, i64>(10)? as u64,
        erased: row.get(11)?,
        orphans: row
            .get::<_, Option<String>>(12)?
            .map(|s| s.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
        orphan_check_pending: row.get(13)?,
        upload: match (row.get::<_, Option<i64>>(14)?, row.get::<_, Option<i64>>(15)?) {
            (Some(sent), Some(total)) if total > 0 => Some(UploadProgress { sent: sent as u64, total: total as u64 }),
            _ => None,
        },
        artifacts: None,
        history: None,
        capture_manifest: None,
    })
}

pub(super) const JOB_SQL: &str =
    "SELECT id, state, request_pk, videoid_pk, attempts, resends, orphan_scan, create_floor,
        orphan_scan_next FROM enrollments";

pub(super) fn job_row(r: &Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        id: r.get(0)?,
        state: state_of(r, 1)?,
        request_pk: r.get(2)?,
        videoid_pk: r.get(3)?,
        attempts: r.get(4)?,
        resends: r.get(5)?,
        orphan_scan: r.get(6)?,
        create_floor: r.get::<_, Option<i64>>(7)?.map(|v| v as u64),
        scan_next: r.get::<_, Option<i64>>(8)?.map(|v| v as u64),
    })
}

impl Queue {
    /// Pending enrollments, oldest first, skipping the ids in `busy` (already being worked on).
    pub fn pending_jobs(&self, busy: &[String], limit: usize) -> Result<Vec<Job>, QueueError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "{JOB_SQL} WHERE state IN {}
             ORDER BY created_at, rowid",
            State::pending_sql()
        ))?;
        let rows = stmt.query_map([], job_row)?;
        let mut jobs = Vec::new();
        for job in rows {
            let job = job?;
            if !busy.contains(&job.id) {
                jobs.push(job);
                if jobs.len() == limit {
                    break;
                }
            }
        }
        Ok(jobs)
    }

    /// Number of enrollments the worker still has to move forward.
    pub fn pending_count(&self) -> Result<usize, QueueError> {
        let n: i64 = self.conn().query_row(
            &format!("SELECT COUNT(*) FROM enrollments WHERE state IN {}", State::pending_sql()),
            [],
            |r| r.get(0),
        )?;
        Ok(n as usize)
    }

    /// Moves an enrollment from `from` to `to` (checked against the state machine and against
    /// the stored state, so two actors cannot both advance it) and records why.
    pub fn advance(&self, id: &str, from: State, to: State, detail: &str) -> Result<(), QueueError> {
        if !from.can_advance_to(to) {
            return Err(QueueError::WrongState {
                id: id.into(),
                state: from,
                rule: "transition not allowed by the state machine",
            });
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE enrollments SET state = ?3, updated_at = ?4, attempts = 0, last_error = NULL,
                server_errors = 0, server_error_key = NULL,
                review_since = CASE WHEN ?3 = 'in_review' THEN COALESCE(review_since, ?4) ELSE review_since END,
                failed_from = CASE WHEN ?3 = 'failed' THEN ?2 ELSE failed_from END
             WHERE id = ?1 AND state = ?2",
            params![id, from.as_str(), to.as_str(), now_ms()],
        )?;
        if n == 0 {
            return Err(QueueError::WrongState {
                id: id.into(),
                state: from,
                rule: "state changed underneath (retry or purge?)",
            });
        }
        if to == State::InReview {
            // The time in review is counted from here, in waited time (see `clock.rs`).
            let waited = account_one(&tx, id, &super::clock::Mark::now())?;
            tx.execute(
                "UPDATE enrollments SET waited_at_review = COALESCE(waited_at_review, ?2) WHERE id = ?1",
                params![id, waited],
            )?;
        }
        add_event(&tx, id, EventKind::Entered(to), detail)?;
        // A delivery: count it, with the size of the files it carried.
        let delivered = match to {
            State::EvidencesSent => Some(("evidences", false)),
            State::VideoSent => Some(("video", true)),
            _ => None,
        };
        if let Some((kind, video)) = delivered {
            let bytes: i64 = tx.query_row(
                "SELECT COALESCE(SUM(size), 0) FROM artifacts WHERE enrollment_id = ?1 AND (kind = 'mp4') = ?2",
                params![id, video],
                |r| r.get(0),
            )?;
            counters::bump(&tx, counters::names::UPLOADS, &[("kind", kind)], 1)?;
            counters::bump(&tx, counters::names::UPLOAD_BYTES, &[("kind", kind)], bytes.max(0) as u64)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Stores the ids the server returned for a create and moves `creating → created`, in one
    /// transaction.
    pub fn record_created(&self, id: &str, request_pk: &str, videoid_pk: Option<&str>) -> Result<(), QueueError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE enrollments SET state = 'created', request_pk = ?2, videoid_pk = ?3, server_status = ?5,
                attempts = 0, last_error = NULL, updated_at = ?4 WHERE id = ?1 AND state = 'creating'",
            params![id, request_pk, videoid_pk, now_ms(), RequestStatus::VideoPending.as_str()],
        )?;
        if n == 0 {
            return Err(QueueError::WrongState {
                id: id.into(),
                state: State::Creating,
                rule: "state changed underneath",
            });
        }
        add_event(
            &tx,
            id,
            EventKind::Entered(State::Created),
            &format!("request_pk={request_pk} videoid_pk={}", videoid_pk.unwrap_or("-")),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// `queued → creating`, remembering (on the first create only) the highest request_pk known
    /// locally, so that a lost answer can later be looked for above it. A queue that knows no pk
    /// has no floor (`None`): an orphan is then recorded as "pk unknown", never searched for from
    /// 1 upwards. Returns the floor in force.
    pub fn begin_create(&self, id: &str) -> Result<Option<u64>, QueueError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let floor: Option<i64> = tx.query_row(
            "SELECT MAX(CAST(pk AS INTEGER)) FROM (SELECT request_pk AS pk FROM enrollments UNION ALL SELECT request_pk FROM orphans)
             WHERE pk GLOB '[0-9]*'",
            [],
            |r| r.get(0),
        )?;
        let stored: Option<i64> = tx
            .query_row(
                "UPDATE enrollments SET state = 'creating', create_floor = COALESCE(create_floor, ?2), updated_at = ?3
                 WHERE id = ?1 AND state = 'queued' RETURNING create_floor",
                params![id, floor, now_ms()],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| QueueError::WrongState {
                id: id.into(),
                state: State::Queued,
                rule: "state changed underneath",
            })?;
        add_event(&tx, id, EventKind::Entered(State::Creating), "create request being sent")?;
        tx.commit()?;
        // The floor in force: the one the first create fixed, not today's highest pk.
        Ok(stored.map(|f| f as u64))
    }

    /// `creating → queued` when the create certainly did not reach the server.
    pub fn revert_creating(&self, id: &str) -> Result<(), QueueError> {
        self.conn().execute(
            "UPDATE enrollments SET state = 'queued', updated_at = ?2 WHERE id = ?1 AND state = 'creating'",
            params![id, now_ms()],
        )?;
        Ok(())
    }

    /// Records the last server status seen. `stalled`: the status does not move the enrollment
    /// on (one no public source names, or uploads still not confirmed); returns since when (ms)
    /// the server has been reporting such statuses, `None` once it reports one that counts.
    pub fn record_server_status(
        &self,
        id: &str,
        status: &RequestStatus,
        stalled: bool,
    ) -> Result<Option<std::time::Duration>, QueueError> {
        self.record_server_status_at(id, status, stalled, &super::clock::Mark::now())
    }

    /// [`Self::record_server_status`] with the clocks at `now` (tests set them).
    pub fn record_server_status_at(
        &self,
        id: &str,
        status: &RequestStatus,
        stalled: bool,
        now: &super::clock::Mark,
    ) -> Result<Option<std::time::Duration>, QueueError> {
        // A status the agent knows is bookkeeping (the state change it leads to is committed
        // durably after it); an unknown one may be noted in the history, so it waits for the
        // disk like every event.
        if !status.is_unknown() {
            return self.write_bookkeeping(|tx| record_status(tx, id, status, stalled, now));
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let lasted = record_status(&tx, id, status, stalled, now)?;
        tx.commit()?;
        Ok(lasted)
    }

    /// Counts a re-send round (after `VIDEOERROR`/`VIDEOINCOMPLETE`); returns the new count.
    pub fn bump_resends(&self, id: &str) -> Result<u32, QueueError> {
        Ok(self.conn().query_row(
            "UPDATE enrollments SET resends = resends + 1 WHERE id = ?1 RETURNING resends",
            [id],
            |r| r.get(0),
        )?)
    }

    /// Records a failed attempt that will be retried at `next_attempt_at_ms`. `server_error` is
    /// the step and message of an HTTP 500: the same one again counts up, anything else starts
    /// over. Returns the attempts and the run of identical 500s.
    pub fn record_retry(
        &self,
        id: &str,
        class: Class,
        error: &str,
        next_attempt_at_ms: i64,
        server_error: Option<&str>,
    ) -> Result<(u32, u32), QueueError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let (attempts, server_errors): (u32, u32) = tx.query_row(
            "UPDATE enrollments SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3, updated_at = ?4,
                server_errors = CASE WHEN ?5 IS NULL THEN 0
                                     WHEN server_error_key IS ?5 THEN server_errors + 1 ELSE 1 END,
                server_error_key = ?5
             WHERE id = ?1 RETURNING attempts, server_errors",
            params![id, error, next_attempt_at_ms, now_ms(), server_error],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        // The history keeps the first failure of a streak, not every retry of a long outage.
        if attempts == 1 {
            add_event(&tx, id, EventKind::Retrying, error)?;
        }
        counters::bump(&tx, counters::names::RETRIES, &[("class", class.as_str())], 1)?;
        tx.commit()?;
        Ok((attempts, server_errors))
    }

    /// Records that the next step waits on purpose until `next_attempt_at_ms` (a video outside
    /// its upload window): not a failure, so no attempt is counted and no error kept. The history
    /// notes the first wait of a run, not every look.
    pub fn record_deferred(&self, id: &str, detail: &str, next_attempt_at_ms: i64) -> Result<(), QueueError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE enrollments SET next_attempt_at = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, next_attempt_at_ms, now_ms()],
        )?;
        let last: Option<String> = tx
            .query_row("SELECT kind FROM events WHERE enrollment_id = ?1 ORDER BY seq DESC LIMIT 1", [id], |r| r.get(0))
            .optional()?;
        if last.as_deref() != Some(EventKind::Waiting.as_str()) {
            add_event(&tx, id, EventKind::Waiting, detail)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Moves an enrollment to `failed` with the reason (a permanent error: an operator must act),
    /// counted under `class`.
    pub fn record_failed(&self, id: &str, from: State, class: Class, reason: &str) -> Result<(), QueueError> {
        self.end(id, from, State::Failed, reason, class)
    }

    /// Ends an enrollment in `to` (`failed`, `cancelled` or `refused`) with the reason, e.g. the
    /// server's terminal status.
    pub fn record_ended(&self, id: &str, from: State, to: State, reason: &str) -> Result<(), QueueError> {
        self.end(id, from, to, reason, Class::EndedByServer)
    }

    fn end(&self, id: &str, from: State, to: State, reason: &str, class: Class) -> Result<(), QueueError> {
        debug_assert!(matches!(to, State::Failed | State::Cancelled | State::Refused));
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE enrollments SET state = ?5, failed_from = ?2, last_error = ?3, attempts = attempts + 1,
                next_attempt_at = NULL, updated_at = ?4 WHERE id = ?1",
            params![id, from.as_str(), reason, now_ms(), to.as_str()],
        )?;
        add_event(&tx, id, EventKind::Entered(to), reason)?;
        if to == State::Failed {
            counters::bump(&tx, counters::names::FAILURES, &[("class", class.as_str())], 1)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every enrollment, oldest first.
    pub fn list(&self) -> Result<Vec<Summary>, QueueError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{SUMMARY_SQL} ORDER BY e.created_at, e.rowid"))?;
        let rows = stmt.query_map([], summary_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// The enrollments stored in these rows (see [`Queue::on_commit`]), oldest first; rows
    /// deleted since are left out.
    pub fn summaries_of_rows(&self, rows: &[i64]) -> Result<Vec<Summary>, QueueError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{SUMMARY_SQL} WHERE e.rowid = ?1"))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            if let Some(summary) = stmt.query_row([row], summary_row).optional()? {
                out.push(summary);
            }
        }
        Ok(out)
    }

    /// One enrollment with its artifacts and full history.
    pub fn show(&self, id: &str) -> Result<Summary, QueueError> {
        let conn = self.conn();
        let mut summary = conn
            .query_row(&format!("{SUMMARY_SQL} WHERE e.id = ?1"), [id], summary_row)
            .optional()?
            .ok_or_else(|| QueueError::NotFound(id.into()))?;
        summary.artifacts = Some(artifact_rows(&conn, id)?);
        // A manifest proves something only if this device's own key signed it: one re-signed
        // with another key (and stored with that key) verifies against itself, so the stored
        // public key is compared with the device key's. Unknown when the key cannot be read.
        let device = crate::device_key::load(&self.storage.device_key_file).ok().map(|k| k.public_key_hex());
        summary.capture_manifest = super::capture_manifest::stored(&conn, id)?.map(|m| {
            let mut v = m.to_value();
            let by_device = device.as_deref().map(|d| d == m.public_key);
            v["signed_by_this_device"] = by_device.into();
            v["signature_valid"] = (m.is_valid() && by_device != Some(false)).into();
            v
        });
        let mut stmt = conn.prepare("SELECT at, kind, detail FROM events WHERE enrollment_id = ?1 ORDER BY seq")?;
        summary.history = Some(
            stmt.query_map([id], |r| Ok(Event { at: format_ms(r.get(0)?), kind: r.get(1)?, detail: r.get(2)? }))?
                .collect::<rusqlite::Result<_>>()?,
        );
        Ok(summary)
    }

    /// The enrollment whose request on the server is `request_pk`, if this queue has one.
    pub fn find_by_request_pk(&self, request_pk: &str) -> Result<Option<Summary>, QueueError> {
        let id: Option<String> = self
            .conn()
            .query_row("SELECT id FROM enrollments WHERE request_pk = ?1", [request_pk], |r| r.get(0))
            .optional()?;
        id.map(|id| self.show(&id)).transpose()
    }

    /// The artifacts of an enrollment, in the order they were queued. On the upload path: one
    /// query, not a whole `show` with its history.
    pub fn artifacts(&self, id: &str) -> Result<Vec<ArtifactRecord>, QueueError> {
        let rows = artifact_rows(&self.conn(), id)?;
        if rows.is_empty() && !self.exists(id)? {
            return Err(QueueError::NotFound(id.into()));
        }
        Ok(rows)
    }

    /// Puts a failed enrollment back into the state it failed from, to be tried again now.
    pub fn retry(&self, id: &str) -> Result<State, QueueError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let (state, failed_from, erased): (String, Option<String>, bool) = tx
            .query_row("SELECT state, failed_from, erased_at IS NOT NULL FROM enrollments WHERE id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?
            .ok_or_else(|| QueueError::NotFound(id.into()))?;
        let state: State = state.parse().map_err(|e: String| QueueError::Damaged { id: id.into(), detail: e })?;
        if state != State::Failed {
            return Err(QueueError::WrongState {
                id: id.into(),
                state,
                rule: "only a failed enrollment can be retried",
            });
        }
        if erased {
            return Err(QueueError::WrongState {
                id: id.into(),
                state,
                rule: "its evidence was erased; nothing to re-send",
            });
        }
        let back = failed_from.and_then(|s| s.parse().ok()).filter(|s: &State| s.is_pending()).unwrap_or(State::Queued);
        // `creating` means the create may or may not have reached the server; re-entering it is
        // exactly the orphan case, which the worker records, so it is safe to resume there.
        tx.execute(
            "UPDATE enrollments SET state = ?2, attempts = 0, resends = 0, next_attempt_at = ?3, updated_at = ?3,
                server_errors = 0, server_error_key = NULL, unknown_status_since = NULL
             WHERE id = ?1",
            params![id, back.as_str(), now_ms()],
        )?;
        add_event(&tx, id, EventKind::Retry, &format!("re-queued by operator into {back}"))?;
        tx.commit()?;
        Ok(back)
    }

    /// Deletes an enrollment, its files and its history. Pending evidence is only purged with
    /// `force`, because it has not reached the server.
    pub fn purge(&self, id: &str, force: bool) -> Result<(), QueueError> {
        let (state, request_pk): (String, Option<String>) = self
            .conn()
            .query_row("SELECT state, request_pk FROM enrollments WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .ok_or_else(|| QueueError::NotFound(id.into()))?;
        let state: State = state.parse().map_err(|e: String| QueueError::Damaged { id: id.into(), detail: e })?;
        if state.is_pending() && !force {
            return Err(QueueError::WrongState {
                id: id.into(),
                state,
                rule: "it has not reached the server yet; use --force to discard it",
            });
        }
        // A create may be on its way while a worker runs: its answer (the request's pk) would
        // find no row to land in, and the request would be an orphan nobody recorded.
        if state == State::Creating && self.lock_worker().is_err() {
            return Err(QueueError::WrongState {
                id: id.into(),
                state,
                rule: "its create may be on its way to the server; stop the daemon (or wait for the request to be recorded) first",
            });
        }
        {
            let mut conn = self.conn();
            // Never a purge without its audit record.
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM enrollments WHERE id = ?1", [id])?;
            // A request the server holds stays on record: the audit trail names its pk.
            let kind = match (&request_pk, force) {
                (Some(pk), true) => format!("purged (forced; request {pk} stays on the server)"),
                (Some(pk), false) => format!("purged (request {pk} stays on the server)"),
                (None, true) if state == State::Creating => {
                    "purged (forced; a create had been sent: a request may exist on the server)".to_owned()
                }
                (None, true) => "purged (forced)".to_owned(),
                (None, false) => "purged".to_owned(),
            };
            super::audit::append(&tx, Some(id), &kind)?;
            tx.commit()?;
        }
        self.remove_spool(id)?;
        self.destroy_freed_data();
        Ok(())
    }
}

impl Queue {
    /// Erases the evidence of every enrollment that has waited longer than
    /// `storage.max_retention` without reaching review (still pending, failed or cancelled),
    /// except those in `skip` (being sent right now). The wait is what the clocks verifiably
    /// measured ([`super::clock`]), never a difference of wall-clock dates: a corrected clock
    /// neither erases evidence early nor keeps it for ever. A pending one is marked failed,
    /// naming the policy. Returns the ids erased; each gets a WARN and an audit record.
    pub fn expire_retained(&self, skip: &[String]) -> Result<Vec<String>, QueueError> {
        self.expire_retained_at(skip, &super::clock::Mark::now())
    }

    /// [`Self::expire_retained`] with the clocks at `now` (tests set them).
    pub fn expire_retained_at(&self, skip: &[String], now: &super::clock::Mark) -> Result<Vec<String>, QueueError> {
        let max = self.storage.max_retention;
        let days = max.as_secs() / 86_400;
        self.account_waiting(now)?;
        let candidates: Vec<(String, String)> = {
            let conn = self.conn();
            let mut stmt = conn.prepare(
                "SELECT id, state FROM enrollments
                 WHERE erased_at IS NULL AND review_since IS NULL AND waited_ms >= ?1 ORDER BY created_at",
            )?;
            let rows = stmt.query_map([max.as_millis() as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut erased = Vec::new();
        for (id, state) in candidates.into_iter().filter(|(id, _)| !skip.contains(id)) {
            let reason = format!("retention: evidence erased {days} days after it was queued without reaching review");
            {
                let mut conn = self.conn();
                let tx = conn.transaction()?;
                let pending = state.parse::<State>().is_ok_and(State::is_pending);
                tx.execute(
                    "UPDATE enrollments SET pii = NULL, wrapped_key = NULL, erased_at = ?2, updated_at = ?2,
                        failed_from = CASE WHEN ?3 THEN state ELSE failed_from END,
                        state = CASE WHEN ?3 THEN 'failed' ELSE state END,
                        last_error = CASE WHEN ?3 THEN ?4 ELSE last_error END
                     WHERE id = ?1 AND erased_at IS NULL",
                    params![id, now_ms(), pending, reason],
                )?;
                super::add_event(&tx, &id, EventKind::RetentionErased, &reason)?;
                tx.commit()?;
            }
            self.remove_spool(&id)?;
            tracing::warn!(enrollment_id = %id, %state, "{reason}");
            erased.push(id);
        }
        if !erased.is_empty() {
            self.destroy_freed_data();
        }
        Ok(erased)
    }
}

impl Queue {
    /// Adds to each enrollment still waiting (for review, or in review) the time that
    /// verifiably passed since its last mark, and marks it `now`.
    pub(super) fn account_waiting(&self, now: &super::clock::Mark) -> Result<(), QueueError> {
        // Bookkeeping: a power cut that loses it leaves the older marks, from which the next
        // accounting counts the same wait again.
        self.write_bookkeeping(|tx| account_all(tx, now))
    }

    /// Records (or, with `None`, clears) the progress of an enrollment's video upload
    /// (bookkeeping: shown to people, and written again by the next upload).
    pub fn record_upload_progress(&self, id: &str, progress: Option<(u64, u64)>) -> Result<(), QueueError> {
        let (sent, total) = progress.map_or((None, None), |(s, t)| (Some(s as i64), Some(t as i64)));
        self.write_bookkeeping(|tx| {
            tx.execute(
                "UPDATE enrollments SET upload_sent = ?2, upload_total = ?3 WHERE id = ?1",
                params![id, sent, total],
            )?;
            Ok(())
        })
    }
}

/// [`Queue::account_waiting`] inside `tx`.
fn account_all(tx: &rusqlite::Transaction<'_>, now: &super::clock::Mark) -> Result<(), QueueError> {
    let ids: Vec<String> = {
        let mut stmt = tx.prepare(
            "SELECT id FROM enrollments
             WHERE (erased_at IS NULL AND review_since IS NULL) OR state = 'in_review'",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for id in ids {
        account_one(tx, &id, now)?;
    }
    // In review since before this was recorded (an older version): counted from now on.
    tx.execute(
        "UPDATE enrollments SET waited_at_review = waited_ms WHERE state = 'in_review' AND waited_at_review IS NULL",
        [],
    )?;
    Ok(())
}

/// [`Queue::record_server_status_at`] inside `tx`.
fn record_status(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    status: &RequestStatus,
    stalled: bool,
    now: &super::clock::Mark,
) -> Result<Option<std::time::Duration>, QueueError> {
    let (previous, since): (Option<String>, Option<i64>) =
        tx.query_row("SELECT server_status, unknown_status_since FROM enrollments WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    // How long the status has stalled is waited time (`clock.rs`): `unknown_status_since`
    // holds what the enrollment had waited when the stall began, so a wall clock corrected
    // forward does not end an enrollment early.
    let waited = account_one(tx, id, now)?;
    let since = if stalled { Some(since.filter(|s| *s <= waited).unwrap_or(waited)) } else { None };
    tx.execute(
        "UPDATE enrollments SET server_status = ?2, unknown_status_since = ?3, updated_at = ?4 WHERE id = ?1",
        params![id, status.as_str(), since, now_ms()],
    )?;
    if previous.as_deref() != Some(status.as_str()) && status.is_unknown() {
        add_event(
            tx,
            id,
            EventKind::UnknownStatus,
            &format!("server reports status {status}, which no public source names"),
        )?;
    }
    Ok(since.map(|since| std::time::Duration::from_millis((waited - since).max(0) as u64)))
}

/// Adds to one enrollment the time that verifiably passed since its last mark, marks it `now`
/// and returns its whole wait. A row from before the marks starts from its wall-clock age, once.
fn account_one(tx: &rusqlite::Transaction<'_>, id: &str, now: &super::clock::Mark) -> Result<i64, QueueError> {
    let (waited, last, created_at): (Option<i64>, Option<String>, i64) =
        tx.query_row("SELECT waited_ms, waited_mark, created_at FROM enrollments WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let waited = match (waited, last.as_deref().and_then(super::clock::Mark::decode)) {
        (Some(waited), Some(last)) => waited + now.elapsed_since(&last),
        (Some(waited), None) => waited,
        (None, _) => (now.wall_ms - created_at).max(0),
    };
    tx.execute(
        "UPDATE enrollments SET waited_ms = ?2, waited_mark = ?3 WHERE id = ?1",
        params![id, waited, now.encode()],
    )?;
    Ok(waited)
}
