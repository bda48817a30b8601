//! The sandbox's control API under `/_sandbox/`: what it received, refusal rules, faults, the
//! offline switch, and moving a request to any status. It is not part of One-Shot, and it answers
//! only clients on a loopback address, or others that send `x-sandbox-control` with the token
//! given by `--control-token`: a sandbox reachable from a network must not let anyone rewrite
//! what a test is checking.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use oneshot_protocol::RequestStatus;
use serde::Deserialize;
use serde_json::json;

use crate::faults::FaultPlan;
use crate::reply::control as reply;
use crate::state::{lock, set_online, Rule, SandboxError};
use crate::Shared;

/// The peer address of a connection, set by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The header that opens the control API to a non-loopback client.
pub const CONTROL_HEADER: &str = "x-sandbox-control";

/// Lets a control request through only from loopback or with the control token.
pub async fn guard(
    State(state): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let loopback = request.extensions().get::<Peer>().is_some_and(|p| p.0.ip().is_loopback());
    let token = lock(&state).control_token.clone();
    let sent = request.headers().get(CONTROL_HEADER).and_then(|v| v.to_str().ok());
    let with_token = matches!((token.as_deref(), sent), (Some(t), Some(s)) if t == s);
    if !(loopback || with_token) {
        return reply(StatusCode::FORBIDDEN, format!("the control API answers loopback clients or {CONTROL_HEADER}"));
    }
    next.run(request).await
}

pub async fn records(State(state): State<Shared>) -> Response {
    let st = lock(&state);
    Json(json!({
        "creates": st.creates,
        "requests": st.requests.values().collect::<Vec<_>>(),
        "faults_injected": st.faults.injected,
        "broken_uploads": st.broken_uploads,
    }))
    .into_response()
}

/// Counts each One-Shot API request in the second it arrived (see [`SandboxState::traffic`]).
///
/// [`SandboxState::traffic`]: crate::state::SandboxState::traffic
pub async fn count_traffic(
    State(state): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let second = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    *lock(&state).traffic.entry(second).or_default() += 1;
    next.run(request).await
}

/// `GET /_sandbox/traffic`: `{"per_second": {"UNIX_SECOND": REQUESTS, …}}`, the seconds in which
/// any One-Shot API request arrived.
pub async fn traffic(State(state): State<Shared>) -> Response {
    let st = lock(&state);
    let per_second: serde_json::Map<String, serde_json::Value> =
        st.traffic.iter().map(|(s, n)| (s.to_string(), json!(n))).collect();
    Json(json!({ "per_second": per_second })).into_response()
}

pub async fn add_rule(State(state): State<Shared>, Json(rule): Json<Rule>) -> Response {
    if !["create", "evidences", "video", "approve"].contains(&rule.op.as_str()) {
        return reply(StatusCode::BAD_REQUEST, "op must be create, evidences, video or approve");
    }
    if rule.lose_as.is_some() && (rule.status != 200 || rule.op == "create") {
        return reply(StatusCode::BAD_REQUEST, "lose_as needs status 200 and op evidences or video");
    }
    lock(&state).rules.push(rule);
    reply(StatusCode::OK, "rule added")
}

pub async fn clear_rules(State(state): State<Shared>) -> Response {
    lock(&state).rules.clear();
    reply(StatusCode::OK, "rules cleared")
}

/// `POST /_sandbox/faults` with a SPEC body (see [`crate::faults`]) replaces the fault plan.
pub async fn set_faults(State(state): State<Shared>, body: String) -> Response {
    match FaultPlan::parse(&body) {
        Ok(plan) => {
            lock(&state).faults = plan;
            reply(StatusCode::OK, "faults set")
        }
        Err(e) => reply(StatusCode::BAD_REQUEST, e),
    }
}

pub async fn clear_faults(State(state): State<Shared>) -> Response {
    lock(&state).faults = FaultPlan::default();
    reply(StatusCode::OK, "faults cleared")
}

