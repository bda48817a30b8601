//! The typed One-Shot HTTP client (reqwest with rustls, tokio).
//!
//! Every failure is classified: [`OneShotError::is_retryable`] is true for connection failures,
//! timeouts, 408, 429 and 5xx (with the server's `Retry-After` when it sent one), false for any
//! other 4xx and for answers that break the API's envelope. The sync worker retries the first
//! kind forever with backoff and moves the enrollment to `failed` on the second.

mod client;
mod envelope;

pub use client::{Client, Created, RequestIds};
pub use envelope::Envelope;
pub use oneshot_protocol::{Generation, RequestStatus};

use std::time::Duration;

/// Errors of the One-Shot layer.
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
    #[error("unexpected answer from the One-Shot server: {0}")]
    Protocol(String),
    #[error("client setup: {0}")]
    Setup(String),
    #[error("local evidence could not be read: {0}")]
    Local(String),
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

    /// Whether the request certainly did not reach the server's application (so a create cannot
    /// have produced a request there).
    pub fn certainly_not_applied(&self) -> bool {
        matches!(
            self,
            OneShotError::Connect(_) | OneShotError::Rejected { .. } | OneShotError::Setup(_) | OneShotError::Local(_)
        )
    }

    /// The delay the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            OneShotError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Classifies an HTTP status that is not a success.
    pub fn from_status(status: u16, details: String, retry_after: Option<Duration>) -> Self {
        match status {
            408 | 429 | 500..=599 => OneShotError::Server { status, details, retry_after },
            _ => OneShotError::Rejected { status, details },
        }
    }

    fn from_reqwest(e: reqwest::Error) -> Self {
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
            (502, true),
            (503, true),
            (504, true),
        ] {
            assert_eq!(OneShotError::from_status(status, "x".into(), None).is_retryable(), retryable, "{status}");
        }
        assert!(OneShotError::Connect("refused".into()).is_retryable());
        assert!(OneShotError::Timeout("t".into()).is_retryable());
        assert!(!OneShotError::Protocol("p".into()).is_retryable());
        let e = OneShotError::from_status(429, "slow down".into(), Some(Duration::from_secs(7)));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    }
}
