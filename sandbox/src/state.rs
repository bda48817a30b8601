//! What the sandbox remembers about each request.

use std::collections::BTreeMap;

use oneshot_protocol::RequestStatus;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

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
    /// How many times its details were read (`GET /request/{pk}`).
    #[serde(default)]
    pub status_reads: u32,
    pub images: BTreeMap<String, ImageRecord>,
    pub given_name_sha256: Option<String>,
    pub video: Option<ImageRecord>,
    /// Documents of the signing flow, by uid.
    /// How many OTPs were generated (a real server texts each to the customer).
    #[serde(default)]
    pub otps_sent: u32,
    #[serde(default)]
    pub documents: BTreeMap<String, SandboxDocument>,
    /// The VideoID's own outcome (`VALIDATED`, `REFUSED`), kept apart from the request status
    /// in the RA's model and shown as `videoid_data.status`.
    #[serde(default)]
    pub videoid_status: Option<String>,
    /// The request's scratchcard id, shown in its details and required by an update.
    #[serde(default)]
    pub scratchcard: String,
    /// The OCR fields corrected by `PUT /request/{pk}`, in order (names only).
    #[serde(default)]
    pub corrected: Vec<String>,
    /// The ID document's country, once the evidences told it.
    #[serde(default)]
    pub country_name: Option<String>,
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
    /// One-Shot API requests received, by Unix second of arrival: the load a fleet puts on the
    /// server, e.g. when a region comes back after an outage (`GET /_sandbox/traffic`).
    pub traffic: BTreeMap<u64, u32>,
    /// The request pk before the first one this server gives (a server started again must not
    /// reuse the pks an earlier one gave to the same kiosk; `--first-request-pk`).
    pub pk_base: u64,
    pub rules: Vec<Rule>,
    /// A header every API request must carry (name in lower case, value), like a gateway's key.
    pub required_header: Option<(String, String)>,
    /// The billing credentials the server accepts (user, password in clear); when set, a create
    /// with other credentials is refused the way each generation does it.
    pub billing: Option<(String, String)>,
    /// A token that opens the control endpoints (`/_sandbox/…`) to non-loopback clients.
    pub control_token: Option<String>,
    /// The signing flow's bytes, OTPs and RAO.
    pub signing: SigningState,
    /// Which generation created each request (webhooks come in its shape).
    pub generations: BTreeMap<u64, oneshot_protocol::Generation>,
    /// Received videos up to [`VIDEO_KEEP_LIMIT`], for "download video".
    pub videos: BTreeMap<u64, Vec<u8>>,
    /// Where a review's outcome and a signature show (sources disagree; `--outcomes`).
    pub outcomes: Outcomes,
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
            traffic: BTreeMap::new(),
            pk_base: 45_835,
            rules: Vec::new(),
            required_header: None,
            billing: None,
            control_token: None,
            signing: Default::default(),
            videos: BTreeMap::new(),
            generations: BTreeMap::new(),
            outcomes: Outcomes::default(),
            emails: BTreeMap::new(),
            phones: BTreeMap::new(),
        }
    }
}

/// Where the server shows a review's outcome and a signature. The RA's documents keep the
/// request in `VIDEOREVIEW` and put validation and refusal in `videoid_data.status`, and a
/// signed request reads `ISSUED`; one non-vendor source shows the outcomes as request statuses
/// (`VALIDATED`, `VIDEOID_REFUSED`, `SIGNED`). The RA's model is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Outcomes {
    #[default]
    Ra,
    RequestStatus,
}

impl std::str::FromStr for Outcomes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ra" => Ok(Outcomes::Ra),
            "request-status" => Ok(Outcomes::RequestStatus),
            _ => Err(format!("--outcomes: \"ra\" or \"request-status\", not {s:?}")),
        }
    }
}

