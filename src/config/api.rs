//! The `[api]` section: the local control API of `kiosk-agent run`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::flow::{read_secret, Secret};
use super::EvidenceLimits;

/// The default address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";
/// The most a JSON enrollment may be (it is parsed in memory).
pub const MAX_JSON_BYTES: u64 = 64 << 20;
/// The unit's credential holding the token, under `$CREDENTIALS_DIRECTORY`.
pub const TOKEN_CREDENTIAL: &str = "api.token";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    pub listen: Option<String>,
    pub unix_socket: Option<PathBuf>,
    pub capture_service: Option<String>,
    pub token_file: Option<PathBuf>,
    pub max_body_bytes: Option<u64>,
    pub max_json_bytes: Option<u64>,
    pub capture_ttl_secs: Option<u64>,
    pub capture_socket: Option<PathBuf>,
    pub allowed_hosts: Option<Vec<String>>,
    pub language: Option<String>,
}

/// Who runs the capture service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureServiceMode {
    /// `run` starts it as a child (and again if it dies).
    Spawn,
    /// Another unit runs it on `DATA_DIR/capture.sock` (`kiosk-agent-capture-service.service`).
    External,
}

/// The languages the operator page ships (its texts are one table in `page.js`).
pub const PAGE_LANGUAGES: [&str; 2] = ["en", "es"];

/// The validated `[api]` section.
#[derive(Clone)]
pub struct ApiConfig {
    /// Where the API listens; `None` when `listen = "off"`.
    pub listen: Option<SocketAddr>,
    /// A Unix socket the API also listens on (0600: this user only).
    pub unix_socket: Option<PathBuf>,
    /// Whether `run` starts the capture service itself (`spawn`) or another unit runs it
    /// (`external`: the systemd install, where the daemon has no device access).
    pub capture_service: CaptureServiceMode,
    /// Where the token is read from: `api.token_file`, else `<data_dir>/api.token` (what
    /// `key init` creates).
    pub token_file: PathBuf,
    /// The bearer token every route but `/healthz` requires. `None` only when the default
    /// file does not exist yet: `run` then refuses to serve the API (never an open API).
    pub token: Option<Secret>,
    /// The largest request body (a multipart enrollment with its video).
    pub max_body_bytes: u64,
    /// The largest JSON enrollment (files in Base64): it is parsed in memory, so larger media
    /// go as multipart, which is streamed to disk part by part.
    pub max_json_bytes: u64,
    /// A still or clip no enrollment took is forgotten after this long.
    pub capture_ttl: std::time::Duration,
    /// The capture service's socket: `api.capture_socket`, else `<data_dir>/capture.sock`.
    pub capture_socket: PathBuf,
    /// Host names the API answers to besides `localhost` and IP literals (lower case).
    pub allowed_hosts: Vec<String>,
    /// The operator page's language (one of [`PAGE_LANGUAGES`]); `None`: the browser's
    /// `Accept-Language` chooses.
    pub language: Option<&'static str>,
}

impl std::fmt::Debug for ApiConfig {
    // By hand: the token never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("listen", &self.listen)
            .field("unix_socket", &self.unix_socket)
            .field("capture_service", &self.capture_service)
            .field("token_file", &self.token_file)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_json_bytes", &self.max_json_bytes)
            .field("capture_ttl", &self.capture_ttl)
            .field("capture_socket", &self.capture_socket)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("language", &self.language)
            .finish()
    }
}

/// The API token: the unit's credential when it provides one, else the configured file, else
/// the default file once `key init` made it (until then there is none, and `run` says so
/// instead of serving an open API; anything else wrong with it is a problem).
fn read_token(configured: Option<&Path>, default_file: &Path, base_dir: &Path) -> Result<Option<Secret>, String> {
    let from_credentials =
        std::env::var_os("CREDENTIALS_DIRECTORY").map(|d| Path::new(&d).join(TOKEN_CREDENTIAL)).filter(|p| p.is_file());
    let token = match (from_credentials, configured) {
        (Some(path), _) => read_secret(&path, base_dir)?,
        (None, Some(path)) => read_secret(path, base_dir)?,
        (None, None) if std::fs::symlink_metadata(default_file).is_err() => return Ok(None),
        (None, None) => read_secret(default_file, base_dir)?,
    };
    // It travels in an Authorization header (never in a cookie: the page gets a session).
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    if token.chars().count() < 16 || !token.chars().all(allowed) {
        return Err(
            "the token must be at least 16 characters of A-Z, a-z, 0-9 and - . _ ~ + / = (e.g. openssl rand -hex 32)"
                .into(),
        );
    }
    Ok(Some(token))
}

