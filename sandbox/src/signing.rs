//! The signing flow's state on the sandbox: approval by the RAO, documents, the service
//! contract, the OTP and the signature, as methods of [`SandboxState`] that return a
//! [`SandboxError`] — `VIDEOREVIEW` → (validate →) approve → `ENROLLREADY` → documents, contract,
//! OTP → sign → `SIGNED`; refuse → `VIDEOID_REFUSED`.

use std::time::{Duration, Instant};

use oneshot_protocol::RequestStatus;
use rand::Rng as _;
use serde::Deserialize;

use crate::pdf;
use crate::state::{sha256_hex, Outcomes, SandboxDocument, SandboxError, SandboxState};

/// The sandbox's RAO, by default the one in the vendor's guide.
pub const RAO_ID: &str = "1400";
pub const RAO_TOKEN: &str = "f734066d1ce36f9cae4d55be4cdac50e";
pub const RAO_LOGIN: (&str, &str, &str) = ("1000279", "3DPTm:N4", "23bYQq9a");
/// How long an OTP blocks a new one (the Optimizer's 412 "less than a minute ago").
pub const OTP_INTERVAL: Duration = Duration::from_secs(60);

/// RAO credentials as an approve, validate or refuse body carries them.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RaoBody {
    pub token: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub pin: Option<String>,
    pub rao: Option<String>,
    pub rao_id: Option<String>,
    pub reason: Option<String>,
}

/// The statuses of an approved request on its way to a signature: documents may be added, an
/// OTP generated and the request signed in any of them.
const APPROVED: [RequestStatus; 3] =
    [RequestStatus::EnrollReady, RequestStatus::DocUploaded, RequestStatus::OtpGenerated];

impl SandboxState {
    fn check_rao(&self, body: &RaoBody) -> Result<(), SandboxError> {
        let rao = body.rao.as_deref().or(body.rao_id.as_deref());
        let by_token =
            body.token.as_deref().is_some_and(|t| t == RAO_TOKEN || self.signing.tokens.values().any(|v| v == t));
        let by_login = (body.username.as_deref(), body.password.as_deref(), body.pin.as_deref())
            == (Some(RAO_LOGIN.0), Some(RAO_LOGIN.1), Some(RAO_LOGIN.2));
        if rao != Some(RAO_ID) || !(by_token || by_login) {
            return Err(SandboxError::RaForbidden("Invalid RAO credentials".into()));
        }
        Ok(())
    }

    fn status_of(&self, pk: u64) -> Result<RequestStatus, SandboxError> {
        Ok(self.requests.get(&pk).ok_or(SandboxError::NotFound)?.status.clone())
    }

    fn require(&self, pk: u64, allowed: &[RequestStatus]) -> Result<(), SandboxError> {
        let status = self.status_of(pk)?;
        if allowed.contains(&status) {
            Ok(())
        } else {
            Err(SandboxError::InvalidStatus(status))
        }
    }

    /// Two-step mode's first step (old generation): `VIDEOREVIEW` → `VALIDATED`.
    pub fn validate_videoid(&mut self, pk: u64, body: &RaoBody) -> Result<(), SandboxError> {
        self.require_undecided(pk, &[RequestStatus::VideoReview])?;
        self.check_rao(body)?;
        self.decide(pk, "VALIDATED", RequestStatus::Validated)
    }

    /// `require`, and the VideoID not refused yet (in the RA's model a refused request may
    /// still read `VIDEOREVIEW`).
    fn require_undecided(&self, pk: u64, allowed: &[RequestStatus]) -> Result<(), SandboxError> {
        self.require(pk, allowed)?;
        match self.requests[&pk].videoid_status.as_deref() {
            Some("REFUSED") => Err(SandboxError::InvalidStatus(RequestStatus::VideoIdRefused)),
            _ => Ok(()),
        }
    }

    /// Records a review's outcome where [`Outcomes`] says it shows.
    fn decide(&mut self, pk: u64, videoid_status: &str, as_request_status: RequestStatus) -> Result<(), SandboxError> {
        match self.outcomes {
            Outcomes::Ra => {
                self.request_mut(pk)?.videoid_status = Some(videoid_status.to_owned());
                Ok(())
            }
            Outcomes::RequestStatus => self.set_status(pk, as_request_status),
        }
    }

    /// `VIDEOREVIEW` (or `VALIDATED`) → `ENROLLREADY`.
    pub fn approve(&mut self, pk: u64, body: &RaoBody) -> Result<(), SandboxError> {
        self.require_undecided(pk, &[RequestStatus::VideoReview, RequestStatus::Validated])?;
        self.check_rao(body)?;
        // A test rule: the RA refuses the approval, in words of its own (which may quote the
        // customer's contact data, as real error texts do).
        if let Some(rule) = self.take_rule_for_request("approve", pk) {
            return Err(SandboxError::Refused { status: rule.status, details: rule.details });
        }
        self.set_status(pk, RequestStatus::EnrollReady)
    }

