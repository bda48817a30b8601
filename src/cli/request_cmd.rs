//! `kiosk-agent request ID status|approve|validate|refuse|cancel|video`, `otp ID` and
//! `sign ID`: the request on the server. ID is a local enrollment id or a request pk.
//!
//! Every operation reads the request's status first and refuses (exit 2, nothing changed) what
//! the server would refuse anyway: approving outside review, an OTP or a signature before
//! `ENROLLREADY`, anything on a refused or cancelled request. A failure of the network says
//! whether the step may simply be repeated.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::anyhow;
use clap::Subcommand;

use super::Failure;
use crate::config::{Config, RaoConfig};
use crate::oneshot::{valid_pk, Client, OneShotError, RequestIds, RequestStatus, Unlock};
use crate::queue::{Queue, State, Summary};
use crate::sync::Worker;

#[derive(Debug, Subcommand)]
pub enum RequestCommand {
    /// Read the request's status on the server (and move the local enrollment accordingly).
    Status,
    /// Approve the VideoID in review, with the RAO of `[rao]` (ENROLLREADY follows).
    Approve,
    /// The first step of two-step approval (old Optimizer only).
    Validate,
    /// Refuse the VideoID in review.
    Refuse {
        /// Why (required by the API; the customer may see it).
        #[arg(long)]
        reason: String,
    },
    /// Cancel the request on the server (`DELETE /request/{pk}`), e.g. an orphan left by a lost
    /// create answer. Nothing is ever cancelled without this command.
    Cancel,
    /// Download the request's video.
    Video {
        #[arg(long)]
        out: PathBuf,
    },
}

/// What an ID names: the request on the server, and the local enrollment when there is one.
pub struct Target {
    pub ids: RequestIds,
    pub enrollment: Option<Summary>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("ids", &self.ids).finish_non_exhaustive()
    }
}

/// Resolves an ID: a request pk (a local enrollment with that request, if any) or an enrollment.
pub fn resolve(queue: &Queue, id: &str) -> Result<Target, Failure> {
    let enrollment = if valid_pk(id) { queue.find_by_request_pk(id)? } else { Some(queue.show(id)?) };
    let ids = match &enrollment {
        Some(e) => RequestIds {
            request_pk: e.request_pk.clone().ok_or_else(|| {
                Failure::bad_input(anyhow!("enrollment {} has no request on the server yet (state {})", e.id, e.state))
            })?,
            videoid_pk: e.videoid_pk.clone(),
        },
        None => RequestIds { request_pk: id.to_owned(), videoid_pk: None },
    };
    Ok(Target { ids, enrollment })
}

/// The context of a flow command: configuration, queue, client, and a worker to apply statuses.
pub struct Flow {
    pub config: Config,
    pub queue: Arc<Queue>,
    pub client: Client,
    pub worker: Arc<Worker>,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow").finish_non_exhaustive()
    }
}

impl Flow {
    pub fn open(config: &Config) -> Result<Flow, Failure> {
        let queue = Arc::new(Queue::open(&config.storage)?);
        let client = Client::new(&config.oneshot)?;
        let worker = Worker::new(Arc::clone(&queue), client.clone(), config.clone());
        Ok(Flow { config: config.clone(), queue, client, worker })
    }

    /// Reads the status (and moves the local enrollment); refuses ended requests.
    pub async fn status(&self, target: &Target) -> Result<RequestStatus, Failure> {
        let status = match &target.enrollment {
            Some(e) => self.worker.refresh(&e.id, &target.ids.request_pk).await.map(|r| r.status),
            None => self.client.request_status(&target.ids.request_pk).await,
        }
        .map_err(|e| net(e, "reading the request's status", true))?;
        Ok(status)
    }

    /// Fails with exit 2 unless the request is in one of `allowed` (named for the message).
    pub async fn require(&self, target: &Target, allowed: &[RequestStatus], what: &str) -> Result<(), Failure> {
        let status = self.status(target).await?;
        if allowed.contains(&status) {
            return Ok(());
        }
        let expected: Vec<&str> = allowed.iter().map(RequestStatus::as_str).collect();
        Err(Failure::bad_input(anyhow!(
            "request {} is {status}; {what} needs {}",
            target.ids.request_pk,
            expected.join(" or ")
        )))
    }

