//! The sandbox's accept loop: one hyper connection per socket, each with a kill switch (for the
//! `reset` and `drop` faults), and an offline switch that closes the listening socket so that
//! connections are refused, then binds the same address again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use super::Shared;
use crate::state::set_online;

/// Cuts the connection a request arrived on, without an answer. Handlers get it as an
/// extension; firing it makes the connection task drop the socket (the kernel resets it when
/// request bytes are still unread).
#[derive(Debug, Clone)]
pub struct Kill(Arc<Notify>);

impl Kill {
    pub fn new() -> Kill {
        Kill(Arc::new(Notify::new()))
    }

    pub fn fire(&self) {
        self.0.notify_one();
    }
}

/// Serves `router` on `listener` until `shutdown`, honouring the state's offline switch.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    state: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let mut online = state.lock().unwrap_or_else(|p| p.into_inner()).online.subscribe();
    let flapping = state.lock().unwrap_or_else(|p| p.into_inner()).faults.offline;
    let flapper = flapping.map(|(up, down)| {
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(up).await;
                set_online(&state, false);
                tokio::time::sleep(down).await;
                set_online(&state, true);
            }
        })
    });
    tokio::pin!(shutdown);
    let mut listener = Some(listener);
    let result = loop {
        let l = match listener.take() {
            Some(l) => l,
            None => match rebind(addr, &mut shutdown).await {
                Some(l) => l,
                None => break Ok(()),
            },
        };
        let mut conns = JoinSet::new();
        let stop = loop {
            tokio::select! {
                _ = &mut shutdown => break true,
                _ = online.wait_for(|up| !*up) => break false,
                accepted = l.accept() => {
                    let Ok((stream, peer)) = accepted else { continue };
                    conns.spawn(connection(stream, peer, router.clone()));
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        };
        // Offline (or stopping): refuse new connections and cut the open ones.
        drop(l);
        conns.abort_all();
        if stop {
            break Ok(());
        }
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            _ = online.wait_for(|up| *up) => {}
        }
    };
    if let Some(f) = flapper {
        f.abort();
    }
    result
}

async fn rebind(
    addr: SocketAddr,
    shutdown: &mut (impl std::future::Future<Output = ()> + Unpin),
) -> Option<TcpListener> {
    loop {
        if let Ok(l) = TcpListener::bind(addr).await {
            return Some(l);
        }
        tokio::select! {
            _ = &mut *shutdown => return None,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

async fn connection(stream: tokio::net::TcpStream, peer: SocketAddr, router: Router) {
    let _ = stream.set_nodelay(true);
    let kill = Kill::new();
    let handle = kill.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(handle.clone());
        req.extensions_mut().insert(crate::control::Peer(peer));
        router.clone().oneshot(req.map(axum::body::Body::new))
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        _ = kill.0.notified() => {}
    }
}
