//! `kiosk-agent demo --full`: past `VIDEOREVIEW` to a signed document, against the sandbox —
//! approve with the sandbox's RAO token, queue a sample PDF the project makes, fetch the service
//! contract, the OTP, sign, download the signed PDF, and delete it on the server after a backup.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};

use crate::config::{Config, RaoConfig, RaoCredentials};
use crate::oneshot::{Client, RequestIds, Unlock};
use crate::queue::{Queue, State};
use crate::sync::{blocking, Worker};

/// The steps after review; `sandbox` is the sandbox's address (its control API has the OTP).
pub async fn run(
    out: &mut impl Write,
    cfg: &Config,
    queue: &Arc<Queue>,
    id: &str,
    sandbox: std::net::SocketAddr,
    dir: &Path,
) -> anyhow::Result<()> {
    let client = Client::new(&cfg.oneshot)?;
    let worker = Worker::new(Arc::clone(queue), client.clone(), cfg.clone());
    let shown = {
        let id = id.to_owned();
        blocking(queue, move |q| q.show(&id)).await?
    };
    let ids = RequestIds {
        request_pk: shown.request_pk.clone().context("no request_pk")?,
        videoid_pk: shown.videoid_pk.clone(),
    };
    let rao = RaoConfig {
        id: kiosk_sandbox::RAO_ID.into(),
        credentials: RaoCredentials::Token(kiosk_sandbox::RAO_TOKEN.to_owned().into()),
    };
    writeln!(out)?;
    writeln!(out, "  signing flow (--full)")?;
    let step = |out: &mut dyn Write, name: &str, started: Instant, status: &str| -> anyhow::Result<()> {
        writeln!(out, "    {name:<30} {:>6} ms   {status}", started.elapsed().as_millis())?;
        Ok(())
    };

    let t = Instant::now();
    client.approve(&ids, &rao).await.context("approve")?;
    let reviewed = worker.refresh(id, &ids.request_pk).await?;
    if reviewed.state != State::Approved {
        bail!("after approval the enrollment is {} ({})", reviewed.state, reviewed.status);
    }
    step(out, "approve (RAO token)", t, reviewed.status.as_str())?;

    let t = Instant::now();
    let sample = dir.join("document-to-sign.pdf");
    let (file, owner) = (sample.clone(), id.to_owned());
    super::off({
        let queue = Arc::clone(queue);
        move || {
            std::fs::write(&file, kiosk_sandbox::pdf::text_pdf(&["kiosk-agent demo", "A document to sign."]))?;
            Ok(queue.enqueue_documents(&owner, std::slice::from_ref(&file))?)
        }
    })
    .await?;
    let sent = worker.send_documents(id).await?;
    let owner = id.to_owned();
    let docs = blocking(queue, move |q| q.documents(&owner)).await?;
    let uid = docs.first().and_then(|d| d.uid.clone()).context("the document has no uid")?;
    step(out, &format!("queue + upload {sent} document"), t, &format!("uid {uid}"))?;

    let t = Instant::now();
    let contract = dir.join("contract.pdf");
    let n = client.download_contract(&ids, &contract).await?;
    step(out, "service contract", t, &format!("{n} bytes, PDF"))?;

    let t = Instant::now();
    client.generate_otp(&ids, false, cfg.sync.otp_wait).await?;
    let url = format!("http://{sandbox}/_sandbox/requests/{}/otp", ids.request_pk);
    let otp: serde_json::Value = reqwest::get(url).await?.json().await?;
    let code = otp["otp"].as_str().context("the sandbox has no OTP")?.to_owned();
    step(out, "OTP (read from the sandbox)", t, "sent by SMS")?;

    let t = Instant::now();
    let owner = id.to_owned();
    blocking(queue, move |q| q.record_sign_sent(&owner)).await?;
    client.sign(&ids, &Unlock::Otp(code), &cfg.signature, std::slice::from_ref(&uid)).await?;
    let reviewed = worker.refresh(id, &ids.request_pk).await?;
    // The sign call uploads the signature's image first and names it by its uid.
    step(out, "sign (image, page 0)", t, reviewed.status.as_str())?;

    let t = Instant::now();
    let signed = dir.join("signed.pdf");
    let n = client.download_document(&ids, &uid, true, &signed).await?;
    let (a, b) = (signed.clone(), sample.clone());
    if super::off(move || Ok(std::fs::read(a)? == std::fs::read(b)?)).await? {
        bail!("the signed document is the original");
    }
    step(out, "download signed PDF", t, &format!("{n} bytes, differs from the original"))?;

    let t = Instant::now();
    let backup = cfg.storage.document_backup_dir.join(&ids.request_pk);
    let made = backup.clone();
    super::off(move || Ok(std::fs::create_dir_all(made)?)).await?;
    // Sealed under the master key as `document delete` does: the downloads are shredded.
    for (signed, name) in [(false, format!("{uid}-original.pdf")), (true, format!("{uid}-signed.pdf"))] {
        let download = backup.join(format!(".{name}.download"));
        client.download_document(&ids, &uid, signed, &download).await?;
        let (q, dir) = (Arc::clone(queue), backup.clone());
        tokio::task::spawn_blocking(move || q.seal_backup(&download, &dir, &name)).await??;
    }
    client.delete_documents(&ids, None).await?;
    let owner = id.to_owned();
    blocking(queue, move |q| q.record_documents_deleted(&owner, None)).await?;
    step(out, "back up, then delete", t, "deleted on the server")?;

    let owner = id.to_owned();
    writeln!(out, "  final state {}", blocking(queue, move |q| q.show(&owner)).await?.state)?;
    Ok(())
}

/// A small PNG for the demo's visible signature: a dark scribble on white, 160×60.
pub fn write_signature_image(path: &Path) -> anyhow::Result<()> {
    let (width, height) = (160u32, 60u32);
    let pixels: Vec<u8> = (0..height)
        .flat_map(|y| {
            (0..width).map(move |x| {
                let wave = 30.0 + 18.0 * ((x as f64) / 12.0).sin();
                if (y as f64 - wave).abs() < 2.0 {
                    20
                } else {
                    255
                }
            })
        })
        .collect();
    std::fs::write(path, crate::evidence::media::encode_png(width, height, png::ColorType::Grayscale, &pixels)?)?;
    Ok(())
}