    /// Records an operator's action on a request in the audit trail (the request pk is the
    /// server's number, not personal data).
    pub fn audit(&self, target: &Target, action: &str) -> Result<(), Failure> {
        let enrollment = target.enrollment.as_ref().map(|e| e.id.as_str());
        self.queue.audit(enrollment, &format!("{action}: request {}", target.ids.request_pk))?;
        Ok(())
    }

    pub fn rao(&self) -> Result<&RaoConfig, Failure> {
        self.config.rao.as_ref().ok_or_else(|| {
            Failure::bad_input(anyhow!(
                "no [rao] in the configuration: approve, validate and refuse need the RAO's id and a token_file, \
                 or username, password_file and pin_file"
            ))
        })
    }

    /// The videoid_pk the new generation keys approve and refuse by.
    fn videoid_known(&self, target: &Target) -> Result<(), Failure> {
        if self.config.oneshot.paths.approve.contains("{videoid_pk}") && target.ids.videoid_pk.is_none() {
            return Err(Failure::bad_input(anyhow!(
                "request {} was not created by this kiosk, so its videoid_pk (which the new Optimizer keys approve \
                 and refuse by) is unknown; use the enrollment id",
                target.ids.request_pk
            )));
        }
        Ok(())
    }

    /// Sends the enrollment's queued documents now if no daemon runs here; else wakes it.
    pub async fn send_documents(&self, target: &Target) -> Result<Option<usize>, Failure> {
        let Some(e) = &target.enrollment else { return Ok(None) };
        match self.queue.lock_worker() {
            Ok(_lock) => {
                let sent =
                    self.worker.send_documents(&e.id).await.map_err(|e| net(e, "sending the documents", true))?;
                Ok(Some(sent))
            }
            Err(_) => {
                self.queue.poke_worker();
                Ok(None)
            }
        }
    }
}

/// Turns a One-Shot error into an exit: refusals are bad input (2) with the server's words;
/// network and server trouble are 1 and say whether the step may simply be repeated.
pub fn net(e: OneShotError, doing: &str, repeatable: bool) -> Failure {
    if e.is_retryable() {
        let advice = if repeatable {
            "the step can be repeated safely: run the same command again"
        } else {
            "it may or may not have reached the server: check `kiosk-agent request ID status` before repeating it"
        };
        Failure { code: 1, error: anyhow!("{doing}: {e}; {advice}") }
    } else {
        Failure::bad_input(anyhow!("{doing}: {e}"))
    }
}

