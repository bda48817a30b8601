//! `kiosk-agent doctor`: everything an installation depends on, one line each, with what to do
//! about a problem. It reads and probes; it creates nothing (no request on the server, no key,
//! no queue). Exit 0 when all is well, 1 with warnings only, 2 with a failure.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use super::check_cmd;
use crate::config::{Config, Role};

/// How far the kiosk's clock may be from the server's before it is worth a warning.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// How soon a server certificate's expiry is worth a warning (renewals usually run 30 days
/// ahead; three weeks left means they did not).
const CERT_WARN: Duration = Duration::from_secs(21 * 86_400);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Default)]
struct Report {
    worst: Option<Level>,
}

impl Report {
    fn line(&mut self, level: Level, what: &str, detail: impl std::fmt::Display) {
        let tag = match level {
            Level::Ok => "ok  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        say!("{tag}  {what:<14} {detail}");
        self.worst = self.worst.max(Some(level));
    }
}

pub async fn run(config: &Config) -> ExitCode {
    let mut r = Report::default();
    r.line(Level::Ok, "configuration", config.path.as_deref().map_or("built in".into(), |p| p.display().to_string()));

    match crate::crypto::load_master_key(&config.storage.master_key_file) {
        Ok(key) => r.line(Level::Ok, "master key", format!("fingerprint {}", key.fingerprint())),
        Err(e) => r.line(Level::Fail, "master key", e),
    }
    match crate::device_key::load(&config.storage.device_key_file) {
        Ok(key) => r.line(Level::Ok, "device key", format!("device {}", key.device_id())),
        Err(e) => r.line(Level::Warn, "device key", format!("{e} (enroll needs it)")),
    }
    for problem in check_cmd::environment_problems(config).into_iter().filter(|p| p.starts_with("storage.data_dir")) {
        r.line(Level::Fail, "data directory", problem);
    }
    if r.worst < Some(Level::Fail) {
        let free = crate::fsutil::available_bytes(&config.storage.data_dir)
            .or_else(|_| {
                crate::fsutil::available_bytes(config.storage.data_dir.parent().unwrap_or(&config.storage.data_dir))
            })
            .unwrap_or(0);
        r.line(Level::Ok, "data directory", format!("{} ({} MiB free)", config.storage.data_dir.display(), free >> 20));
    }
    clock(&mut r);
    queue(&mut r, config);
    cameras(&mut r, config);
    server(&mut r, config).await;

    match r.worst {
        Some(Level::Fail) => ExitCode::from(2),
        Some(Level::Warn) => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    }
}

/// This build's date (seconds since the epoch; `build.rs`).
const BUILT_AT: &str = env!("KIOSK_AGENT_BUILT_AT");

/// The wall clock as the agent reads it.
fn wall_now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(crate::queue::now_ms().max(0) as u64)
}

/// The clock against this build's date: a kiosk that booted without a working real-time clock
/// (and before NTP) reads a date before the software it runs was made. (Against the server's
/// clock: [`server`].)
fn clock(r: &mut Report) {
    let now = crate::queue::now_ms() / 1000;
    let built: i64 = BUILT_AT.parse().unwrap_or(0);
    if now < built {
        let date = |secs: i64| jiff::Timestamp::from_second(secs).map_or_else(|_| secs.to_string(), |t| t.to_string());
        r.line(
            Level::Warn,
            "clock",
            format!(
                "reads {}, before this build was made ({}): it is wrong; enable NTP (timedatectl set-ntp true) or set it",
                date(now),
                date(built)
            ),
        );
    }
}

/// The queue, if there is one: opened (which checks the key's fingerprint) and checked.
fn queue(r: &mut Report, config: &Config) {
    if let Err(e) = crate::queue::identity::check_not_lost(&config.storage.data_dir) {
        return r.line(Level::Fail, "queue", e);
    }
    if !crate::queue::database_path(&config.storage.data_dir).exists() {
        r.line(Level::Ok, "queue", "none yet (the first enroll creates it)");
        return;
    }
    let queue = match crate::queue::Queue::open(&config.storage) {
        Ok(q) => q,
        Err(e) => return r.line(Level::Fail, "queue", e),
    };
    if let Err(e) = queue.check_integrity() {
        return r.line(Level::Fail, "queue", e);
    }
    match queue.list() {
        Ok(list) => {
            let crate::queue::Backlog { pending, failed, .. } = crate::queue::Backlog::of(&list);
            if failed > 0 {
                r.line(
                    Level::Warn,
                    "queue",
                    format!("{failed} failed, {pending} pending: see `kiosk-agent queue list --state failed`, then `queue retry ID`"),
                );
            } else {
                r.line(Level::Ok, "queue", format!("intact; {pending} pending, {} in all", list.len()));
            }
        }
        Err(e) => r.line(Level::Fail, "queue", e),
    }
    match queue.verify_audit(None) {
        Ok(Ok(n)) => r.line(Level::Ok, "audit trail", format!("{n} records, chain intact")),
        Ok(Err(b)) => r.line(Level::Fail, "audit trail", format!("broken at record {}: {}", b.seq, b.reason)),
        Err(e) => r.line(Level::Fail, "audit trail", e),
    }
}

