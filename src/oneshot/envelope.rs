//! Reading a One-Shot answer, whichever Optimizer generation sent it.
//!
//! The two generations do not share an envelope (`docs/protocol.md`): the old one answers
//! `{"status": "200 OK", "details": …}` and `{"status": "<code> <reason>", "details": "<text>"}`,
//! the new one `{"status": "success", "message": …, "detail": {…}}` (one page spells it
//! `messsage`), and a framework in front of either may answer a bare `{"detail": …}`. So nothing
//! here requires one exact shape:
//!
//! 1. success is decided by the HTTP status first;
//! 2. the payload is `details`, else `detail`;
//! 3. the human text is the first of `message`, `messsage`, `details`, `detail` that is a string
//!    (or the RA's `error.msg`);
//! 4. a 2xx whose envelope `status` is not a success word (`"Invalid JSON"`, `"error"`, or a code
//!    such as `"400 Bad Request"`) is a failure;
//! 5. "not found" is a 404, or a 400 whose envelope status is `404 Not Found` (the old
//!    Optimizer's documented quirk).
//!
//! Text from the server is cleaned here (control characters removed, cut to [`MAX_TEXT`]
//! characters) before it can reach an error, a log line or the database.

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use super::OneShotError;

/// The longest piece of server text kept, in characters.
pub const MAX_TEXT: usize = 200;

/// What an answer's envelope says, read tolerantly.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The envelope's `status` word, if it had one.
    pub status: Option<String>,
    /// `details`, else `detail`, else `null`.
    pub payload: Value,
    /// The human text: `message`, `messsage`, `details` or `detail`, whichever is a string.
    pub text: Option<String>,
}

impl Envelope {
    /// Reads an envelope from a JSON object; `None` when the body is not a JSON object.
    pub fn parse(body: &[u8]) -> Option<Envelope> {
        let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(body) else {
            return None;
        };
        let text = ["message", "messsage", "details", "detail"]
            .iter()
            .find_map(|k| map.get(*k).and_then(Value::as_str).map(str::to_owned))
            // The RA behind the Optimizer answers `{"result": null, "error": {"msg", "code"}}`.
            .or_else(|| match map.get("error") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Object(e)) => e.get("msg").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            });
        let status = match map.get("status") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let payload = take(&mut map, "details").or_else(|| take(&mut map, "detail")).unwrap_or(Value::Null);
        Some(Envelope { status, payload, text })
    }

    /// The numeric code at the start of `status` ("200 OK" → 200, "404 Not Found" → 404).
    pub fn status_code(&self) -> Option<u16> {
        self.status.as_deref()?.split_whitespace().next()?.parse().ok()
    }

    /// Whether the envelope's `status` says the operation succeeded (absent counts as yes: the
    /// HTTP status already did).
    pub fn says_success(&self) -> bool {
        match self.status.as_deref().map(str::trim) {
            None => true,
            Some("") => true,
            Some(s) => match self.status_code() {
                Some(code) => (200..300).contains(&code),
                None => ["success", "ok", "true"].iter().any(|w| s.eq_ignore_ascii_case(w)),
            },
        }
    }

    /// The text an operator sees: the human text, else the status word, else the payload.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = &self.status {
            parts.push(s.clone());
        }
        match &self.text {
            Some(t) => parts.push(t.clone()),
            None if !self.payload.is_null() => parts.push(self.payload.to_string()),
            None => {}
        }
        clean(&parts.join(" — "))
    }
}

fn take(map: &mut Map<String, Value>, key: &str) -> Option<Value> {
    map.remove(key)
}

