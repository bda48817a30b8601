//! `kiosk-agent request ID status|approve|validate|refuse|cancel|video`, `otp ID` and
//! `sign ID`: the request on the server. ID is a local enrollment id or a request pk.
//!
//! Every operation reads the request's status first and refuses (exit 2, nothing changed) what
//! the server would refuse anyway: approving outside review, an OTP or a signature before
//! `ENROLLREADY`, anything on a refused or cancelled request. A failure of the network says
//! whether the step may simply be repeated.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use clap::Subcommand;

use super::Failure;
use crate::config::Config;
use crate::flow::{net, resolve, Flow, IdKind};
use crate::oneshot::{OcrCorrection, RequestStatus, Unlock};
use crate::queue::State;

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
    /// Correct the request's OCR data before approval (`PUT /request/{pk}`): only the fields
    /// given change.
    Correct {
        /// The given name, as it should read.
        #[arg(long)]
        given_name: Option<String>,
        /// The first surname.
        #[arg(long)]
        surname_1: Option<String>,
        /// The second surname.
        #[arg(long)]
        surname_2: Option<String>,
        /// DD/MM/YYYY.
        #[arg(long)]
        birth_date: Option<String>,
        /// The ID document's number.
        #[arg(long)]
        serial_number: Option<String>,
        /// ISO 3166-1 alpha-2.
        #[arg(long)]
        country_name: Option<String>,
    },
    /// Cancel the request on the server (`DELETE /request/{pk}`), e.g. an orphan left by a lost
    /// create answer. Nothing is ever cancelled without this command.
    Cancel,
    /// Download the request's video.
    Video {
        /// Where to write the video (written durably; an existing file is replaced).
        #[arg(long)]
        out: PathBuf,
    },
}

pub async fn run(config: &Config, id: &str, kind: IdKind, command: RequestCommand) -> Result<ExitCode, Failure> {
    let flow = Flow::open(config)?;
    let target = resolve(&flow.queue, id, kind)?;
    let pk = target.ids.request_pk.clone();
    let in_review = [RequestStatus::VideoReview, RequestStatus::Validated, RequestStatus::VideoIdValidated];
    let action = match &command {
        RequestCommand::Status => None,
        RequestCommand::Approve => Some("approved"),
        RequestCommand::Validate => Some("validated"),
        RequestCommand::Refuse { .. } => Some("refused"),
        RequestCommand::Correct { .. } => None,
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
            say!("request_pk {pk}: {status}{local}");
        }
        RequestCommand::Approve => {
            let rao = flow.rao()?.clone();
            flow.videoid_known(&target)?;
            flow.require(&target, &in_review, "approval").await?;
            flow.client.approve(&target.ids, &rao).await.map_err(|e| net(e, "approving", true))?;
            let status = flow.status(&target).await?;
            say!("request_pk {pk}: approved ({status})");
            match flow.send_documents(&target).await? {
                Some(n) if n > 0 => say!("{n} queued document(s) uploaded"),
                Some(_) => {}
                None if target.enrollment.is_some() => say!("queued documents go out with the daemon"),
                None => {}
            }
        }
        RequestCommand::Validate => {
            let rao = flow.rao()?.clone();
            flow.require(&target, &[RequestStatus::VideoReview], "validation").await?;
            flow.client.validate(&target.ids, &rao).await.map_err(|e| net(e, "validating", true))?;
            say!("request_pk {pk}: validated ({})", flow.status(&target).await?);
        }
        RequestCommand::Refuse { reason } => {
            if reason.trim().is_empty() {
                return Err(Failure::bad_input(anyhow!("--reason: must not be empty (the API requires a reason)")));
            }
            let rao = flow.rao()?.clone();
            flow.videoid_known(&target)?;
            flow.require(&target, &in_review, "refusal").await?;
            flow.client.refuse(&target.ids, &rao, &reason).await.map_err(|e| net(e, "refusing", true))?;
            say!("request_pk {pk}: refused ({})", flow.status(&target).await?);
        }
        RequestCommand::Correct { given_name, surname_1, surname_2, birth_date, serial_number, country_name } => {
            let correction =
                OcrCorrection { given_name, surname_1, surname_2, birth_date, serial_number, country_name };
            correction
                .check()
                .map_err(|e| Failure::bad_input(anyhow!("--{}: {}", e.field.replace('_', "-"), e.rule)))?;
            flow.require(&target, &in_review, "a correction").await?;
            flow.client.update_request(&target.ids, &correction).await.map_err(|e| net(e, "correcting", true))?;
            let fields = correction.field_names().join(", ");
            say!("request_pk {pk}: corrected {fields}");
            // The audit trail names the fields, never their values (personal data).
            flow.audit(&target, &format!("corrected {fields}")).await?;
        }
        RequestCommand::Cancel => {
            flow.client.cancel_request(&pk).await.map_err(|e| net(e, "cancelling", true))?;
            let noted = flow.queue.note_request_cancelled(&pk)?;
            say!(
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
            say!("{}: {n} bytes", out.display());
        }
    }
    if let Some(action) = action {
        flow.audit(&target, action).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `kiosk-agent otp ID [--whatsapp]`.
pub async fn otp(config: &Config, id: &str, kind: IdKind, whatsapp: bool) -> Result<ExitCode, Failure> {
    let flow = Flow::open(config)?;
    let target = resolve(&flow.queue, id, kind)?;
    // No status gate of our own: after approval the request may read ENROLLREADY, DOCUPLOADED
    // or OTPGENERATED, and the server enforces the order itself (412, translated by `net`).
    let wait = config.sync.otp_wait;
    flow.client.generate_otp(&target.ids, whatsapp, wait).await.map_err(|e| net(e, "generating the OTP", true))?;
    say!("request_pk {}: OTP sent by {}", target.ids.request_pk, if whatsapp { "WhatsApp" } else { "SMS" });
    flow.audit(&target, "OTP sent").await?;
    Ok(ExitCode::SUCCESS)
}

/// `kiosk-agent sign ID --otp CODE` (or an external unlock).
pub async fn sign(config: &Config, id: &str, kind: IdKind, unlock: Unlock) -> Result<ExitCode, Failure> {
    let flow = Flow::open(config)?;
    let target = resolve(&flow.queue, id, kind)?;
    // The documents this kiosk uploaded (the old generation's appearance is per document);
    // with none, the server decides: it signs what the request holds, or says why not (412
    // before approval, "no documents" after).
    let uids: Vec<String> = match &target.enrollment {
        Some(e) => flow.queue.documents(&e.id)?.iter().filter_map(|d| d.uid.clone()).collect(),
        None => Vec::new(),
    };
    if let Some(e) = &target.enrollment {
        flow.queue.record_sign_sent(&e.id)?;
    }
    flow.client.sign(&target.ids, &unlock, &config.signature, &uids).await.map_err(|e| net(e, "signing", false))?;
    let status = flow.status(&target).await?;
    if let Some(e) = &target.enrollment {
        let state = flow.queue.show(&e.id)?.state;
        if state != State::Signed {
            tracing::info!(enrollment_id = %e.id, %status, "signed; the server reports the status asynchronously");
        }
    }
    say!("request_pk {}: signed ({status})", target.ids.request_pk);
    flow.audit(&target, "signed").await?;
    Ok(ExitCode::SUCCESS)
}
