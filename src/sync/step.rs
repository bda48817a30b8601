//! One enrollment's way through the API, one committed state at a time.
//!
//! Each step is committed to the queue only after the server confirmed it, so a crash repeats
//! at most the step in flight (at-least-once per step). The create is the one step the server
//! cannot deduplicate: an enrollment found in `creating` when a step starts had a create in
//! flight whose answer was never stored, which may have left an orphan request on the server;
//! that is recorded in the history before the create is sent again, and once the new request
//! exists the orphan is looked for and recorded with its request_pk ([`super::orphans`]).
//!
//! A task that resumes an enrollment (after a restart or a failed attempt) reads the request's
//! server status before re-sending an upload, so an upload the server already applied is not
//! sent again.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream;

use super::{blocking, Worker};
use crate::evidence::{create_body, evidences_body};
use crate::faults::crash_point;
use crate::oneshot::{OneShotError, RequestIds, RequestStatus};
use crate::queue::{now_ms, Job, QueueError, State};

/// How a worker task ended for one enrollment.
#[derive(Debug)]
pub enum Result {
    /// Nothing more to send now (reached review, or failed permanently).
    Settled,
    /// A retryable failure; try again after this delay (backoff, or the server's Retry-After).
    RetryAfter(Duration),
}

/// How many times the status is read after the video before the step is retried later.
const STATUS_READS: u32 = 5;

/// Why a step stopped.
pub(super) enum StepError {
    Api(OneShotError),
    Queue(QueueError),
}

impl From<OneShotError> for StepError {
    fn from(e: OneShotError) -> Self {
        StepError::Api(e)
    }
}
impl From<QueueError> for StepError {
    fn from(e: QueueError) -> Self {
        StepError::Queue(e)
    }
}

impl Worker {
    /// Advances `job` as far as it goes now, and records how it ended.
    pub(super) async fn advance(self: &Arc<Self>, mut job: Job) -> Result {
        // The first step of a task resumes where an earlier attempt (maybe in an earlier
        // process) stopped; later steps follow one this task saw confirmed.
        let mut resumed = true;
        loop {
            let from = job.state;
            match self.step(&mut job, resumed).await {
                Ok(true) => {
                    resumed = false;
                    continue;
                }
                Ok(false) => return Result::Settled,
                Err(StepError::Api(e)) if e.is_retryable() => {
                    // The delay is drawn here so that the time shown to operators is the time
                    // the worker will really try again (including the server's Retry-After).
                    let delay = self.backoff().delay(job.attempts + 1, e.retry_after(), &mut rand::thread_rng());
                    let (id, message) = (job.id.clone(), e.to_string());
                    let next = now_ms() + delay.as_millis() as i64;
                    tracing::info!(enrollment = %id, state = %from, error = %message, delay_ms = delay.as_millis() as u64, "retryable failure");
                    if let Err(qe) = blocking(&self.queue, move |q| q.record_retry(&id, &message, next)).await {
                        tracing::error!(enrollment = %job.id, error = %qe, "cannot record a retry");
                    }
                    return Result::RetryAfter(delay);
                }
                Err(StepError::Api(e)) => return self.fail(&job, from, e.to_string()).await,
                Err(StepError::Queue(e @ (QueueError::Crypto(_) | QueueError::Damaged { .. }))) => {
                    return self.fail(&job, from, format!("local evidence is unreadable: {e}")).await;
                }
                Err(StepError::Queue(e)) => {
                    // A local database or file error: keep the enrollment and try later.
                    tracing::warn!(enrollment = %job.id, error = %e, "queue error; will retry");
                    return Result::RetryAfter(self.backoff().delay(job.attempts + 1, None, &mut rand::thread_rng()));
                }
            }
        }
    }

    async fn fail(&self, job: &Job, from: State, reason: String) -> Result {
        tracing::error!(enrollment = %job.id, state = %from, reason = %reason, "enrollment failed; operator action needed");
        let id = job.id.clone();
        if let Err(e) = blocking(&self.queue, move |q| q.record_failed(&id, from, &reason)).await {
            tracing::error!(enrollment = %job.id, error = %e, "cannot record the failure");
        }
        Result::Settled
    }

    async fn set_state(&self, job: &mut Job, to: State, detail: String) -> std::result::Result<(), QueueError> {
        let (id, from) = (job.id.clone(), job.state);
        blocking(&self.queue, move |q| q.advance(&id, from, to, &detail)).await?;
        tracing::info!(enrollment = %job.id, from = %from, to = %to, "state");
        job.state = to;
        Ok(())
    }

    fn ids(job: &Job) -> std::result::Result<RequestIds, QueueError> {
        let request_pk = job.request_pk.clone().ok_or_else(|| QueueError::Damaged {
            id: job.id.clone(),
            detail: format!("state {} without a request_pk", job.state),
        })?;
        Ok(RequestIds { request_pk, videoid_pk: job.videoid_pk.clone() })
    }