    /// `VIDEOREVIEW` (or `VALIDATED`) → `VIDEOID_REFUSED`; the reason is required.
    pub fn refuse(&mut self, pk: u64, body: &RaoBody) -> Result<(), SandboxError> {
        if body.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
            return Err(SandboxError::BadRequest("Missing required parameters: reason".into()));
        }
        self.require_undecided(pk, &[RequestStatus::VideoReview, RequestStatus::Validated])?;
        self.check_rao(body)?;
        self.decide(pk, "REFUSED", RequestStatus::VideoIdRefused)
    }

    /// Stores PDF documents of an approved request; returns `(field, uid, digest, filename)`.
    pub fn add_documents(
        &mut self,
        pk: u64,
        files: Vec<(String, String, Vec<u8>)>,
    ) -> Result<Vec<(String, String, String, String)>, SandboxError> {
        self.require(pk, &APPROVED)?;
        if files.is_empty() {
            return Err(SandboxError::BadRequest("Missing required parameters: file".into()));
        }
        if let Some((_, name, _)) = files.iter().find(|(_, _, bytes)| !pdf::is_pdf(bytes)) {
            return Err(SandboxError::Unsupported(format!("Unsupported file type: {name}")));
        }
        let mut out = Vec::new();
        for (field, filename, bytes) in files {
            let uid = uuid_like();
            let digest = sha256_hex(&bytes);
            let doc = SandboxDocument {
                uid: uid.clone(),
                filename: filename.clone(),
                sha256: digest.clone(),
                size: bytes.len() as u64,
                signed_sha256: None,
                deleted: Vec::new(),
            };
            self.requests.get_mut(&pk).expect("required above").documents.insert(uid.clone(), doc);
            self.signing.bytes.insert(uid.clone(), (bytes, None));
            out.push((field, uid, digest, filename));
        }
        Ok(out)
    }

    /// The service contract of an approved request (a real, small PDF).
    pub fn contract(&self, pk: u64) -> Result<Vec<u8>, SandboxError> {
        self.require(pk, &[RequestStatus::EnrollReady, RequestStatus::Signed])?;
        Ok(pdf::text_pdf(&["Service contract (kiosk-sandbox)", &format!("Request {pk}"), "Terms of the certificate."]))
    }

    /// A new OTP for an approved request: 412 when the last one is younger than a minute, or
    /// when the request is not ready.
    pub fn generate_otp(&mut self, pk: u64) -> Result<(), SandboxError> {
        if !APPROVED.contains(&self.status_of(pk)?) {
            return Err(SandboxError::Precondition("Invalid request status".into()));
        }
        let interval = self.signing.otp_interval.unwrap_or(OTP_INTERVAL);
        if self.signing.otps.get(&pk).is_some_and(|(_, at)| at.elapsed() < interval) {
            return Err(SandboxError::Precondition("Otp generated less than a minute ago".into()));
        }
        let code = format!("{:06}", rand::thread_rng().gen_range(0..1_000_000));
        self.signing.otps.insert(pk, (code, Instant::now()));
        if let Some(r) = self.requests.get_mut(&pk) {
            r.otps_sent += 1;
            // As a real server reports it: the request now waits for the signature.
            r.status = RequestStatus::OtpGenerated;
        }
        Ok(())
    }

    /// The last OTP of a request (the control API's, for tests: a real one goes to the phone).
    pub fn otp(&self, pk: u64) -> Option<&str> {
        self.signing.otps.get(&pk).map(|(c, _)| c.as_str())
    }

    /// Signs every document of an approved request with the right OTP (or an external unlock).
    pub fn sign(&mut self, pk: u64, secret: Option<&str>, external: bool) -> Result<(), SandboxError> {
        // After approval the request may have moved on to documents or an OTP; anything else
        // is out of turn, which the server answers with 412.
        if !APPROVED.contains(&self.status_of(pk)?) {
            return Err(SandboxError::Precondition("Invalid request status".into()));
        }
        let expected = self.otp(pk);
        if !external && (expected.is_none() || secret != expected) {
            return Err(SandboxError::OtpInvalid);
        }
        if self.requests[&pk].documents.is_empty() {
            return Err(SandboxError::BadRequest("No documents to sign".into()));
        }
        let uids: Vec<String> = self.requests[&pk].documents.keys().cloned().collect();
        for uid in uids {
            if let Some((original, signed)) = self.signing.bytes.get_mut(&uid) {
                let bytes = pdf::signed(original, &format!("request {pk}"));
                let sha = sha256_hex(&bytes);
                *signed = Some(bytes);
                if let Some(doc) = self.requests.get_mut(&pk).and_then(|r| r.documents.get_mut(&uid)) {
                    doc.signed_sha256 = Some(sha);
                }
            }
        }
        self.signing.otps.remove(&pk);
        // The RA's documents: the certificate is issued (`ISSUED`); `SIGNED` in one other source.
        let after = if self.outcomes == Outcomes::Ra { RequestStatus::Issued } else { RequestStatus::Signed };
        self.set_status(pk, after)
    }

    /// `POST /token`: the RAO's credentials traded for a token (one per set of credentials).
    pub fn create_token(&mut self, username: &str, password: &str, pin: &str) -> Result<String, SandboxError> {
        if (username, password, pin) != RAO_LOGIN {
            return Err(SandboxError::Refused {
                status: 404,
                details: "Error getting RAO's id. Make sure the credentials are correct.".into(),
            });
        }
        if !self.signing.tokens.is_empty() {
            return Err(SandboxError::BadRequest("A token with these credentials already exist!".into()));
        }
        let token: String = (0..16).map(|_| format!("{:02x}", rand::thread_rng().gen::<u8>())).collect();
        self.signing.tokens.insert(uuid_like(), token.clone());
        Ok(token)
    }

    /// Keeps an uploaded signature image; returns its uid.
    pub fn add_image(&mut self, png: &[u8]) -> String {
        let uid = uuid_like();
        self.signing.images.insert(uid.clone(), sha256_hex(png));
        uid
    }

    /// Whether `uid` names an uploaded signature image.
    pub fn has_image(&self, uid: &str) -> bool {
        self.signing.images.contains_key(uid)
    }

    /// The page counts of a request's documents.
    pub fn page_counts(&self, pk: u64) -> Result<Vec<usize>, SandboxError> {
        let req = self.requests.get(&pk).ok_or(SandboxError::NotFound)?;
        Ok(req
            .documents
            .keys()
            .filter_map(|uid| self.signing.bytes.get(uid))
            .map(|(b, _)| pdf::page_count(b))
            .collect())
    }

    /// A document's original or signed bytes.
    pub fn document(&self, pk: u64, uid: &str, signed: bool) -> Result<Vec<u8>, SandboxError> {
        let copy = if signed { "signed" } else { "original" };
        match self.requests.get(&pk).ok_or(SandboxError::NotFound)?.documents.get(uid) {
            Some(doc) if !doc.deleted.iter().any(|d| d == copy) => {}
            _ => return Err(SandboxError::DocumentNotFound(uid.to_owned())),
        }
        let (original, signed_bytes) =
            self.signing.bytes.get(uid).ok_or_else(|| SandboxError::DocumentNotFound(uid.into()))?;
        match (signed, signed_bytes) {
            (false, _) => Ok(original.clone()),
            (true, Some(b)) => Ok(b.clone()),
            (true, None) => Err(SandboxError::DocumentNotFound(format!("{uid} is not signed yet"))),
        }
    }

    /// The old generation's per-type delete: one copy (`signed` or the original) of a document.
    /// The service deletes nothing on its own: the other copy stays until it is deleted too.
    pub fn delete_copy(&mut self, pk: u64, uid: &str, signed: bool) -> Result<usize, SandboxError> {
        let copy = if signed { "signed" } else { "original" };
        let req = self.requests.get_mut(&pk).ok_or(SandboxError::NotFound)?;
        let doc = match req.documents.get_mut(uid) {
            Some(doc) if !doc.deleted.iter().any(|d| d == copy) => doc,
            _ => return Err(SandboxError::DocumentNotFound(uid.to_owned())),
        };
        if signed && doc.signed_sha256.is_none() {
            return Err(SandboxError::DocumentNotFound(format!("{uid} is not signed")));
        }
        doc.deleted.push(copy.to_owned());
        let gone = doc.deleted.iter().any(|d| d == "original")
            && (doc.signed_sha256.is_none() || doc.deleted.iter().any(|d| d == "signed"));
        if gone {
            req.documents.remove(uid);
            self.signing.bytes.remove(uid);
        }
        Ok(1)
    }

    /// Deletes one document, or all of a request's (`uid` `None`).
    pub fn delete_documents(&mut self, pk: u64, uid: Option<&str>) -> Result<usize, SandboxError> {
        let req = self.requests.get_mut(&pk).ok_or(SandboxError::NotFound)?;
        let uids: Vec<String> = match uid {
            Some(u) if req.documents.contains_key(u) => vec![u.to_owned()],
            Some(u) => return Err(SandboxError::DocumentNotFound(u.to_owned())),
            None => req.documents.keys().cloned().collect(),
        };
        for u in &uids {
            req.documents.remove(u);
            self.signing.bytes.remove(u);
        }
        Ok(uids.len())
    }
}

