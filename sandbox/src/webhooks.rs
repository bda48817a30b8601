//! Webhooks the sandbox sends (`--webhook URL`): on every status change of a request, a POST in
//! the shape of the generation that created it — the old Optimizer's `{status, date,
//! previous_status, request, registration_authority}` or the new one's `{event_type, sent_at,
//! request: {status, profile, registration_authority, scratchcard, pk}, certificates: []}`.
//! Changes are found by comparing statuses every [`TICK`]; delivery is best effort, as a real
//! server's is (the agent's review reads are the fallback).

use std::collections::BTreeMap;
use std::time::Duration;

use oneshot_protocol::{Generation, RequestStatus};
use serde_json::{json, Value};

use crate::state::lock;
use crate::Shared;

/// How often statuses are compared.
pub const TICK: Duration = Duration::from_millis(100);

/// The body of one webhook.
pub fn payload(generation: Generation, pk: u64, status: &RequestStatus, previous: &RequestStatus) -> Value {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    match generation {
        Generation::Old => json!({"status": status, "date": now, "previous_status": previous,
                                  "request": pk, "registration_authority": 139}),
        Generation::New => json!({"event_type": "REQUEST_UPDATED", "sent_at": now.to_string(),
                                  "request": {"status": status, "profile": "PFnubeQAFCiudadano",
                                              "registration_authority": 139, "scratchcard": "", "pk": pk},
                                  "certificates": []}),
    }
}

/// Sends a webhook for each status change until the process ends.
pub async fn run(state: Shared, url: String) {
    let client =
        reqwest::Client::builder().timeout(Duration::from_secs(5)).no_proxy().build().expect("a plain client builds");
    let mut seen: BTreeMap<u64, RequestStatus> = BTreeMap::new();
    loop {
        tokio::time::sleep(TICK).await;
        let changes: Vec<Value> = {
            let st = lock(&state);
            st.requests
                .values()
                .filter_map(|r| {
                    // A request first seen now was created since the last tick, in VIDEOPENDING.
                    let previous = seen.insert(r.request_pk, r.status.clone()).unwrap_or(RequestStatus::VideoPending);
                    (previous != r.status)
                        .then(|| payload(st.generation_of(r.request_pk), r.request_pk, &r.status, &previous))
                })
                .collect()
        };
        for body in changes {
            if let Err(e) = client.post(&url).json(&body).send().await {
                tracing::info!(error = %e, "webhook not delivered");
            }
        }
    }
}
