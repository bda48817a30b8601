//! The `[oneshot]` section: where the server is, who this kiosk is to it, and how to talk to it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oneshot_protocol::Generation;

use super::files::Files;
use super::flow::{self, read_secret};
use super::paths::{self, Paths};
use super::raw::RawOneShot;

/// The `[oneshot]` section, validated.
#[derive(Clone)]
pub struct OneShotConfig {
    /// Base URL without a trailing slash; https unless the host is a loopback address.
    pub base_url: String,
    /// The server generation, selected by `layout` ("current" or "legacy").
    pub generation: Generation,
    pub paths: Paths,
    pub registration_authority: String,
    pub profile: String,
    pub env: Option<String>,
    pub billing_username: Option<String>,
    /// Read from `billing_password_file`; never logged (see the manual `Debug`).
    pub billing_password: Option<flow::Secret>,
    /// Sent in the create body when set (the new generation ignores it: the URL lives in the RA).
    pub webhook_url: Option<String>,
    /// `videoid_mode` in the create body when set (the vendor's External-mode example sends 1).
    pub videoid_mode: Option<i64>,
    /// An explicit proxy for the One-Shot server; environment proxies are never used.
    pub proxy: Option<String>,
    /// The slowest upload rate (bytes/s) the upload timeouts allow for (see [`Self::upload_timeout_for`]).
    pub min_upload_bytes_per_sec: u64,
    /// Extra headers sent with every request (e.g. a gateway's credentials); never logged.
    pub headers: BTreeMap<String, String>,
    pub ca_bundle: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// The ceiling of an upload's size-scaled timeout.
    pub upload_timeout: Duration,
}

impl OneShotConfig {
    /// The timeout of an upload of `bytes`: the request timeout plus the time the body takes at
    /// `min_upload_bytes_per_sec`, at most `upload_timeout` (and never below the request
    /// timeout). A 55 MB evidences body must not be cut off like a status read.
    pub fn upload_timeout_for(&self, bytes: u64) -> Duration {
        let transfer = Duration::from_secs_f64(bytes as f64 / self.min_upload_bytes_per_sec.max(1) as f64);
        (self.request_timeout + transfer).min(self.upload_timeout).max(self.request_timeout)
    }
}

