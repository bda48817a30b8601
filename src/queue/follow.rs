//! What the queue keeps for after delivery: orphan requests left by lost create answers (and
//! the reconciliation that looks for them), and the schedule on which requests in review are
//! read.

use rusqlite::{params, OptionalExtension};

use super::records::{job_row, JOB_SQL};
use super::{add_event, now_ms, EventKind, Job, Queue, QueueError};
use oneshot_protocol::RequestStatus;

impl Queue {
    /// Notes that a sign call is about to go to the server for this enrollment. The RA answers a
    /// signature with `ISSUED` (the certificate was issued), which by itself says no more than
    /// "approved": after a sign call it means signed, even when the call's answer was lost.
    pub fn record_sign_sent(&self, id: &str) -> Result<(), QueueError> {
        let mut conn = self.conn();
        // The event and its audit record together, or neither.
        let tx = conn.transaction()?;
        add_event(&tx, id, EventKind::SignSent, "sign request sent")?;
        tx.commit()?;
        Ok(())
    }

    /// Whether a sign call was ever sent for this enrollment.
    pub fn sign_sent(&self, id: &str) -> Result<bool, QueueError> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM events WHERE enrollment_id = ?1 AND kind = ?2",
            rusqlite::params![id, EventKind::SignSent.as_str()],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Records one orphan request of an enrollment (idempotent).
    pub fn record_orphan(
        &self,
        id: &str,
        request_pk: &str,
        server_status: Option<&RequestStatus>,
    ) -> Result<(), QueueError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO orphans (request_pk, enrollment_id, found_at, server_status) VALUES (?1, ?2, ?3, ?4)",
            params![request_pk, id, now_ms(), server_status.map(RequestStatus::as_str)],
        )?;
        if n == 1 {
            add_event(
                &tx,
                id,
                EventKind::Orphan,
                &format!("orphan request left on the server by a lost create answer: request_pk {request_pk}"),
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Notes in the history of the enrollment that owns `request_pk` (as its request or as an
    /// orphan) that an operator cancelled it on the server. Returns that enrollment's id.
    pub fn note_request_cancelled(&self, request_pk: &str) -> Result<Option<String>, QueueError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let owner: Option<String> = tx
            .query_row(
                "SELECT id FROM enrollments WHERE request_pk = ?1 UNION SELECT enrollment_id FROM orphans WHERE request_pk = ?1",
                [request_pk],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = &owner {
            tx.execute("UPDATE orphans SET server_status = 'CANCELLED' WHERE request_pk = ?1", [request_pk])?;
            add_event(
                &tx,
                id,
                EventKind::RequestCancelled,
                &format!("request_pk {request_pk} cancelled on the server by an operator"),
            )?;
        }
        tx.commit()?;
        Ok(owner)
    }

    /// Remembers where an interrupted orphan scan resumes.
    pub fn save_scan_progress(&self, id: &str, next: u64) -> Result<(), QueueError> {
        self.conn().execute("UPDATE enrollments SET orphan_scan_next = ?2 WHERE id = ?1", params![id, next as i64])?;
        Ok(())
    }

    /// Ends an enrollment's orphan scan, noting the outcome in its history.
    pub fn finish_orphan_scan(&self, id: &str, detail: &str) -> Result<(), QueueError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("UPDATE enrollments SET orphan_scan = 0, orphan_scan_next = NULL WHERE id = ?1", [id])?;
        add_event(&tx, id, EventKind::OrphanScan, detail)?;
        tx.commit()?;
        Ok(())
    }

    /// Every request_pk this queue knows (in use or orphaned).
    pub fn known_request_pks(&self) -> Result<std::collections::HashSet<String>, QueueError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT request_pk FROM enrollments WHERE request_pk IS NOT NULL UNION SELECT request_pk FROM orphans",
        )?;
        let pks = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        Ok(pks)
    }

    /// Notes that a create was in flight when its answer was lost: the server may hold an
    /// orphan request for this enrollment.
    pub fn record_possible_orphan(&self, id: &str) -> Result<(), QueueError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("UPDATE enrollments SET orphan_scan = 1 WHERE id = ?1", [id])?;
        add_event(
            &tx,
            id,
            EventKind::PossibleOrphan,
            "a create was sent earlier but its answer was never stored; \
            the server may hold an orphan request for this enrollment",
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Enrollments whose evidence reached review (or a later or final server decision) and
    /// whose lost create answer may have left an orphan to look for, oldest first.
    pub fn orphan_jobs(&self) -> Result<Vec<Job>, QueueError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "{JOB_SQL} WHERE orphan_scan = 1 AND request_pk IS NOT NULL
                AND state IN ('in_review', 'approved', 'signed', 'cancelled', 'refused')
             ORDER BY created_at, rowid"
        ))?;
        let rows = stmt.query_map([], job_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Enrollments in review whose next status read is due at `now_ms` (or was never planned),
    /// with how long they have been in review (ms), as the clocks verifiably measured it
    /// (`clock.rs`): a wall clock corrected forward does not end a review's following early.
    /// Enrollments that reached review at or after `fresh_after` (ms) are left out.
    /// A read planned more than `horizon_ms` ahead was planned by a clock that has since been
    /// corrected backwards: it is due now, not parked until the wall clock catches up.
    pub fn reviews_due(&self, now_ms: i64, fresh_after: i64, horizon_ms: i64) -> Result<Vec<(Job, i64)>, QueueError> {
        self.reviews_due_at(now_ms, fresh_after, horizon_ms, &super::clock::Mark::now())
    }

    /// [`Self::reviews_due`] with the clocks at `now` (tests set them).
    pub fn reviews_due_at(
        &self,
        now_ms: i64,
        fresh_after: i64,
        horizon_ms: i64,
        now: &super::clock::Mark,
    ) -> Result<Vec<(Job, i64)>, QueueError> {
        self.account_waiting(now)?;
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, state, request_pk, videoid_pk, attempts, resends, orphan_scan, create_floor,
                orphan_scan_next, MAX(0, COALESCE(waited_ms, 0) - COALESCE(waited_at_review, waited_ms, 0))
             FROM enrollments
             WHERE state = 'in_review'
                AND (next_review_at IS NULL OR (next_review_at >= 0 AND (next_review_at <= ?1 OR next_review_at > ?1 + ?3)))
                AND COALESCE(review_since, 0) < ?2
             ORDER BY created_at, rowid",
        )?;
        let rows = stmt.query_map([now_ms, fresh_after, horizon_ms], |r| Ok((job_row(r)?, r.get(9)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// When the next review read is due (ms), if any enrollment in review is still followed.
    pub fn next_review_at(&self) -> Result<Option<i64>, QueueError> {
        Ok(self.conn().query_row(
            "SELECT MIN(COALESCE(next_review_at, 0)) FROM enrollments
             WHERE state = 'in_review' AND (next_review_at IS NULL OR next_review_at >= 0)",
            [],
            |r| r.get(0),
        )?)
    }

    /// Plans the next review read (`None`: no longer followed, noted in the history).
    pub fn schedule_review(&self, id: &str, next_ms: Option<i64>) -> Result<(), QueueError> {
        const PLAN: &str = "UPDATE enrollments SET next_review_at = ?2 WHERE id = ?1";
        let Some(next_ms) = next_ms else {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            tx.execute(PLAN, params![id, -1])?;
            add_event(
                &tx,
                id,
                EventKind::ReviewUnfollowed,
                "no longer read on a schedule (sync.review_follow_days passed); a webhook or \
                 `kiosk-agent request ID status` still updates it",
            )?;
            tx.commit()?;
            return Ok(());
        };
        // Bookkeeping: a power cut that loses the plan leaves the one it replaced, none when
        // the request has just reached review or else the time of the read just made: either
        // way the next read comes at once, not later than planned.
        self.write_bookkeeping(|tx| {
            tx.execute(PLAN, params![id, next_ms])?;
            Ok(())
        })
    }
}
