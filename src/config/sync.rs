//! The `[sync]` section: how the worker paces, retries and follows its enrollments.

use std::num::NonZeroUsize;
use std::time::Duration;

use super::rate;
use super::raw::RawSync;
use super::windows::{VideoWindows, Window};

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
    /// When the daemon has not heard from the server for about this long, it probes, so that an
    /// idle kiosk's `kiosk_agent_online` tells the truth too (`None`: never; `sync.heartbeat_secs`).
    pub heartbeat: Option<Duration>,
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

/// Validates `[sync]`.
pub(super) fn validate_sync(raw: Option<RawSync>, problem: &mut dyn FnMut(&str, String)) -> SyncConfig {
    let y = raw.unwrap_or_default();
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
    let heartbeat = match y.heartbeat_secs {
        None => Some(Duration::from_secs(300)),
        Some(0.0) => None,
        Some(x) if x.is_finite() && (10.0..=86_400.0).contains(&x) => Some(Duration::from_secs_f64(x)),
        Some(x) => {
            problem("sync.heartbeat_secs", format!("must be 0 (off) or a number of seconds in [10, 86400], not {x}"));
            Some(Duration::from_secs(300))
        }
    };
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

    SyncConfig {
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
        heartbeat,
        review_poll,
        review_poll_late,
        review_follow,
        otp_wait,
        webhook_listen,
    }
}
