//! Configuration: read → parse → validate, as three separate steps so tests feed strings.
//!
//! [`load`] reads the TOML file, [`from_toml`] parses it into the raw, all-optional
//! [`raw::RawConfig`], and [`validate`] turns that into the typed [`Config`] or returns every
//! problem at once, each with the key it belongs to. Nothing below this module re-checks raw
//! strings: everything downstream receives `Url`-checked bases, `Duration`s and byte counts.

mod api;
pub mod flow;
mod paths;
mod rate;
mod raw;
mod windows;

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use api::{ApiConfig, CaptureServiceMode};
pub use flow::{read_secret, RaoConfig, RaoCredentials, SignatureConfig};
pub use kiosk_common::capture::{
    validate_capture, CameraMode, CameraRole, CaptureConfig, Quality, Role, StillConfig, VideoConfig, PRESETS,
};
pub use kiosk_common::config::{ConfigError, Problem, CONFIG_ENV};
pub use kiosk_common::log::{peek_log_format, LogFormat};
pub use oneshot_protocol::{Generation, Operation};
pub use paths::Paths;
pub use raw::RawConfig;
pub use windows::{VideoWindows, Window};

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

/// When the local copy of an enrollment's evidence is erased (only the audit record stays).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EraseAfter {
    InReview,
    Approved,
    Never,
}

/// The `[storage]` section, validated.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    /// Where the master key lives when `$CREDENTIALS_DIRECTORY` does not provide one.
    pub master_key_file: PathBuf,
    /// Where the device signing key lives (same rule).
    pub device_key_file: PathBuf,
    pub max_spool_bytes: u64,
    pub min_free_bytes: u64,
    pub erase_after: EraseAfter,
    /// Where `document delete` backs documents up first (the brief: keep copies).
    pub document_backup_dir: PathBuf,
    /// Evidence that has not reached review this long after it was queued (still pending, or
    /// failed) is erased, with a warning and an audit record.
    pub max_retention: Duration,
}

/// The `[evidence]` section, validated.
#[derive(Debug, Clone, Copy)]
pub struct EvidenceLimits {
    pub max_image_bytes: u64,
    pub max_video_bytes: u64,
    /// Send the signed capture manifest inside `acceptance` (which the API lets us extend).
    pub send_manifest: bool,
}

impl Default for EvidenceLimits {
    fn default() -> Self {
        EvidenceLimits { max_image_bytes: 10 * 1024 * 1024, max_video_bytes: 512 * 1024 * 1024, send_manifest: false }
    }
}

/// The `[sync]` section, validated.
/// How the orphan a lost create answer may have left is looked for (`sync.orphan_search`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrphanSearch {
    /// Ask the server for this customer's requests (`GET /requests?email=&mobile_phone_number=`);
    /// where the server has no such search, record the possible orphan and read nothing.
    Search,
    /// Read the details of the request pks between the last one this queue knew and the one
    /// finally returned. Request pks are platform-wide: this reads other customers' requests.
    Scan,
    /// Record the possible orphan, with the window its pk is in, for an operator; read nothing.
    Off,
}

