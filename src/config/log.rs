//! `[log] format`: how the agent writes its log.

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
    let Ok(text) = std::fs::read_to_string(path) else { return LogFormat::default() };
    let Ok(value) = text.parse::<toml::Table>() else { return LogFormat::default() };
    value
        .get("log")
        .and_then(|l| l.get("format"))
        .and_then(|f| f.as_str())
        .and_then(LogFormat::parse)
        .unwrap_or_default()
}
