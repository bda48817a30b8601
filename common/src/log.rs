//! `[log] format`: how the agent writes its log.

use std::path::Path;

use serde::Deserialize;

/// Where and how log events go. `KIOSK_AGENT_LOG_FORMAT` overrides the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Plain lines on stderr, coloured only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line on stderr (Vector, Fluent Bit, journald's JSON export).
    Json,
    /// journald's native protocol: every field of an event (`ENROLLMENT_ID`, `STATE`, …) becomes
    /// a journal field that `journalctl ENROLLMENT_ID=…` can select. Plain text on stderr when no
    /// journal is listening.
    Journald,
}

impl LogFormat {
    pub const NAMES: &'static str = "\"text\", \"json\" or \"journald\"";

    pub fn parse(s: &str) -> Option<LogFormat> {
        match s {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            "journald" => Some(LogFormat::Journald),
            _ => None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<String>,
}

pub fn validate_log(raw: Option<RawLog>, problem: &mut dyn FnMut(&str, String)) -> LogFormat {
    match raw.and_then(|l| l.format) {
        None => LogFormat::default(),
        Some(s) => LogFormat::parse(&s).unwrap_or_else(|| {
            problem("log.format", format!("must be {}, not {s:?}", LogFormat::NAMES));
            LogFormat::default()
        }),
    }
}

/// The format a configuration file asks for, read before the file is validated (logging starts
/// first, so that validation itself can log). A file that cannot be read or parsed gives the
/// default here; loading it properly reports why.
pub fn peek_log_format(path: &std::path::Path) -> LogFormat {
    let Ok(text) = crate::fsutil::read_bounded_text(path, crate::fsutil::MAX_CONFIG_BYTES) else {
        return LogFormat::default();
    };
    let Ok(value) = text.parse::<toml::Table>() else { return LogFormat::default() };
    value
        .get("log")
        .and_then(|l| l.get("format"))
        .and_then(|f| f.as_str())
        .and_then(LogFormat::parse)
        .unwrap_or_default()
}

/// Sets up `tracing` (`KIOSK_AGENT_LOG` overrides the level): the format comes from
/// `KIOSK_AGENT_LOG_FORMAT`, else the configuration's `log.format`, else plain text.
/// Long-running commands (`long_running`) log progress at info; one-shot commands only what
/// went wrong.
pub fn init(long_running: bool, config: Option<&Path>) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let default = if long_running { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KIOSK_AGENT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let format = match std::env::var(LOG_FORMAT_ENV) {
        Ok(v) => LogFormat::parse(&v).unwrap_or_default(),
        Err(_) => config.map(peek_log_format).unwrap_or_default(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    // Colours only for a person at a terminal; journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let text = || tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false).with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(std::io::stderr)
                    .with_target(false),
            )
            .try_init(),
        // Fields keep their names, upper-cased and unprefixed: `journalctl ENROLLMENT_ID=…`.
        LogFormat::Journald => match tracing_journald::layer() {
            Ok(journal) => {
                registry.with(journal.with_field_prefix(None).with_syslog_identifier("kiosk-agent".into())).try_init()
            }
            Err(e) => {
                let done = registry.with(text()).try_init();
                tracing::warn!(error = %e, "log.format is journald but no journal is listening; logging to stderr");
                done
            }
        },
        LogFormat::Text => registry.with(text()).try_init(),
    };
}

/// `text`, `json` or `journald`, as `log.format`; it takes precedence over the file.
pub const LOG_FORMAT_ENV: &str = "KIOSK_AGENT_LOG_FORMAT";
