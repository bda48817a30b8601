//! What the sandbox remembers about each request.

use std::collections::BTreeMap;

use oneshot_protocol::RequestStatus;
use serde::{Deserialize, Serialize};

/// Hash and size of one received image (decoded from Base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub sha256: String,
    pub size: u64,
}

/// One VideoID request as the sandbox saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxRequest {
    pub request_pk: u64,
    pub videoid_pk: u64,
    pub status: RequestStatus,
    pub email_sha256: String,
    pub evidences_uploads: u32,
    pub video_uploads: u32,
    pub images: BTreeMap<String, ImageRecord>,
    pub given_name_sha256: Option<String>,
    pub video: Option<ImageRecord>,
}

/// A refusal the sandbox applies to requests of one customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// `create`, `evidences` or `video`.
    pub op: String,
    pub email: String,
    /// The HTTP status to answer with.
    pub status: u16,
    #[serde(default)]
    pub details: String,
    /// Apply only this many times, then the rule is spent; forever when absent.
    #[serde(default)]
    pub times: Option<u32>,
    /// With status 200: acknowledge the upload but lose it, leaving the request in this server
    /// status (`VIDEOERROR`, `VIDEOINCOMPLETE`), like a server that failed after answering.
    #[serde(default)]
    pub lose_as: Option<RequestStatus>,
}

/// Everything the sandbox knows.
#[derive(Debug)]
pub struct SandboxState {
    /// Fault injection (empty: none).
    pub faults: super::FaultPlan,
    /// Whether the server is on the network (false: connections refused).
    pub online: tokio::sync::watch::Sender<bool>,
    /// Upload bodies that broke off (resets, clients that gave up).
    pub broken_uploads: u64,
    pub requests: BTreeMap<u64, SandboxRequest>,
    pub creates: u64,
    pub rules: Vec<Rule>,
    /// A header every API request must carry (name in lower case, value), like a gateway's key.
    pub required_header: Option<(String, String)>,
    emails: BTreeMap<u64, String>,
    phones: BTreeMap<u64, String>,
}

impl Default for SandboxState {
    fn default() -> Self {
        SandboxState {
            faults: super::FaultPlan::default(),
            online: tokio::sync::watch::Sender::new(true),
            broken_uploads: 0,
            requests: BTreeMap::new(),
            creates: 0,
            rules: Vec::new(),
            required_header: None,
            emails: BTreeMap::new(),
            phones: BTreeMap::new(),
        }
    }
}

impl SandboxState {
    /// A new request in `VIDEOPENDING`; pks start where the vendor's examples do.
    pub fn create(&mut self, email: &str, phone: &str) -> &SandboxRequest {
        self.creates += 1;
        let request_pk = 45_835 + self.creates;
        let videoid_pk = 136 + self.creates;
        self.emails.insert(request_pk, email.to_owned());
        self.phones.insert(request_pk, phone.to_owned());
        self.requests.insert(
            request_pk,
            SandboxRequest {
                request_pk,
                videoid_pk,
                status: RequestStatus::VideoPending,
                email_sha256: crate::handlers::sha256_hex(email.as_bytes()),
                evidences_uploads: 0,
                video_uploads: 0,
                images: BTreeMap::new(),
                given_name_sha256: None,
                video: None,
            },
        );
        &self.requests[&request_pk]
    }

    /// The contact data a request was created with (the real API shows it in request details).
    pub fn contact(&self, request_pk: u64) -> (Option<&str>, Option<&str>) {
        (self.emails.get(&request_pk).map(String::as_str), self.phones.get(&request_pk).map(String::as_str))
    }

    /// Takes the rule that applies to `op` for this customer, if any, counting one use.
    pub fn take_rule(&mut self, op: &str, email: &str) -> Option<Rule> {
        let i = self.rules.iter().position(|r| r.op == op && r.email == email)?;
        let rule = self.rules[i].clone();
        match &mut self.rules[i].times {
            Some(1) => {
                self.rules.remove(i);
            }
            Some(n) => *n -= 1,
            None => {}
        }
        Some(rule)
    }

    /// The rule for `op` on the customer of `request_pk`, if any, counting one use.
    pub fn take_rule_for_request(&mut self, op: &str, request_pk: u64) -> Option<Rule> {
        let email = self.emails.get(&request_pk)?.clone();
        self.take_rule(op, &email)
    }

    /// Recomputes the state after an upload: both parts in → `VIDEOREVIEW`.
    pub fn settle(req: &mut SandboxRequest) {
        req.status = match (req.evidences_uploads > 0, req.video_uploads > 0) {
            (true, true) => RequestStatus::VideoReview,
            (false, false) => RequestStatus::VideoPending,
            _ => RequestStatus::VideoIncomplete,
        };
    }
}
