//! Append-only schema migrations, tracked by `PRAGMA user_version`.
//!
//! Never edit a migration that has shipped: add a new one at the end.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: enrollments, their artifacts and their history.
    "CREATE TABLE enrollments (
        id              TEXT PRIMARY KEY,
        state           TEXT NOT NULL,
        failed_from     TEXT,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL,
        wrapped_key     BLOB,
        pii             BLOB,
        request_pk      TEXT,
        videoid_pk      TEXT,
        server_status   TEXT,
        attempts        INTEGER NOT NULL DEFAULT 0,
        resends         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER,
        last_error      TEXT,
        erased_at       INTEGER
    );
    CREATE INDEX enrollments_by_state ON enrollments (state, created_at);
    CREATE TABLE artifacts (
        enrollment_id TEXT NOT NULL REFERENCES enrollments (id) ON DELETE CASCADE,
        name          TEXT NOT NULL,
        kind          TEXT NOT NULL,
        size          INTEGER NOT NULL,
        sha256        TEXT NOT NULL,
        PRIMARY KEY (enrollment_id, name)
    );
    CREATE TABLE events (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        enrollment_id TEXT NOT NULL REFERENCES enrollments (id) ON DELETE CASCADE,
        at            INTEGER NOT NULL,
        kind          TEXT NOT NULL,
        detail        TEXT NOT NULL
    );
    CREATE INDEX events_by_enrollment ON events (enrollment_id, seq);",
    // 2: orphan requests. `create_floor` is the highest request_pk known locally when the
    // enrollment's first create went out; `orphan_scan` marks a create whose answer was lost.
    "ALTER TABLE enrollments ADD COLUMN create_floor INTEGER;
    ALTER TABLE enrollments ADD COLUMN orphan_scan INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE orphans (
        request_pk    TEXT PRIMARY KEY,
        enrollment_id TEXT NOT NULL REFERENCES enrollments (id) ON DELETE CASCADE,
        found_at      INTEGER NOT NULL,
        server_status TEXT
    );",
    // 3: where an interrupted orphan scan resumes (it may read hundreds of request pks).
    "ALTER TABLE enrollments ADD COLUMN orphan_scan_next INTEGER;",
    // 4: consecutive HTTP 500s with the same message on the same step (the old Optimizer's
    // permanent errors), and since when the server reports a status no public source names.
    "ALTER TABLE enrollments ADD COLUMN server_errors INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE enrollments ADD COLUMN server_error_key TEXT;
    ALTER TABLE enrollments ADD COLUMN unknown_status_since INTEGER;",
    // 5: the signing flow. Documents to be signed (queued encrypted until the request is
    // approved), and when an enrollment reached review and is next read while in review.
    "CREATE TABLE documents (
        id            TEXT PRIMARY KEY,
        enrollment_id TEXT NOT NULL REFERENCES enrollments (id) ON DELETE CASCADE,
        file_name     TEXT NOT NULL,
        size          INTEGER NOT NULL,
        sha256        TEXT NOT NULL,
        wrapped_key   BLOB,
        state         TEXT NOT NULL,
        uid           TEXT,
        digest        TEXT,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL
    );
    CREATE INDEX documents_by_enrollment ON documents (enrollment_id, created_at);
    ALTER TABLE enrollments ADD COLUMN review_since INTEGER;
    ALTER TABLE enrollments ADD COLUMN next_review_at INTEGER;",
    // 6: facts about the queue itself, such as the fingerprint of the master key it was
    // created with (a different key is refused at start instead of failing every enrollment).
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);",
    // 7: the audit trail (see `audit.rs`): append-only, hash-chained, no personal data. It has
    // no foreign key: it outlives the enrollments it describes.
    "CREATE TABLE audit (
        seq           INTEGER PRIMARY KEY,
        at            INTEGER NOT NULL,
        uid           INTEGER NOT NULL,
        command       TEXT NOT NULL,
        enrollment_id TEXT,
        kind          TEXT NOT NULL,
        prev_hash     TEXT NOT NULL,
        hash          TEXT NOT NULL
    );
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;",
    // 8: the signed capture manifest (see `capture_manifest.rs`): no personal data, kept after
    // the evidence is erased.
    "ALTER TABLE enrollments ADD COLUMN capture_manifest TEXT;
    ALTER TABLE enrollments ADD COLUMN capture_signature TEXT;
    ALTER TABLE enrollments ADD COLUMN device_public_key TEXT;",
    // 9: how much of the video the daemon has handed to the connection, so `queue list` in
    // another process can show an upload in progress (cleared when it ends).
    "ALTER TABLE enrollments ADD COLUMN upload_sent INTEGER;
    ALTER TABLE enrollments ADD COLUMN upload_total INTEGER;",
    // 10: monotonic counters for the metrics (uploads, retries and failures by class, capture
    // verdicts), kept here because `sync --once` and the daemon both do the work they count.
    "CREATE TABLE counters (
        name   TEXT NOT NULL,
        labels TEXT NOT NULL,
        value  INTEGER NOT NULL,
        PRIMARY KEY (name, labels)
    ) WITHOUT ROWID;",
    // 11: a document the server refused for good is failed with the reason; one whose upload
    // failed for a passing reason waits its backoff (no resend on every worker pass).
    "ALTER TABLE documents ADD COLUMN last_error TEXT;
    ALTER TABLE documents ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE documents ADD COLUMN next_attempt_at INTEGER;",
    // 12: how long the evidence has verifiably waited, accumulated from clock marks (see
    // `clock.rs`), which the retention policy counts instead of wall-clock dates.
    "ALTER TABLE enrollments ADD COLUMN waited_ms INTEGER;
    ALTER TABLE enrollments ADD COLUMN waited_mark TEXT;",
    // 13: what had been waited when the enrollment reached review: the time in review (which
    // decides how long a review is followed) is what was waited since, not a difference of
    // wall-clock dates.
    "ALTER TABLE enrollments ADD COLUMN waited_at_review INTEGER;",
];

/// Brings the schema to the latest version inside one transaction.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: usize = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
    }
    tx.commit()
}

#[cfg(test)]
/// The version a fully migrated database reports.
pub const LATEST: usize = MIGRATIONS.len();
