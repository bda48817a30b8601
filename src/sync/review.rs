//! After delivery: following requests in review until the server decides, and sending the
//! documents queued for signing once a request is approved.
//!
//! A request in review is read on a slow cadence — every `sync.review_poll_secs` during its
//! first hour in review, then every `sync.review_poll_late_secs`, for at most
//! `sync.review_follow_days` — or at once when a webhook or an operator's command says it
//! changed. `ENROLLREADY` (or later) moves it to `approved` (its queued documents go out, and
//! its evidence is erased when `storage.erase_after = "approved"`); a terminal status ends it
//! with the status as the reason.

use std::sync::Arc;
use std::time::Duration;

use super::action::{action, Action};
use super::{blocking, redact, streamed, Worker};
use crate::faults::crash_point;
use crate::oneshot::{DocumentBody, OneShotError, RequestIds, RequestStatus};
use crate::queue::{now_ms, QueueError, State};

/// How far along the review an enrollment is after a status read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reviewed {
    pub status: RequestStatus,
    pub state: State,
}

/// Documents go out at most this many per request (the API's limit per call).
const DOCUMENTS_PER_CALL: usize = 10;
/// ... and at most this many bytes together (one document of the largest size goes alone):
/// each call holds its documents decrypted in memory, so this bounds the worker's memory.
const DOCUMENT_BYTES_PER_CALL: u64 = crate::queue::MAX_DOCUMENT_BYTES;

/// `docs` (`(id, size)`, in order) cut into calls of at most `count` documents and `bytes`
/// bytes, a document larger than `bytes` alone in its call.
fn batches(docs: &[(String, u64)], count: usize, bytes: u64) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut total = 0u64;
    for (id, size) in docs {
        let fits = out.last().is_some_and(|b| b.len() < count && total + size <= bytes);
        if fits {
            total += size;
            out.last_mut().expect("checked").push(id.clone());
        } else {
            total = *size;
            out.push(vec![id.clone()]);
        }
    }
    out
}

/// Why a review read or a document upload stopped: what the server or the transport said, or
/// what the queue said. A busy or damaged database stays a queue error (its own exit code and
/// HTTP status), never a "One-Shot" error.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error(transparent)]
    Api(#[from] OneShotError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The enrollment is not where the step needs it (documents before approval).
    #[error("{0}")]
    NotReady(String),
}

impl ReviewError {
    /// Whether the network, not the server or this kiosk, failed.
    pub fn is_connectivity(&self) -> bool {
        matches!(self, ReviewError::Api(e) if e.is_connectivity())
    }
}

impl Worker {
    /// Everything that follows delivery, beside the uploads: review reads that are due, queued
    /// documents of approved requests, orphan reconciliation. Returns when to come back. A
    /// batch run (`all_reviews`) reads every followed request in review, due or not.
    pub(super) async fn after_delivery(self: &Arc<Self>, all_reviews: bool) -> Result<Option<Duration>, QueueError> {
        let reviews = self.follow_reviews(all_reviews).await?;
        let horizon = 2 * self.config.sync.backoff_cap.as_millis() as i64;
        for id in blocking(&self.queue, move |q| q.enrollments_with_documents_to_send(horizon)).await? {
            if let Err(e) = self.send_documents(&id).await {
                tracing::info!(enrollment_id = %id, error = %redact::Redactor::generic().apply(&e.to_string()), "documents not sent yet");
            }
        }
        let orphans = self.reconcile_orphans().await?;
        // Documents waiting their backoff are due then (never later than the backoff's cap:
        // a clock that went back since planned anything further).
        let cap = self.config.sync.backoff_cap;
        let documents = blocking(&self.queue, |q| q.next_document_attempt())
            .await?
            .map(|at| Duration::from_millis((at - now_ms()).max(0) as u64).min(cap));
        Ok([reviews, orphans, documents].into_iter().flatten().min())
    }

