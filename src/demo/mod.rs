//! `kiosk-agent demo`: the whole job on embedded defaults.
//!
//! Starts the built-in sandbox on a free loopback port, uses a temporary data directory,
//! captures the document front and rear and a selfie from the synthetic camera (or a real one
//! with `--camera`), crops the document photo from the front, records a 5 s clip, shows the
//! quality verdicts, then enrolls that evidence with the sample data of
//! `config/samples/manifest.json` (embedded in the binary, so the demo runs from anywhere),
//! uploads it, waits for `VIDEOREVIEW`, checks that the sandbox received every artifact
//! byte-identical, and prints what happened and how long each step took.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::config;
use crate::evidence::{validate_manifest, HelperProber, ManifestOptions};
use crate::oneshot::{Client, Generation};
use crate::queue::{Queue, State};
use crate::sync::{blocking, Mode, Worker};
use kiosk_sandbox::SandboxRequest;

/// The customer, acceptance, OCR and check data of the demo enrollment.
const MANIFEST: &[u8] = include_bytes!("../../config/samples/manifest.json");
/// Length of the demo clip.
const CLIP: Duration = Duration::from_secs(5);

/// Captures the demo's evidence into `dir` through the capture helper (which links FFmpeg and
/// V4L2) and returns its report lines.
async fn capture_evidence(dir: &std::path::Path, camera: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let mut cmd = tokio::process::Command::from(crate::helper::command()?);
    // An interrupted demo drops this future: the helper goes with it.
    cmd.kill_on_drop(true);
    cmd.arg("demo-evidence").arg("--dir").arg(dir).arg("--seconds").arg(CLIP.as_secs_f64().to_string());
    if let Some(c) = camera {
        cmd.arg("--camera").arg(c);
    }
    let out = cmd.output().await.context("running the capture helper")?;
    if !out.status.success() {
        bail!("capture failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out.stdout)
}

mod signing;

/// Runs `f` (files, SQLite, the capture helper's probe) on the blocking pool: the sandbox the
/// demo talks to shares this runtime, and an executor thread held by local work would stall it.
async fn off<T: Send + 'static>(f: impl FnOnce() -> anyhow::Result<T> + Send + 'static) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await.context("demo task")?
}

