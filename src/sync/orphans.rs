//! Finding the orphan request a lost create answer left on the server — after delivery.
//!
//! The API has no idempotency key, so when a create's answer was lost (a crash, a dropped
//! connection, a timeout) the server may hold a request the queue never heard of. How it is
//! looked for is `sync.orphan_search`: by default the server is asked for this customer's
//! requests by email and phone (one read; where there is no such search, the possible orphan is
//! recorded with its window for an operator and nothing is read); `off` only records; `scan`
//! reads the neighbouring request pks, which belong mostly to other customers (pks are
//! platform-wide), and is for a server with no search at all. For the scan: request pks are
//! allocated in order, so the orphan sits between the highest pk this queue knew
//! when the first create went out (`create_floor`) and the pk the repeated create finally
//! returned. Delivery comes first: an enrollment is reconciled only once it reached review, the
//! window is read from its floor upwards (the orphan was created right after the floor was
//! seen), at most [`MAX_SCAN`] pks, and all enrollments together read at most
//! `sync.orphan_lookups_per_hour` request details ([`Budget`]). A queue that knew no pk when the
//! create went out has no floor: the enrollment is marked "possible orphan, pk unknown" and
//! nothing is read. A candidate matches when its email (case ignored) and its phone number
//! (digits only: the old Optimizer shows `34600123123` for `+34600123123`) are this
//! enrollment's. Found orphans are recorded, never cancelled: `kiosk-agent request cancel PK` is
//! an operator's decision. The customer's contact data is needed for the comparison, so the
//! evidence of an enrollment with a pending check is erased when the check ends.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::{blocking, Worker};
use crate::config::OrphanSearch;
use crate::oneshot::RequestStatus;
use crate::queue::{Job, QueueError};

/// At most this many request pks are read for one enrollment.
pub const MAX_SCAN: u64 = 256;

/// A token bucket of request-detail reads: `per_hour` tokens, refilled continuously, full at
/// start. In memory: a restart refills it, which at worst doubles one hour's reads.
#[derive(Debug)]
pub struct Budget {
    capacity: f64,
    tokens: f64,
    per_sec: f64,
    last: Instant,
}

impl Budget {
    pub fn per_hour(n: u32) -> Budget {
        let capacity = f64::from(n.max(1));
        Budget { capacity, tokens: capacity, per_sec: capacity / 3600.0, last: Instant::now() }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        self.tokens = (self.tokens + (now - self.last).as_secs_f64() * self.per_sec).min(self.capacity);
        self.last = now;
    }

    /// Takes one read if the budget allows it.
    pub fn take(&mut self) -> bool {
        self.refill();
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until the next read is allowed.
    pub fn until_next(&mut self) -> Duration {
        self.refill();
        Duration::from_secs_f64(((1.0 - self.tokens).max(0.0) / self.per_sec).max(0.001))
    }
}

/// Digits of a phone number, whether the server sent it as a string or a number.
fn phone_digits(v: &Value) -> Option<String> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some(text.chars().filter(char::is_ascii_digit).collect())
}

/// Whether a request's details carry this customer's email and phone number.
pub fn same_customer(details: &Value, email: &str, phone: &str) -> bool {
    let email_matches =
        details.get("email").and_then(Value::as_str).is_some_and(|e| e.trim().eq_ignore_ascii_case(email.trim()));
    let ours: String = phone.chars().filter(char::is_ascii_digit).collect();
    let phone_matches =
        details.get("mobile_phone_number").and_then(phone_digits).is_some_and(|d| !d.is_empty() && d == ours);
    email_matches && phone_matches
}

/// How one enrollment's check ended in this pass.
enum Scan {
    Finished,
    /// The budget ran out or a read failed: come back after this long.
    Paused(Duration),
}

impl Worker {
    /// One reconciliation pass over the enrollments in review with a pending check. Returns when
    /// to come back if work is left (the budget ran out, or the server did not answer).
    pub(super) async fn reconcile_orphans(self: &Arc<Self>) -> Result<Option<Duration>, QueueError> {
        let jobs = blocking(&self.queue, |q| q.orphan_jobs()).await?;
        for job in jobs {
            if let Scan::Paused(wait) = self.scan(&job).await? {
                return Ok(Some(wait));
            }
        }
        Ok(None)
    }