fn uuid_like() -> String {
    let b: [u8; 16] = rand::thread_rng().gen();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> RaoBody {
        RaoBody { token: Some(RAO_TOKEN.into()), rao: Some(RAO_ID.into()), ..Default::default() }
    }

    fn in_review(st: &mut SandboxState) -> u64 {
        let pk = st.create("s@example.com", "+34600000000").request_pk;
        st.set_status(pk, RequestStatus::VideoReview).unwrap();
        pk
    }

    #[test]
    fn approve_documents_otp_sign_retrieve_delete() {
        let mut st = SandboxState::default();
        let pk = in_review(&mut st);
        let pdf = pdf::text_pdf(&["doc"]);
        assert_eq!(
            st.add_documents(pk, vec![("file".into(), "a.pdf".into(), pdf.clone())]),
            Err(SandboxError::InvalidStatus(RequestStatus::VideoReview))
        );
        let wrong = RaoBody { token: Some("nope".into()), ..token() };
        assert!(matches!(st.approve(pk, &wrong), Err(SandboxError::RaForbidden(_))));
        st.approve(pk, &token()).unwrap();
        assert_eq!(st.requests[&pk].status, RequestStatus::EnrollReady);
        assert!(matches!(
            st.add_documents(pk, vec![("file".into(), "x.txt".into(), b"hello".to_vec())]),
            Err(SandboxError::Unsupported(_))
        ));
        let uid = st.add_documents(pk, vec![("file".into(), "a.pdf".into(), pdf.clone())]).unwrap()[0].1.clone();
        assert!(pdf::is_pdf(&st.contract(pk).unwrap()));
        assert_eq!(st.sign(pk, Some("000000"), false), Err(SandboxError::OtpInvalid), "no OTP yet");
        st.generate_otp(pk).unwrap();
        assert!(matches!(st.generate_otp(pk), Err(SandboxError::Precondition(m)) if m.contains("less than a minute")));
        let code = st.otp(pk).unwrap().to_owned();
        let wrong_code = if code == "111111" { "222222" } else { "111111" };
        assert_eq!(st.sign(pk, Some(wrong_code), false), Err(SandboxError::OtpInvalid));
        st.sign(pk, Some(&code), false).unwrap();
        // The RA's model: the certificate is issued.
        assert_eq!(st.requests[&pk].status, RequestStatus::Issued);
        let signed = st.document(pk, &uid, true).unwrap();
        assert!(pdf::is_pdf(&signed) && signed != pdf);
        assert_eq!(st.document(pk, &uid, false).unwrap(), pdf);
        assert!(matches!(st.document(pk, "nope", true), Err(SandboxError::DocumentNotFound(_))));
        assert_eq!(st.delete_documents(pk, Some(&uid)), Ok(1));
        assert!(matches!(st.delete_documents(pk, Some(&uid)), Err(SandboxError::DocumentNotFound(_))));
    }

    #[test]
    fn refuse_needs_a_reason_and_validate_is_a_first_step() {
        let mut st = SandboxState::default();
        let pk = in_review(&mut st);
        assert!(matches!(st.refuse(pk, &token()), Err(SandboxError::BadRequest(_))));
        st.validate_videoid(pk, &token()).unwrap();
        // The RA's model: the outcome is the VideoID's, the request stays in review.
        assert_eq!(st.requests[&pk].status, RequestStatus::VideoReview);
        assert_eq!(st.requests[&pk].videoid_status.as_deref(), Some("VALIDATED"));
        let login = RaoBody {
            username: Some(RAO_LOGIN.0.into()),
            password: Some(RAO_LOGIN.1.into()),
            pin: Some(RAO_LOGIN.2.into()),
            rao: Some(RAO_ID.into()),
            reason: Some("blurred document".into()),
            ..Default::default()
        };
        st.refuse(pk, &login).unwrap();
        assert_eq!(st.requests[&pk].status, RequestStatus::VideoReview);
        assert_eq!(st.requests[&pk].videoid_status.as_deref(), Some("REFUSED"));
        assert_eq!(st.approve(pk, &token()), Err(SandboxError::InvalidStatus(RequestStatus::VideoIdRefused)));
    }

    #[test]
    fn outcomes_as_request_statuses_when_so_configured() {
        let mut st = SandboxState::default();
        st.outcomes = Outcomes::RequestStatus;
        let pk = in_review(&mut st);
        st.validate_videoid(pk, &token()).unwrap();
        assert_eq!(
            (st.requests[&pk].status.clone(), st.requests[&pk].videoid_status.clone()),
            (RequestStatus::Validated, None)
        );
        let refusal = RaoBody { reason: Some("blurred".into()), ..token() };
        st.refuse(pk, &refusal).unwrap();
        assert_eq!(st.requests[&pk].status, RequestStatus::VideoIdRefused);
    }
}