/// Server text made safe to keep: control characters dropped, at most [`MAX_TEXT`] characters.
pub fn clean(text: &str) -> String {
    let mut out: String =
        text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_TEXT + 1).collect::<String>();
    if out.chars().count() > MAX_TEXT {
        out = out.chars().take(MAX_TEXT).collect();
        out.push('…');
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Turns an HTTP answer into its payload, or a classified error.
pub fn interpret(http_status: u16, retry_after: Option<Duration>, body: &[u8]) -> Result<Value, OneShotError> {
    let envelope = Envelope::parse(body);
    if !(200..300).contains(&http_status) {
        let details = match &envelope {
            Some(env) => env.describe(),
            None => clean(&String::from_utf8_lossy(&body[..body.len().min(4 * MAX_TEXT)])),
        };
        // The old Optimizer documents "not found" as HTTP 400 with a `404 Not Found` envelope.
        let status = match envelope.as_ref().and_then(Envelope::status_code) {
            Some(404) if http_status == 400 => 404,
            _ => http_status,
        };
        return Err(OneShotError::from_status(status, details, retry_after));
    }
    let env = envelope.ok_or_else(|| {
        OneShotError::Protocol(format!(
            "HTTP {http_status} without a JSON envelope: {}",
            clean(&String::from_utf8_lossy(&body[..body.len().min(4 * MAX_TEXT)]))
        ))
    })?;
    if env.says_success() {
        return Ok(env.payload);
    }
    // A 2xx carrying an error: believe the envelope. A code in it classifies the error; a word
    // such as "Invalid JSON" or "error" is the server refusing this request.
    let details = env.describe();
    match env.status_code() {
        Some(code) if code >= 300 => Err(OneShotError::from_status(code, details, retry_after)),
        _ => Err(OneShotError::Rejected { status: http_status, details }),
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

    /// One answer and what the client must make of it: `Ok(payload)` or `Err((status, retryable,
    /// text the error must contain))`.
    fn check(http: u16, body: &str, expected: Result<Value, (u16, bool, &str)>) {
        let got = interpret(http, None, body.as_bytes());
        match (got, expected) {
            (Ok(payload), Ok(want)) => assert_eq!(payload, want, "{http} {body}"),
            (Err(e), Err((status, retryable, text))) => {
                let code = match &e {
                    OneShotError::Rejected { status, .. } | OneShotError::Server { status, .. } => *status,
                    OneShotError::Protocol(_) => 0,
                    other => panic!("{http} {body}: unexpected {other:?}"),
                };
                assert_eq!(code, status, "{http} {body}: {e}");
                assert_eq!(e.is_retryable(), retryable, "{http} {body}: {e}");
                assert!(e.to_string().contains(text), "{http} {body}: {e} lacks {text:?}");
            }
            (got, want) => panic!("{http} {body}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn every_envelope_shape_of_the_notes() {
        use serde_json::json;
        // Old Optimizer, success.
        check(200, r#"{"status":"200 OK","details":{"request_pk":45836}}"#, Ok(json!({"request_pk": 45836})));
        check(200, r#"{"status":"200 OK","details":"Hello"}"#, Ok(json!("Hello")));
        // New Optimizer, success: `detail`, `message` and its misspelling, or `details`.
        check(
            200,
            r#"{"status":"success","message":"VideoID created with pk 7","detail":{"request_pk":7}}"#,
            Ok(json!({"request_pk": 7})),
        );
        check(201, r#"{"status":"success","messsage":"ok","detail":{"uid":"u1"}}"#, Ok(json!({"uid": "u1"})));
        check(200, r#"{"status":"success","details":{"status":"VIDEOREVIEW"}}"#, Ok(json!({"status": "VIDEOREVIEW"})));
        check(200, r#"{"detail":{"pk":1}}"#, Ok(json!({"pk": 1})));
        // Old Optimizer errors.
        check(
            400,
            r#"{"status":"400 Bad Request","details":"Missing required parameters"}"#,
            Err((400, false, "Missing")),
        );
        check(400, r#"{"status":"404 Not Found","details":"Request not found"}"#, Err((404, false, "not found")));
        check(
            500,
            r#"{"status":"500 Internal Server Error","details":"Invalid billing credentials"}"#,
            Err((500, true, "billing")),
        );
        check(400, r#"{"status":"Invalid JSON","details":"Expecting value"}"#, Err((400, false, "Invalid JSON")));
        check(
            412,
            r#"{"status":"412 Precondition Failed","details":"Otp generated less than a minute ago"}"#,
            Err((412, false, "minute")),
        );
        // New Optimizer and framework errors.
        check(400, r#"{"status":"error","message":"email is not valid"}"#, Err((400, false, "email is not valid")));
        check(404, r#"{"detail":"Not found."}"#, Err((404, false, "Not found.")));
        check(
            403,
            r#"{"result":null,"error":{"msg":"Invalid RAO credentials","code":403}}"#,
            Err((403, false, "Invalid RAO")),
        );
        check(
            422,
            r#"{"detail":[{"loc":["body","email"],"msg":"field required"}]}"#,
            Err((422, false, "field required")),
        );
        // 2xx bodies that are failures.
        check(200, r#"{"status":"Invalid JSON","details":"Expecting value"}"#, Err((200, false, "Invalid JSON")));
        check(
            200,
            r#"{"status":"error","message":"Invalid request status"}"#,
            Err((200, false, "Invalid request status")),
        );
        check(
            200,
            r#"{"status":"400 Bad Request","details":"Missing required parameters"}"#,
            Err((400, false, "Missing")),
        );
        check(200, r#"{"status":"503 Service Unavailable","details":"busy"}"#, Err((503, true, "busy")));
        check(200, "OK", Err((0, false, "without a JSON envelope")));
        check(503, "<html>busy</html>", Err((503, true, "busy")));
    }

    /// The sandbox's golden answers of both generations mean what they say to the client.
    #[test]
    fn golden_answers_of_both_generations() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/responses");
        for generation in ["new", "old"] {
            let read = |name: &str| std::fs::read(dir.join(generation).join(format!("{name}.json"))).unwrap();
            let created = interpret(200, None, &read("create")).unwrap();
            assert_eq!((created["request_pk"].as_u64(), created["videoid_pk"].as_u64()), (Some(45836), Some(137)));
            let details = interpret(200, None, &read("status")).unwrap();
            assert_eq!(details["status"], "VIDEOPENDING", "{generation}");
            assert!(interpret(200, None, &read("cancel")).is_ok(), "{generation}");
            let not_found_http = if generation == "old" { 400 } else { 404 };
            assert!(interpret(not_found_http, None, &read("not_found")).unwrap_err().is_not_found(), "{generation}");
            for bad in ["missing_parameters", "invalid_json"] {
                let e = interpret(400, None, &read(bad)).unwrap_err();
                assert!(!e.is_retryable() && !e.is_not_found(), "{generation} {bad}: {e}");
            }
        }
    }

    #[test]
    fn server_text_is_cleaned_and_cut() {
        let long = format!(r#"{{"status":"error","message":"{}\u0007\n{}"}}"#, "a".repeat(150), "b".repeat(150));
        let e = interpret(400, None, long.as_bytes()).unwrap_err().to_string();
        assert!(!e.contains('\u{7}') && !e.contains('\n'), "{e:?}");
        assert!(e.contains('…') && !e.contains(&"b".repeat(60)), "{e}");
        assert_eq!(clean("x\u{1b}[31my"), "x [31my");
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
        let e = interpret(503, Some(Duration::from_secs(3)), b"<html>busy</html>").unwrap_err();
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        let e = interpret(403, Some(Duration::from_secs(9)), br#"{"detail":"quota"}"#).unwrap_err();
        assert_eq!(e.retry_after(), Some(Duration::from_secs(9)), "Retry-After is kept on any status");
    }

    proptest::proptest! {
        /// Whatever a server sends, under any status, the parser answers a value or an error
        /// (never a panic), and an error's text is bounded and free of control characters.
        #[test]
        fn any_answer_is_interpreted_without_panic(
            status in 100u16..600,
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        ) {
            if let Err(e) = interpret(status, None, &body) {
                let text = e.to_string();
                proptest::prop_assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
            }
        }

        /// JSON envelopes with arbitrary fields of either generation's names.
        #[test]
        fn any_json_envelope_is_interpreted_without_panic(
            status in 100u16..600,
            key in proptest::sample::select(vec!["status", "details", "detail", "message", "messsage", "error"]),
            value in "\\PC{0,40}",
        ) {
            let body = serde_json::to_vec(&serde_json::json!({ key: value, "status": value })).unwrap();
            let _ = interpret(status, None, &body);
            let _ = Envelope::parse(&body);
        }
    }
}
