//! Finding the orphan request a lost create answer left on the server.
//!
//! The API has no idempotency key and no search, so when a create's answer was lost (a crash,
//! a dropped connection, a timeout) the server may hold a request the queue never heard of.
//! Request pks are allocated in order, so after the create is repeated the orphan sits between
//! the highest pk this queue knew when the first create went out (`create_floor`) and the new
//! request's pk. Each pk in that window that the queue does not know is read; one that carries
//! this enrollment's email and phone number is recorded as its orphan. The window is capped at
//! [`MAX_SCAN`] reads. The scan is flagged in the queue before the repeated create, so a crash
//! during it only means it runs again; recording is idempotent.

use std::sync::Arc;

use serde_json::Value;

use super::step::StepError;
use super::{blocking, Worker};
use crate::queue::Job;

/// At most this many request pks are read for one scan.
pub const MAX_SCAN: u64 = 256;

impl Worker {
    pub(super) async fn scan_orphans(self: &Arc<Self>, job: &mut Job) -> Result<(), StepError> {
        let id = job.id.clone();
        let current = job.request_pk.clone().unwrap_or_default();
        let Ok(current_pk) = current.parse::<u64>() else {
            let detail = format!("request_pk {current} is not numeric; orphans cannot be looked for");
            blocking(&self.queue, move |q| q.finish_orphan_scan(&id, &[], &detail)).await?;
            job.orphan_scan = false;
            return Ok(());
        };
        let low = job.create_floor.map(|f| f + 1).unwrap_or(0).max(current_pk.saturating_sub(MAX_SCAN));
        let (known, pii) = {
            let id = id.clone();
            blocking(&self.queue, move |q| Ok((q.known_request_pks()?, q.load_pii(&id)?))).await?
        };
        let mut found = Vec::new();
        let mut read = 0;
        for pk in (low..current_pk).map(|p| p.to_string()).filter(|p| !known.contains(p)) {
            read += 1;
            let Some(details) = self.client.request_details(&pk).await? else {
                continue;
            };
            let field = |k: &str| details.get(k).and_then(Value::as_str);
            if field("email") == Some(pii.customer.email.as_str())
                && field("mobile_phone_number") == Some(pii.customer.mobile_phone_number.as_str())
            {
                found.push((pk, field("status").unwrap_or("").to_owned()));
            }
        }
        let detail = if found.is_empty() {
            format!("no orphan request found ({read} request pks read below {current_pk})")
        } else {
            let pks: Vec<&str> = found.iter().map(|(pk, _)| pk.as_str()).collect();
            format!("orphan request(s) left on the server by a lost create answer: request_pk {}", pks.join(", "))
        };
        if !found.is_empty() {
            tracing::warn!(enrollment = %id, orphans = ?found.iter().map(|f| &f.0).collect::<Vec<_>>(), "orphan requests on the server");
        }
        blocking(&self.queue, move |q| q.finish_orphan_scan(&id, &found, &detail)).await?;
        job.orphan_scan = false;
        Ok(())
    }
}
