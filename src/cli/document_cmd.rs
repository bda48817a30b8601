//! `kiosk-agent document ID upload FILE…|list [--json]|contract --out F|signed UID --out F|
//! delete UID…|delete --all`.
//!
//! Uploads are queued first (encrypted, durable) and go out as soon as the request is approved:
//! at once when it already is and no daemon runs here, else with the daemon. Deleting backs the
//! documents up into `storage.document_backup_dir` first (the brief: keep copies), unless
//! `--no-backup`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use clap::Subcommand;

use super::Failure;
use crate::config::Config;
use crate::flow::{net, resolve, Flow, IdKind, Target};
use crate::oneshot::RequestStatus;
use crate::queue::{DocumentState, State};

#[derive(Debug, Subcommand)]
pub enum DocumentCommand {
    /// Queue PDFs to be signed; they go out once the request is approved.
    Upload {
        /// PDF files to sign.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// The enrollment's documents: file, uid (none while queued) and state.
    List {
        /// Print JSON: `[{uid, file, state}]`.
        #[arg(long)]
        json: bool,
    },
    /// Download the service contract.
    Contract {
        /// Where to write the contract (PDF).
        #[arg(long)]
        out: PathBuf,
    },
    /// Download a signed document (or, with --original, the document as uploaded).
    Signed {
        /// The document's uid (`document ID list`).
        uid: String,
        /// Where to write it (PDF).
        #[arg(long)]
        out: PathBuf,
        /// The document as uploaded instead of the signed one.
        #[arg(long)]
        original: bool,
    },
    /// Delete documents on the server, after backing them up.
    Delete {
        /// The documents' uids.
        uids: Vec<String>,
        /// Every document of the request.
        #[arg(long, conflicts_with = "uids")]
        all: bool,
        /// Do not back the documents up first.
        #[arg(long)]
        no_backup: bool,
    },
    /// Remove a document that never reached the server (queued, or failed because the server
    /// refused it): its key and sealed copy are erased; the record stays in the history.
    DeleteQueued {
        /// The document's file name, as `document ID list` shows it.
        file: String,
    },
    /// Read back a document `delete` backed up (sealed under the master key, never in clear).
    Backup {
        /// The document's uid.
        uid: String,
        /// Where to write it (PDF).
        #[arg(long)]
        out: PathBuf,
        /// The document as uploaded instead of the signed one.
        #[arg(long)]
        original: bool,
    },
}

fn local<'a>(target: &'a Target, what: &str) -> Result<&'a crate::queue::Summary, Failure> {
    target.enrollment.as_ref().ok_or_else(|| {
        Failure::bad_input(anyhow!(
            "{what} needs an enrollment of this kiosk; request {} is not one",
            target.ids.request_pk
        ))
    })
}

