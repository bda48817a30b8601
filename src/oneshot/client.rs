//! The operations the agent uses: probe, create, upload evidences, upload video, request details.
//!
//! Nothing from the wire is trusted: redirects are never followed (a 3xx is a permanent error
//! naming its location, so a create body with billing credentials cannot be sent to another
//! host), answers are read through a [`MAX_ANSWER`] cap, ids are accepted only as decimal
//! numbers of at most 19 digits before they are put into a path, and environment proxies are
//! ignored (`oneshot.proxy` sets one on purpose).

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, LOCATION, RETRY_AFTER};
use serde_json::Value;

use super::envelope::{clean, interpret, parse_retry_after};
use super::OneShotError;
use crate::config::OneShotConfig;
use oneshot_protocol::{Generation, Operation, RequestStatus};

/// The largest JSON answer read; a bigger one is a protocol error (no API answer comes close).
pub const MAX_ANSWER: usize = 1024 * 1024;

/// The identifiers the server gave a VideoID request; both layouts key paths by one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestIds {
    pub request_pk: String,
    pub videoid_pk: Option<String>,
}

/// What "create VideoID request" returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub ids: RequestIds,
    pub videoid_link: Option<String>,
}

/// Whether `pk` is an id the agent will put into a path: 1 to 19 ASCII digits.
pub fn valid_pk(pk: &str) -> bool {
    (1..=19).contains(&pk.len()) && pk.bytes().all(|b| b.is_ascii_digit())
}

/// Reads an id field of an answer: a JSON number or a string of digits, anything else refused.
fn pk_field(details: &Value, key: &str) -> Result<Option<String>, OneShotError> {
    let text = match details.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.is_empty() => return Ok(None),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(OneShotError::Protocol(format!("{key} is not an id: {}", clean(&other.to_string()))))
        }
    };
    if !valid_pk(&text) {
        return Err(OneShotError::Protocol(format!("{key} {:?} is not 1 to 19 digits", clean(&text))));
    }
    Ok(Some(text))
}

/// A One-Shot API client. Cheap to clone (reqwest's client is reference-counted).
#[derive(Debug, Clone)]
pub struct Client {
    pub(super) http: reqwest::Client,
    pub(super) cfg: OneShotConfig,
}

impl Client {
    /// Builds the client: rustls with the web PKI roots plus `ca_bundle`, the configured headers
    /// on every request, the configured timeouts, no redirects and no environment proxy.
    pub fn new(cfg: &OneShotConfig) -> Result<Client, OneShotError> {
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| OneShotError::Setup(e.to_string()))?;
            let mut value = HeaderValue::from_str(value).map_err(|e| OneShotError::Setup(e.to_string()))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(!cfg.base_url.starts_with("http://"))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .default_headers(headers)
            .user_agent(concat!("kiosk-agent/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(cfg.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            // The peer certificate, for doctor's expiry check.
            .tls_info(true);
        if let Some(proxy) = &cfg.proxy {
            builder = builder
                .proxy(reqwest::Proxy::all(proxy).map_err(|e| OneShotError::Setup(format!("oneshot.proxy: {e}")))?);
        }
        if let Some(path) = &cfg.ca_bundle {
            let pem = crate::fsutil::read_bounded(path, crate::fsutil::MAX_CA_BUNDLE_BYTES)
                .map_err(|e| OneShotError::Setup(format!("{}: {e}", path.display())))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| OneShotError::Setup(e.to_string()))? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| OneShotError::Setup(super::error_chain(&e)))?;
        Ok(Client { http, cfg: cfg.clone() })
    }

    /// The generation this client speaks to.
    pub fn generation(&self) -> Generation {
        self.cfg.generation
    }

    pub(super) fn url(&self, template: &str, ids: Option<&RequestIds>) -> Result<String, OneShotError> {
        if template.is_empty() {
            return Err(OneShotError::Unsupported(format!("the {} has no such operation", self.generation())));
        }
        let mut path = template.to_owned();
        if let Some(ids) = ids {
            // Ids were checked when they arrived; checked again here because a path is built
            // from them and they may come from an older queue or an operator.
            if !valid_pk(&ids.request_pk) {
                return Err(OneShotError::Local(format!(
                    "request_pk {:?} is not 1 to 19 digits",
                    clean(&ids.request_pk)
                )));
            }
            path = path.replace("{request_pk}", &ids.request_pk);
            if path.contains("{videoid_pk}") {
                let v = ids.videoid_pk.as_deref().filter(|v| valid_pk(v)).ok_or_else(|| {
                    OneShotError::Protocol("the path needs a videoid_pk but the create answer had no valid one".into())
                })?;
                path = path.replace("{videoid_pk}", v);
            }
        }
        Ok(format!("{}{}", self.cfg.base_url, path))
    }

