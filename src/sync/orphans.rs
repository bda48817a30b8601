//! Finding the orphan request a lost create answer left on the server.
//!
//! The API has no idempotency key and no search, so when a create's answer was lost (a crash,
//! a dropped connection, a timeout) the server may hold a request the queue never heard of.
//! Request pks are allocated in order, so after the create is repeated the orphan sits between
//! the highest pk this queue knew when the first create went out (`create_floor`) and the new
//! request's pk. Each pk in that window that the queue does not know is read; one that carries
//! this enrollment's email and phone number is recorded as its orphan. The window is capped at
//! [`MAX_SCAN`] reads. The scan is flagged
//! in the queue before the repeated create; an orphan is recorded the moment it is found, and a
//! read that fails saves the scan's position, so an unreliable network slows a scan down but
//! cannot keep it from finishing; recording is idempotent.

use std::sync::Arc;

use serde_json::Value;

use super::step::StepError;
use super::{blocking, Worker};
use crate::oneshot::RequestStatus;
use crate::queue::Job;

/// At most this many request pks are read for one scan.
pub const MAX_SCAN: u64 = 256;

impl Worker {
    pub(super) async fn scan_orphans(self: &Arc<Self>, job: &mut Job) -> Result<(), StepError> {
        let id = job.id.clone();
        let current = job.request_pk.clone().unwrap_or_default();
        let Ok(current_pk) = current.parse::<u64>() else {
            let detail = format!("request_pk {current} is not numeric; orphans cannot be looked for");
            blocking(&self.queue, move |q| q.finish_orphan_scan(&id, &detail)).await?;
            job.orphan_scan = false;
            return Ok(());
        };
        // The floor is set on the first create (0 on a queue that knew no pk yet).
        let low = (job.create_floor.unwrap_or(0) + 1).max(current_pk.saturating_sub(MAX_SCAN));
        let start = job.scan_next.unwrap_or(low).max(low);
        let (known, pii) = {
            let id = id.clone();
            blocking(&self.queue, move |q| Ok((q.known_request_pks()?, q.load_pii(&id)?))).await?
        };
        for pk in start..current_pk {
            let key = pk.to_string();
            if known.contains(&key) {
                continue;
            }
            let details = match self.client.request_details(&key).await {
                Ok(d) => d,
                Err(e) => {
                    let id = id.clone();
                    blocking(&self.queue, move |q| q.save_scan_progress(&id, pk)).await?;
                    job.scan_next = Some(pk);
                    return Err(e.into());
                }
            };
            let Some(details) = details else { continue };
            let field = |k: &str| details.get(k).and_then(Value::as_str);
            if field("email") == Some(pii.customer.email.as_str())
                && field("mobile_phone_number") == Some(pii.customer.mobile_phone_number.as_str())
            {
                let (id, status) = (id.clone(), field("status").map(RequestStatus::parse));
                tracing::warn!(enrollment = %id, request_pk = %key, "orphan request on the server");
                blocking(&self.queue, move |q| q.record_orphan(&id, &key, status.as_ref())).await?;
            }
        }
        let orphans = {
            let id = id.clone();
            blocking(&self.queue, move |q| Ok(q.show(&id)?.orphans)).await?
        };
        let detail = if orphans.is_empty() {
            format!("no orphan request found between request_pk {} and {current_pk}", low.saturating_sub(1))
        } else {
            format!("orphan request(s) left on the server by a lost create answer: request_pk {}", orphans.join(", "))
        };
        blocking(&self.queue, move |q| q.finish_orphan_scan(&id, &detail)).await?;
        job.orphan_scan = false;
        Ok(())
    }
}
