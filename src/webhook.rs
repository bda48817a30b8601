//! The webhook receiver (`sync.webhook_listen`, off by default): the Optimizer's status-change
//! callbacks move enrollments at once instead of at the next review read.
//!
//! Both payload shapes of the notes are read: the old Optimizer's `{status, date,
//! previous_status, request, registration_authority}` and the new one's `{event_type, sent_at,
//! request: {status, pk, …}, certificates}`. No public source says how a webhook proves where it
//! comes from, so its content is a hint, never trusted: the receiver reads the request's status
//! from the server itself and applies that. A webhook for a request this queue does not know is
//! logged and ignored; bodies are capped at [`MAX_BODY`]; polling stays the default and the
//! fallback.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde_json::Value;

use crate::oneshot::valid_pk;
use crate::queue::Queue;
use crate::sync::{blocking, Worker};

/// The largest webhook body read.
pub const MAX_BODY: usize = 64 * 1024;

/// The request pk and status a webhook names, from either shape.
pub fn parse(body: &Value) -> Option<(String, Option<String>)> {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let (pk, status) = match body.get("request") {
        Some(Value::Object(r)) => (r.get("pk").and_then(text), r.get("status").and_then(text)),
        Some(v) => (text(v), body.get("status").and_then(text)),
        None => (None, None),
    };
    pk.filter(|p| valid_pk(p)).map(|p| (p, status))
}

#[derive(Debug, Clone)]
struct Receiver {
    worker: Arc<Worker>,
    queue: Arc<Queue>,
}

async fn receive(State(rx): State<Receiver>, body: axum::body::Bytes) -> StatusCode {
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        tracing::info!("webhook without a JSON body ignored");
        return StatusCode::BAD_REQUEST;
    };
    let Some((pk, claimed)) = parse(&value) else {
        tracing::info!("webhook without a request pk ignored");
        return StatusCode::BAD_REQUEST;
    };
    let found = {
        let pk = pk.clone();
        blocking(&rx.queue, move |q| q.find_by_request_pk(&pk)).await
    };
    let Ok(Some(enrollment)) = found else {
        tracing::info!(request_pk = %pk, "webhook for a request this kiosk does not know; ignored");
        return StatusCode::ACCEPTED;
    };
    // The webhook says what changed; the server says what is true.
    match rx.worker.refresh(&enrollment.id, &pk).await {
        Ok(r) => {
            tracing::info!(enrollment_id = %enrollment.id, claimed = claimed.as_deref().unwrap_or("-"), status = %r.status, state = %r.state, "webhook")
        }
        Err(e) => {
            tracing::info!(enrollment_id = %enrollment.id, error = %e, "webhook: status read failed; the review rounds will catch up")
        }
    }
    rx.worker.wake(crate::sync::events::Why::ServerCalledBack);
    StatusCode::OK
}

/// Serves the receiver on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    worker: Arc<Worker>,
    queue: Arc<Queue>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .fallback(post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Receiver { worker, queue });
    crate::listener::serve(listener, app, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_payload_shapes() {
        let old = json!({"status": "ENROLLREADY", "date": "2021-07-20T08:29:17", "previous_status": "VIDEOREVIEW",
                         "request": 45836, "registration_authority": 139});
        assert_eq!(parse(&old), Some(("45836".into(), Some("ENROLLREADY".into()))));
        let new = json!({"event_type": "REQUEST_UPDATED", "sent_at": "20240102101010",
                         "request": {"status": "SIGNED", "profile": "P", "registration_authority": 139, "scratchcard": "x", "pk": "45837"},
                         "certificates": []});
        assert_eq!(parse(&new), Some(("45837".into(), Some("SIGNED".into()))));
        assert_eq!(parse(&json!({"request": "../../x", "status": "SIGNED"})), None);
        assert_eq!(parse(&json!({"status": "SIGNED"})), None);
        // What the sandbox sends in each generation reads back.
        use kiosk_sandbox::{Generation, RequestStatus};
        for g in [Generation::Old, Generation::New] {
            let body = kiosk_sandbox::webhooks::payload(g, 7, &RequestStatus::EnrollReady, &RequestStatus::VideoReview);
            assert_eq!(parse(&body), Some(("7".into(), Some("ENROLLREADY".into()))), "{g}");
        }
    }
}