    /// Sends a request and reads its JSON answer (through the [`MAX_ANSWER`] cap).
    pub(super) async fn send(
        &self,
        op: &'static str,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<Value, OneShotError> {
        let mut resp = self.start(op, req, timeout).await?;
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
        let body = read_capped(&mut resp, status).await?;
        interpret(status, retry_after, &body)
    }

    /// Sends a request and returns the response once its head arrived; a redirect is an error.
    pub(super) async fn start(
        &self,
        op: &'static str,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<reqwest::Response, OneShotError> {
        tracing::debug!(op, "http request");
        let resp = req.timeout(timeout).send().await.map_err(OneShotError::from_reqwest)?;
        if resp.status().is_redirection() {
            let location = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map_or_else(|| "(no Location header)".to_owned(), clean);
            return Err(OneShotError::Redirect { status: resp.status().as_u16(), location });
        }
        Ok(resp)
    }

    /// Is the server reachable? Any HTTP answer counts (even 404 or 405): the probe asks about
    /// the network, not about an operation. The old Optimizer has `GET /hello`; the new one does
    /// not document it, so there the probe is a `HEAD` of the base URL.
    pub async fn probe(&self) -> Result<(), OneShotError> {
        let req = match self.generation() {
            Generation::Old => self.http.get(self.url(&self.cfg.paths[Operation::Hello], None)?),
            Generation::New => self.http.head(&self.cfg.base_url),
        };
        tracing::debug!(op = "probe", "http request");
        match req.timeout(self.cfg.connect_timeout + Duration::from_secs(5)).send().await {
            Ok(_) => Ok(()),
            Err(e) => Err(OneShotError::from_reqwest(e)),
        }
    }

    /// Which generation answers at `oneshot.base_url`, told by the envelope of `GET /version`
    /// (both generations; `/hello` on the old one where `/version` is missing): the old one's
    /// `{"status": "200 OK", "details": …}`, the new one's `{"status": "success", …}` or
    /// FastAPI's `{"detail": …}`. `None` when neither answers in a known shape.
    pub async fn detect_generation(&self) -> Option<(Generation, String)> {
        self.detect_generation_at(&self.cfg.base_url).await
    }

    /// The other generation's base URL on the same server: `base_url` with its generation's
    /// base path swapped for the other one's (`None` when base_url does not end in one).
    pub fn other_base_url(&self) -> Option<(Generation, String)> {
        let other = match self.generation() {
            Generation::New => Generation::Old,
            Generation::Old => Generation::New,
        };
        let root = self.cfg.base_url.strip_suffix(self.generation().base_path())?;
        Some((other, format!("{root}{}", other.base_path())))
    }

    /// [`Self::detect_generation`] at any base URL of this server.
    pub async fn detect_generation_at(&self, base_url: &str) -> Option<(Generation, String)> {
        for path in ["/version", "/hello"] {
            let url = format!("{base_url}{path}");
            let Ok(mut resp) =
                self.http.get(&url).timeout(self.cfg.connect_timeout + Duration::from_secs(5)).send().await
            else {
                return None;
            };
            let status = resp.status();
            let Ok(body) = read_capped(&mut resp, status.as_u16()).await else { continue };
            let Ok(value) = serde_json::from_slice::<Value>(&body) else { continue };
            let word = value.get("status").and_then(Value::as_str).unwrap_or_default();
            let generation = if value.get("details").is_some() || word.ends_with(" OK") {
                Generation::Old
            } else if word == "success" || (value.get("detail").is_some() && status.is_success()) {
                Generation::New
            } else {
                continue;
            };
            return Some((generation, format!("GET {path} answered HTTP {} in its envelope", status.as_u16())));
        }
        None
    }

    /// A request for `op` at `url`, with the operation's own method ([`Operation::method`]).
    pub(super) fn call(&self, op: Operation, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        let method = reqwest::Method::from_bytes(op.method().as_bytes()).expect("the table's methods are valid");
        self.http.request(method, url)
    }