    async fn follow_reviews(self: &Arc<Self>, all: bool) -> Result<Option<Duration>, QueueError> {
        // A batch run reads every followed request in review, except those whose status this
        // worker read itself a moment ago (they just reached review).
        let until = if all { i64::MAX } else { now_ms() };
        let started = self.started_ms;
        // The longest a read is ever planned ahead, twice: anything further was planned by a
        // clock that went back since.
        let horizon = 2 * self.config.sync.review_poll_late.as_millis() as i64;
        let due =
            blocking(&self.queue, move |q| q.reviews_due(until, if all { started } else { i64::MAX }, horizon)).await?;
        for (job, in_review) in due {
            let Some(pk) = job.request_pk.clone() else { continue };
            // The read says where the enrollment now is; only one still in review is planned again.
            let still_in_review = match self.refresh(&job.id, &pk).await {
                Ok(r) => r.state == State::InReview,
                Err(e) if e.is_connectivity() => {
                    // The network is gone: the rest can wait for the next round.
                    tracing::debug!(enrollment_id = %job.id, error = %redact::Redactor::generic().apply(&e.to_string()), "review read failed");
                    return Ok(Some(self.config.sync.review_poll));
                }
                Err(e) => {
                    tracing::info!(enrollment_id = %job.id, error = %redact::Redactor::generic().apply(&e.to_string()), "review read failed; next round");
                    true
                }
            };
            if still_in_review {
                let (id, next) = (job.id.clone(), self.next_review(in_review));
                blocking(&self.queue, move |q| q.schedule_review(&id, next)).await?;
            }
        }
        let next = blocking(&self.queue, |q| q.next_review_at()).await?;
        // Never further than the longest planned wait (a clock that went back planned the rest).
        Ok(next.map(|at| Duration::from_millis((at - now_ms()).max(0) as u64).min(self.config.sync.review_poll_late)))
    }

    /// When an enrollment that has been in review `in_review` ms (waited time, not a
    /// difference of wall-clock dates) is read next, if at all.
    fn next_review(&self, in_review: i64) -> Option<i64> {
        let now = now_ms();
        let in_review = Duration::from_millis(in_review.max(0) as u64);
        let sync = &self.config.sync;
        if in_review >= sync.review_follow {
            return None;
        }
        let step = if in_review < Duration::from_secs(3600) { sync.review_poll } else { sync.review_poll_late };
        Some(now + step.as_millis() as i64)
    }

    /// Reads a request's status and moves the enrollment accordingly: the worker's review
    /// rounds, `kiosk-agent request ID status` and the webhook receiver all come through here.
    pub async fn refresh(&self, id: &str, request_pk: &str) -> Result<Reviewed, ReviewError> {
        let status = self.client.request_status(request_pk).await?;
        Ok(self.apply_status(id, status).await?)
    }

    /// Moves an enrollment after a status it did not read itself (a webhook, or a read).
    pub async fn apply_status(&self, id: &str, status: RequestStatus) -> Result<Reviewed, QueueError> {
        let (id, status_c) = (id.to_owned(), status.clone());
        let state = blocking(&self.queue, move |q| {
            let shown = q.show(&id)?;
            let from = shown.state;
            q.record_server_status(&id, &status_c, false)?;
            // `ISSUED` after this kiosk's sign call: the certificate was issued for the signature.
            let signed_here = status_c == RequestStatus::Issued && q.sign_sent(&id)?;
            let act = if signed_here { Action::Signed } else { action(&status_c) };
            let to = match act {
                Action::Approved if matches!(from, State::InReview | State::VideoSent) => Some(State::Approved),
                Action::Signed if matches!(from, State::InReview | State::Approved | State::VideoSent) => {
                    Some(State::Signed)
                }
                Action::Terminal(end) if matches!(from, State::InReview | State::Approved) => {
                    q.record_ended(&id, from, end, &format!("the server ended the request: status {status_c}"))?;
                    return Ok(end);
                }
                _ => None,
            };
            match to {
                Some(to) => {
                    q.advance(&id, from, to, &format!("server status {status_c}"))?;
                    if q.should_erase_at(to) && !shown.erased && !shown.orphan_check_pending {
                        q.erase_evidence(&id)?;
                    }
                    Ok(to)
                }
                None => Ok(from),
            }
        })
        .await?;
        Ok(Reviewed { status, state })
    }