/// Validates `[api]`; `data_dir` holds the default token file (read later, with the
/// configuration's other files).
pub fn validate_api(
    raw: Option<RawApi>,
    base_dir: &Path,
    data_dir: &Path,
    evidence: &EvidenceLimits,
    files: &mut super::Files,
    problem: &mut dyn FnMut(&str, String),
) -> ApiConfig {
    let a = raw.unwrap_or_default();
    let listen = match a.listen.as_deref().unwrap_or(DEFAULT_LISTEN) {
        "off" => None,
        text => match text.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                problem("api.listen", format!("must be an address such as {DEFAULT_LISTEN}, or \"off\", not {text:?}"));
                None
            }
        },
    };
    let default_file = data_dir.join(TOKEN_CREDENTIAL);
    let token_file = match &a.token_file {
        Some(p) if p.is_absolute() => p.clone(),
        Some(p) => base_dir.join(p),
        None => default_file.clone(),
    };
    let (configured, base) = (a.token_file.clone(), base_dir.to_owned());
    files.read("api.token_file", move |c| {
        c.api.token = read_token(configured.as_deref(), &default_file, &base)?;
        Ok(())
    });
    // An enrollment with its largest video and four largest images (Base64 adds a third), and
    // room for the manifest.
    let default_body = evidence.max_video_bytes + evidence.max_image_bytes * 4 * 4 / 3 + (1 << 20);
    let max_body_bytes = match a.max_body_bytes {
        Some(0) => {
            problem("api.max_body_bytes", "must be greater than 0".into());
            default_body
        }
        Some(n) => n,
        None => default_body,
    };
    // Four images in Base64 and the manifest, but never more than MAX_JSON_BYTES: the body and
    // its parsed form are both in memory, and the daemon stays well inside its 512 MB.
    let default_json = (evidence.max_image_bytes * 4 * 4 / 3 + (1 << 20)).min(MAX_JSON_BYTES);
    let max_json_bytes = match a.max_json_bytes {
        Some(n) if n == 0 || n > MAX_JSON_BYTES => {
            problem(
                "api.max_json_bytes",
                format!("must be between 1 and {MAX_JSON_BYTES} (64 MiB); send larger media as multipart"),
            );
            default_json
        }
        Some(n) => n,
        None => default_json,
    };
    let capture_ttl = match a.capture_ttl_secs {
        Some(0) => {
            problem("api.capture_ttl_secs", "must be at least 1 (seconds)".into());
            std::time::Duration::from_secs(900)
        }
        Some(n) => std::time::Duration::from_secs(n),
        None => std::time::Duration::from_secs(900),
    };
    let capture_socket = match a.capture_socket {
        Some(p) if p.is_absolute() => p,
        Some(p) => base_dir.join(p),
        None => data_dir.join("capture.sock"),
    };
    // A name the kiosk is reached by (a fleet's VPN): letters, digits, dots and dashes, as DNS
    // writes them; never a wildcard, which would let any rebound name in.
    let mut allowed_hosts = Vec::new();
    for name in a.allowed_hosts.unwrap_or_default() {
        let valid = !name.is_empty()
            && name.len() <= 253
            && name
                .split('.')
                .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        if valid {
            allowed_hosts.push(name.to_ascii_lowercase());
        } else {
            problem(
                "api.allowed_hosts",
                format!("{name:?} is not a host name (letters, digits, dots and dashes; no port, no wildcard)"),
            );
        }
    }
    let language = match a.language.as_deref() {
        None | Some("auto") => None,
        Some(code) => PAGE_LANGUAGES.iter().copied().find(|l| *l == code).or_else(|| {
            problem(
                "api.language",
                format!(
                    "must be \"auto\" (the browser's Accept-Language) or one of {}, not {code:?}",
                    PAGE_LANGUAGES.join(", ")
                ),
            );
            None
        }),
    };
    let unix_socket = a.unix_socket.map(|p| if p.is_absolute() { p } else { base_dir.join(p) });
    let capture_service = match a.capture_service.as_deref() {
        None | Some("spawn") => CaptureServiceMode::Spawn,
        Some("external") => CaptureServiceMode::External,
        Some(other) => {
            problem("api.capture_service", format!("must be \"spawn\" or \"external\", not {other:?}"));
            CaptureServiceMode::Spawn
        }
    };
    ApiConfig {
        listen,
        unix_socket,
        capture_service,
        token_file,
        // Read with the configuration's files (see `read_token`).
        token: None,
        max_body_bytes,
        max_json_bytes,
        capture_ttl,
        capture_socket,
        allowed_hosts,
        language,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub stall_secs: Option<f64>,
}

/// `[health] stall_secs` (default one hour): `GET /healthz` turns unhealthy when the server is
/// reachable, work is pending, and nothing has moved for this long.
pub fn validate_health(raw: Option<RawHealth>, problem: &mut dyn FnMut(&str, String)) -> std::time::Duration {
    match raw.and_then(|h| h.stall_secs) {
        None => std::time::Duration::from_secs(3600),
        Some(s) if s.is_finite() && s > 0.0 => std::time::Duration::from_secs_f64(s),
        Some(s) => {
            problem("health.stall_secs", format!("must be a number of seconds above 0, not {s}"));
            std::time::Duration::from_secs(3600)
        }
    }
}