    /// The probe, returning what `doctor` checks: the server's clock (its `Date` header) and,
    /// over https, when its certificate expires.
    pub async fn server_probe(&self) -> Result<ServerProbe, OneShotError> {
        let req = match self.generation() {
            Generation::Old => self.http.get(self.url(&self.cfg.paths[Operation::Hello], None)?),
            Generation::New => self.http.head(&self.cfg.base_url),
        };
        let resp = req
            .timeout(self.cfg.connect_timeout + Duration::from_secs(5))
            .send()
            .await
            .map_err(OneShotError::from_reqwest)?;
        let date = resp
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok());
        let certificate_expires = resp
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|tls| tls.peer_certificate())
            .and_then(certificate_not_after);
        Ok(ServerProbe { date, certificate_expires })
    }

    /// Creates a VideoID request; the body comes from [`crate::evidence::create_body`].
    pub async fn create(&self, body: &Value) -> Result<Created, OneShotError> {
        let url = self.url(&self.cfg.paths[Operation::Create], None)?;
        let details =
            self.send("create", self.call(Operation::Create, url).json(body), self.cfg.request_timeout).await?;
        let request_pk = pk_field(&details, "request_pk")?.ok_or_else(|| {
            OneShotError::Protocol(format!("create answer has no request_pk: {}", clean(&details.to_string())))
        })?;
        Ok(Created {
            ids: RequestIds { request_pk, videoid_pk: pk_field(&details, "videoid_pk")? },
            videoid_link: details.get("videoid_link").and_then(Value::as_str).map(clean),
        })
    }

    /// Uploads the evidences JSON (already serialized, as it can be tens of megabytes), with a
    /// timeout scaled by its size.
    pub async fn upload_evidences(&self, ids: &RequestIds, body: Vec<u8>) -> Result<(), OneShotError> {
        let len = body.len() as u64;
        self.upload_evidences_body(ids, reqwest::Body::from(body), len).await
    }

    /// [`Client::upload_evidences`] with a streamed body of `len` bytes (paced uploads).
    pub async fn upload_evidences_body(
        &self,
        ids: &RequestIds,
        body: reqwest::Body,
        len: u64,
    ) -> Result<(), OneShotError> {
        let url = self.url(&self.cfg.paths[Operation::Evidences], Some(ids))?;
        let timeout = self.cfg.upload_timeout_for(len);
        let req = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body);
        self.send("evidences", req, timeout).await.map(drop)
    }

    /// Uploads the video as multipart field `video` (`video/mp4`), streaming `body` of `len` bytes.
    pub async fn upload_video(&self, ids: &RequestIds, body: reqwest::Body, len: u64) -> Result<(), OneShotError> {
        let url = self.url(&self.cfg.paths[Operation::Video], Some(ids))?;
        let part = reqwest::multipart::Part::stream_with_length(body, len)
            .file_name("video.mp4")
            .mime_str("video/mp4")
            .expect("video/mp4 is a valid MIME type");
        let form = reqwest::multipart::Form::new().part("video", part);
        self.send("video", self.call(Operation::Video, url).multipart(form), self.cfg.upload_timeout_for(len))
            .await
            .map(drop)
    }

    /// The details of a request, or `None` when the server has no such request (a 404, or the
    /// old Optimizer's 400 with a `404 Not Found` envelope).
    pub async fn request_details(&self, request_pk: &str) -> Result<Option<Value>, OneShotError> {
        let ids = RequestIds { request_pk: request_pk.into(), videoid_pk: None };
        let url = self.url(&self.cfg.paths[Operation::Status], Some(&ids))?;
        match self.send("status", self.call(Operation::Status, url), self.cfg.request_timeout).await {
            Ok(details) => Ok(Some(details)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A customer's requests, found by email and phone (`GET /requests?email=&mobile_phone_number=`):
    /// each request's details. `None` when the server has no such search (404, 405).
    pub async fn search_requests(&self, email: &str, phone: &str) -> Result<Option<Vec<Value>>, OneShotError> {
        let mut url = url::Url::parse(&self.url(&self.cfg.paths[Operation::RequestSearch], None)?)
            .map_err(|e| OneShotError::Setup(format!("request search URL: {e}")))?;
        url.query_pairs_mut().append_pair("email", email).append_pair("mobile_phone_number", phone);
        match self
            .send("request_search", self.call(Operation::RequestSearch, url.as_str()), self.cfg.request_timeout)
            .await
        {
            Ok(Value::Array(list)) => Ok(Some(list)),
            Ok(Value::Object(o)) => match o.get("requests").or_else(|| o.get("results")) {
                Some(Value::Array(list)) => Ok(Some(list.clone())),
                _ => Err(OneShotError::Protocol("request search answer holds no list".into())),
            },
            Ok(_) => Err(OneShotError::Protocol("request search answer holds no list".into())),
            Err(e) if e.is_not_found() || matches!(e, OneShotError::Rejected { status: 405, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Corrects the request's OCR data (`PUT /request/{pk}`): its details are read first for the
    /// `scratchcard` and the fields the update requires.
    pub async fn update_request(
        &self,
        ids: &RequestIds,
        correction: &super::OcrCorrection,
    ) -> Result<(), OneShotError> {
        let details = self
            .request_details(&ids.request_pk)
            .await?
            .ok_or_else(|| OneShotError::Rejected { status: 404, details: "no such request".into() })?;
        let body = correction
            .body(&details, &self.cfg.registration_authority, &self.cfg.profile)
            .map_err(OneShotError::Protocol)?;
        let url = self.url(&self.cfg.paths[Operation::RequestUpdate], Some(ids))?;
        self.send("request_update", self.call(Operation::RequestUpdate, url).json(&body), self.cfg.request_timeout)
            .await
            .map(drop)
    }

    /// Trades the RAO's credentials for a token (`POST /token`): the token is what the kiosk keeps;
    /// the password and PIN are used for this one call and never stored.
    pub async fn create_rao_token(&self, username: &str, password: &str, pin: &str) -> Result<String, OneShotError> {
        let url = self.url(&self.cfg.paths[Operation::TokenCreate], None)?;
        let mut body = serde_json::json!({"username": username, "password": password, "pin": pin});
        if let Some(env) = &self.cfg.env {
            body["env"] = env.clone().into();
        }
        let payload = self
            .send("token_create", self.call(Operation::TokenCreate, url).json(&body), self.cfg.request_timeout)
            .await?;
        let token = match &payload {
            Value::String(t) => Some(t.clone()),
            Value::Object(o) => o.get("token").and_then(Value::as_str).map(str::to_owned),
            _ => None,
        };
        token
            .filter(|t| (16..=256).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .ok_or_else(|| OneShotError::Protocol("token answer holds no token".into()))
    }

    /// The RAO tokens the server holds: their uids (the tokens themselves are not shown).
    pub async fn list_rao_tokens(&self) -> Result<Vec<String>, OneShotError> {
        let url = self.url(&self.cfg.paths[Operation::TokenList], None)?;
        let payload = self.send("token_list", self.call(Operation::TokenList, url), self.cfg.request_timeout).await?;
        let list = match &payload {
            Value::Array(list) => list.clone(),
            Value::Object(o) => o.get("tokens").and_then(Value::as_array).cloned().unwrap_or_default(),
            _ => Vec::new(),
        };
        Ok(list
            .iter()
            .filter_map(|t| match t {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("uid").or_else(|| o.get("id")).and_then(Value::as_str).map(str::to_owned),
                _ => None,
            })
            .map(|s| clean(&s))
            .collect())
    }

    /// Revokes one RAO token by its uid (`DELETE /token/{uid}`).
    pub async fn delete_rao_token(&self, uid: &str) -> Result<(), OneShotError> {
        if !super::valid_uid(uid) {
            return Err(OneShotError::Local(format!("token uid {:?} is not a uid", clean(uid))));
        }
        let url = self.url(&self.cfg.paths[Operation::TokenDelete], None)?.replace("{uid}", uid);
        self.send("token_delete", self.call(Operation::TokenDelete, url), self.cfg.request_timeout).await.map(drop)
    }

    /// Cancels a request on the server (`DELETE /request/{pk}`: the old Optimizer answers
    /// "Request directory removed successfully"; the new one's answer is not published).
    pub async fn cancel_request(&self, request_pk: &str) -> Result<(), OneShotError> {
        let ids = RequestIds { request_pk: request_pk.into(), videoid_pk: None };
        let url = self.url(&self.cfg.paths[Operation::Cancel], Some(&ids))?;
        self.send("cancel", self.call(Operation::Cancel, url), self.cfg.request_timeout).await.map(drop)
    }

    /// `details.status` of a request (`VIDEOPENDING`, `VIDEOREVIEW`, …).
    pub async fn request_status(&self, request_pk: &str) -> Result<RequestStatus, OneShotError> {
        let ids = RequestIds { request_pk: request_pk.into(), videoid_pk: None };
        let url = self.url(&self.cfg.paths[Operation::Status], Some(&ids))?;
        let details = self.send("status", self.call(Operation::Status, url), self.cfg.request_timeout).await?;
        status_of(&details)
    }
}

/// Reads an answer's body, at most [`MAX_ANSWER`] bytes.
pub(super) async fn read_capped(resp: &mut reqwest::Response, status: u16) -> Result<Vec<u8>, OneShotError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(OneShotError::from_reqwest)? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(OneShotError::Protocol(format!(
                "HTTP {status} answer larger than {} KiB; not read",
                MAX_ANSWER / 1024
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The status in a request's details.
///
/// The VideoID's own outcome counts where the server keeps it apart from the request status
/// (the RA's model): a request still in `VIDEOREVIEW` whose `videoid_data.status` is `REFUSED`
/// was refused, one whose VideoID is `VALIDATED` was validated. Without that field, or once the
/// request moved on, the request status is the answer.
pub fn status_of(details: &Value) -> Result<RequestStatus, OneShotError> {
    let status = details.get("status").and_then(Value::as_str).map(RequestStatus::parse).ok_or_else(|| {
        OneShotError::Protocol(format!("request answer has no details.status: {}", clean(&details.to_string())))
    })?;
    let videoid = details.pointer("/videoid_data/status").and_then(Value::as_str).map(str::to_ascii_uppercase);
    Ok(match (&status, videoid.as_deref()) {
        (RequestStatus::VideoReview, Some("REFUSED")) => RequestStatus::VideoIdRefused,
        (RequestStatus::VideoReview, Some("VALIDATED")) => RequestStatus::Validated,
        _ => status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_videoids_own_outcome_counts_while_the_request_is_in_review() {
        let read = |d: Value| status_of(&d).unwrap();
        assert_eq!(read(json!({"status": "VIDEOREVIEW"})), RequestStatus::VideoReview);
        let refused = json!({"status": "VIDEOREVIEW", "videoid_data": {"status": "REFUSED"}});
        assert_eq!(read(refused), RequestStatus::VideoIdRefused);
        let validated = json!({"status": "VIDEOREVIEW", "videoid_data": {"status": "VALIDATED"}});
        assert_eq!(read(validated), RequestStatus::Validated);
        // Once the request moved on, its own status is the answer.
        assert_eq!(
            read(json!({"status": "ENROLLREADY", "videoid_data": {"status": "VALIDATED"}})),
            RequestStatus::EnrollReady
        );
        assert!(status_of(&json!({"videoid_data": {"status": "REFUSED"}})).is_err());
    }

    #[test]
    fn ids_are_digits_only() {
        for (value, ok) in [
            (json!(45836), Some("45836")),
            (json!("45836"), Some("45836")),
            (json!("9223372036854775807"), Some("9223372036854775807")),
            (json!(null), None),
            (json!(""), None),
        ] {
            assert_eq!(pk_field(&json!({ "pk": value }), "pk").unwrap().as_deref(), ok, "{value}");
        }
        for bad in
            [json!("../../hello?x="), json!("12a"), json!("12345678901234567890"), json!(-3), json!(1.5), json!({})]
        {
            assert!(pk_field(&json!({ "pk": bad }), "pk").is_err(), "{bad}");
        }
        assert!(valid_pk("1") && !valid_pk("") && !valid_pk(" 1") && !valid_pk("１"));
    }
}

/// What [`Client::server_probe`] learnt about the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerProbe {
    /// The server's clock, when it sends a `Date` header.
    pub date: Option<std::time::SystemTime>,
    /// When the server's certificate stops being valid (https only).
    pub certificate_expires: Option<std::time::SystemTime>,
}

/// The `notAfter` of a DER certificate.
fn certificate_not_after(der: &[u8]) -> Option<std::time::SystemTime> {
    use x509_cert::der::Decode as _;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    Some(cert.tbs_certificate.validity.not_after.to_system_time())
}
