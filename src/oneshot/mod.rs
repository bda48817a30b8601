//! The typed One-Shot HTTP client (reqwest with rustls, tokio).
//!
//! Every failure is classified by what it means ([`OneShotError::from_status`]): connection
//! failures, timeouts, 408, 429, 502, 503 and 504 are retryable for ever; a 500 is retryable but
//! counted ([`OneShotError::repeated_500`]), because the old Optimizer uses it for permanent
//! problems; other statuses, redirects and answers that break the API are permanent. Both
//! generations' envelopes are read by [`envelope`], tolerantly.

mod client;
mod correction;
pub mod envelope;
mod signing;

pub use client::{status_of, valid_pk, Client, Created, RequestIds, ServerProbe, MAX_ANSWER};
pub use correction::{BadCorrection, OcrCorrection};
pub use envelope::Envelope;
pub use oneshot_protocol::{Generation, RequestStatus};
pub use signing::{parse_uploaded, rao_body, sign_body, valid_uid, DocumentBody, FileKind, Unlock, UploadedDocument};

use std::time::Duration;

use crate::queue::counters::Class;

/// Errors of the One-Shot layer. Server text in them has been cleaned ([`envelope::clean`]).
#[derive(Debug, thiserror::Error)]
pub enum OneShotError {
    #[error("cannot connect to the One-Shot server: {0}")]
    Connect(String),
    #[error("the One-Shot server did not answer in time: {0}")]
    Timeout(String),
    #[error("transfer to the One-Shot server broke off: {0}")]
    Transfer(String),
    #[error("One-Shot server error {status}: {details}")]
    Server { status: u16, details: String, retry_after: Option<Duration> },
    #[error("One-Shot server refused the request ({status}): {details}")]
    Rejected { status: u16, details: String },
    #[error("the One-Shot server redirected ({status}) to {location}; redirects are never followed (check oneshot.base_url)")]
    Redirect { status: u16, location: String },
    #[error("unexpected answer from the One-Shot server: {0}")]
    Protocol(String),
    #[error("client setup: {0}")]
    Setup(String),
    #[error("local evidence could not be read: {0}")]
    Local(String),
    #[error("not supported: {0}")]
    Unsupported(String),
}

impl OneShotError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            OneShotError::Connect(_)
                | OneShotError::Timeout(_)
                | OneShotError::Transfer(_)
                | OneShotError::Server { .. }
        )
    }

    /// The reason class the metrics count retries and failures under: a small fixed set, so a
    /// fleet's dashboards can tell a network outage from a server fault from bad data.
    pub fn class(&self) -> Class {
        match self {
            OneShotError::Connect(_) | OneShotError::Timeout(_) | OneShotError::Transfer(_) => Class::Network,
            OneShotError::Server { status: 429, .. } => Class::Throttled,
            OneShotError::Server { .. } => Class::ServerError,
            OneShotError::Rejected { .. } => Class::Rejected,
            OneShotError::Redirect { .. } | OneShotError::Protocol(_) => Class::Protocol,
            OneShotError::Setup(_) | OneShotError::Unsupported(_) => Class::Setup,
            OneShotError::Local(_) => Class::Local,
        }
    }

    /// Whether the server could not be reached at all (the network, not the server, failed):
    /// the worker then waits for connectivity instead of retrying each enrollment on its own.
    pub fn is_connectivity(&self) -> bool {
        matches!(self, OneShotError::Connect(_) | OneShotError::Timeout(_) | OneShotError::Transfer(_))
    }

    /// Whether the server answered that the thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, OneShotError::Rejected { status: 404, .. })
    }

    /// For an HTTP 500, its message: the old Optimizer answers 500 for permanent problems (bad
    /// billing credentials, an invalid country, missing certificates), so the worker gives up
    /// after the same 500 repeats on the same step (`sync.max_server_errors`).
    pub fn repeated_500(&self) -> Option<&str> {
        match self {
            OneShotError::Server { status: 500, details, .. } => Some(details),
            _ => None,
        }
    }

    /// Whether the request certainly did not reach the server's application (so a create cannot
    /// have produced a request there).
    pub fn certainly_not_applied(&self) -> bool {
        matches!(
            self,
            OneShotError::Connect(_)
                | OneShotError::Rejected { .. }
                | OneShotError::Redirect { .. }
                | OneShotError::Setup(_)
                | OneShotError::Local(_)
                | OneShotError::Unsupported(_)
        )
    }

    /// The delay the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            OneShotError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Classifies an HTTP status that is not a success. Connect/timeout-like statuses (408, 429,
    /// 502, 503, 504) and 500 are retryable; so is any status that came with `Retry-After` (the
    /// server said when to come back). Any other 4xx or 5xx is permanent.
    pub fn from_status(status: u16, details: String, retry_after: Option<Duration>) -> Self {
        match status {
            408 | 429 | 500 | 502 | 503 | 504 => OneShotError::Server { status, details, retry_after },
            _ if retry_after.is_some() => OneShotError::Server { status, details, retry_after },
            _ => OneShotError::Rejected { status, details },
        }
    }

    pub(crate) fn from_reqwest(e: reqwest::Error) -> Self {
        let text = error_chain(&e);
        if e.is_timeout() {
            OneShotError::Timeout(text)
        } else if e.is_connect() {
            OneShotError::Connect(text)
        } else if e.is_builder() {
            OneShotError::Setup(text)
        } else {
            // Request/body/decode errors after the connection was made: the transfer broke.
            OneShotError::Transfer(text)
        }
    }
}

/// The error and its causes on one line (reqwest hides the useful part in `source()`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        for (status, retryable) in [
            (400, false),
            (401, false),
            (403, false),
            (404, false),
            (408, true),
            (409, false),
            (422, false),
            (429, true),
            (500, true),
            (501, false),
            (502, true),
            (503, true),
            (504, true),
            (505, false),
        ] {
            assert_eq!(OneShotError::from_status(status, "x".into(), None).is_retryable(), retryable, "{status}");
        }
        assert!(OneShotError::Connect("refused".into()).is_retryable());
        assert!(OneShotError::Timeout("t".into()).is_retryable());
        assert!(!OneShotError::Protocol("p".into()).is_retryable());
        let e = OneShotError::from_status(429, "slow down".into(), Some(Duration::from_secs(7)));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert!(OneShotError::from_status(403, "x".into(), Some(Duration::from_secs(1))).is_retryable());
        assert_eq!(OneShotError::from_status(500, "bad billing".into(), None).repeated_500(), Some("bad billing"));
        assert_eq!(OneShotError::from_status(503, "busy".into(), None).repeated_500(), None);
        assert!(OneShotError::from_status(404, "x".into(), None).is_not_found());
        let redirect = OneShotError::Redirect { status: 307, location: "https://elsewhere.example/".into() };
        assert!(!redirect.is_retryable() && redirect.to_string().contains("elsewhere.example"));
    }
}
