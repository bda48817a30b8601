//! Configuration: read → parse → validate → read the files it names, as separate steps so tests
//! feed strings.
//!
//! [`load`] reads the TOML file, [`from_toml`] parses it into the raw, all-optional
//! [`raw::RawConfig`], and [`validate`] turns that into the typed [`Config`] or returns every
//! problem at once, each with the key it belongs to. Validation is one function per section
//! (`oneshot`, `storage`, `sync`, `flow`, `api`, the capture sections in `kiosk-common`) and
//! touches no file; the secrets, the CA bundle and the API token it names are read afterwards
//! ([`Unread::read_files`], in [`files`]), with their problems reported the same way. Nothing below this module re-checks raw
//! strings: everything downstream receives `Url`-checked bases, `Duration`s and byte counts.

mod api;
mod files;
pub mod flow;
mod oneshot;
mod paths;
mod rate;
mod raw;
mod storage;
mod sync;
mod windows;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use api::{ApiConfig, CaptureServiceMode, PAGE_LANGUAGES};
pub use files::{Files, Unread};
pub use flow::{read_secret, RaoConfig, RaoCredentials, SignatureConfig};
pub use kiosk_common::capture::{
    validate_capture, CameraMode, CameraRole, CaptureConfig, Quality, Role, StillConfig, VideoConfig, PRESETS,
};
pub use kiosk_common::config::{ConfigError, Problem, CONFIG_ENV};
pub use kiosk_common::log::{peek_log_format, LogFormat};
pub use oneshot::OneShotConfig;
pub use oneshot_protocol::{Generation, Operation};
pub use paths::Paths;
pub use raw::RawConfig;
pub use storage::{EraseAfter, EvidenceLimits, StorageConfig};
pub use sync::{OrphanSearch, SyncConfig};
pub use windows::{VideoWindows, Window};

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
    let text = crate::fsutil::read_bounded_text(path, crate::fsutil::MAX_CONFIG_BYTES)
        .map_err(|error| ConfigError::Read { path: path.to_owned(), error })?;
    let raw = from_toml(&text)?;
    // Relative paths in the file are relative to the file, not to the working directory.
    let mut config = build(raw, path.parent().unwrap_or(Path::new(".")))?;
    config.path = Some(path.to_owned());
    Ok(config)
}

/// Parses TOML text; unknown keys are an error naming the key.
pub fn from_toml(text: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
}
/// Validates a parsed configuration, section by section, reporting every problem with its key.
/// Touches no file: what the configuration names by file is read by [`Unread::read_files`].
pub fn validate(raw: RawConfig, base_dir: &Path) -> Result<Unread, ConfigError> {
    let mut problems = Vec::new();
    let mut problem = |key: &str, message: String| problems.push(Problem { key: key.into(), message });
    let mut files = Files::default();
    let oneshot = oneshot::validate_oneshot(raw.oneshot, base_dir, &mut files, &mut problem);
    let (storage, evidence) = storage::validate_storage(raw.storage, raw.evidence, base_dir, &mut problem);
    let sync = sync::validate_sync(raw.sync, &mut problem);
    let rao = flow::validate_rao(raw.rao, base_dir, &mut files, &mut problem);
    let signature = flow::validate_signature(raw.signature, base_dir, &mut problem);
    let api = api::validate_api(raw.api, base_dir, &storage.data_dir, &evidence, &mut files, &mut problem);
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
    let config =
        Config { oneshot, storage, evidence, sync, capture, rao, signature, api, health_stall, log_format, path: None };
    Ok(Unread { config, files })
}

/// Validates a parsed configuration and reads the files it names: [`validate`], then
/// [`Unread::read_files`].
pub fn build(raw: RawConfig, base_dir: &Path) -> Result<Config, ConfigError> {
    validate(raw, base_dir)?.read_files()
}

#[cfg(test)]
pub(crate) mod tests;