impl OrphanSearch {
    pub fn parse(word: &str) -> Option<OrphanSearch> {
        match word {
            "search" => Some(OrphanSearch::Search),
            "scan" => Some(OrphanSearch::Scan),
            "off" => Some(OrphanSearch::Off),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub concurrency: NonZeroUsize,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// How often the request status is read while waiting for `VIDEOREVIEW`.
    pub status_poll: Duration,
    /// How many times a `VIDEOERROR`/`VIDEOINCOMPLETE` request is re-sent before giving up.
    pub max_resends: u32,
    /// How long a status no public source names is polled before the enrollment fails.
    pub max_unknown_status: Duration,
    /// How many consecutive HTTP 500s with the same message on the same step fail an enrollment.
    pub max_server_errors: u32,
    /// `sync.max_upload_rate` in bytes per second, if uploads are limited.
    pub max_upload_rate: Option<u64>,
    /// `sync.video_windows`: when videos may upload (evidences go at any time).
    pub video_windows: VideoWindows,
    /// How many request details orphan reconciliation may read per hour, all enrollments together.
    pub orphan_lookups_per_hour: u32,
    /// How a lost create answer's orphan is looked for.
    pub orphan_search: OrphanSearch,
    /// The longest wait between two connectivity probes while the server is unreachable.
    pub probe_cap: Duration,
    /// How often a request in review is read during its first hour in review …
    pub review_poll: Duration,
    /// … and after that …
    pub review_poll_late: Duration,
    /// … for at most this long; then it is left alone (a webhook can still move it).
    pub review_follow: Duration,
    /// How long to wait after a 412 "OTP generated less than a minute ago" before asking again.
    pub otp_wait: Duration,
    /// Where the webhook receiver listens (off when `None`).
    pub webhook_listen: Option<std::net::SocketAddr>,
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub oneshot: OneShotConfig,
    pub storage: StorageConfig,
    pub evidence: EvidenceLimits,
    pub sync: SyncConfig,
    pub capture: CaptureConfig,
    /// The RAO who approves and refuses, when this kiosk does that itself.
    pub rao: Option<RaoConfig>,
    pub signature: SignatureConfig,
    /// The local control API of `kiosk-agent run`.
    pub api: ApiConfig,
    /// `GET /healthz` is unhealthy after this long online with pending work and no progress.
    pub health_stall: Duration,
    pub log_format: LogFormat,
    /// The file this configuration was read from (`None` when built in, as by the demo): the
    /// capture service the daemon starts reads its camera settings from the same file.
    pub path: Option<PathBuf>,
}

/// Reads, parses and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_owned(), error })?;
    let raw = from_toml(&text)?;
    // Relative paths in the file are relative to the file, not to the working directory.
    let mut config = validate(raw, path.parent().unwrap_or(Path::new(".")))?;
    config.path = Some(path.to_owned());
    Ok(config)
}

/// Parses TOML text; unknown keys are an error naming the key.
pub fn from_toml(text: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
}

/// Validates a parsed configuration, reporting every problem with its key.
pub fn validate(raw: RawConfig, base_dir: &Path) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let mut problem = |key: &str, message: String| problems.push(Problem { key: key.into(), message });
    let resolve = |p: PathBuf| if p.is_absolute() { p } else { base_dir.join(p) };