pub async fn run(config: &Config, id: &str, command: RequestCommand) -> Result<ExitCode, Failure> {
    let flow = Flow::open(config)?;
    let target = resolve(&flow.queue, id)?;
    let pk = target.ids.request_pk.clone();
    let in_review = [RequestStatus::VideoReview, RequestStatus::Validated, RequestStatus::VideoIdValidated];
    let action = match &command {
        RequestCommand::Status => None,
        RequestCommand::Approve => Some("approved"),
        RequestCommand::Validate => Some("validated"),
        RequestCommand::Refuse { .. } => Some("refused"),
        RequestCommand::Cancel => Some("cancelled"),
        RequestCommand::Video { .. } => Some("video downloaded"),
    };
    match command {
        RequestCommand::Status => {
            let status = flow.status(&target).await?;
            let local = match &target.enrollment {
                Some(e) => format!(" (enrollment {}: {})", e.id, flow.queue.show(&e.id)?.state),
                None => String::new(),
            };
            println!("request_pk {pk}: {status}{local}");
        }
        RequestCommand::Approve => {
            let rao = flow.rao()?.clone();
            flow.videoid_known(&target)?;
            flow.require(&target, &in_review, "approval").await?;
            flow.client.approve(&target.ids, &rao).await.map_err(|e| net(e, "approving", true))?;
            let status = flow.status(&target).await?;
            println!("request_pk {pk}: approved ({status})");
            match flow.send_documents(&target).await? {
                Some(n) if n > 0 => println!("{n} queued document(s) uploaded"),
                Some(_) => {}
                None if target.enrollment.is_some() => println!("queued documents go out with the daemon"),
                None => {}
            }
        }
        RequestCommand::Validate => {
            let rao = flow.rao()?.clone();
            flow.require(&target, &[RequestStatus::VideoReview], "validation").await?;
            flow.client.validate(&target.ids, &rao).await.map_err(|e| net(e, "validating", true))?;
            println!("request_pk {pk}: validated ({})", flow.status(&target).await?);
        }
        RequestCommand::Refuse { reason } => {
            if reason.trim().is_empty() {
                return Err(Failure::bad_input(anyhow!("--reason: must not be empty (the API requires a reason)")));
            }
            let rao = flow.rao()?.clone();
            flow.videoid_known(&target)?;
            flow.require(&target, &in_review, "refusal").await?;
            flow.client.refuse(&target.ids, &rao, &reason).await.map_err(|e| net(e, "refusing", true))?;
            println!("request_pk {pk}: refused ({})", flow.status(&target).await?);
        }
        RequestCommand::Cancel => {
            flow.client.cancel_request(&pk).await.map_err(|e| net(e, "cancelling", true))?;
            let noted = flow.queue.note_request_cancelled(&pk)?;
            println!(
                "request_pk {pk}: cancelled on the server{}",
                noted.map(|e| format!(" (noted in {e})")).unwrap_or_default()
            );
        }
        RequestCommand::Video { out } => {
            let max = config.evidence.max_video_bytes;
            let n = flow
                .client
                .download_video(&target.ids, &out, max)
                .await
                .map_err(|e| net(e, "downloading the video", true))?;
            println!("{}: {n} bytes", out.display());
        }
    }
    if let Some(action) = action {
        flow.audit(&target, action)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `kiosk-agent otp ID [--whatsapp]`.
pub async fn otp(config: &Config, id: &str, whatsapp: bool) -> Result<ExitCode, Failure> {
    let flow = Flow::open(config)?;
    let target = resolve(&flow.queue, id)?;
    flow.require(&target, &[RequestStatus::EnrollReady], "an OTP").await?;
    let wait = config.sync.otp_wait;
    flow.client.generate_otp(&target.ids, whatsapp, wait).await.map_err(|e| net(e, "generating the OTP", true))?;
    println!("request_pk {}: OTP sent by {}", target.ids.request_pk, if whatsapp { "WhatsApp" } else { "SMS" });
    flow.audit(&target, "OTP sent")?;
    Ok(ExitCode::SUCCESS)
}

/// `kiosk-agent sign ID --otp CODE` (or an external unlock).
pub async fn sign(config: &Config, id: &str, unlock: Unlock) -> Result<ExitCode, Failure> {
    let flow = Flow::open(config)?;
    let target = resolve(&flow.queue, id)?;
    flow.require(&target, &[RequestStatus::EnrollReady], "signing").await?;
    let uids: Vec<String> = match &target.enrollment {
        Some(e) => {
            let docs = flow.queue.documents(&e.id)?;
            let uploaded: Vec<String> = docs.iter().filter_map(|d| d.uid.clone()).collect();
            if uploaded.is_empty() {
                return Err(Failure::bad_input(anyhow!(
                    "enrollment {} has no uploaded document to sign (`kiosk-agent document {} list`)",
                    e.id,
                    e.id
                )));
            }
            uploaded
        }
        None => Vec::new(),
    };
    flow.client.sign(&target.ids, &unlock, &config.signature, &uids).await.map_err(|e| net(e, "signing", false))?;
    let status = flow.status(&target).await?;
    if let Some(e) = &target.enrollment {
        let state = flow.queue.show(&e.id)?.state;
        if state != State::Signed {
            tracing::info!(enrollment = %e.id, %status, "signed; the server reports the status asynchronously");
        }
    }
    println!("request_pk {}: signed ({status})", target.ids.request_pk);
    flow.audit(&target, "signed")?;
    Ok(ExitCode::SUCCESS)
}
