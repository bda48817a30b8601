//! What the sandbox remembers about each request.

use std::collections::BTreeMap;

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
    pub status: String,
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
    pub status: u16,
    pub details: String,
}

/// Everything the sandbox knows.
#[derive(Debug, Default)]
pub struct SandboxState {
    pub requests: BTreeMap<u64, SandboxRequest>,
    pub creates: u64,
    pub rules: Vec<Rule>,
    emails: BTreeMap<u64, String>,
}

impl SandboxState {
    /// A new request in `VIDEOPENDING`; pks start where the vendor's examples do.
    pub fn create(&mut self, email: &str) -> &SandboxRequest {
        self.creates += 1;
        let request_pk = 45_835 + self.creates;
        let videoid_pk = 136 + self.creates;
        self.emails.insert(request_pk, email.to_owned());
        self.requests.insert(
            request_pk,
            SandboxRequest {
                request_pk,
                videoid_pk,
                status: "VIDEOPENDING".into(),
                email_sha256: crate::sandbox::handlers::sha256_hex(email.as_bytes()),
                evidences_uploads: 0,
                video_uploads: 0,
                images: BTreeMap::new(),
                given_name_sha256: None,
                video: None,
            },
        );
        &self.requests[&request_pk]
    }

    /// The rule refusing `op` for this request's customer, if any.
    pub fn rule_for(&self, op: &str, email: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.op == op && r.email == email)
    }

    pub fn email_of(&self, request_pk: u64) -> Option<&str> {
        self.emails.get(&request_pk).map(String::as_str)
    }

    /// Recomputes the state after an upload: both parts in → `VIDEOREVIEW`.
    pub fn settle(req: &mut SandboxRequest) {
        req.status = match (req.evidences_uploads > 0, req.video_uploads > 0) {
            (true, true) => "VIDEOREVIEW",
            (false, false) => "VIDEOPENDING",
            _ => "VIDEOINCOMPLETE",
        }
        .into();
    }
}
