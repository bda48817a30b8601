//! Serving HTTP on a listener so that no client can starve it: every connection must send its
//! request header within [`HEADER_TIMEOUT`] (an idle or slow-loris connection is closed, its
//! descriptor freed), and at most [`MAX_CONNECTIONS`] are served at once (the rest wait in the
//! kernel's backlog, holding no descriptor of ours). Together with the descriptor limit raised
//! at start ([`raise_descriptor_limit`]), a flood of idle connections to the webhook port or
//! the API can no longer exhaust the descriptors the worker needs to read the evidence.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

/// How long a connection may take to send a request's header (and how long one may sit idle
/// between requests).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How many connections a listener serves at once.
pub const MAX_CONNECTIONS: usize = 128;

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve<L>(mut listener: L, router: Router, shutdown: impl Future<Output = ()> + Send) -> std::io::Result<()>
where
    L: Listener,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => return Ok(()),
        };
        // axum's listeners retry failed accepts themselves (sleeping on EMFILE).
        let (io, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => return Ok(()),
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(io), service);
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended");
            }
            drop(slot);
        });
    }
}

/// Raises the soft limit of open descriptors to the hard limit (systemd's default soft limit is
/// 1024, its hard limit far higher): what the listeners may hold is bounded above, the rest is
/// for the evidence.
pub fn raise_descriptor_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
        }
    }
}