    async fn scan(self: &Arc<Self>, job: &Job) -> Result<Scan, QueueError> {
        match self.config.sync.orphan_search {
            OrphanSearch::Off => {
                self.record_window(job, "sync.orphan_search is off").await?;
                Ok(Scan::Finished)
            }
            OrphanSearch::Search => self.search(job).await,
            OrphanSearch::Scan => self.scan_window(job).await,
        }
    }

    /// Records the possible orphan for an operator, with the pks it could have, reading nothing.
    async fn record_window(&self, job: &Job, why: &str) -> Result<(), QueueError> {
        let current = job.request_pk.clone().unwrap_or_default();
        let window = match job.create_floor {
            Some(floor) => format!("between request_pk {} and {current}", floor + 1),
            None => format!("below request_pk {current}"),
        };
        let detail = format!(
            "possible orphan request: a create's answer was lost, so the server may hold another request of this \
             customer, {window}; nothing was read ({why}): look for it on the server by the customer's email or \
             phone, and cancel it there with `kiosk-agent request --pk PK cancel`"
        );
        self.finish_check(job, detail).await
    }

    /// Asks the server for this customer's requests: one read, whatever the window; any that is
    /// not this enrollment's (nor another known to this queue) and carries the same email and
    /// phone is recorded as its orphan.
    async fn search(self: &Arc<Self>, job: &Job) -> Result<Scan, QueueError> {
        let id = job.id.clone();
        let current = job.request_pk.clone().unwrap_or_default();
        let Some((known, pii)) = self.comparison(job).await? else { return Ok(Scan::Finished) };
        if !self.orphan_budget.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Ok(Scan::Paused(self.orphan_budget.lock().unwrap_or_else(|p| p.into_inner()).until_next()));
        }
        let (email, phone) = (&pii.customer.email, &pii.customer.mobile_phone_number);
        let found = match self.client.search_requests(email, phone).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                self.record_window(job, "the server offers no search by email and phone").await?;
                return Ok(Scan::Finished);
            }
            Err(e) => {
                tracing::debug!(enrollment_id = %id, error = %e, "orphan search failed; later");
                return Ok(Scan::Paused(self.backoff().cap));
            }
        };
        for details in found.iter().filter(|d| same_customer(d, email, phone)) {
            let pk = ["request_pk", "pk"].iter().find_map(|k| match details.get(*k) {
                Some(Value::Number(n)) => n.as_u64().map(|n| n.to_string()),
                Some(Value::String(s)) if crate::oneshot::valid_pk(s) => Some(s.clone()),
                _ => None,
            });
            let Some(pk) = pk.filter(|pk| *pk != current && !known.contains(pk)) else { continue };
            let status = details.get("status").and_then(Value::as_str).map(RequestStatus::parse);
            let id = id.clone();
            tracing::warn!(enrollment_id = %id, request_pk = %pk, "orphan request on the server");
            blocking(&self.queue, move |q| q.record_orphan(&id, &pk, status.as_ref())).await?;
        }
        let orphans = {
            let id = id.clone();
            blocking(&self.queue, move |q| Ok(q.show(&id)?.orphans)).await?
        };
        let detail = if orphans.is_empty() {
            "no orphan request: the server lists no other request of this customer".to_owned()
        } else {
            format!("orphan request(s) left on the server by a lost create answer: request_pk {}", orphans.join(", "))
        };
        self.finish_check(job, detail).await?;
        Ok(Scan::Finished)
    }

    /// Reads the request pks between the last one this queue knew and the one finally returned.
    async fn scan_window(self: &Arc<Self>, job: &Job) -> Result<Scan, QueueError> {
        let id = job.id.clone();
        let current = job.request_pk.clone().unwrap_or_default();
        let (Some(floor), Ok(current_pk)) = (job.create_floor, current.parse::<u64>()) else {
            let detail = format!(
                "possible orphan request, pk unknown: a create's answer was lost while this queue knew no \
                 request_pk to start a search from, so nothing was read; look on the server for another request \
                 of this customer below request_pk {current}"
            );
            self.finish_check(job, detail).await?;
            return Ok(Scan::Finished);
        };
        let low = floor + 1;
        let high = current_pk.min(low.saturating_add(MAX_SCAN));
        let start = job.scan_next.unwrap_or(low).max(low);
        let Some((known, pii)) = self.comparison(job).await? else { return Ok(Scan::Finished) };
        for pk in start..high {
            let key = pk.to_string();
            if known.contains(&key) {
                continue;
            }
            let allowed = self.orphan_budget.lock().unwrap_or_else(|p| p.into_inner()).take();
            let pause = if allowed {
                match self.client.request_details(&key).await {
                    Ok(Some(details)) => {
                        if same_customer(&details, &pii.customer.email, &pii.customer.mobile_phone_number) {
                            let status = details.get("status").and_then(Value::as_str).map(RequestStatus::parse);
                            let (id, key) = (id.clone(), key.clone());
                            tracing::warn!(enrollment_id = %id, request_pk = %key, "orphan request on the server");
                            blocking(&self.queue, move |q| q.record_orphan(&id, &key, status.as_ref())).await?;
                        }
                        None
                    }
                    Ok(None) => None,
                    Err(e) => {
                        tracing::debug!(enrollment_id = %id, error = %e, "orphan lookup failed; later");
                        Some(self.backoff().cap)
                    }
                }
            } else {
                Some(self.orphan_budget.lock().unwrap_or_else(|p| p.into_inner()).until_next())
            };
            if let Some(wait) = pause {
                let id = id.clone();
                blocking(&self.queue, move |q| q.save_scan_progress(&id, pk)).await?;
                return Ok(Scan::Paused(wait));
            }
        }
        let orphans = {
            let id = id.clone();
            blocking(&self.queue, move |q| Ok(q.show(&id)?.orphans)).await?
        };
        let detail = if orphans.is_empty() {
            format!("no orphan request found between request_pk {floor} and {current_pk}")
        } else {
            format!("orphan request(s) left on the server by a lost create answer: request_pk {}", orphans.join(", "))
        };
        self.finish_check(job, detail).await?;
        Ok(Scan::Finished)
    }

    /// What a check compares with: the request pks this queue knows and the customer's data;
    /// `None` (the check ended, saying why) when the evidence was erased first.
    async fn comparison(
        &self,
        job: &Job,
    ) -> Result<Option<(std::collections::HashSet<String>, crate::evidence::Pii)>, QueueError> {
        let id = job.id.clone();
        let (known, pii) = blocking(&self.queue, move |q| Ok((q.known_request_pks()?, q.load_pii(&id).ok()))).await?;
        match pii {
            Some(pii) => Ok(Some((known, pii))),
            None => {
                let why = "the evidence was erased before the orphan check; nothing to compare with";
                self.finish_check(job, why.into()).await?;
                Ok(None)
            }
        }
    }

    /// Ends the check and erases the evidence if its state is past the configured point (the
    /// erasure waited for the check).
    async fn finish_check(&self, job: &Job, detail: String) -> Result<(), QueueError> {
        let id = job.id.clone();
        let erase = self.queue.should_erase_at(job.state);
        blocking(&self.queue, move |q| {
            q.finish_orphan_scan(&id, &detail)?;
            if erase {
                q.erase_evidence(&id)?;
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn customers_match_by_email_and_phone_digits() {
        let (email, phone) = ("Ana@Example.com", "+34 600 123 123");
        assert!(same_customer(
            &json!({"email": "ana@example.com", "mobile_phone_number": 34600123123u64}),
            email,
            phone
        ));
        assert!(same_customer(
            &json!({"email": "ana@example.com", "mobile_phone_number": "+34600123123"}),
            email,
            phone
        ));
        assert!(!same_customer(
            &json!({"email": "ana@example.com", "mobile_phone_number": 34600123124u64}),
            email,
            phone
        ));
        assert!(!same_customer(
            &json!({"email": "bob@example.com", "mobile_phone_number": "+34600123123"}),
            email,
            phone
        ));
        assert!(!same_customer(&json!({"email": "ana@example.com"}), email, phone));
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_allows_so_many_reads_an_hour() {
        let mut b = Budget::per_hour(60);
        assert_eq!((0..100).filter(|_| b.take()).count(), 60, "a full bucket at start");
        assert!(!b.take());
        let wait = b.until_next();
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(50), "{wait:?}");
        tokio::time::advance(Duration::from_secs(600)).await;
        assert_eq!((0..100).filter(|_| b.take()).count(), 10, "one read a minute comes back");
    }
}
