//! The built-in One-Shot sandbox: a real HTTP server for the demo, the tests and the benchmarks.
//!
//! It serves both Optimizer generations at once, each as public sources describe it
//! (`docs/protocol.md`): the new one under `/oneshot/api/v1` (envelope `{"status": "success",
//! "message", "detail"}`, uploads keyed by `videoid_pk`, video at `/videoid/{pk}/video`, a bare
//! `{"detail": "Not found."}` 404, no `/hello`) and the old one under `/api/v1` (envelope
//! `{"status": "200 OK", "details"}`, uploads keyed by `request_pk`, video at
//! `/videoid/{pk}/evidences/video`, "not found" as HTTP 400 with a `404 Not Found` envelope,
//! the phone in request details as a number without `+`, HTTP 500 for bad billing credentials).
//!
//! Module map:
//! - `state`    — what it remembers and the request state machine, as methods that return a
//!   [`SandboxError`] (`VIDEOPENDING` → `VIDEOINCOMPLETE` after one part → `VIDEOREVIEW`).
//! - `handlers` — the One-Shot operations, mounted once per generation.
//! - `reply`    — each generation's envelope for answers and refusals.
//! - `control`  — `/_sandbox/…`: records, traffic, refusal rules, faults, offline, set a request's status;
//!   loopback clients only, or the control token.
//! - [`faults`] — injected errors, stalls, resets, lost answers and network outages.
//! - `server`   — the accept loop with its kill and offline switches.
//!
//! With a required header it answers 401 to API requests without it, as a gateway would. It keeps
//! the contact data (email, phone) of each request, as the real API shows it in request details,
//! and hashes of everything else.

mod control;
pub mod faults;
mod handlers;
pub mod pdf;
mod reply;
mod server;
mod signing;
mod signing_api;
mod sniff;
mod state;
pub mod webhooks;

#[cfg(test)]
mod fastapi_tests;

pub use control::CONTROL_HEADER;
pub use faults::FaultPlan;
pub use oneshot_protocol::{Generation, RequestStatus};
pub use signing::{RAO_ID, RAO_LOGIN, RAO_TOKEN};
pub use state::set_online;
pub use state::SandboxDocument;
pub use state::{ImageRecord, Outcomes, Rule, SandboxError, SandboxRequest, SandboxState};

use std::sync::{Arc, Mutex};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{Extension, Router};
use tokio::net::TcpListener;

/// The sandbox's shared state.
pub type Shared = Arc<Mutex<SandboxState>>;

/// The One-Shot API of one generation.
fn api(generation: Generation) -> Router<Shared> {
    let video_path = match generation {
        Generation::New => "/videoid/{pk}/video",
        Generation::Old => "/videoid/{pk}/evidences/video",
    };
    let api = Router::new()
        .route("/hello", get(handlers::hello))
        .route("/version", get(handlers::version))
        .route("/videoid", post(handlers::create))
        .route("/videoid/{pk}/evidences", post(handlers::evidences))
        .route(video_path, post(handlers::video))
        .route("/request/{pk}", get(handlers::status).delete(handlers::cancel).put(handlers::update))
        .route("/videoid/{pk}/refuse", post(signing_api::refuse))
        .route("/videoid/{pk}/download/video", get(signing_api::download_video))
        .route("/otp/{pk}", post(signing_api::otp))
        .route("/image", post(signing_api::upload_image))
        .route("/requests", get(handlers::search))
        .route("/token", post(signing_api::create_token))
        .route("/tokens", get(signing_api::list_tokens))
        .route("/token/{uid}", axum::routing::delete(signing_api::delete_token))
        .fallback(handlers::not_found);
    match generation {
        Generation::New => api
            .route("/videoid/{pk}/approve", post(signing_api::approve))
            .route("/document/{pk}", post(signing_api::upload_documents).delete(signing_api::delete_all))
            .route("/document/{pk}/{uid}", get(signing_api::document_new).delete(signing_api::delete_new))
            .route("/contract/{pk}", get(signing_api::contract))
            .route("/sign/{pk}", post(signing_api::sign))
            // Starlette's redirect_slashes: the other spelling of a route is a 307 to it.
            .fallback(handlers::not_found_or_slash_redirect),
        Generation::Old => api
            // The curl sample, the guide and integrator code say `/request/`; the yaml `/requests/`.
            .route("/request/{pk}/approve", post(signing_api::approve))
            .route("/requests/{pk}/approve", post(signing_api::approve))
            .route("/videoid/{pk}/validate", post(signing_api::validate))
            .route("/document/{pk}", post(signing_api::upload_documents))
            .route("/document/{pk}/contract", get(signing_api::contract))
            .route("/document/{pk}/{kind}/{uid}", get(signing_api::document_old).delete(signing_api::delete_old))
            .route("/documents/{pk}", axum::routing::delete(signing_api::delete_all))
            .route("/sign/{pk}", post(signing_api::sign)),
    }
}

/// Builds the router over `state`.
pub fn router(state: Shared) -> Router {
    let auth = axum::middleware::from_fn_with_state(state.clone(), handlers::require_header);
    let tally = axum::middleware::from_fn_with_state(state.clone(), control::count_traffic);
    let control = Router::new()
        .route("/requests", get(control::records))
        .route("/requests/{pk}/status", post(control::set_status))
        .route("/requests/{pk}/otp", get(signing_api::read_otp))
        .route("/rules", post(control::add_rule).delete(control::clear_rules))
        .route("/faults", post(control::set_faults).delete(control::clear_faults))
        .route("/offline", post(control::go_offline))
        .route("/traffic", get(control::traffic))
        .layer(axum::middleware::from_fn_with_state(state.clone(), control::guard));
    let mut router = Router::new();
    for generation in [Generation::New, Generation::Old] {
        // The generation travels as an extension, set before the gateway check so that even a
        // 401 comes in that generation's envelope.
        router = router.nest(
            generation.base_path(),
            api(generation).layer(auth.clone()).layer(Extension(generation)).layer(tally.clone()),
        );
    }
    router
        .nest("/_sandbox", control)
        .fallback(handlers::not_found)
        // Evidences carry Base64 images and the video is streamed: no small default body cap.
        .layer(DefaultBodyLimit::max(2 * 1024 * 1024 * 1024))
        .with_state(state)
}

/// Serves the sandbox on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, router(state.clone()), state, shutdown).await
}