/// Why the sandbox refuses a request; each generation words it in its own envelope
/// ([`crate::reply`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxError {
    /// No such request (the old Optimizer answers HTTP 400 with a `404 Not Found` envelope).
    NotFound,
    /// The body broke a documented rule.
    BadRequest(String),
    /// The body is not JSON (the old Optimizer's `"status": "Invalid JSON"`).
    InvalidJson(String),
    /// The request is in a status where this operation is not allowed.
    InvalidStatus(RequestStatus),
    /// Billing credentials the server cannot use (the old Optimizer answers HTTP 500).
    Billing(String),
    /// A test rule refused the operation with this HTTP status.
    Refused { status: u16, details: String },
    /// Wrong RAO credentials (403 in the RA's own error shape).
    RaForbidden(String),
    /// A wrong OTP (403 "Confirmation Code invalid").
    OtpInvalid,
    /// 412: not now ("Otp generated less than a minute ago", "Invalid request status").
    Precondition(String),
    /// 415: a document that is not a PDF.
    Unsupported(String),
    /// No such document.
    DocumentNotFound(String),
    /// A field of the wrong type (the new Optimizer's Pydantic answers 422 naming it).
    WrongType { loc: Vec<&'static str>, msg: &'static str, kind: &'static str },
    /// Required body fields missing (the new Optimizer: 422, one `missing` entry a field; the
    /// old one: 400 "Missing required parameters").
    Missing(Vec<&'static str>),
}

/// The largest video the sandbox keeps for "download video" (larger ones are hashed only).
pub const VIDEO_KEEP_LIMIT: u64 = 64 * 1024 * 1024;

impl SandboxState {
    /// A new request in `VIDEOPENDING`; pks start where the vendor's examples do.
    pub fn create(&mut self, email: &str, phone: &str) -> &SandboxRequest {
        self.creates += 1;
        let request_pk = self.pk_base + self.creates;
        let videoid_pk = 136 + self.creates;
        self.emails.insert(request_pk, email.to_owned());
        self.phones.insert(request_pk, phone.to_owned());
        self.requests.insert(
            request_pk,
            SandboxRequest {
                request_pk,
                videoid_pk,
                status: RequestStatus::VideoPending,
                email_sha256: sha256_hex(email.as_bytes()),
                evidences_uploads: 0,
                video_uploads: 0,
                status_reads: 0,
                images: BTreeMap::new(),
                given_name_sha256: None,
                video: None,
                otps_sent: 0,
                documents: BTreeMap::new(),
                videoid_status: None,
                scratchcard: format!("{:07}", 1_000_000 + request_pk % 9_000_000),
                corrected: Vec::new(),
                country_name: None,
            },
        );
        &self.requests[&request_pk]
    }

    /// The request a path id names: uploads of the new generation are keyed by `videoid_pk`,
    /// everything else by `request_pk`.
    pub fn lookup(&self, by_videoid: bool, pk: &str) -> Result<u64, SandboxError> {
        let pk: u64 = pk.parse().map_err(|_| SandboxError::NotFound)?;
        let found = if by_videoid {
            self.requests.values().find(|r| r.videoid_pk == pk).map(|r| r.request_pk)
        } else {
            self.requests.contains_key(&pk).then_some(pk)
        };
        found.ok_or(SandboxError::NotFound)
    }

    pub(crate) fn request_mut(&mut self, request_pk: u64) -> Result<&mut SandboxRequest, SandboxError> {
        self.requests.get_mut(&request_pk).ok_or(SandboxError::NotFound)
    }

    /// Uploads are taken while the VideoID is open; after approval or a terminal status the
    /// request refuses them (no public source says otherwise).
    fn check_open(&self, request_pk: u64) -> Result<(), SandboxError> {
        let status = &self.requests.get(&request_pk).ok_or(SandboxError::NotFound)?.status;
        match status {
            RequestStatus::VideoPending
            | RequestStatus::VideoIncomplete
            | RequestStatus::VideoError
            | RequestStatus::VideoReview => Ok(()),
            other => Err(SandboxError::InvalidStatus(other.clone())),
        }
    }

    /// Takes a validated evidences upload: applies a test rule if one matches, else records the
    /// images and moves the status on.
    pub fn receive_evidences(
        &mut self,
        request_pk: u64,
        images: BTreeMap<String, ImageRecord>,
        given_name_sha256: String,
    ) -> Result<(), SandboxError> {
        self.check_open(request_pk)?;
        match self.take_rule_for_request("evidences", request_pk) {
            Some(Rule { lose_as: Some(status), .. }) => self.request_mut(request_pk)?.status = status,
            Some(rule) => return Err(SandboxError::Refused { status: rule.status, details: rule.details }),
            None => {
                let req = self.request_mut(request_pk)?;
                req.evidences_uploads += 1;
                req.images = images;
                req.given_name_sha256 = Some(given_name_sha256);
                req.settle();
            }
        }
        Ok(())
    }

    /// Checks that a video upload may start; returns the status to leave the request in if a
    /// test rule says the upload is to be acknowledged and lost.
    pub fn admit_video(&mut self, request_pk: u64) -> Result<Option<RequestStatus>, SandboxError> {
        self.check_open(request_pk)?;
        match self.take_rule_for_request("video", request_pk) {
            Some(Rule { lose_as: Some(status), .. }) => Ok(Some(status)),
            Some(rule) => Err(SandboxError::Refused { status: rule.status, details: rule.details }),
            None => Ok(None),
        }
    }

    /// Takes a received video (or loses it, leaving `lose_as`).
    pub fn receive_video(
        &mut self,
        request_pk: u64,
        record: ImageRecord,
        lose_as: Option<RequestStatus>,
    ) -> Result<(), SandboxError> {
        let req = self.request_mut(request_pk)?;
        match lose_as {
            Some(status) => req.status = status,
            None => {
                req.video_uploads += 1;
                req.video = Some(record);
                req.settle();
            }
        }
        Ok(())
    }

    /// Moves a request to any status (the control API, for tests of the agent's reactions).
    pub fn set_status(&mut self, request_pk: u64, status: RequestStatus) -> Result<(), SandboxError> {
        self.request_mut(request_pk)?.status = status;
        Ok(())
    }

    /// The generation that created a request (the new one when unknown).
    pub fn generation_of(&self, request_pk: u64) -> oneshot_protocol::Generation {
        self.generations.get(&request_pk).copied().unwrap_or(oneshot_protocol::Generation::New)
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
    pub(crate) fn take_rule_for_request(&mut self, op: &str, request_pk: u64) -> Option<Rule> {
        let email = self.emails.get(&request_pk)?.clone();
        self.take_rule(op, &email)
    }
}

impl SandboxRequest {
    /// Recomputes the status after an upload: both parts in → `VIDEOREVIEW`.
    fn settle(&mut self) {
        self.status = match (self.evidences_uploads > 0, self.video_uploads > 0) {
            (true, true) => RequestStatus::VideoReview,
            (false, false) => RequestStatus::VideoPending,
            _ => RequestStatus::VideoIncomplete,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageRecord {
        ImageRecord { sha256: "00".into(), size: 1 }
    }

    #[test]
    fn the_state_machine_of_one_request() {
        let mut st = SandboxState::default();
        let pk = st.create("a@example.com", "+34600000000").request_pk;
        let vpk = st.requests[&pk].videoid_pk;
        assert_eq!(st.lookup(true, &vpk.to_string()), Ok(pk));
        assert_eq!(st.lookup(false, &pk.to_string()), Ok(pk));
        assert_eq!(st.lookup(false, "../1"), Err(SandboxError::NotFound));
        st.receive_evidences(pk, BTreeMap::new(), "h".into()).unwrap();
        assert_eq!(st.requests[&pk].status, RequestStatus::VideoIncomplete);
        assert_eq!(st.admit_video(pk), Ok(None));
        st.receive_video(pk, image(), None).unwrap();
        assert_eq!(st.requests[&pk].status, RequestStatus::VideoReview);
        st.set_status(pk, RequestStatus::Cancelled).unwrap();
        assert_eq!(st.admit_video(pk), Err(SandboxError::InvalidStatus(RequestStatus::Cancelled)));
        assert_eq!(st.set_status(1, RequestStatus::Error), Err(SandboxError::NotFound));
    }

    #[test]
    fn rules_refuse_or_lose_a_limited_number_of_times() {
        let mut st = SandboxState::default();
        let pk = st.create("r@example.com", "+34600000001").request_pk;
        st.rules.push(Rule {
            op: "video".into(),
            email: "r@example.com".into(),
            status: 200,
            details: String::new(),
            times: Some(1),
            lose_as: Some(RequestStatus::VideoError),
        });
        let lose = st.admit_video(pk).unwrap();
        st.receive_video(pk, image(), lose).unwrap();
        assert_eq!(st.requests[&pk].status, RequestStatus::VideoError);
        assert_eq!(st.requests[&pk].video_uploads, 0);
        assert_eq!(st.admit_video(pk), Ok(None), "the rule is spent");
    }
}

/// One uploaded document, as the control API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxDocument {
    pub uid: String,
    pub filename: String,
    pub sha256: String,
    pub size: u64,
    pub signed_sha256: Option<String>,
    /// Copies deleted one at a time (the old generation's per-type delete): `original`,
    /// `signed`. The document is gone once every copy it has is.
    #[serde(default)]
    pub deleted: Vec<String>,
}

/// What the sandbox keeps of the signing flow beyond [`crate::SandboxRequest`].
#[derive(Debug, Default)]
pub struct SigningState {
    /// Document bytes by uid: the original and, once signed, the signed one.
    pub bytes: BTreeMap<String, (Vec<u8>, Option<Vec<u8>>)>,
    /// The last OTP of each request and when it was generated.
    pub otps: BTreeMap<u64, (String, Instant)>,
    /// How long an OTP blocks the next one (the signing module's `OTP_INTERVAL` unless set).
    pub otp_interval: Option<Duration>,
    /// Signature images uploaded with `POST /image`, by uid (their SHA-256).
    pub images: BTreeMap<String, String>,
    /// RAO tokens made with `POST /token`, by uid.
    pub tokens: BTreeMap<String, String>,
}

/// The SHA-256 of `bytes`, in hex (what the sandbox records of every file it receives).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The state, whatever panicked while it was held (the sandbox keeps serving).
pub fn lock(state: &Mutex<SandboxState>) -> MutexGuard<'_, SandboxState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Takes the sandbox's network up or down (the control API's `online`, a fault's flap).
pub fn set_online(state: &Mutex<SandboxState>, up: bool) {
    lock(state).online.send_replace(up);
}