    /// Takes one step; `Ok(true)` when another step follows at once.
    async fn step(self: &Arc<Self>, job: &mut Job, resumed: bool) -> std::result::Result<bool, StepError> {
        if job.orphan_scan && job.request_pk.is_some() {
            self.scan_orphans(job).await?;
        }
        match job.state {
            State::Queued => {
                let id = job.id.clone();
                job.create_floor = blocking(&self.queue, move |q| q.begin_create(&id)).await?;
                job.state = State::Creating;
                self.create(job).await?;
                Ok(true)
            }
            State::Creating => {
                tracing::warn!(enrollment = %job.id, "a previous create may have reached the server unanswered");
                let id = job.id.clone();
                blocking(&self.queue, move |q| q.record_possible_orphan(&id)).await?;
                job.orphan_scan = true;
                self.create(job).await?;
                Ok(true)
            }
            State::Created => {
                if resumed {
                    let status = self.client.request_status(&Self::ids(job)?.request_pk).await?;
                    match status {
                        RequestStatus::VideoIncomplete => {
                            // Evidences go first, so the part the server holds is ours.
                            let detail = "server already has the evidences (VIDEOINCOMPLETE); not re-sent".to_owned();
                            self.set_state(job, State::EvidencesSent, detail).await?;
                            return Ok(true);
                        }
                        RequestStatus::VideoReview | RequestStatus::EnrollReady => {
                            self.set_state(
                                job,
                                State::EvidencesSent,
                                format!("server already has the evidences ({status})"),
                            )
                            .await?;
                            self.set_state(job, State::VideoSent, format!("server already has the video ({status})"))
                                .await?;
                            return Ok(true);
                        }
                        _ => {}
                    }
                }
                self.send_evidences(job).await?;
                Ok(true)
            }
            State::EvidencesSent => {
                if resumed {
                    let status = self.client.request_status(&Self::ids(job)?.request_pk).await?;
                    match status {
                        RequestStatus::VideoReview | RequestStatus::EnrollReady => {
                            self.set_state(
                                job,
                                State::VideoSent,
                                format!("server already has the video ({status}); not re-sent"),
                            )
                            .await?;
                            return Ok(true);
                        }
                        RequestStatus::VideoPending => {
                            self.set_state(
                                job,
                                State::Created,
                                "server lost the evidences (VIDEOPENDING); re-sending".into(),
                            )
                            .await?;
                            return Ok(true);
                        }
                        _ => {}
                    }
                }
                self.send_video(job).await?;
                Ok(true)
            }
            State::VideoSent => self.confirm(job).await,
            _ => Ok(false),
        }
    }

