//! The daemon: `daemon::run(config, listeners, shutdown)`, in the manner of mini-redis's
//! `server::run(listener, shutdown)`.
//!
//! It owns everything that lives as long as the process: the queue and its worker lock, the
//! integrity check at start, the sync worker, and the [`Component`]s beside it (the wake socket
//! that `enroll` and `queue retry` poke, the webhook receiver, the API and its event stream,
//! systemd's notifications), which talk through one typed event bus
//! ([`crate::sync::events::Bus`]) instead of polling the queue. The
//! CLI only parses, binds the listeners (so a bad address is the caller's error, exit 2) and
//! maps the result to an exit code; tests can start the daemon in-process with listeners on
//! port 0 and a shutdown future of their own.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::oneshot::Client;
use crate::queue::Queue;
use crate::sync::events::{Bus, DaemonEvent, Why};
use crate::sync::{Mode, Outcome, Worker};

mod standby;
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

/// Runs the worker (and, in [`Mode::Forever`], the components beside it on `listeners`)
/// until `shutdown` completes or, in [`Mode::Once`], nothing more is ready. In-flight steps get
/// the worker's grace period to commit.
pub async fn run(
    config: Config,
    mode: Mode,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Outcome> {
    if mode == Mode::Forever {
        crate::listener::raise_descriptor_limit();
    }
    let storage = config.storage.clone();
    let queue = Arc::new(tokio::task::spawn_blocking(move || Queue::open(&storage)).await.context("queue task")??);
    let _lock = queue.lock_worker()?;
    let check = Arc::clone(&queue);
    tokio::task::spawn_blocking(move || check.check_integrity()).await.context("queue task")??;
    let client = Client::new(&config.oneshot).context("One-Shot client")?;
    let shared_config = Arc::new(config.clone());
    let worker = Worker::new(Arc::clone(&queue), client, config);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut components = tokio::task::JoinSet::new();
    let context = Context {
        bus: worker.bus().clone(),
        queue: Arc::clone(&queue),
        worker: Arc::clone(&worker),
        stop: stop_rx.clone(),
    };
    if mode == Mode::Forever {
        // Every committed change to an enrollment goes out on the bus.
        let bus = worker.bus().clone();
        queue.on_commit(move |rows| bus.publish(DaemonEvent::EnrollmentChanged { rows }));
        spawn(systemd::Notify, &context, &mut components);
        spawn(WakeSocket, &context, &mut components);
        spawn(standby::ProbeStandby, &context, &mut components);
        if let Some(listener) = listeners.webhook {
            spawn(Webhooks { listener }, &context, &mut components);
        }
        if listeners.api.is_some() || listeners.api_unix.is_some() {
            // Never an open API, whoever bound the listeners.
            crate::api::token::require(&shared_config.api)?;
            spawn(
                Api { tcp: listeners.api, unix: listeners.api_unix, config: shared_config },
                &context,
                &mut components,
            );
        }
        tracing::info!(data_dir = %queue.dir().display(), "sync worker running");
    }
    // A person running `sync --once` sees the video uploads go (bars, or lines in a log).
    let (uploads_done, uploads_stop) = tokio::sync::oneshot::channel();
    let uploads = (mode == Mode::Once)
        .then(|| tokio::spawn(crate::progress::follow_uploads(worker.bus().subscribe(), uploads_stop)));
    let stop = stop_tx.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutdown requested; finishing in-flight steps");
        if mode == Mode::Forever {
            systemd::stopping();
        }
        stop.send_replace(true);
    });
    let outcome = worker.run(mode, stop_rx).await;
    let _ = uploads_done.send(());
    if let Some(task) = uploads {
        let _ = task.await;
    }
    // The components end with the worker, even when it ended on an error, and are waited for:
    // when `run` returns, no listener of this daemon accepts anything more (past the grace,
    // they are aborted instead).
    stop_tx.send_replace(true);
    let waited =
        tokio::time::timeout(COMPONENTS_GRACE, async { while components.join_next().await.is_some() {} }).await;
    if waited.is_err() {
        tracing::warn!(left = components.len(), "components still running after {COMPONENTS_GRACE:?}; stopped");
        components.shutdown().await;
    }
    Ok(outcome?)
}

/// How long the components get to close their listeners once the worker has stopped.
const COMPONENTS_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// What every component is given: the bus, the queue, the worker, and the stop signal.
#[derive(Debug, Clone)]
pub struct Context {
    pub bus: Bus,
    pub queue: Arc<Queue>,
    pub worker: Arc<Worker>,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Context {
    /// Resolves once the daemon is stopping.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stop = self.stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    }
}

/// A part of the daemon that runs beside the worker (after atuin's daemon components): it
/// subscribes to the bus for what it needs and publishes what it does, and ends when the
/// daemon stops ([`Context::stopped`]).
pub trait Component: Send + 'static {
    /// Its name in the log.
    const NAME: &'static str;
    fn run(self, context: Context) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Starts `component` on its own task in `set`; an error that ends it is logged with its name.
fn spawn<C: Component>(component: C, context: &Context, set: &mut tokio::task::JoinSet<()>) {
    let context = context.clone();
    set.spawn(async move {
        if let Err(e) = component.run(context).await {
            tracing::error!(component = C::NAME, error = format!("{e:#}"), "component stopped");
        }
    });
}

/// The Optimizer's status callbacks (`sync.webhook_listen`).
struct Webhooks {
    listener: TcpListener,
}

impl Component for Webhooks {
    const NAME: &'static str = "webhook receiver";