    let o = raw.oneshot.unwrap_or_default();
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
    let paths = paths::validate(generation, o.paths, &mut problem);
    let required = |key: &str, v: Option<String>, problem: &mut dyn FnMut(&str, String)| match v {
        Some(s) if !s.trim().is_empty() => s.trim().to_owned(),
        _ => {
            problem(key, "is required".into());
            String::new()
        }
    };
    let registration_authority = required("oneshot.registration_authority", o.registration_authority, &mut problem);
    let profile = required("oneshot.profile", o.profile, &mut problem);
    if let Some(env) = &o.env {
        if env != "sandbox" && env != "prod" {
            problem("oneshot.env", format!("must be \"sandbox\" or \"prod\", not {env:?}"));
        }
    }
    let has_password_file = o.billing_password_file.is_some();
    let billing_password = match o.billing_password_file.map(resolve) {
        None => None,
        Some(path) => match flow::read_secret(&path, base_dir) {
            Ok(password) => Some(password),
            Err(rule) => {
                problem("oneshot.billing_password_file", rule);
                None
            }
        },
    };
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
    if let Some(ca) = &ca_bundle {
        // Parsed now, so a bad bundle is a configuration error (exit 2), not a daemon that
        // starts, fails to build its client and restarts in a loop.
        match std::fs::read(ca) {
            Err(e) => problem("oneshot.ca_bundle", format!("{} is not a readable file ({e})", ca.display())),
            Ok(pem) => {
                use rustls_pki_types::pem::PemObject as _;
                let certs: Result<Vec<_>, _> = rustls_pki_types::CertificateDer::pem_slice_iter(&pem).collect();
                if !certs.is_ok_and(|c| !c.is_empty()) {
                    problem("oneshot.ca_bundle", format!("{} holds no PEM certificate", ca.display()));
                }
            }
        }
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

    let s = raw.storage.unwrap_or_default();
    let data_dir = match s.data_dir {
        Some(d) if !d.as_os_str().is_empty() => resolve(d),
        _ => {
            problem("storage.data_dir", "is required".into());
            PathBuf::new()
        }
    };
    let master_key_file = s.master_key_file.map(resolve).unwrap_or_else(|| data_dir.join("master.key"));
    let device_key_file = s.device_key_file.map(resolve).unwrap_or_else(|| data_dir.join("device.key"));
    let erase_after = match s.erase_after.as_deref() {
        None | Some("in_review") => EraseAfter::InReview,
        Some("approved") => EraseAfter::Approved,
        Some("never") => EraseAfter::Never,
        Some(other) => {
            problem("storage.erase_after", format!("must be \"in_review\", \"approved\" or \"never\", not {other:?}"));
            EraseAfter::InReview
        }
    };

    let e = raw.evidence.unwrap_or_default();
    let defaults = EvidenceLimits::default();
    let mut positive = |key: &str, v: Option<u64>, default: u64| match v {
        Some(0) => {
            problem(key, "must be greater than 0".into());
            default
        }
        Some(n) => n,
        None => default,
    };
    let evidence = EvidenceLimits {
        max_image_bytes: positive("evidence.max_image_bytes", e.max_image_bytes, defaults.max_image_bytes),
        max_video_bytes: positive("evidence.max_video_bytes", e.max_video_bytes, defaults.max_video_bytes),
        send_manifest: e.send_manifest.unwrap_or(false),
    };
    let max_spool_bytes = positive("storage.max_spool_bytes", s.max_spool_bytes, 20 * 1024 * 1024 * 1024);
    let min_free_bytes = s.min_free_bytes.unwrap_or(1024 * 1024 * 1024);
    let max_retention = Duration::from_secs(86_400 * positive("storage.max_retention_days", s.max_retention_days, 30));

    let y = raw.sync.unwrap_or_default();
    let concurrency = match y.concurrency {
        None => NonZeroUsize::new(2).expect("2 is not zero"),
        Some(n) => match NonZeroUsize::new(n).filter(|n| n.get() <= 64) {
            Some(n) => n,
            None => {
                problem("sync.concurrency", format!("must be between 1 and 64, not {n}"));
                NonZeroUsize::MIN
            }
        },
    };
    let mut millis = |key: &str, v: Option<f64>, default: f64| match v {
        Some(x) if x.is_finite() && x > 0.0 && x <= 86_400.0 => Duration::from_secs_f64(x),
        Some(x) => {
            problem(key, format!("must be a number of seconds in (0, 86400], not {x}"));
            Duration::from_secs_f64(default)
        }
        None => Duration::from_secs_f64(default),
    };
    let backoff_base = millis("sync.backoff_base_secs", y.backoff_base_secs, 2.0);
    let backoff_cap = millis("sync.backoff_cap_secs", y.backoff_cap_secs, 300.0);
    let status_poll = millis("sync.status_poll_secs", y.status_poll_secs, 2.0);
    let max_unknown_status = millis("sync.max_unknown_status_secs", y.max_unknown_status_secs, 3600.0);
    let probe_cap = millis("sync.probe_cap_secs", y.probe_cap_secs, 15.0);
    let otp_wait = millis("sync.otp_wait_secs", y.otp_wait_secs, 60.0);
    let review_poll = millis("sync.review_poll_secs", y.review_poll_secs, 120.0);
    let review_poll_late = millis("sync.review_poll_late_secs", y.review_poll_late_secs, 900.0);
    let review_follow = match y.review_follow_days {
        None => Duration::from_secs(7 * 86_400),
        Some(d) if d.is_finite() && d > 0.0 && d <= 365.0 => Duration::from_secs_f64(d * 86_400.0),
        Some(d) => {
            problem("sync.review_follow_days", format!("must be a number of days in (0, 365], not {d}"));
            Duration::from_secs(7 * 86_400)
        }
    };
    let webhook_listen = match y.webhook_listen.as_deref() {
        None => None,
        Some(addr) => match addr.parse::<std::net::SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                problem("sync.webhook_listen", format!("must be an address such as 127.0.0.1:8471, not {addr:?}"));
                None
            }
        },
    };
    let mut video_windows = VideoWindows::default();
    for (i, text) in y.video_windows.iter().flatten().enumerate() {
        match Window::parse(text) {
            Ok(w) => video_windows.0.push(w),
            Err(e) => problem(&format!("sync.video_windows[{i}]"), e),
        }
    }
    let max_upload_rate = match y.max_upload_rate.as_deref() {
        None => None,
        Some(text) => match rate::parse_rate(text) {
            Ok(rate) => Some(rate),
            Err(e) => {
                problem("sync.max_upload_rate", e);
                None
            }
        },
    };
    let max_server_errors = match y.max_server_errors {
        Some(0) => {
            problem("sync.max_server_errors", "must be at least 1".into());
            1
        }
        Some(n) => n,
        None => 5,
    };
    let orphan_lookups_per_hour = match y.orphan_lookups_per_hour {
        Some(0) => {
            problem("sync.orphan_lookups_per_hour", "must be at least 1".into());
            1
        }
        Some(n) => n,
        None => 60,
    };
    let orphan_search = match y.orphan_search.as_deref() {
        None => OrphanSearch::Search,
        Some(word) => OrphanSearch::parse(word).unwrap_or_else(|| {
            problem("sync.orphan_search", format!("must be \"search\", \"scan\" or \"off\", not {word:?}"));
            OrphanSearch::Search
        }),
    };
    if backoff_cap < backoff_base {
        problem("sync.backoff_cap_secs", "must not be smaller than sync.backoff_base_secs".into());
    }

    let rao = flow::validate_rao(raw.rao, base_dir, &mut problem);
    let signature = flow::validate_signature(raw.signature, base_dir, &mut problem);
    let api = api::validate_api(raw.api, base_dir, &data_dir, &evidence, &mut problem);
    let health_stall = api::validate_health(raw.health, &mut problem);
    let log_format = kiosk_common::log::validate_log(raw.log, &mut problem);
    let capture = match validate_capture(raw.cameras, raw.capture) {
        Ok(c) => c,
        Err(more) => {
            problems.extend(more);
            CaptureConfig::default()
        }
    };
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems));
    }
    Ok(Config {
        oneshot: OneShotConfig {
            base_url,
            generation,
            paths,
            registration_authority,
            profile,
            env: o.env,
            billing_username: o.billing_username,
            billing_password,
            webhook_url: o.webhook_url,
            videoid_mode: o.videoid_mode,
            proxy: o.proxy,
            min_upload_bytes_per_sec,
            headers,
            ca_bundle,
            connect_timeout,
            request_timeout,
            upload_timeout,
        },
        storage: StorageConfig {
            document_backup_dir: s.document_backup_dir.map(resolve).unwrap_or_else(|| data_dir.join("document-backup")),
            data_dir,
            master_key_file,
            device_key_file,
            max_spool_bytes,
            min_free_bytes,
            erase_after,
            max_retention,
        },
        evidence,
        sync: SyncConfig {
            concurrency,
            backoff_base,
            backoff_cap,
            status_poll,
            max_resends: y.max_resends.unwrap_or(3),
            max_unknown_status,
            max_server_errors,
            max_upload_rate,
            video_windows,
            orphan_lookups_per_hour,
            orphan_search,
            probe_cap,
            review_poll,
            review_poll_late,
            review_follow,
            otp_wait,
            webhook_listen,
        },
        capture,
        rao,
        signature,
        api,
        health_stall,
        log_format,
        path: None,
    })
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

#[cfg(test)]
pub(crate) mod tests;
