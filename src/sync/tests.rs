use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config;
use crate::evidence::{validate_manifest, HelperProber, ManifestOptions};

/// An empty queue and a configuration (`extra` appended) whose server refuses every connection
/// (nothing listens on port 1).
fn empty_offline_setup(dir: &std::path::Path, extra: &str) -> (Arc<Queue>, Config) {
    let cfg = config::build(
        config::from_toml(&format!(
            "[oneshot]\nbase_url = \"http://127.0.0.1:1/oneshot/api/v1\"\nregistration_authority = \"139\"\n\
             profile = \"P\"\nconnect_timeout_secs = 1\n[storage]\ndata_dir = \"data\"\nmin_free_bytes = 0\n{extra}"
        ))
        .unwrap(),
        dir,
    )
    .unwrap();
    crate::crypto::create_master_key(&cfg.storage.master_key_file).unwrap();
    crate::device_key::create(&cfg.storage.device_key_file).unwrap();
    (Arc::new(Queue::open(&cfg.storage).unwrap()), cfg)
}

/// A queue holding one enrollment of the sample evidence, and a configuration whose server
/// refuses every connection (nothing listens on port 1).
fn offline_setup(dir: &std::path::Path) -> (Arc<Queue>, Config, String) {
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/samples");
    let (queue, cfg) = empty_offline_setup(dir, "");
    let enrollment = validate_manifest(
        &samples.join("manifest.json"),
        &cfg.evidence,
        ManifestOptions {
            allow_outside: false,
            video: &HelperProber::cold(),
            generation: cfg.oneshot.generation,
            sealed: None,
        },
    )
    .unwrap();
    let id = queue.enqueue(&enrollment).unwrap();
    (queue, cfg, id)
}

/// Starts a daemon-mode worker; the sender stops it.
fn start(
    queue: &Arc<Queue>,
    cfg: Config,
) -> (Arc<Worker>, watch::Sender<bool>, tokio::task::JoinHandle<Result<Outcome, QueueError>>) {
    let worker = Worker::new(Arc::clone(queue), Client::new(&cfg.oneshot).unwrap(), cfg);
    let (tx, rx) = watch::channel(false);
    let run = tokio::spawn({
        let worker = Arc::clone(&worker);
        async move { worker.run(Mode::Forever, rx).await }
    });
    (worker, tx, run)
}

/// Days without a network cost one attempt and then only probes, spaced up to
/// `sync.probe_cap_secs` (15 s) apart: the enrollment is not retried on its own while the
/// server is unreachable, the worker sleeps between probes, and time is the paused tokio clock,
/// so three days pass in seconds.
#[tokio::test(start_paused = true)]
async fn three_days_offline_cost_one_attempt_and_capped_probes() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, cfg, id) = offline_setup(dir.path());
    let (worker, tx, run) = start(&queue, cfg);
    let days = 3 * 86_400u64;
    tokio::time::sleep(Duration::from_secs(days)).await;
    tx.send(true).unwrap();
    run.await.unwrap().unwrap();

    let attempts = queue.show(&id).unwrap().attempts as u64;
    let (probes, wakeups) = (worker.probes(), worker.wakeups());
    eprintln!("3 days offline: {attempts} attempts, {probes} probes, {wakeups} worker wake-ups");
    assert_eq!(attempts, 1, "while the server is unreachable only probes go out");
    // Equal jitter under a 15 s cap: between 7.5 and 15 s apart once the backoff has grown.
    assert!((days / 15..=days * 2 / 15 + 20).contains(&probes), "{probes} probes in 3 days");
    // Besides probes, the worker only wakes for its safety poll (every 60 s).
    assert!(wakeups <= 2 * probes + days / SAFETY_POLL.as_secs() + 10, "{wakeups} wake-ups for {probes} probes");
}

/// A daemon with nothing to send still finds out that the server is gone: it probes once
/// `sync.heartbeat_secs` (300 s, jittered down to half) pass without an answer, and from then
/// on reports itself offline and probes as any offline daemon does. With the heartbeat off it
/// sends nothing at all.
#[tokio::test(start_paused = true)]
async fn an_idle_daemon_learns_the_server_is_gone_within_its_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, cfg) = empty_offline_setup(dir.path(), "");
    let (worker, tx, run) = start(&queue, cfg);
    tokio::time::sleep(Duration::from_secs(149)).await;
    assert!(worker.is_online() && worker.probes() == 0, "no probe before half the heartbeat");
    tokio::time::sleep(Duration::from_secs(152)).await;
    assert!(!worker.is_online(), "offline once a heartbeat found no server");
    let first = worker.probes();
    assert!(first >= 1, "{first} probes");
    // Offline, it probes at the usual pace (at most 15 s apart).
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(worker.probes() >= first + 600 / 15, "{} probes after {first}", worker.probes());
    tx.send(true).unwrap();
    run.await.unwrap().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (queue, cfg) = empty_offline_setup(dir.path(), "[sync]\nheartbeat_secs = 0\n");
    let (worker, tx, run) = start(&queue, cfg);
    tokio::time::sleep(Duration::from_secs(86_400)).await;
    assert_eq!((worker.is_online(), worker.probes()), (true, 0), "heartbeat off: an idle daemon sends nothing");
    tx.send(true).unwrap();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_wake_starts_new_work_at_once_and_idle_is_asleep() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, cfg, _) = offline_setup(dir.path());
    let (worker, tx, run) = start(&queue, cfg);
    // An hour of the paused clock with one enrollment retrying costs a bounded number of wakes.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let before = worker.wakeups();
    // About one probe every 11 s, and the worker's own safety polls.
    assert!(before < 2 * 3600 / 7 + 60, "{before} wake-ups in an hour");
    worker.wake(crate::sync::events::Why::Enrolled);
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(worker.wakeups() > before, "a wake makes the worker look at the queue at once");
    tx.send(true).unwrap();
    run.await.unwrap().unwrap();
}
