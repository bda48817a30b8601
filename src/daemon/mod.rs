//! The daemon: `daemon::run(config, listeners, shutdown)`, in the manner of mini-redis's
//! `server::run(listener, shutdown)`.
//!
//! It owns everything that lives as long as the process: the queue and its worker lock, the
//! integrity check at start, the sync worker, the wake socket that `enroll` and `queue retry`
//! poke, and the network services mounted beside the worker (today the webhook receiver). The
//! CLI only parses, binds the listeners (so a bad address is the caller's error, exit 2) and
//! maps the result to an exit code; tests can start the daemon in-process with listeners on
//! port 0 and a shutdown future of their own.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::oneshot::Client;
use crate::queue::Queue;
use crate::sync::{Mode, Outcome, Worker};

mod systemd;

/// The sockets the daemon serves, bound by the caller.
#[derive(Debug, Default)]
pub struct Listeners {
    /// The webhook receiver (`sync.webhook_listen`).
    pub webhook: Option<TcpListener>,
    /// The local control API (`api.listen`).
    pub api: Option<TcpListener>,
    /// The same API on a Unix socket (`api.unix_socket`).
    pub api_unix: Option<tokio::net::UnixListener>,
}

impl Listeners {
    /// Binds what `config` asks for; an address that cannot be bound is named in the error.
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let webhook = match config.sync.webhook_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("sync.webhook_listen: cannot listen on {addr}"))?,
            ),
            None => None,
        };
        let api = match config.api.listen {
            Some(addr) => {
                Some(TcpListener::bind(addr).await.with_context(|| format!("api.listen: cannot listen on {addr}"))?)
            }
            None => None,
        };
        let api_unix = match &config.api.unix_socket {
            Some(path) => {
                // A socket file left by a previous run would make bind fail; anything else at
                // that path is not ours to remove.
                if std::fs::symlink_metadata(path)
                    .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                {
                    let _ = std::fs::remove_file(path);
                }
                let listener = tokio::net::UnixListener::bind(path)
                    .with_context(|| format!("api.unix_socket: cannot listen on {}", path.display()))?;
                std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
                Some(listener)
            }
            None => None,
        };
        Ok(Listeners { webhook, api, api_unix })
    }
}

/// Runs the worker (and, in [`Mode::Forever`], the services on `listeners`) until `shutdown`
/// completes or, in [`Mode::Once`], nothing more is ready. In-flight steps get the worker's
/// grace period to commit.
pub async fn run(
    config: Config,
    mode: Mode,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Outcome> {
    let storage = config.storage.clone();
    let queue = Arc::new(tokio::task::spawn_blocking(move || Queue::open(&storage)).await.context("queue task")??);
    let _lock = queue.lock_worker()?;
    let check = Arc::clone(&queue);
    tokio::task::spawn_blocking(move || check.check_integrity()).await.context("queue task")??;
    let client = Client::new(&config.oneshot).context("One-Shot client")?;
    let shared_config = Arc::new(config.clone());
    let worker = Worker::new(Arc::clone(&queue), client, config);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if mode == Mode::Forever {
        systemd::start(&worker, &queue, stop_rx.clone());
        listen_for_wakes(&queue.wake_socket(), worker.waker());
        if let Some(listener) = listeners.webhook {
            serve_webhooks(listener, &worker, &queue, stop_rx.clone());
        }
        if listeners.api.is_some() || listeners.api_unix.is_some() {
            // Never an open API, whoever bound the listeners.
            crate::api::token::require(&shared_config.api)?;
            serve_api(listeners.api, listeners.api_unix, &worker, &queue, shared_config, stop_rx.clone());
        }
        tracing::info!(data_dir = %queue.dir().display(), "sync worker running");
    }
    // A person running `sync --once` sees the video uploads go (bars, or lines in a log).
    let (uploads_done, uploads_stop) = tokio::sync::oneshot::channel();
    let uploads =
        (mode == Mode::Once).then(|| tokio::spawn(crate::progress::follow_uploads(Arc::clone(&worker), uploads_stop)));
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutdown requested; finishing in-flight steps");
        if mode == Mode::Forever {
            systemd::stopping();
        }
        let _ = stop_tx.send(true);
    });
    let outcome = worker.run(mode, stop_rx).await;
    let _ = uploads_done.send(());
    if let Some(task) = uploads {
        let _ = task.await;
    }
    Ok(outcome?)
}

