//! The audit trail: an append-only, hash-chained record of every state change, upload, erasure
//! and operator action, without personal data.
//!
//! Each record names what happened (`kind`), to which enrollment (its local id only), when, and
//! who: the user id and the command of the process that did it. Each carries the SHA-256 of the
//! previous record's hash and its own fields, so removing, reordering or editing a record breaks
//! the chain at that point, which `audit verify` names. The hash is computed inside the INSERT
//! (an SQL function), so two processes appending at once still form one chain. Triggers refuse
//! UPDATE and DELETE; the chain catches whoever drops them.
//!
//! Records are written by [`super::add_event`], in the same transaction as the change they
//! describe, so the trail and the queue cannot disagree.

use std::sync::OnceLock;

use rusqlite::functions::FunctionFlags;
use rusqlite::{params, Connection};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{now_ms, Queue, QueueError};

/// Who this process acts for, recorded with every audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    pub uid: u32,
    /// The command, such as `enroll`, `run` or `queue retry` (never its arguments, which may
    /// name files of customers).
    pub command: String,
}

static ACTOR: OnceLock<Actor> = OnceLock::new();

/// Sets the actor once, at start-up; later calls are ignored.
pub fn set_actor(command: &str) {
    let _ = ACTOR.set(Actor { uid: rustix::process::getuid().as_raw(), command: command.to_owned() });
}

fn actor() -> &'static Actor {
    ACTOR.get_or_init(|| Actor { uid: rustix::process::getuid().as_raw(), command: "library".into() })
}

/// One audit record, as `audit export` writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub at_ms: i64,
    pub uid: u32,
    pub command: String,
    pub enrollment: Option<String>,
    pub kind: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Where the chain first breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    pub seq: i64,
    pub reason: &'static str,
}

/// The chain hash of a record.
pub(crate) fn link_hash(prev: &str, at: i64, uid: i64, command: &str, enrollment: Option<&str>, kind: &str) -> String {
    let mut h = Sha256::new();
    for part in [prev, &at.to_string(), &uid.to_string(), command, enrollment.unwrap_or("-"), kind] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Registers `audit_hash(prev, at, uid, command, enrollment, kind)` on a connection.
pub(crate) fn register(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "audit_hash",
        6,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let prev: String = ctx.get(0)?;
            let at: i64 = ctx.get(1)?;
            let uid: i64 = ctx.get(2)?;
            let command: String = ctx.get(3)?;
            let enrollment: Option<String> = ctx.get(4)?;
            let kind: String = ctx.get(5)?;
            Ok(link_hash(&prev, at, uid, &command, enrollment.as_deref(), &kind))
        },
    )
}

/// Appends a record; the previous hash is read and the new one computed in this one statement.
/// It takes a transaction, so that a record and the change it describes (a purge) land together.
pub(crate) fn append(tx: &rusqlite::Transaction<'_>, enrollment: Option<&str>, kind: &str) -> rusqlite::Result<()> {
    let a = actor();
    tx.execute(
        "INSERT INTO audit (at, uid, command, enrollment_id, kind, prev_hash, hash)
         SELECT ?1, ?2, ?3, ?4, ?5, p, audit_hash(p, ?1, ?2, ?3, ?4, ?5)
         FROM (SELECT COALESCE((SELECT hash FROM audit ORDER BY seq DESC LIMIT 1), '') AS p)",
        params![now_ms(), a.uid, a.command, enrollment, kind],
    )?;
    Ok(())
}

impl Queue {
    /// Records an operator action that changes no enrollment state (or names no enrollment).
    pub fn audit(&self, enrollment: Option<&str>, kind: &str) -> Result<(), QueueError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        append(&tx, enrollment, kind)?;
        tx.commit()?;
        Ok(())
    }

    /// Every audit record, oldest first.
    pub fn audit_records(&self) -> Result<Vec<AuditRecord>, QueueError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT seq, at, uid, command, enrollment_id, kind, prev_hash, hash FROM audit ORDER BY seq")?;
        let rows = stmt.query_map([], |r| {
            Ok(AuditRecord {
                seq: r.get(0)?,
                at_ms: r.get(1)?,
                uid: r.get(2)?,
                command: r.get(3)?,
                enrollment: r.get(4)?,
                kind: r.get(5)?,
                prev_hash: r.get(6)?,
                hash: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Checks the chain: the number of records, or the first broken link. With `anchor`, a
    /// `(seq, hash)` kept outside the kiosk (sent with an upload), record `seq` must also still
    /// carry that hash: a chain recomputed after an edit is consistent with itself, not with
    /// the anchor.
    pub fn verify_audit(&self, anchor: Option<(i64, &str)>) -> Result<Result<usize, BrokenLink>, QueueError> {
        let records = self.audit_records()?;
        if let Err(broken) = verify(&records) {
            return Ok(Err(broken));
        }
        if let Some((seq, hash)) = anchor {
            match records.iter().find(|r| r.seq == seq) {
                None => return Ok(Err(BrokenLink { seq, reason: "the anchored record is missing" })),
                Some(r) if r.hash != hash => {
                    return Ok(Err(BrokenLink { seq, reason: "it differs from the anchor: the chain was rewritten" }))
                }
                Some(_) => {}
            }
        }
        Ok(Ok(records.len()))
    }
}

/// Checks that each record links to the one before it and that its hash matches its fields.
pub fn verify(records: &[AuditRecord]) -> Result<(), BrokenLink> {
    let mut prev = String::new();
    // Sequence numbers start at 1 and have no gaps: records are never deleted.
    let mut prev_seq = 0;
    for r in records {
        if r.seq != prev_seq + 1 {
            return Err(BrokenLink { seq: r.seq, reason: "records before it are missing" });
        }
        if r.prev_hash != prev {
            return Err(BrokenLink { seq: r.seq, reason: "it does not link to the record before it" });
        }
        if r.hash != link_hash(&r.prev_hash, r.at_ms, r.uid as i64, &r.command, r.enrollment.as_deref(), &r.kind) {
            return Err(BrokenLink { seq: r.seq, reason: "its content was changed" });
        }
        prev = r.hash.clone();
        prev_seq = r.seq;
    }
    Ok(())
}
