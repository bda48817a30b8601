//! The built-in One-Shot sandbox: a real HTTP server for the demo, the tests and the benchmarks.
//!
//! It serves both path layouts at once — the current one under `/oneshot/api/v1` and the legacy
//! one under `/api/v1` — with the API's envelope, body validation (400 with a `details`
//! message) and the request state machine: `VIDEOPENDING` → `VIDEOINCOMPLETE` after one part →
//! `VIDEOREVIEW` after both. It keeps what it received (hashes, sizes, upload counts) and shows
//! it at `GET /_sandbox/requests`. `POST /_sandbox/rules` makes it refuse an operation for a
//! given customer email (permanent errors), or acknowledge an upload and lose it (the server
//! states `VIDEOERROR`/`VIDEOINCOMPLETE`); `DELETE /_sandbox/rules` clears them. With a required
//! header it answers 401 to requests without it, as an authenticating gateway would. Faults
//! (errors, stalls, resets, lost answers, going offline) are injected per [`faults`].
//! It keeps the contact data (email, phone) of each request, as the real API shows it in request
//! details, and hashes of everything else.

pub mod faults;
mod handlers;
mod server;
mod sniff;
mod state;

pub use faults::FaultPlan;
pub use server::set_online;
pub use state::{ImageRecord, Rule, SandboxRequest, SandboxState};

use std::sync::{Arc, Mutex};

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use tokio::net::TcpListener;

/// The sandbox's shared state.
pub type Shared = Arc<Mutex<SandboxState>>;

/// Builds the router over `state`.
pub fn router(state: Shared) -> Router {
    let current = Router::new()
        .route("/hello", get(handlers::hello))
        .route("/videoid", post(handlers::create))
        .route("/videoid/{videoid_pk}/evidences", post(handlers::evidences_current))
        .route("/videoid/{videoid_pk}/video", post(handlers::video_current))
        .route("/request/{request_pk}", get(handlers::status));
    let legacy = Router::new()
        .route("/hello", get(handlers::hello))
        .route("/videoid", post(handlers::create))
        .route("/videoid/{request_pk}/evidences", post(handlers::evidences_legacy))
        .route("/videoid/{request_pk}/evidences/video", post(handlers::video_legacy))
        .route("/request/{request_pk}", get(handlers::status));
    let auth = axum::middleware::from_fn_with_state(state.clone(), handlers::require_header);
    Router::new()
        .nest("/oneshot/api/v1", current.layer(auth.clone()))
        .nest("/api/v1", legacy.layer(auth))
        .route("/_sandbox/requests", get(handlers::records))
        .route("/_sandbox/rules", post(handlers::add_rule))
        .route("/_sandbox/rules", delete(handlers::clear_rules))
        .route("/_sandbox/faults", post(handlers::set_faults))
        .route("/_sandbox/faults", delete(handlers::clear_faults))
        .route("/_sandbox/offline", post(handlers::go_offline))
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