/// `POST /_sandbox/offline?secs=N`: refuse connections for N seconds (default 5), then return.
pub async fn go_offline(State(state): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let secs: f64 = match q.get("secs").map(|s| s.parse()) {
        None => 5.0,
        Some(Ok(s)) if (0.0..=3600.0).contains(&s) => s,
        Some(_) => return reply(StatusCode::BAD_REQUEST, "secs must be a number of seconds, 0-3600"),
    };
    let st = state.clone();
    tokio::spawn(async move {
        // Let this answer leave before the socket closes.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        set_online(&st, false);
        tokio::time::sleep(std::time::Duration::from_secs_f64(secs)).await;
        set_online(&st, true);
    });
    reply(StatusCode::OK, format!("going offline for {secs} s"))
}

#[derive(Debug, Deserialize)]
pub struct SetStatus {
    status: String,
}

/// `POST /_sandbox/requests/{request_pk}/status {"status": "CANCELLED"}`: moves a request to any
/// status, named or not (a reviewer's decision, a server-side failure, a status from the future).
pub async fn set_status(State(state): State<Shared>, Path(pk): Path<u64>, Json(body): Json<SetStatus>) -> Response {
    let status = RequestStatus::parse(&body.status);
    if status.as_str().is_empty() {
        return reply(StatusCode::BAD_REQUEST, "status must not be empty");
    }
    match lock(&state).set_status(pk, status.clone()) {
        Ok(()) => reply(StatusCode::OK, format!("request {pk} is now {status}")),
        Err(SandboxError::NotFound) => reply(StatusCode::NOT_FOUND, format!("no request {pk}")),
        Err(e) => reply(StatusCode::BAD_REQUEST, format!("{e:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    fn request(path: &str, peer: &str, token: Option<&str>) -> Request<Body> {
        let mut builder = Request::get(path);
        if let Some(t) = token {
            builder = builder.header(CONTROL_HEADER, t);
        }
        let mut req = builder.body(Body::empty()).unwrap();
        req.extensions_mut().insert(Peer(peer.parse().unwrap()));
        req.extensions_mut().insert(crate::server::Kill::new());
        req
    }

    #[tokio::test]
    async fn the_control_api_answers_loopback_clients_or_the_token_only() {
        let state = Shared::default();
        lock(&state).control_token = Some("t0k3n".into());
        let app = crate::router(state);
        for (peer, token, expected) in [
            ("127.0.0.1:5000", None, StatusCode::OK),
            ("[::1]:5000", None, StatusCode::OK),
            ("10.0.0.7:5000", None, StatusCode::FORBIDDEN),
            ("10.0.0.7:5000", Some("wrong"), StatusCode::FORBIDDEN),
            ("10.0.0.7:5000", Some("t0k3n"), StatusCode::OK),
        ] {
            let status = app.clone().oneshot(request("/_sandbox/requests", peer, token)).await.unwrap().status();
            assert_eq!(status, expected, "{peer} {token:?}");
        }
        // The One-Shot API itself is for anyone who can reach it.
        let status = app.oneshot(request("/api/v1/hello", "10.0.0.7:5000", None)).await.unwrap().status();
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn the_traffic_tally_counts_one_shot_requests_by_second_and_not_control_ones() {
        let state = Shared::default();
        let app = crate::router(state.clone());
        let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        for path in ["/api/v1/hello", "/oneshot/api/v1/hello", "/api/v1/request/1", "/_sandbox/requests"] {
            app.clone().oneshot(request(path, "127.0.0.1:5000", None)).await.unwrap();
        }
        let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let answer = app.oneshot(request("/_sandbox/traffic", "127.0.0.1:5000", None)).await.unwrap();
        let body = axum::body::to_bytes(answer.into_body(), 1 << 16).await.unwrap();
        let tally: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let per_second = tally["per_second"].as_object().unwrap();
        // Three API requests (a 404 included, as a real server's log has it), no control ones.
        assert_eq!(per_second.values().map(|n| n.as_u64().unwrap()).sum::<u64>(), 3, "{tally}");
        assert!(per_second.keys().all(|s| (before..=after).contains(&s.parse::<u64>().unwrap())), "{tally}");
    }
}