    /// Sends the queued documents of an approved enrollment (at least once each; see
    /// [`crate::queue::DocumentState`]). Returns how many went out.
    pub async fn send_documents(&self, id: &str) -> Result<usize, ReviewError> {
        let (job, pending) = {
            let id = id.to_owned();
            blocking(&self.queue, move |q| {
                let shown = q.show(&id)?;
                let docs: Vec<(String, u64)> = q
                    .documents(&id)?
                    .into_iter()
                    .filter(|d| {
                        matches!(d.state, crate::queue::DocumentState::Queued | crate::queue::DocumentState::Uploading)
                    })
                    .map(|d| (d.id, d.size))
                    .collect();
                Ok((shown, docs))
            })
            .await?
        };
        if job.state != State::Approved {
            return Err(ReviewError::NotReady(format!(
                "the request is {}; documents go out once it is approved",
                job.state
            )));
        }
        let ids = RequestIds {
            request_pk: job.request_pk.clone().ok_or_else(|| ReviewError::NotReady("no request_pk".into()))?,
            videoid_pk: job.videoid_pk.clone(),
        };
        let mut sent = 0;
        for batch in batches(&pending, DOCUMENTS_PER_CALL, DOCUMENT_BYTES_PER_CALL) {
            let outgoing = {
                let batch = batch.clone();
                blocking(&self.queue, move |q| q.begin_document_upload(&batch)).await?
            };
            // Each document is decrypted as the connection takes it, never held whole.
            let (mut files, mut decrypting) = (Vec::new(), Vec::new());
            for doc in outgoing {
                let (body, task) = streamed::body(doc.reader, |_| None);
                files.push(DocumentBody { name: doc.name.clone(), body, len: doc.size });
                decrypting.push((doc.name, task));
            }
            crash_point("document.before_upload");
            let uploaded = self.client.upload_documents(&ids, files).await;
            for (name, task) in decrypting {
                if let Err(reason) = task.outcome() {
                    return Err(QueueError::Damaged {
                        id: id.to_owned(),
                        detail: format!("document {name}: {reason}"),
                    }
                    .into());
                }
            }
            let uploaded = match uploaded {
                Ok(uploaded) => uploaded,
                // Refused for good (a 4xx): these documents are failed with the server's words
                // (redacted) and sent no more; the batch after them still goes.
                Err(e @ OneShotError::Rejected { .. }) => {
                    let reason = redact::Redactor::generic().apply(&e.to_string());
                    tracing::warn!(enrollment_id = %id, reason = %reason, "the server refused documents; failed");
                    let failed = batch.clone();
                    blocking(&self.queue, move |q| q.record_documents_refused(&failed, &reason)).await?;
                    continue;
                }
                // A passing failure: these documents wait their backoff, like an enrollment.
                Err(e) => {
                    let reason = redact::Redactor::generic().apply(&e.to_string());
                    let (waiting, backoff) = (batch.clone(), self.backoff());
                    blocking(&self.queue, move |q| {
                        q.record_document_attempt(&waiting, &reason, |attempts| {
                            backoff.delay(attempts, None, &mut rand::thread_rng())
                        })
                    })
                    .await?;
                    return Err(e.into());
                }
            };
            crash_point("document.after_response");
            // The answer names each file by the multipart field it came in: `file`, `file2`, …
            for doc in uploaded {
                let index = doc.field.strip_prefix("file").and_then(|n| n.parse::<usize>().ok()).map_or(0, |n| n - 1);
                let Some(doc_id) = batch.get(index).cloned() else { continue };
                blocking(&self.queue, move |q| q.record_document_uploaded(&doc_id, &doc.uid, doc.digest.as_deref()))
                    .await?;
                sent += 1;
            }
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::batches;

    #[test]
    fn document_calls_are_bounded_in_count_and_bytes() {
        let docs = |sizes: &[u64]| sizes.iter().enumerate().map(|(i, s)| (i.to_string(), *s)).collect::<Vec<_>>();
        let ids = |b: Vec<Vec<String>>| b.into_iter().map(|c| c.join(",")).collect::<Vec<_>>();
        assert_eq!(ids(batches(&docs(&[1, 1, 1, 1, 1]), 2, 100)), ["0,1", "2,3", "4"]);
        assert_eq!(ids(batches(&docs(&[60, 30, 20, 100, 5]), 10, 100)), ["0,1", "2", "3", "4"]);
        assert_eq!(ids(batches(&docs(&[150, 1]), 10, 100)), ["0", "1"], "a large one goes alone");
        assert!(batches(&[], 10, 100).is_empty());
    }
}