pub async fn run(config: &Config, id: &str, kind: IdKind, command: DocumentCommand) -> Result<ExitCode, Failure> {
    let flow = Flow::open(config)?;
    let target = resolve(&flow.queue, id, kind)?;
    match command {
        DocumentCommand::Upload { files } => {
            let e = local(&target, "queuing documents")?;
            if matches!(e.state, State::Refused | State::Cancelled | State::Failed | State::Signed) {
                return Err(Failure::bad_input(anyhow!(
                    "enrollment {} is {}; no documents can be added",
                    e.id,
                    e.state
                )));
            }
            let ids = flow.queue.enqueue_documents(&e.id, &files)?;
            say!("{} document(s) queued", ids.len());
            if e.state == State::Approved || flow.status(&target).await.ok() == Some(RequestStatus::EnrollReady) {
                match flow.send_documents(&target).await {
                    Ok(Some(n)) => say!("{n} document(s) uploaded"),
                    Ok(None) => say!("the daemon uploads them now"),
                    Err(f) => eprintln!("not uploaded yet ({}); they stay queued", f.error),
                }
            } else {
                flow.queue.poke_worker();
                say!("they go out once request {} is approved", target.ids.request_pk);
            }
        }
        DocumentCommand::List { json } => {
            let e = local(&target, "listing documents")?;
            let docs = flow.queue.documents(&e.id)?;
            if json {
                say!("{}", serde_json::to_string_pretty(&docs)?);
            } else {
                for d in &docs {
                    say!(
                        "{:<38} {:<10} {}{}",
                        d.uid.as_deref().unwrap_or("-"),
                        format!("{:?}", d.state).to_lowercase(),
                        d.file,
                        d.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
                    );
                }
            }
        }
        DocumentCommand::DeleteQueued { file } => {
            let e = local(&target, "removing a queued document")?;
            let removed = flow.queue.delete_queued_document(&e.id, &file)?;
            say!("{removed}: removed (it never reached the server)");
        }
        DocumentCommand::Contract { out } => {
            flow.require(&target, &[RequestStatus::EnrollReady, RequestStatus::Signed], "the contract").await?;
            let n = flow
                .client
                .download_contract(&target.ids, &out)
                .await
                .map_err(|e| net(e, "downloading the contract", true))?;
            say!("{}: {n} bytes", out.display());
        }
        DocumentCommand::Signed { uid, out, original } => {
            known_uids(&flow, &target, std::slice::from_ref(&uid))?;
            let n = flow
                .client
                .download_document(&target.ids, &uid, !original, &out)
                .await
                .map_err(|e| net(e, "downloading the document", true))?;
            say!("{}: {n} bytes", out.display());
        }
        DocumentCommand::Backup { uid, out, original } => {
            if !crate::oneshot::valid_uid(&uid) {
                return Err(Failure::bad_input(anyhow!("{uid:?} is not a document uid")));
            }
            let dir = config.storage.document_backup_dir.join(&target.ids.request_pk);
            let name = format!("{uid}-{}.pdf", if original { "original" } else { "signed" });
            let queue = std::sync::Arc::clone(&flow.queue);
            let read = tokio::task::spawn_blocking(move || queue.open_backup(&dir, &name))
                .await
                .map_err(|e| anyhow!("backup task: {e}"))?;
            let bytes = read.map_err(|e| {
                Failure::bad_input(anyhow!("no readable backup of {uid} for request {}: {e}", target.ids.request_pk))
            })?;
            crate::cli::capture_args::write_durably(&out, &bytes)?;
            say!("{}: {} bytes", out.display(), bytes.len());
        }
        DocumentCommand::Delete { uids, all, no_backup } => {
            if uids.is_empty() && !all {
                return Err(Failure::bad_input(anyhow!("document delete: name the uids, or --all")));
            }
            let uids = if all { all_uids(&flow, &target)? } else { uids };
            known_uids(&flow, &target, &uids)?;
            if !no_backup {
                let dir = config.storage.document_backup_dir.join(&target.ids.request_pk);
                backup(&flow, &target, &uids, &dir).await?;
                say!("backed up into {}", dir.display());
            }
            if all {
                flow.client.delete_documents(&target.ids, None).await.map_err(|e| net(e, "deleting", true))?;
            } else {
                for uid in &uids {
                    flow.client.delete_documents(&target.ids, Some(uid)).await.map_err(|e| net(e, "deleting", true))?;
                }
            }
            if let Some(e) = &target.enrollment {
                if all {
                    flow.queue.record_documents_deleted(&e.id, None)?;
                } else {
                    for uid in &uids {
                        flow.queue.record_documents_deleted(&e.id, Some(uid))?;
                    }
                }
            }
            say!("{} document(s) deleted on the server", uids.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The uploaded documents of a local enrollment (for `--all`); a remote request needs uids.
fn all_uids(flow: &Flow, target: &Target) -> Result<Vec<String>, Failure> {
    let e = local(target, "delete --all")?;
    Ok(flow
        .queue
        .documents(&e.id)?
        .into_iter()
        .filter(|d| d.state == DocumentState::Uploaded)
        .filter_map(|d| d.uid)
        .collect())
}

/// For a local enrollment every uid must be one of its uploaded documents (exit 2 otherwise).
fn known_uids(flow: &Flow, target: &Target, uids: &[String]) -> Result<(), Failure> {
    for uid in uids {
        if !crate::oneshot::valid_uid(uid) {
            return Err(Failure::bad_input(anyhow!("{uid:?} is not a document uid")));
        }
    }
    let Some(e) = &target.enrollment else { return Ok(()) };
    let docs = flow.queue.documents(&e.id)?;
    for uid in uids {
        match docs.iter().find(|d| d.uid.as_deref() == Some(uid)) {
            Some(d) if d.state == DocumentState::Uploaded => {}
            Some(d) => return Err(Failure::bad_input(anyhow!("document {uid} is {:?}", d.state))),
            None => {
                return Err(Failure::bad_input(anyhow!(
                    "enrollment {} has no document {uid} (`kiosk-agent document {} list`)",
                    e.id,
                    e.id
                )))
            }
        }
    }
    Ok(())
}

/// Downloads each document (the signed one too, when there is one) and seals it into `dir`
/// (mode 0700) under the master key: the download lives in clear only until it is sealed.
async fn backup(flow: &Flow, target: &Target, uids: &[String], dir: &Path) -> Result<(), Failure> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow!("{}: {e}", dir.display()))?;
    // Signed documents are personal data: only the agent's user reads the backup.
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    for uid in uids {
        for signed in [false, true] {
            let name = format!("{uid}-{}.pdf", if signed { "signed" } else { "original" });
            let download = dir.join(format!(".{name}.download"));
            let downloaded = flow.client.download_document(&target.ids, uid, signed, &download).await;
            if downloaded.is_err() {
                // Whatever part of it arrived is not kept.
                let _ = crate::fsutil::shred_file(&download);
            }
            match downloaded {
                Ok(_) => {}
                // Not signed yet: only the original is kept.
                Err(e) if signed && e.is_not_found() => continue,
                Err(e) if signed => return Err(net(e, "backing up the signed document (nothing was deleted)", true)),
                Err(e) => return Err(net(e, "backing up (nothing was deleted)", true)),
            }
            let (queue, dir) = (std::sync::Arc::clone(&flow.queue), dir.to_owned());
            tokio::task::spawn_blocking(move || queue.seal_backup(&download, &dir, &name))
                .await
                .map_err(|e| anyhow!("backup task: {e}"))??;
        }
    }
    Ok(())
}