impl fmt::Debug for OneShotConfig {
    // Written by hand so that the billing password and header values never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneShotConfig")
            .field("base_url", &self.base_url)
            .field("generation", &self.generation)
            .field("paths", &self.paths)
            .field("registration_authority", &self.registration_authority)
            .field("profile", &self.profile)
            .field("env", &self.env)
            .field("billing_username", &self.billing_username)
            .field("billing_password", &self.billing_password.as_ref().map(|_| "<redacted>"))
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("ca_bundle", &self.ca_bundle)
            .field("videoid_mode", &self.videoid_mode)
            .field("proxy", &self.proxy.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

/// Validates `[oneshot]`; the billing password and the CA bundle are read later, with the
/// configuration's other files.
pub(super) fn validate_oneshot(
    raw: Option<RawOneShot>,
    base_dir: &Path,
    files: &mut Files,
    problem: &mut dyn FnMut(&str, String),
) -> OneShotConfig {
    let resolve = |p: PathBuf| if p.is_absolute() { p } else { base_dir.join(p) };
    let o = raw.unwrap_or_default();
    let base_url = match o.base_url.as_deref().map(str::trim) {
        None | Some("") => {
            problem("oneshot.base_url", "is required".into());
            String::new()
        }
        Some(url) => match check_base_url(url) {
            Ok(url) => url,
            Err(msg) => {
                problem("oneshot.base_url", msg);
                String::new()
            }
        },
    };
    let generation = match o.layout.as_deref() {
        None => Generation::New,
        Some(name) => Generation::from_layout_name(name).unwrap_or_else(|| {
            problem("oneshot.layout", format!("must be \"current\" or \"legacy\", not {name:?}"));
            Generation::New
        }),
    };
    let paths = paths::validate(generation, o.paths, &mut *problem);
    let required = |key: &str, v: Option<String>, problem: &mut dyn FnMut(&str, String)| match v {
        Some(s) if !s.trim().is_empty() => s.trim().to_owned(),
        _ => {
            problem(key, "is required".into());
            String::new()
        }
    };
    let registration_authority = required("oneshot.registration_authority", o.registration_authority, &mut *problem);
    let profile = required("oneshot.profile", o.profile, &mut *problem);
    if let Some(env) = &o.env {
        if env != "sandbox" && env != "prod" {
            problem("oneshot.env", format!("must be \"sandbox\" or \"prod\", not {env:?}"));
        }
    }
    let has_password_file = o.billing_password_file.is_some();
    if let Some(path) = o.billing_password_file.map(resolve) {
        let base_dir = base_dir.to_owned();
        files.read("oneshot.billing_password_file", move |c| {
            c.oneshot.billing_password = Some(read_secret(&path, &base_dir)?);
            Ok(())
        });
    }
    if has_password_file != o.billing_username.is_some() {
        problem("oneshot.billing_username", "billing_username and billing_password_file must be set together".into());
    }
    if let Some(url) = &o.webhook_url {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            problem("oneshot.webhook_url", "must be an http(s) URL".into());
        }
    }
    if let Some(mode) = o.videoid_mode {
        if !(0..=99).contains(&mode) {
            problem(
                "oneshot.videoid_mode",
                format!("must be a small non-negative integer (External mode is 1), not {mode}"),
            );
        }
    }
    if let Some(proxy) = &o.proxy {
        match url::Url::parse(proxy) {
            Ok(u) if ["http", "https", "socks5", "socks5h"].contains(&u.scheme()) => {}
            Ok(u) => problem("oneshot.proxy", format!("must be an http, https or socks5 URL, not {}", u.scheme())),
            Err(e) => problem("oneshot.proxy", format!("is not a URL ({e})")),
        }
    }
    let min_upload_bytes_per_sec = match o.min_upload_bytes_per_sec {
        Some(0) => {
            problem("oneshot.min_upload_bytes_per_sec", "must be greater than 0".into());
            1
        }
        Some(n) => n,
        None => 64 * 1024,
    };
    let mut headers = BTreeMap::new();
    for (name, value) in o.headers.unwrap_or_default() {
        let key = format!("oneshot.headers.{name}");
        if http::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            problem(&key, "is not a valid HTTP header name".into());
        } else if http::header::HeaderValue::from_str(&value).is_err() {
            problem(&key, "value is not a valid HTTP header value".into());
        } else {
            headers.insert(name, value);
        }
    }
    let ca_bundle = o.ca_bundle.map(resolve);
    if let Some(ca) = ca_bundle.clone() {
        // Parsed with the configuration, so a bad bundle is a configuration error (exit 2), not
        // a daemon that starts, fails to build its client and restarts in a loop.
        files.read("oneshot.ca_bundle", move |_| check_ca_bundle(&ca));
    }
    let mut secs = |key: &str, v: Option<u64>, default: u64| match v {
        Some(0) => {
            problem(key, "must be at least 1 second".into());
            Duration::from_secs(default)
        }
        Some(n) => Duration::from_secs(n),
        None => Duration::from_secs(default),
    };
    let connect_timeout = secs("oneshot.connect_timeout_secs", o.connect_timeout_secs, 10);
    let request_timeout = secs("oneshot.request_timeout_secs", o.request_timeout_secs, 60);
    let upload_timeout = secs("oneshot.upload_timeout_secs", o.upload_timeout_secs, 3600);

    OneShotConfig {
        base_url,
        generation,
        paths,
        registration_authority,
        profile,
        env: o.env,
        billing_username: o.billing_username,
        // Read with the configuration's files (see `files`).
        billing_password: None,
        webhook_url: o.webhook_url,
        videoid_mode: o.videoid_mode,
        proxy: o.proxy,
        min_upload_bytes_per_sec,
        headers,
        ca_bundle,
        connect_timeout,
        request_timeout,
        upload_timeout,
    }
}

/// A CA bundle must be a readable file holding at least one PEM certificate.
fn check_ca_bundle(ca: &Path) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject as _;
    let pem = crate::fsutil::read_bounded(ca, crate::fsutil::MAX_CA_BUNDLE_BYTES)
        .map_err(|e| format!("{} is not a readable file ({e})", ca.display()))?;
    let certs: Result<Vec<_>, _> = rustls_pki_types::CertificateDer::pem_slice_iter(&pem).collect();
    if certs.is_ok_and(|c| !c.is_empty()) {
        Ok(())
    } else {
        Err(format!("{} holds no PEM certificate", ca.display()))
    }
}

/// Checks the scheme rule: https everywhere, plain http only towards a loopback address.
fn check_base_url(url: &str) -> Result<String, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("is not a URL ({e})"))?;
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    // A password in the URL would reach logs and error messages; credentials have their own keys.
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry a user name or password (use oneshot.headers or the billing_* keys)".into());
    }
    match parsed.scheme() {
        "https" => {}
        "http" if is_loopback(&parsed) => {}
        "http" => return Err("must use https (plain http is allowed only for loopback addresses)".into()),
        other => return Err(format!("must use https, not {other}")),
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}