/// Each role's camera: a V4L2 device must exist and be readable by this user.
fn cameras(r: &mut Report, config: &Config) {
    for role in Role::ALL {
        let source = &config.capture.role(role).source;
        let device = source
            .strip_prefix("v4l2:")
            .map(str::to_owned)
            .or_else(|| source.strip_prefix("camera:").map(|n| format!("/dev/video{n}")));
        let what = format!("camera {}", role.as_str());
        match device {
            None => r.line(Level::Ok, &what, format!("{source} (not a device)")),
            Some(path) => match std::fs::File::open(&path) {
                Ok(_) => r.line(Level::Ok, &what, format!("{source}: {path} opens")),
                Err(e) => r.line(
                    Level::Warn,
                    &what,
                    format!("{source}: {path}: {e} (connect it, add this user to the video group, or set cameras.{}.source)", role.as_str()),
                ),
            },
        }
    }
}

/// The server: reachable with this configuration (nothing is created), and its clock.
async fn server(r: &mut Report, config: &Config) {
    let client = match crate::oneshot::Client::new(&config.oneshot) {
        Ok(c) => c,
        Err(e) => return r.line(Level::Fail, "server", e),
    };
    match client.server_probe().await {
        Ok(probe) => {
            let date = probe.date;
            r.line(
                Level::Ok,
                "server",
                format!("{} answers (layout {})", config.oneshot.base_url, config.oneshot.generation.layout_name()),
            );
            match date.map(|d| d.duration_since(wall_now()).or_else(|e| Ok::<_, ()>(e.duration()))) {
                Some(Ok(skew)) if skew > CLOCK_SKEW => r.line(
                    Level::Warn,
                    "clock",
                    format!("{} s away from the server's; enable NTP (timedatectl set-ntp true)", skew.as_secs()),
                ),
                Some(_) => r.line(Level::Ok, "clock", "within a minute of the server's"),
                None => r.line(Level::Ok, "clock", "the server sends no Date to compare with"),
            }
            tls(r, config, probe.certificate_expires);
            match client.detect_generation().await {
                Some((found, how)) if found != config.oneshot.generation => r.line(
                    Level::Warn,
                    "layout",
                    format!(
                        "{} looks like the {found} ({how}), but oneshot.layout is {:?}: set layout = {:?}",
                        config.oneshot.base_url,
                        config.oneshot.generation.layout_name(),
                        found.layout_name()
                    ),
                ),
                Some((found, how)) => r.line(Level::Ok, "layout", format!("the {found}, as configured ({how})")),
                None => r.line(Level::Ok, "layout", "the server does not say which generation it is (no /version)"),
            }
            // The other generation on the same server, for an installation that could move.
            if let Some((other, url)) = client.other_base_url() {
                if let Some((found, _)) = client.detect_generation_at(&url).await.filter(|(g, _)| *g == other) {
                    r.line(Level::Ok, "layout", format!("the {found} also answers at {url}"));
                }
            }
        }
        // rustls says "expired"; say what it means for the kiosk.
        Err(e) if e.to_string().to_lowercase().contains("expired") => r.line(
            Level::Fail,
            "tls",
            format!(
                "{}: the server's certificate has expired; nothing can be uploaded until its operator renews it \
                 (or check this kiosk's clock) ({e})",
                config.oneshot.base_url
            ),
        ),
        Err(e) => r.line(
            Level::Fail,
            "server",
            format!(
                "{}: {e} (check the network, oneshot.base_url, oneshot.proxy, and the unit's IPAddressAllow)",
                config.oneshot.base_url
            ),
        ),
    }
}

/// The server's certificate: a warning when it expires within [`CERT_WARN`].
fn tls(r: &mut Report, config: &Config, expires: Option<SystemTime>) {
    if !config.oneshot.base_url.starts_with("https:") {
        return r.line(Level::Ok, "tls", "plain http to a loopback address: no certificate");
    }
    let Some(expires) = expires else {
        return r.line(Level::Warn, "tls", "the server's certificate could not be read");
    };
    let date = humantime::format_rfc3339_seconds(expires);
    match expires.duration_since(SystemTime::now()) {
        Ok(left) if left < CERT_WARN => r.line(
            Level::Warn,
            "tls",
            format!(
                "the server's certificate expires in {} days ({date}); tell the server's operator before uploads stop",
                left.as_secs() / 86_400
            ),
        ),
        Ok(left) => {
            r.line(Level::Ok, "tls", format!("certificate valid until {date} ({} days)", left.as_secs() / 86_400))
        }
        Err(_) => r.line(Level::Fail, "tls", format!("the server's certificate expired on {date}")),
    }
}
