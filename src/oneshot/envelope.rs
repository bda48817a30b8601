//! The API's response envelope: `{"status": "200 OK", "details": ...}`.

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::Value;

use super::OneShotError;

/// A parsed response envelope.
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    pub status: String,
    #[serde(default)]
    pub details: Value,
}

impl Envelope {
    /// `details` as text for error messages (strings as they are, anything else as JSON).
    pub fn details_text(&self) -> String {
        match &self.details {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }

    /// The numeric code at the start of `status` ("200 OK" → 200), if there is one.
    pub fn status_code(&self) -> Option<u16> {
        self.status.split_whitespace().next()?.parse().ok()
    }
}

/// Turns an HTTP answer into the envelope's `details`, or a classified error. The server's
/// error text is kept whole: it is what an operator needs to see in `queue show`.
pub fn interpret(http_status: u16, retry_after: Option<Duration>, body: &[u8]) -> Result<Value, OneShotError> {
    let envelope: Option<Envelope> = serde_json::from_slice(body).ok();
    if !(200..300).contains(&http_status) {
        let details = match &envelope {
            Some(env) => format!("{} — {}", env.status, env.details_text()),
            None => String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_owned(),
        };
        return Err(OneShotError::from_status(http_status, details, retry_after));
    }
    let env = envelope.ok_or_else(|| {
        OneShotError::Protocol(format!(
            "HTTP {http_status} without a JSON envelope: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))
    })?;
    // Some deployments answer HTTP 200 with an error in the envelope; believe the envelope.
    match env.status_code() {
        Some(code) if !(200..300).contains(&code) => {
            Err(OneShotError::from_status(code, env.details_text(), retry_after))
        }
        _ => Ok(env.details),
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_interpreted() {
        let ok = interpret(200, None, br#"{"status":"200 OK","details":{"request_pk":1}}"#).unwrap();
        assert_eq!(ok["request_pk"], 1);
        let e = interpret(404, None, br#"{"status":"404 Not Found","details":"Request not found"}"#).unwrap_err();
        assert!(
            matches!(&e, OneShotError::Rejected { status: 404, details } if details.contains("Request not found")),
            "{e}"
        );
        let e = interpret(200, None, br#"{"status":"400 Bad Request","details":"Missing required parameters"}"#)
            .unwrap_err();
        assert!(matches!(&e, OneShotError::Rejected { status: 400, .. }), "{e}");
        let e = interpret(503, Some(Duration::from_secs(3)), b"<html>busy</html>").unwrap_err();
        assert!(e.is_retryable() && e.retry_after() == Some(Duration::from_secs(3)), "{e}");
        assert!(matches!(interpret(200, None, b"OK"), Err(OneShotError::Protocol(_))));
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