/// Runs the demo against a sandbox of `generation`, writing the report to `out`; with `full`,
/// on past review to a signed document.
pub async fn run(out: &mut impl Write, camera: Option<&str>, generation: Generation, full: bool) -> anyhow::Result<()> {
    let total = Instant::now();
    // 0700, and removed when this future ends or is dropped (Ctrl-C, SIGTERM: see `cli`).
    let tmp = tempfile::Builder::new().prefix("kiosk-agent-demo-").tempdir().context("temporary directory")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding a loopback port")?;
    let addr = listener.local_addr()?;
    let sandbox_state = kiosk_sandbox::Shared::default();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(kiosk_sandbox::serve(listener, sandbox_state, async {
        let _ = stop_rx.await;
    }));

    let samples = tmp.path().join("samples");
    let dir = samples.clone();
    off(move || Ok(std::fs::create_dir(&dir).and_then(|()| std::fs::write(dir.join("manifest.json"), MANIFEST))?))
        .await?;
    let base_url = format!("http://{addr}{}", generation.base_path());
    let layout = generation.layout_name();
    let mut toml = format!(
        "[oneshot]\nbase_url = \"{base_url}\"\nlayout = \"{layout}\"\nregistration_authority = \"139\"\n\
         profile = \"PFnubeQAFCiudadano\"\nenv = \"sandbox\"\nvideoid_mode = 1\n\
         [storage]\ndata_dir = \"data\"\nmin_free_bytes = 0\n[sync]\nstatus_poll_secs = 0.2\n"
    );
    if full {
        // A visible signature on the first page (pages count from 0), with an image the sign
        // step uploads first and names by its uid.
        let image = tmp.path().join("signature.png");
        off(move || signing::write_signature_image(&image)).await?;
        toml.push_str(
            "[signature]\ntext = [\"Signed at the kiosk\"]\nposition = \"40,40,240,110\"\npage = 0\nimage = \"signature.png\"\n",
        );
    }
    let base = tmp.path().to_owned();
    let cfg = off(move || Ok(config::build(config::from_toml(&toml)?, &base)?)).await?;

    writeln!(out, "kiosk-agent demo: One-Shot External-mode VideoID against the built-in sandbox")?;
    writeln!(out, "  sandbox     {base_url} ({generation}, layout {layout})")?;
    writeln!(out, "  data dir    {} (temporary)", cfg.storage.data_dir.display())?;
    writeln!(out)?;

    writeln!(out, "  capture")?;
    out.write_all(&capture_evidence(&samples, camera).await?)?;
    writeln!(out)?;

    // The helper's capture metadata joins the manifest, for the signed capture manifest.
    let (dir, limits, generation_of_server) = (samples.clone(), cfg.evidence, cfg.oneshot.generation);
    let t = Instant::now();
    let enrollment = off(move || {
        if let Ok(capture) = std::fs::read(dir.join("capture.json")) {
            let mut manifest: serde_json::Value = serde_json::from_slice(MANIFEST)?;
            manifest["capture"] = serde_json::from_slice(&capture)?;
            std::fs::write(dir.join("manifest.json"), serde_json::to_vec_pretty(&manifest)?)?;
        }
        Ok(validate_manifest(
            &dir.join("manifest.json"),
            &limits,
            ManifestOptions {
                allow_outside: false,
                video: &HelperProber::cold(),
                generation: generation_of_server,
                sealed: None,
            },
        )?)
    })
    .await?;
    let validate_time = t.elapsed();

    let storage = cfg.storage.clone();
    let t = Instant::now();
    let (queue, id) = off(move || {
        // The demo's own temporary queue gets its own key, on purpose.
        crate::crypto::create_master_key(&storage.master_key_file)?;
        crate::device_key::create(&storage.device_key_file)?;
        let queue = Queue::open(&storage)?;
        let id = queue.enqueue(&enrollment)?;
        Ok((queue, id))
    })
    .await?;
    let enqueue_time = t.elapsed();
    let queue = Arc::new(queue);

    let client = Client::new(&cfg.oneshot)?;
    client.probe().await.context("reaching the sandbox")?;
    let worker = Worker::new(Arc::clone(&queue), client, cfg.clone());
    let (_keep, rx) = tokio::sync::watch::channel(false);
    let outcome = tokio::time::timeout(Duration::from_secs(60), worker.run(Mode::Once, rx))
        .await
        .context("upload timed out")??;
    let show = {
        let id = id.clone();
        blocking(&queue, move |q| q.show(&id)).await?
    };
    if outcome.pending > 0 || show.state != State::InReview {
        bail!(
            "enrollment {id} ended in state {} (last error: {})",
            show.state,
            show.last_error.as_deref().unwrap_or("-")
        );
    }

    // Per-step times from the enrollment's own history: each event is committed when its step
    // is confirmed, so consecutive timestamps bracket the step.
    let history = show.history.clone().unwrap_or_default();
    let at: HashMap<&str, i64> = history
        .iter()
        .filter_map(|e| humantime::parse_rfc3339(&e.at).ok().map(|t| (e.kind.as_str(), t)))
        .map(|(k, t)| (k, t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as i64))
        .collect();
    // A state's entry is the history event named after it (`EventKind::Entered`).
    let span = |a: State, b: State| match (at.get(a.as_str()), at.get(b.as_str())) {
        (Some(x), Some(y)) => format!("{:>6} ms", y - x),
        _ => "     -   ".into(),
    };
    writeln!(out, "  steps")?;
    writeln!(out, "    validate manifest         {:>6} ms", validate_time.as_millis())?;
    writeln!(out, "    queue (encrypt + fsync)   {:>6} ms", enqueue_time.as_millis())?;
    writeln!(out, "    create request            {}", span(State::Creating, State::Created))?;
    writeln!(out, "    upload evidences          {}", span(State::Created, State::EvidencesSent))?;
    writeln!(out, "    upload video              {}", span(State::EvidencesSent, State::VideoSent))?;
    writeln!(out, "    confirm VIDEOREVIEW       {}", span(State::VideoSent, State::InReview))?;
    writeln!(out)?;

    let records: serde_json::Value = reqwest::get(format!("http://{addr}/_sandbox/requests")).await?.json().await?;
    let requests: Vec<SandboxRequest> = serde_json::from_value(records["requests"].clone())?;
    let request_pk = show.request_pk.clone().unwrap_or_default();
    let server = requests
        .iter()
        .find(|r| r.request_pk.to_string() == request_pk)
        .with_context(|| format!("the sandbox has no request {request_pk}"))?;
    let artifacts = show.artifacts.clone().unwrap_or_default();
    let identical = artifacts.iter().all(|a| match a.name.as_str() {
        "video" => server.video.as_ref().is_some_and(|v| v.sha256 == a.sha256 && v.size == a.size),
        name => server.images.get(name).is_some_and(|i| i.sha256 == a.sha256 && i.size == a.size),
    });
    if !identical {
        bail!("the sandbox did not receive the artifacts byte-identical");
    }

    writeln!(out, "  enrollment  {id}")?;
    writeln!(out, "  request_pk  {}", request_pk)?;
    writeln!(out, "  videoid_pk  {}", show.videoid_pk.as_deref().unwrap_or("-"))?;
    writeln!(out, "  status      {}", server.status)?;
    writeln!(
        out,
        "  verified    {} images and the video ({} bytes in all) arrived byte-identical (SHA-256); \
         uploads: evidences {}, video {}",
        artifacts.len() - 1,
        artifacts.iter().map(|a| a.size).sum::<u64>(),
        server.evidences_uploads,
        server.video_uploads
    )?;
    let manifest = {
        let id = id.clone();
        blocking(&queue, move |q| q.show(&id)).await?.capture_manifest.context("no capture manifest")?
    };
    if manifest["signature_valid"] != true {
        bail!("the capture manifest's signature does not verify");
    }
    writeln!(
        out,
        "  manifest    {} artifacts with capture metadata, signed by device {} (Ed25519, valid)",
        manifest["manifest"]["artifacts"].as_array().map_or(0, Vec::len),
        manifest["manifest"]["device_id"].as_str().unwrap_or("?")
    )?;
    writeln!(
        out,
        "  local copy  {}",
        if show.erased { "erased after VIDEOREVIEW; audit record kept" } else { "kept" }
    )?;
    if full {
        signing::run(out, &cfg, &queue, &id, addr, tmp.path()).await?;
    }
    writeln!(out, "  total       {} ms", total.elapsed().as_millis())?;

    let _ = stop_tx.send(());
    server_task.await??;
    Ok(())
}
