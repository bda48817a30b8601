//! One enrollment's way through the API, one committed state at a time.
//!
//! Each step is committed to the queue only after the server confirmed it, so a crash repeats
//! at most the step in flight (at-least-once per step). The create is the one step the server
//! cannot deduplicate: an enrollment found in `creating` when a step starts had a create in
//! flight whose answer was never stored, which may have left an orphan request on the server;
//! that is recorded before the create is sent again, and looked for only after delivery
//! ([`super::orphans`]).
//!
//! A task that resumes an enrollment (after a restart or a failed attempt) reads the request's
//! server status before re-sending an upload, so an upload the server already applied is not
//! sent again. Every status read goes through [`super::action`]: terminal statuses end the
//! enrollment, unknown ones are polled within `sync.max_unknown_status_secs`.
//!
//! Errors are kept only after [`super::redact`] took this enrollment's personal data out of them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream;
use tokio::task::JoinHandle;

use super::action::{action, Action};
use super::events::{Bus, DaemonEvent};
use super::redact::Redactor;
use super::{blocking, streamed, Worker};
use crate::evidence::{create_body, evidences_body};
use crate::faults::crash_point;
use crate::oneshot::{OneShotError, RequestIds, RequestStatus};
use crate::queue::counters::Class;
use crate::queue::{now_ms, Job, QueueError, State};

/// Free space a create needs on the data directory's file system: its answer, the events and
/// the next steps' records, with the WAL's growth.
const CREATE_RESERVE: u64 = 1 << 20;

/// How a worker task ended for one enrollment.
#[derive(Debug)]
pub enum Result {
    /// Nothing more to send now (reached review, or failed permanently).
    Settled,
    /// A retryable failure; try again after this delay (backoff, or the server's Retry-After).
    /// `offline`: the server could not be reached at all, so the worker checks connectivity
    /// and retries at once when it is back.
    RetryAfter { delay: Duration, offline: bool },
    /// Waiting on purpose (the video outside `sync.video_windows`): nothing failed, nothing is
    /// stuck; look again after this delay.
    Deferred { delay: Duration },
}

/// Tells the bus an upload ended however it ends: sent, failed, or aborted at shutdown.
struct UploadEnds<'a> {
    bus: &'a Bus,
    id: &'a str,
}

impl Drop for UploadEnds<'_> {
    fn drop(&mut self) {
        self.bus.publish(DaemonEvent::UploadEnded { id: self.id.to_owned() });
    }
}

/// The database writes of one upload's progress, made off the connection's thread: at most one
/// under way (the next is skipped meanwhile), and none started once the upload is over, so that
/// a body the connection still polls after the request returned cannot write after the clear.
#[derive(Clone)]
struct ProgressWrites(Arc<Mutex<Option<Option<JoinHandle<()>>>>>);

impl ProgressWrites {
    fn new() -> Self {
        ProgressWrites(Arc::new(Mutex::new(Some(None))))
    }

    /// Runs `write` on a blocking thread unless one is still under way or the upload is over;
    /// says whether it started.
    fn start(&self, write: impl FnOnce() + Send + 'static) -> bool {
        let mut slot = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match slot.as_mut() {
            Some(last) if last.as_ref().is_none_or(JoinHandle::is_finished) => {
                *last = Some(tokio::task::spawn_blocking(write));
                true
            }
            _ => false,
        }
    }

    /// Ends the writes: none starts after this; the one under way, if any, to wait for.
    fn close(&self) -> Option<JoinHandle<()>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take().flatten()
    }
}

/// How often a video upload's progress is told on the bus.
const UPLOAD_EVENTS_EVERY: Duration = Duration::from_millis(250);

/// How many times the status is read after the video before the step is retried later.
const STATUS_READS: u32 = 5;