    async fn create(&self, job: &mut Job) -> std::result::Result<(), StepError> {
        let id = job.id.clone();
        let pii = blocking(&self.queue, move |q| q.load_pii(&id)).await?;
        let body = create_body(&self.config.oneshot, &pii);
        crash_point("create.before_request");
        let created = match self.client.create(&body).await {
            Ok(c) => c,
            Err(e) if e.certainly_not_applied() && e.is_retryable() => {
                // Nothing reached the server, so no orphan is possible: back to `queued`.
                let id = job.id.clone();
                blocking(&self.queue, move |q| q.revert_creating(&id)).await?;
                job.state = State::Queued;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        crash_point("create.after_response");
        let (id, ids) = (job.id.clone(), created.ids.clone());
        blocking(&self.queue, move |q| q.record_created(&id, &ids.request_pk, ids.videoid_pk.as_deref())).await?;
        tracing::info!(enrollment = %job.id, request_pk = %created.ids.request_pk, "request created");
        job.request_pk = Some(created.ids.request_pk);
        job.videoid_pk = created.ids.videoid_pk;
        job.state = State::Created;
        job.attempts = 0;
        Ok(())
    }

    async fn send_evidences(&self, job: &mut Job) -> std::result::Result<(), StepError> {
        let ids = Self::ids(job)?;
        let id = job.id.clone();
        // Decrypting images and encoding Base64 are CPU and file work: off the executor.
        let body = blocking(&self.queue, move |q| {
            let pii = q.load_pii(&id)?;
            let mut images = Vec::new();
            for a in q.artifacts(&id)?.into_iter().filter(|a| a.name != "video") {
                let bytes = q.open_artifact(&id, &a.name)?.read_all()?;
                images.push((a.name, bytes));
            }
            Ok(serde_json::to_vec(&evidences_body(&pii, &images)).expect("JSON values serialize"))
        })
        .await?;
        self.client.upload_evidences(&ids, body).await?;
        crash_point("evidences.after_response");
        self.set_state(job, State::EvidencesSent, "evidences uploaded".into()).await?;
        Ok(())
    }

    async fn send_video(&self, job: &mut Job) -> std::result::Result<(), StepError> {
        let ids = Self::ids(job)?;
        let id = job.id.clone();
        let (reader, len) = blocking(&self.queue, move |q| {
            let len = q
                .artifacts(&id)?
                .into_iter()
                .find(|a| a.name == "video")
                .map(|a| a.size)
                .ok_or_else(|| QueueError::Damaged { id: id.clone(), detail: "no video artifact".into() })?;
            Ok((q.open_artifact(&id, "video")?, len))
        })
        .await?;
        // A dedicated blocking thread decrypts chunk by chunk into a small bounded channel, so
        // memory stays at a few chunks whatever the video's size.
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
        // The decrypting thread returns the reason it stopped early, if it did: a chunk that
        // fails to decrypt means damaged evidence, which no retry can fix.
        let decrypt = tokio::task::spawn_blocking(move || -> std::result::Result<(), String> {
            let mut reader = reader;
            let mut sent = 0u64;
            loop {
                match reader.next_chunk() {
                    Ok(Some(chunk)) => {
                        sent += chunk.len() as u64;
                        if sent > len / 2 && sent - (chunk.len() as u64) <= len / 2 {
                            crash_point("video.mid_upload");
                        }
                        if tx.blocking_send(Ok(chunk)).is_err() {
                            return Ok(()); // the upload ended first; its error tells why
                        }
                    }
                    Ok(None) => return Ok(()),
                    Err(e) => {
                        let reason = e.to_string();
                        let _ = tx.blocking_send(Err(std::io::Error::other(reason.clone())));
                        return Err(reason);
                    }
                }
            }
        });
        let body =
            reqwest::Body::wrap_stream(stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
            ));
        let result = self.client.upload_video(&ids, body, len).await;
        match decrypt.await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => {
                return Err(
                    QueueError::Damaged { id: job.id.clone(), detail: format!("artifact video: {reason}") }.into()
                );
            }
            Err(_) => return Err(OneShotError::Local("video decryption task failed".into()).into()),
        }
        result?;
        crash_point("video.after_response");
        self.set_state(job, State::VideoSent, "video uploaded".into()).await?;
        Ok(())
    }

    /// Reads the server status after both uploads and maps it into the local state.
    async fn confirm(&self, job: &mut Job) -> std::result::Result<bool, StepError> {
        let request_pk = Self::ids(job)?.request_pk;
        let mut status = RequestStatus::VideoPending;
        for read in 0..STATUS_READS {
            if read > 0 {
                tokio::time::sleep(self.config.sync.status_poll).await;
            }
            status = self.client.request_status(&request_pk).await?;
            let (id, s) = (job.id.clone(), status.clone());
            blocking(&self.queue, move |q| q.record_server_status(&id, &s)).await?;
            match status {
                RequestStatus::VideoReview => {
                    self.set_state(job, State::InReview, "server status VIDEOREVIEW".into()).await?;
                    self.erase_if_due(job).await?;
                    return Ok(false);
                }
                RequestStatus::EnrollReady => {
                    self.set_state(job, State::Approved, "server status ENROLLREADY".into()).await?;
                    self.erase_if_due(job).await?;
                    return Ok(false);
                }
                RequestStatus::VideoError | RequestStatus::VideoIncomplete => break,
                _ => {}
            }
        }
        match status {
            // The server lost an upload: re-send, a bounded number of times. After VIDEOERROR
            // both parts go again; after VIDEOINCOMPLETE the video, which is sent last.
            RequestStatus::VideoError | RequestStatus::VideoIncomplete => {
                let id = job.id.clone();
                let resends = blocking(&self.queue, move |q| q.bump_resends(&id)).await?;
                if resends > self.config.sync.max_resends {
                    return Err(OneShotError::Rejected {
                        status: 0,
                        details: format!("server status {status} after {} re-sends", self.config.sync.max_resends),
                    }
                    .into());
                }
                let back = if status == RequestStatus::VideoError { State::Created } else { State::EvidencesSent };
                self.set_state(job, back, format!("server status {status}: re-send {resends}")).await?;
                Ok(true)
            }
            other => Err(OneShotError::Server {
                status: 0,
                details: format!("server has not confirmed the uploads yet (status {other})"),
                retry_after: None,
            }
            .into()),
        }
    }

    async fn erase_if_due(&self, job: &Job) -> std::result::Result<(), QueueError> {
        if self.queue.should_erase_at(job.state) {
            let id = job.id.clone();
            blocking(&self.queue, move |q| q.erase_evidence(&id)).await?;
        }
        Ok(())
    }
}
