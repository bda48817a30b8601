//! The operations the agent uses: hello, create, upload evidences, upload video, request status.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use serde_json::Value;

use super::envelope::{interpret, parse_retry_after};
use super::OneShotError;
use crate::config::OneShotConfig;
use oneshot_protocol::RequestStatus;

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

/// A One-Shot API client. Cheap to clone (reqwest's client is reference-counted).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    cfg: OneShotConfig,
}

impl Client {
    /// Builds the client: rustls with the web PKI roots plus `ca_bundle`, the configured headers
    /// on every request, and the configured timeouts.
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
            .default_headers(headers)
            .user_agent(concat!("kiosk-agent/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(cfg.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30));
        if let Some(path) = &cfg.ca_bundle {
            let pem = std::fs::read(path).map_err(|e| OneShotError::Setup(format!("{}: {e}", path.display())))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| OneShotError::Setup(e.to_string()))? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| OneShotError::Setup(super::error_chain(&e)))?;
        Ok(Client { http, cfg: cfg.clone() })
    }

    fn url(&self, template: &str, ids: Option<&RequestIds>) -> Result<String, OneShotError> {
        let mut path = template.to_owned();
        if let Some(ids) = ids {
            path = path.replace("{request_pk}", &ids.request_pk);
            if path.contains("{videoid_pk}") {
                let v = ids.videoid_pk.as_deref().ok_or_else(|| {
                    OneShotError::Protocol("the path needs videoid_pk but the create answer had none".into())
                })?;
                path = path.replace("{videoid_pk}", v);
            }
        }
        Ok(format!("{}{}", self.cfg.base_url, path))
    }

    async fn send(&self, req: reqwest::RequestBuilder, timeout: Duration) -> Result<Value, OneShotError> {
        let resp = req.timeout(timeout).send().await.map_err(OneShotError::from_reqwest)?;
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
        let body = resp.bytes().await.map_err(OneShotError::from_reqwest)?;
        interpret(status, retry_after, &body)
    }

    /// `GET /hello`: is the server up?
    pub async fn hello(&self) -> Result<Value, OneShotError> {
        let url = self.url(&self.cfg.paths.hello, None)?;
        self.send(self.http.get(url), self.cfg.request_timeout).await
    }

    /// Creates a VideoID request; the body comes from [`crate::evidence::create_body`].
    pub async fn create(&self, body: &Value) -> Result<Created, OneShotError> {
        let url = self.url(&self.cfg.paths.create, None)?;
        let details = self.send(self.http.post(url).json(body), self.cfg.request_timeout).await?;
        let id = |key: &str| match details.get(key) {
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let request_pk = id("request_pk")
            .ok_or_else(|| OneShotError::Protocol(format!("create answer has no request_pk: {details}")))?;
        Ok(Created {
            ids: RequestIds { request_pk, videoid_pk: id("videoid_pk") },
            videoid_link: details.get("videoid_link").and_then(Value::as_str).map(str::to_owned),
        })
    }

    /// Uploads the evidences JSON (already serialized, as it can be tens of megabytes).
    pub async fn upload_evidences(&self, ids: &RequestIds, body: Vec<u8>) -> Result<(), OneShotError> {
        let url = self.url(&self.cfg.paths.evidences, Some(ids))?;
        let req = self.http.post(url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        self.send(req, self.cfg.request_timeout).await.map(drop)
    }

    /// Uploads the video as multipart field `video` (`video/mp4`), streaming `body` of `len` bytes.
    pub async fn upload_video(&self, ids: &RequestIds, body: reqwest::Body, len: u64) -> Result<(), OneShotError> {
        let url = self.url(&self.cfg.paths.video, Some(ids))?;
        let part = reqwest::multipart::Part::stream_with_length(body, len)
            .file_name("video.mp4")
            .mime_str("video/mp4")
            .expect("video/mp4 is a valid MIME type");
        let form = reqwest::multipart::Form::new().part("video", part);
        self.send(self.http.post(url).multipart(form), self.cfg.upload_timeout).await.map(drop)
    }

    /// The details of a request, or `None` when the server has no such request (404).
    pub async fn request_details(&self, request_pk: &str) -> Result<Option<Value>, OneShotError> {
        let ids = RequestIds { request_pk: request_pk.into(), videoid_pk: None };
        let url = self.url(&self.cfg.paths.status, Some(&ids))?;
        match self.send(self.http.get(url), self.cfg.request_timeout).await {
            Ok(details) => Ok(Some(details)),
            Err(OneShotError::Rejected { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `details.status` of a request (`VIDEOPENDING`, `VIDEOREVIEW`, …).
    pub async fn request_status(&self, request_pk: &str) -> Result<RequestStatus, OneShotError> {
        let ids = RequestIds { request_pk: request_pk.into(), videoid_pk: None };
        let url = self.url(&self.cfg.paths.status, Some(&ids))?;
        let details = self.send(self.http.get(url), self.cfg.request_timeout).await?;
        details
            .get("status")
            .and_then(Value::as_str)
            .map(RequestStatus::parse)
            .ok_or_else(|| OneShotError::Protocol(format!("request answer has no details.status: {details}")))
    }
}