/// Why a step stopped: what the server or the transport said (`Api`), what the queue said
/// (`Queue`), or what the worker decided (the rest). The worker's own decisions are never
/// dressed up as server errors, so metrics and messages say what really happened.
pub(super) enum StepError {
    Api(OneShotError),
    Queue(QueueError),
    /// The server has not moved the request on yet: look again after the backoff. Counted as
    /// a retry of class `polling`, never as a server error.
    Poll {
        why: String,
    },
    /// The enrollment ends here (a terminal server status, or an unknown one for too long).
    Ended {
        to: State,
        reason: String,
    },
    /// The worker gives up on the enrollment for a reason of its own (`class`), e.g. the bound
    /// on re-sends; an operator must act.
    Failed {
        class: Class,
        reason: String,
    },
    /// The next step waits for a video window that opens after this delay.
    Deferred(Duration),
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

/// The end of an enrollment whose request the server ended.
fn ended(to: State, status: &RequestStatus) -> StepError {
    StepError::Ended { to, reason: format!("the server ended the request: status {status}") }
}

/// The operation a step from `state` sends (what a run of identical HTTP 500s is counted on).
fn operation(state: State) -> &'static str {
    match state {
        State::Queued | State::Creating => "create",
        State::Created => "evidences upload",
        State::EvidencesSent => "video upload",
        _ => "status read",
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
                    let redactor = self.redactor(&job.id).await;
                    // The delay is drawn here so that the time shown to operators is the time
                    // the worker will really try again (including the server's Retry-After).
                    let delay = self.backoff().delay(job.attempts + 1, e.retry_after(), &mut rand::thread_rng());
                    let (id, message) = (job.id.clone(), redactor.apply(&e.to_string()));
                    let repeat_key = e.repeated_500().map(|m| format!("{}: {}", operation(from), redactor.apply(m)));
                    let next = now_ms() + delay.as_millis() as i64;
                    tracing::info!(enrollment_id = %id, state = %from, error = %message, delay_ms = delay.as_millis() as u64, "retryable failure");
                    let class = e.class();
                    let recorded = {
                        let message = message.clone();
                        blocking(&self.queue, move |q| {
                            q.record_retry(&id, class, &message, next, repeat_key.as_deref())
                        })
                        .await
                    };
                    match recorded {
                        Ok((_, run)) if run >= self.config.sync.max_server_errors => {
                            let reason = format!(
                                "the server answered HTTP 500 {run} times in a row with the same message to the {} \
                                 (the old Optimizer uses 500 for bad billing credentials, an invalid country or \
                                 missing certificates): {message}",
                                operation(from)
                            );
                            return self.fail(&job, from, Class::ServerError, reason).await;
                        }
                        Ok(_) => {}
                        Err(qe) => tracing::error!(enrollment_id = %job.id, error = %qe, "cannot record a retry"),
                    }
                    return Result::RetryAfter { delay, offline: e.is_connectivity() };
                }
                Err(StepError::Api(e)) => {
                    let reason = self.redactor(&job.id).await.apply(&e.to_string());
                    return self.fail(&job, from, e.class(), reason).await;
                }
                Err(StepError::Poll { why }) => {
                    let delay = self.backoff().delay(job.attempts + 1, None, &mut rand::thread_rng());
                    let (id, next) = (job.id.clone(), now_ms() + delay.as_millis() as i64);
                    tracing::info!(enrollment_id = %job.id, state = %from, why = %why, delay_ms = delay.as_millis() as u64, "polling");
                    if let Err(qe) =
                        blocking(&self.queue, move |q| q.record_retry(&id, Class::Polling, &why, next, None)).await
                    {
                        tracing::error!(enrollment_id = %job.id, error = %qe, "cannot record a poll");
                    }
                    return Result::RetryAfter { delay, offline: false };
                }
                Err(StepError::Ended { to, reason }) => return self.finish(&job, job.state, to, reason).await,
                Err(StepError::Failed { class, reason }) => return self.fail(&job, from, class, reason).await,
                Err(StepError::Deferred(delay)) => {
                    let (id, next) = (job.id.clone(), now_ms() + delay.as_millis() as i64);
                    tracing::info!(enrollment_id = %job.id, state = %from, wait_secs = delay.as_secs(), "video waits for its window");
                    let detail = format!(
                        "the video waits for sync.video_windows (opens in {})",
                        humantime::format_duration(Duration::from_secs(delay.as_secs()))
                    );
                    if let Err(e) = blocking(&self.queue, move |q| q.record_deferred(&id, &detail, next)).await {
                        tracing::error!(enrollment_id = %job.id, error = %e, "cannot record the wait");
                    }
                    return Result::Deferred { delay };
                }
                Err(StepError::Queue(e @ (QueueError::Crypto(_) | QueueError::Damaged { .. })))
                    if !e.is_transient() =>
                {
                    return self.fail(&job, from, Class::Local, format!("local evidence is unreadable: {e}")).await;
                }
                Err(StepError::Queue(e)) => {
                    // A local database or file error: keep the enrollment and try later.
                    tracing::warn!(enrollment_id = %job.id, error = %e, "queue error; will retry");
                    let delay = self.backoff().delay(job.attempts + 1, None, &mut rand::thread_rng());
                    return Result::RetryAfter { delay, offline: false };
                }
            }
        }
    }

    /// This enrollment's personal data and the configuration's secrets, to be cut out of text
    /// before it is kept (only the secrets once the evidence is erased).
    async fn redactor(&self, id: &str) -> Redactor {
        let id = id.to_owned();
        let pii = blocking(&self.queue, move |q| q.load_pii(&id)).await.ok();
        match pii {
            Some(pii) => Redactor::new(&pii, &self.config.oneshot),
            None => Redactor::secrets_only(&self.config.oneshot),
        }
    }

    async fn finish(&self, job: &Job, from: State, to: State, reason: String) -> Result {
        if to == State::Failed {
            return self.fail(job, from, Class::EndedByServer, reason).await;
        }
        tracing::warn!(enrollment_id = %job.id, state = %to, from = %from, reason = %reason, "enrollment ended by the server");
        self.count(2);
        let id = job.id.clone();
        if let Err(e) = blocking(&self.queue, move |q| q.record_ended(&id, from, to, &reason)).await {
            tracing::error!(enrollment_id = %job.id, error = %e, "cannot record the end");
        }
        Result::Settled
    }

    async fn fail(&self, job: &Job, from: State, class: Class, reason: String) -> Result {
        self.count(1);
        tracing::error!(enrollment_id = %job.id, state = %from, class = %class, reason = %reason, "enrollment failed; operator action needed");
        let id = job.id.clone();
        if let Err(e) = blocking(&self.queue, move |q| q.record_failed(&id, from, class, &reason)).await {
            tracing::error!(enrollment_id = %job.id, error = %e, "cannot record the failure");
        }
        Result::Settled
    }

    async fn set_state(&self, job: &mut Job, to: State, detail: String) -> std::result::Result<(), QueueError> {
        let (id, from) = (job.id.clone(), job.state);
        blocking(&self.queue, move |q| q.advance(&id, from, to, &detail)).await?;
        tracing::info!(enrollment_id = %job.id, state = %to, from = %from, "state changed");
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
        match job.state {
            State::Queued => {
                self.room_for_a_create()?;
                let id = job.id.clone();
                job.create_floor = blocking(&self.queue, move |q| q.begin_create(&id)).await?;
                job.state = State::Creating;
                self.create(job).await?;
                Ok(true)
            }
            State::Creating => {
                tracing::warn!(enrollment_id = %job.id, "a previous create may have reached the server unanswered");
                let id = job.id.clone();
                blocking(&self.queue, move |q| q.record_possible_orphan(&id)).await?;
                job.orphan_scan = true;
                self.create(job).await?;
                Ok(true)
            }
            State::Created => {
                if resumed {
                    let (status, act) = self.observe(job).await?;
                    match act {
                        Action::Terminal(to) => return Err(ended(to, &status)),
                        Action::ResendVideo => {
                            // Evidences go first, so the part the server holds is ours.
                            let detail = format!("server already has the evidences ({status}); not re-sent");
                            self.set_state(job, State::EvidencesSent, detail).await?;
                            return Ok(true);
                        }
                        Action::InReview | Action::Approved | Action::Signed => {
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
                        Action::AwaitUploads | Action::ResendAll | Action::Unknown => {}
                    }
                }
                self.send_evidences(job).await?;
                Ok(true)
            }
            State::EvidencesSent => {
                if resumed {
                    let (status, act) = self.observe(job).await?;
                    match act {
                        Action::Terminal(to) => return Err(ended(to, &status)),
                        Action::InReview | Action::Approved | Action::Signed => {
                            let detail = format!("server already has the video ({status}); not re-sent");
                            self.set_state(job, State::VideoSent, detail).await?;
                            return Ok(true);
                        }
                        Action::AwaitUploads | Action::ResendAll => {
                            let detail = format!("server lost the evidences ({status}); re-sending");
                            self.set_state(job, State::Created, detail).await?;
                            return Ok(true);
                        }
                        Action::ResendVideo | Action::Unknown => {}
                    }
                }
                // Evidences went at any time; the video only inside a window.
                if let Some(wait) = self.config.sync.video_windows.wait_now() {
                    return Err(StepError::Deferred(wait));
                }
                self.send_video(job).await?;
                Ok(true)
            }
            State::VideoSent => self.confirm(job).await,
            _ => Ok(false),
        }
    }

    /// Reads the request's status, records it, and says what it means. A status that does not
    /// move the enrollment on — one no public source names, or `VIDEOPENDING` after both uploads
    /// were acknowledged — is polled with backoff until it has lasted
    /// `sync.max_unknown_status_secs`, then it fails the enrollment with a reason an operator
    /// can act on (re-sending evidence the server may still be processing would send it twice).
    async fn observe(&self, job: &Job) -> std::result::Result<(RequestStatus, Action), StepError> {
        let status = self.client.request_status(&Self::ids(job)?.request_pk).await?;
        let act = action(&status);
        let stalled = act == Action::Unknown || (job.state == State::VideoSent && act == Action::AwaitUploads);
        let (id, s) = (job.id.clone(), status.clone());
        let lasted = blocking(&self.queue, move |q| q.record_server_status(&id, &s, stalled)).await?;
        let Some(lasted) = lasted else { return Ok((status, act)) };
        let limit = self.config.sync.max_unknown_status;
        if lasted >= limit {
            let what = if act == Action::Unknown {
                format!("status {status}, which the agent does not know,")
            } else {
                format!("status {status} although both uploads were acknowledged")
            };
            return Err(StepError::Ended {
                to: State::Failed,
                reason: format!(
                    "the server has reported {what} for {}; check the request on the server \
                     (kiosk-agent request {} status), then `kiosk-agent queue retry {}` to follow it again",
                    humantime::format_duration(Duration::from_secs(lasted.as_secs())),
                    job.id,
                    job.id
                ),
            });
        }
        if act == Action::Unknown && job.state == State::VideoSent {
            return Err(Self::still_waiting(&status, limit));
        }
        Ok((status, act))
    }

    /// The "not there yet" of a status read that did not move the enrollment on.
    fn still_waiting(status: &RequestStatus, limit: Duration) -> StepError {
        let what = if action(status) == Action::Unknown { "is unknown" } else { "does not confirm the uploads yet" };
        StepError::Poll {
            why: format!("server status {status} {what}; polling for up to {}", humantime::format_duration(limit)),
        }
    }

    /// A create is sent only with room on the disk to record its answer: a request pk the
    /// server gave that could not be stored would make the next attempt create another (the
    /// first then only a possible orphan to look for).
    fn room_for_a_create(&self) -> std::result::Result<(), QueueError> {
        let dir = self.queue.dir();
        match crate::fsutil::available_bytes(dir) {
            Ok(free) if free < CREATE_RESERVE => Err(QueueError::Io {
                path: dir.to_owned(),
                error: std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    format!(
                        "{free} bytes free, under the {CREATE_RESERVE} a create needs to record its answer; \
                         no request is created until there is room"
                    ),
                ),
            }),
            _ => Ok(()),
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
        tracing::info!(enrollment_id = %job.id, request_pk = %created.ids.request_pk, "request created");
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
        let send_manifest = self.config.evidence.send_manifest;
        let body = blocking(&self.queue, move |q| {
            let pii = q.pii_to_send(&id, send_manifest)?;
            let mut images = Vec::new();
            for a in q.artifacts(&id)?.into_iter().filter(|a| a.name != "video") {
                let bytes = q.open_artifact(&id, &a.name)?.read_all()?;
                images.push((a.name, bytes));
            }
            Ok(serde_json::to_vec(&evidences_body(&pii, &images)).expect("JSON values serialize"))
        })
        .await?;
        match self.pacer.clone() {
            None => self.client.upload_evidences(&ids, body).await?,
            Some(pacer) => {
                // Paced: the body is handed over in 64 KiB pieces as the budget allows.
                let len = body.len() as u64;
                let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
                let feeder = tokio::task::spawn_blocking(move || {
                    for piece in body.chunks(crate::crypto::CHUNK) {
                        pacer.take(piece.len() as u64);
                        if tx.blocking_send(Ok(piece.to_vec())).is_err() {
                            return;
                        }
                    }
                });
                let stream = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
                let result = self.client.upload_evidences_body(&ids, reqwest::Body::wrap_stream(stream), len).await;
                feeder.abort();
                result?
            }
        }
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
        // Progress goes out on the bus (the API's event stream, the bars of `sync --once`) a few
        // times a second: bytes handed to the connection, at most a chunk or two ahead of the
        // wire. Other processes (`queue list`) see it through the database, about once a second,
        // written off the connection's thread; best effort: a failed or slow write never stops
        // or slows the upload (the next is skipped while one is still under way).
        let (bus, pacer) = (self.bus.clone(), self.pacer.clone());
        let (queue, upload_id) = (Arc::clone(&self.queue), job.id.clone());
        let start = upload_id.clone();
        let _ = blocking(&queue, move |q| q.record_upload_progress(&start, Some((0, len)))).await;
        bus.publish(DaemonEvent::Upload { id: upload_id.clone(), sent: 0, total: len });
        let recording = ProgressWrites::new();
        let writes = recording.clone();
        let (mut sent, mut noted) = (0u64, Instant::now());
        let mut told = noted;
        let (body, decrypting) = streamed::body(reader, move |chunk| {
            sent += chunk;
            if told.elapsed() >= UPLOAD_EVENTS_EVERY || sent == len {
                told = Instant::now();
                bus.publish(DaemonEvent::Upload { id: upload_id.clone(), sent, total: len });
            }
            if noted.elapsed() >= Duration::from_secs(1) {
                let (queue, id) = (Arc::clone(&queue), upload_id.clone());
                if writes.start(move || {
                    let _ = queue.record_upload_progress(&id, Some((sent, len)));
                }) {
                    noted = Instant::now();
                }
            }
            if sent > len / 2 && sent - chunk <= len / 2 {
                crash_point("video.mid_upload");
            }
            // sync.max_upload_rate: the chunk waits for the shared budget.
            pacer.as_ref().map(|pacer| pacer.reserve(chunk))
        });
        let ends = UploadEnds { bus: &self.bus, id: &job.id };
        let result = self.client.upload_video(&ids, body, len).await;
        drop(ends);
        // The last progress write lands before the progress is cleared, never after.
        if let Some(pending) = recording.close() {
            let _ = pending.await;
        }
        let id = job.id.clone();
        let _ = blocking(&self.queue, move |q| q.record_upload_progress(&id, None)).await;
        if let Err(reason) = decrypting.outcome() {
            return Err(QueueError::Damaged { id: job.id.clone(), detail: format!("artifact video: {reason}") }.into());
        }
        result?;
        crash_point("video.after_response");
        self.set_state(job, State::VideoSent, "video uploaded".into()).await?;
        Ok(())
    }

    /// Reads the server status after both uploads and maps it into the local state.
    async fn confirm(&self, job: &mut Job) -> std::result::Result<bool, StepError> {
        let mut last = None;
        for read in 0..STATUS_READS {
            if read > 0 {
                tokio::time::sleep(self.config.sync.status_poll).await;
            }
            let (status, act) = self.observe(job).await?;
            let reached = match act {
                Action::InReview => State::InReview,
                Action::Approved => State::Approved,
                Action::Signed => State::Signed,
                Action::Terminal(to) => return Err(ended(to, &status)),
                Action::ResendAll | Action::ResendVideo => {
                    last = Some((status, act));
                    break;
                }
                // Unknown statuses were turned into a retry (or the end) by `observe`.
                Action::AwaitUploads | Action::Unknown => {
                    if read + 1 == STATUS_READS {
                        return Err(Self::still_waiting(&status, self.config.sync.max_unknown_status));
                    }
                    continue;
                }
            };
            self.set_state(job, reached, format!("server status {status}")).await?;
            if reached == State::InReview {
                // Its status was just read: the first review read comes one poll later.
                let (id, next) = (job.id.clone(), now_ms() + self.config.sync.review_poll.as_millis() as i64);
                blocking(&self.queue, move |q| q.schedule_review(&id, Some(next))).await?;
            }
            self.count(0);
            self.erase_if_due(job).await?;
            return Ok(false);
        }
        // The server lost uploads it had acknowledged: re-send, a bounded number of times. After
        // VIDEOERROR both parts go again; after VIDEOINCOMPLETE the video, which is sent last.
        let Some((status, act)) = last else {
            return Err(Self::still_waiting(&RequestStatus::VideoPending, self.config.sync.max_unknown_status));
        };
        let id = job.id.clone();
        let resends = blocking(&self.queue, move |q| q.bump_resends(&id)).await?;
        if resends > self.config.sync.max_resends {
            return Err(StepError::Failed {
                class: Class::ResendLimit,
                reason: format!(
                    "server status {status} after {} re-sends (sync.max_resends); check the request on the server",
                    self.config.sync.max_resends
                ),
            });
        }
        let back = if act == Action::ResendVideo { State::EvidencesSent } else { State::Created };
        self.set_state(job, back, format!("server status {status}: re-send {resends}")).await?;
        Ok(true)
    }

    /// Erases the local evidence once its state is past the configured point, unless a lost
    /// create answer still has to be reconciled: that needs the customer's contact data, so
    /// the erasure then waits for the orphan check ([`super::orphans`]).
    async fn erase_if_due(&self, job: &Job) -> std::result::Result<(), QueueError> {
        if self.queue.should_erase_at(job.state) && !job.orphan_scan {
            let id = job.id.clone();
            // The key is destroyed and the spool gone from the queue when this returns; the
            // ciphertext's blocks are handed back in the background ([`Worker::discard_erased`]).
            blocking(&self.queue, move |q| q.erase_evidence_deferred(&id)).await?;
            self.erased.notify_one();
        }
        Ok(())
    }
}
