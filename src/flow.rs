//! The signing flow's shared steps, used by the CLI (`request`, `document`, `otp`, `sign`) and
//! the API alike: what an ID names, the request's status read before every operation, the
//! RAO, the audit record, and what a One-Shot failure means for the person who asked.

use std::sync::Arc;

use anyhow::anyhow;

use crate::config::{Config, Operation, RaoConfig};
use crate::failure::Failure;
use crate::oneshot::{valid_pk, Client, OneShotError, RequestIds, RequestStatus};
use crate::queue::{Queue, Summary};
use crate::sync::{blocking, ReviewError, Worker};

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

/// What a flow command's ID is meant to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// One of this kiosk's enrollments (the API always; the CLI by default): a raw request pk
    /// is refused, so nothing acts on a request of another data directory or kiosk by mistake.
    Enrollment,
    /// A request pk named on purpose (the CLI's `--pk`), e.g. an orphan request; the local
    /// enrollment with that request, if there is one, is found too.
    RequestPk,
}

/// Resolves an ID of `kind` to its request (and local enrollment).
pub fn resolve(queue: &Queue, id: &str, kind: IdKind) -> Result<Target, Failure> {
    let enrollment = match kind {
        IdKind::RequestPk if valid_pk(id) => queue.find_by_request_pk(id)?,
        IdKind::RequestPk => {
            return Err(Failure::bad_input(anyhow!("ID: {id:?} is not a request pk (digits; given with --pk)")))
        }
        IdKind::Enrollment if valid_pk(id) => {
            return Err(Failure::bad_input(anyhow!(
                "ID: {id} looks like a request pk; this acts on this kiosk's enrollments by their id \
                 (pass --pk to name a request pk on purpose)"
            )))
        }
        IdKind::Enrollment => Some(queue.show(id)?),
    };
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

/// The audit record of an operator's action on a request: the enrollment, if local, and the
/// action with the request pk (the server's number, not personal data).
fn audit_record(target: &Target, action: &str) -> (Option<String>, String) {
    (target.enrollment.as_ref().map(|e| e.id.clone()), format!("{action}: request {}", target.ids.request_pk))
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
            None => self.client.request_status(&target.ids.request_pk).await.map_err(ReviewError::from),
        }
        .map_err(|e| review_failure(e, "reading the request's status", true))?;
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

    /// [`resolve`] on a blocking thread: the API's handlers never touch SQLite on the executor
    /// (a locked database would hold an executor thread for the whole busy timeout).
    pub async fn target(&self, id: &str, kind: IdKind) -> Result<Target, Failure> {
        let (queue, id) = (Arc::clone(&self.queue), id.to_owned());
        tokio::task::spawn_blocking(move || resolve(&queue, &id, kind))
            .await
            .map_err(|e| Failure::from(anyhow!("queue task: {e}")))?
    }

    /// Records an operator's action on a request in the audit trail (on a blocking thread).
    pub async fn audit(&self, target: &Target, action: &str) -> Result<(), Failure> {
        let (enrollment, kind) = audit_record(target, action);
        blocking(&self.queue, move |q| q.audit(enrollment.as_deref(), &kind)).await?;
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
    pub fn videoid_known(&self, target: &Target) -> Result<(), Failure> {
        if self.config.oneshot.paths[Operation::Approve].contains("{videoid_pk}") && target.ids.videoid_pk.is_none() {
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
        // Taking the lock opens and flocks a file: off the executor like the queue's work.
        let queue = Arc::clone(&self.queue);
        let lock = tokio::task::spawn_blocking(move || queue.lock_worker())
            .await
            .map_err(|e| Failure::from(anyhow!("queue task: {e}")))?;
        match lock {
            Ok(_lock) => {
                let sent = self
                    .worker
                    .send_documents(&e.id)
                    .await
                    .map_err(|e| review_failure(e, "sending the documents", true))?;
                Ok(Some(sent))
            }
            Err(_) => {
                self.queue.poke_worker();
                Ok(None)
            }
        }
    }
}

/// A review read's or a document upload's failure as an exit: the server's through [`net`], the
/// queue's as the queue error it is (a busy database is 1, a damaged one 4), a step that is not
/// due yet as bad input.
pub fn review_failure(e: ReviewError, doing: &str, repeatable: bool) -> Failure {
    match e {
        ReviewError::Api(e) => net(e, doing, repeatable),
        ReviewError::Queue(e) => Failure::from(anyhow::Error::from(e).context(doing.to_owned())),
        ReviewError::NotReady(why) => Failure::bad_input(anyhow!("{doing}: {why}")),
    }
}

/// Turns a One-Shot error into an exit: refusals are bad input (2) with the server's words;
/// network and server trouble are 1 and say whether the step may simply be repeated.
pub fn net(e: OneShotError, doing: &str, repeatable: bool) -> Failure {
    // The server keeps the signing steps in order and answers a step out of turn with 412
    // "Invalid request status": said in plain words, with what to look at.
    if let OneShotError::Rejected { status: 412, details } = &e {
        if details.to_ascii_lowercase().contains("status") {
            return Failure::bad_input(anyhow!(
                "{doing}: the server says the request is not ready for this step ({}); \
                 see `kiosk-agent request ID status` (approval comes first, then documents, then the OTP)",
                crate::sync::redact::Redactor::generic().apply(details)
            ));
        }
    }
    let retryable = e.is_retryable();
    // The server's words reach the operator (terminal, API answer), never with an email
    // address or a phone number in them: the evidence, and so the values, may be erased by now.
    let e = crate::sync::redact::Redactor::generic().apply(&e.to_string());
    if retryable {
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