fn serve_webhooks(
    listener: TcpListener,
    worker: &Arc<Worker>,
    queue: &Arc<Queue>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "webhook receiver listening");
    }
    let (worker, queue) = (Arc::clone(worker), Arc::clone(queue));
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = crate::webhook::serve(listener, worker, queue, shutdown).await {
            tracing::error!(error = %e, "webhook receiver stopped");
        }
    });
}

fn serve_api(
    tcp: Option<TcpListener>,
    unix: Option<tokio::net::UnixListener>,
    worker: &Arc<Worker>,
    queue: &Arc<Queue>,
    config: Arc<Config>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    if let Some(addr) = tcp.as_ref().and_then(|l| l.local_addr().ok()) {
        // Tests (and people) learn a port-0 address from this line.
        tracing::info!(%addr, "API listening");
    }
    if let Some(path) = &config.api.unix_socket {
        tracing::info!(path = %path.display(), "API listening on a Unix socket");
    }
    let state = crate::api::ApiState {
        queue: Arc::clone(queue),
        worker: Arc::clone(worker),
        config: Arc::clone(&config),
        events: tokio::sync::broadcast::channel(256).0,
        cameras: Arc::new(crate::api::cameras::CaptureService::new(&config.api, config.path.clone())),
        sessions: Default::default(),
    };
    tokio::spawn(crate::api::watch_changes(state.clone()));
    // Intakes cut off midway (a kill, a power cut) and captures of earlier versions: erased
    // at start. The capture service keeps its captures in memory and forgets them itself.
    let data_dir = queue.dir().to_owned();
    tokio::spawn(async move {
        let _ = tokio::task::spawn_blocking(move || crate::api::sweep::at_start(&data_dir)).await;
    });
    let until_stopped = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Some(listener) = tcp {
        let (state, shutdown) = (state.clone(), until_stopped(stop.clone()));
        tokio::spawn(async move {
            // The Host check needs the bound port (the configured one may be 0).
            let hosts = match listener.local_addr() {
                Ok(addr) => crate::api::guard::Hosts::Tcp {
                    listen: addr,
                    names: std::sync::Arc::from(state.config.api.allowed_hosts.clone()),
                },
                Err(e) => {
                    tracing::error!(error = %e, "API not served: its address is unknown");
                    return;
                }
            };
            if let Err(e) = crate::api::serve(listener, state, hosts, shutdown).await {
                tracing::error!(error = %e, "API stopped");
            }
        });
    }
    if let Some(listener) = unix {
        let shutdown = until_stopped(stop);
        tokio::spawn(async move {
            if let Err(e) = crate::api::serve(listener, state, crate::api::guard::Hosts::Any, shutdown).await {
                tracing::error!(error = %e, "API (Unix socket) stopped");
            }
        });
    }
}

/// Feeds pokes from `enroll` and `queue retry` (datagrams on the wake socket) to the worker.
fn listen_for_wakes(path: &Path, waker: Arc<tokio::sync::Notify>) {
    // We hold the worker lock, so a socket file left here belongs to a dead worker.
    let _ = std::fs::remove_file(path);
    match tokio::net::UnixDatagram::bind(path) {
        Ok(sock) => {
            tokio::spawn(async move {
                let mut buf = [0u8; 16];
                while sock.recv(&mut buf).await.is_ok() {
                    waker.notify_one();
                }
            });
        }
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "no wake socket; new work is noticed by polling"),
    }
}