    async fn run(self, context: Context) -> anyhow::Result<()> {
        if let Ok(addr) = self.listener.local_addr() {
            tracing::info!(%addr, "webhook receiver listening");
        }
        let shutdown = context.stopped();
        crate::webhook::serve(self.listener, context.worker, context.queue, shutdown).await?;
        Ok(())
    }
}

/// The local control API, on TCP and/or a Unix socket, and its event stream.
struct Api {
    tcp: Option<TcpListener>,
    unix: Option<tokio::net::UnixListener>,
    config: Arc<Config>,
}

impl Component for Api {
    const NAME: &'static str = "API";

    async fn run(self, context: Context) -> anyhow::Result<()> {
        let Api { tcp, unix, config } = self;
        if let Some(addr) = tcp.as_ref().and_then(|l| l.local_addr().ok()) {
            // Tests (and people) learn a port-0 address from this line.
            tracing::info!(%addr, "API listening");
        }
        if let Some(path) = &config.api.unix_socket {
            tracing::info!(path = %path.display(), "API listening on a Unix socket");
        }
        let state = crate::api::ApiState {
            queue: Arc::clone(&context.queue),
            worker: Arc::clone(&context.worker),
            config: Arc::clone(&config),
            events: tokio::sync::broadcast::channel(256).0,
            cameras: Arc::new(crate::api::cameras::CaptureService::new(&config.api, config.path.clone())),
            sessions: Default::default(),
        };
        tokio::spawn(crate::api::feed::run(state.clone(), context.bus.subscribe()));
        // Intakes cut off midway (a kill, a power cut) and captures of earlier versions: erased
        // at start. The capture service keeps its captures in memory and forgets them itself.
        let data_dir = context.queue.dir().to_owned();
        tokio::task::spawn_blocking(move || crate::api::sweep::at_start(&data_dir));
        // Both listeners are served in this task, not spawned: when the daemon aborts its
        // components (past their grace), the listeners close with this task, before `run`
        // returns. (Tasks of their own would only be told to stop, and could go on accepting.)
        let tcp_api = match tcp {
            Some(listener) => {
                // The Host check needs the bound port (the configured one may be 0).
                let addr = listener.local_addr().context("API not served: its address is unknown")?;
                let hosts = crate::api::guard::Hosts::Tcp {
                    listen: addr,
                    names: Arc::from(state.config.api.allowed_hosts.clone()),
                };
                let (state, shutdown) = (state.clone(), context.stopped());
                Some(async move { crate::api::serve(listener, state, hosts, shutdown).await.context("API stopped") })
            }
            None => None,
        };
        let unix_api = unix.map(|listener| {
            let (state, shutdown) = (state.clone(), context.stopped());
            async move {
                crate::api::serve(listener, state, crate::api::guard::Hosts::Any, shutdown)
                    .await
                    .context("API (Unix socket) stopped")
            }
        });
        let (tcp_done, unix_done) = tokio::join!(served_if_any(tcp_api), served_if_any(unix_api));
        // One listener failing does not take the other down.
        for done in [tcp_done, unix_done] {
            if let Err(e) = done {
                tracing::error!(error = format!("{e:#}"), "API listener stopped");
            }
        }
        Ok(())
    }
}

/// Serves `api` when there is one.
async fn served_if_any(api: Option<impl Future<Output = anyhow::Result<()>>>) -> anyhow::Result<()> {
    match api {
        Some(api) => api.await,
        None => Ok(()),
    }
}

/// Pokes from other processes (`enroll`, `queue retry`, CLI flow commands): datagrams on the
/// wake socket, published as work arriving from elsewhere.
struct WakeSocket;

impl Component for WakeSocket {
    const NAME: &'static str = "wake socket";

    async fn run(self, context: Context) -> anyhow::Result<()> {
        let path = context.queue.wake_socket();
        // We hold the worker lock, so a socket file left here belongs to a dead worker.
        let _ = std::fs::remove_file(&path);
        let sock = match tokio::net::UnixDatagram::bind(&path) {
            Ok(sock) => sock,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "no wake socket; new work is noticed by polling");
                return Ok(());
            }
        };
        let mut buf = [0u8; 16];
        let stopped = context.stopped();
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                received = sock.recv(&mut buf) => {
                    received.with_context(|| format!("reading {}", path.display()))?;
                    context.bus.publish(DaemonEvent::WorkArrived(Why::OtherProcess));
                }
                () = &mut stopped => return Ok(()),
            }
        }
    }
}
