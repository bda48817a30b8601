//! Monotonic counters behind `/metrics`: what was uploaded, retried, failed and captured.
//!
//! They live in the queue's database, bumped in the same transaction as the change they count,
//! because the work is done by the daemon and by `sync --once` in other processes, and a
//! restart must not lose them (Prometheus's `rate()` copes with resets, but a fleet view of
//! "failures this week" should not).

use rusqlite::{params, Connection};

use super::{Queue, QueueError};

/// One counter series: a name, its labels in a fixed order, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: u64,
}

/// The names counted, so readers and writers cannot drift apart.
pub mod names {
    /// Uploads delivered, by `kind` (`evidences`, `video`).
    pub const UPLOADS: &str = "uploads";
    /// Bytes of evidence files delivered (before base64), by `kind`.
    pub const UPLOAD_BYTES: &str = "upload_bytes";
    /// Failed attempts that will be retried, by reason `class`.
    pub const RETRIES: &str = "retries";
    /// Enrollments that ended `failed`, by reason `class`.
    pub const FAILURES: &str = "failures";
    /// Stills taken through the API, by camera `role` and `verdict`.
    pub const CAPTURES: &str = "captures";
}

/// Why an attempt is retried or an enrollment failed: the `class` label of the retry and
/// failure counters, a small fixed set so a fleet's dashboards can tell a network outage from
/// a server fault from bad data from a request the server is still working on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// The server could not be reached, or the transfer broke off.
    Network,
    /// HTTP 429.
    Throttled,
    /// HTTP 408, 5xx, or a status that came with a Retry-After.
    ServerError,
    /// Any other 4xx: the server refused what was sent.
    Rejected,
    /// A redirect, or an answer that breaks the API.
    Protocol,
    /// The client could not be set up, or the server lacks the operation.
    Setup,
    /// The local evidence could not be read.
    Local,
    /// The server ended the request (a terminal status).
    EndedByServer,
    /// Not a failure: the server has not moved the request on yet, and the worker looks again.
    Polling,
    /// The server lost acknowledged uploads more often than `sync.max_resends` allows.
    ResendLimit,
}

impl Class {
    pub const ALL: [Class; 10] = [
        Class::Network,
        Class::Throttled,
        Class::ServerError,
        Class::Rejected,
        Class::Protocol,
        Class::Setup,
        Class::Local,
        Class::EndedByServer,
        Class::Polling,
        Class::ResendLimit,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Network => "network",
            Class::Throttled => "throttled",
            Class::ServerError => "server_error",
            Class::Rejected => "rejected",
            Class::Protocol => "protocol",
            Class::Setup => "setup",
            Class::Local => "local",
            Class::EndedByServer => "ended_by_server",
            Class::Polling => "polling",
            Class::ResendLimit => "resend_limit",
        }
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Labels are stored as `k=v,k=v`; keys and values are the agent's own words (no `=` or `,`).
fn encode_labels(labels: &[(&str, &str)]) -> String {
    debug_assert!(labels.iter().all(|(k, v)| !(k.contains([',', '=']) || v.contains([',', '=']))));
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

fn decode_labels(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

/// Adds `by` to a counter, inside the caller's transaction.
pub(super) fn bump(conn: &Connection, name: &str, labels: &[(&str, &str)], by: u64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO counters (name, labels, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (name, labels) DO UPDATE SET value = value + excluded.value",
        params![name, encode_labels(labels), by as i64],
    )?;
    Ok(())
}

impl Queue {
    /// Adds one to a counter on its own (for events that change nothing else in the queue).
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> Result<(), QueueError> {
        bump(&self.conn(), name, labels, 1)?;
        Ok(())
    }

    /// Every counter series, by name and labels.
    pub fn counters(&self) -> Result<Vec<Counter>, QueueError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name, labels, value FROM counters ORDER BY name, labels")?;
        let rows = stmt.query_map([], |r| {
            let labels: String = r.get(1)?;
            Ok(Counter { name: r.get(0)?, labels: decode_labels(&labels), value: r.get::<_, i64>(2)?.max(0) as u64 })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip() {
        let labels = [("role", "face"), ("verdict", "retake")];
        let text = encode_labels(&labels);
        assert_eq!(text, "role=face,verdict=retake");
        assert_eq!(decode_labels(&text), vec![("role".into(), "face".into()), ("verdict".into(), "retake".into())]);
        assert!(decode_labels("").is_empty());
    }
}
