//! The configuration file as written: every key optional, unknown keys rejected by name.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiosk_common::config::{RawCameras, RawCapture};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub oneshot: Option<RawOneShot>,
    pub storage: Option<RawStorage>,
    pub evidence: Option<RawEvidence>,
    pub sync: Option<RawSync>,
    pub cameras: Option<RawCameras>,
    pub capture: Option<RawCapture>,
    pub rao: Option<super::flow::RawRao>,
    pub signature: Option<super::flow::RawSignature>,
    pub api: Option<super::api::RawApi>,
    pub health: Option<super::api::RawHealth>,
    pub log: Option<kiosk_common::log::RawLog>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOneShot {
    pub base_url: Option<String>,
    pub layout: Option<String>,
    pub registration_authority: Option<String>,
    pub profile: Option<String>,
    pub env: Option<String>,
    pub billing_username: Option<String>,
    pub billing_password_file: Option<PathBuf>,
    pub webhook_url: Option<String>,
    pub videoid_mode: Option<i64>,
    pub proxy: Option<String>,
    pub min_upload_bytes_per_sec: Option<u64>,
    pub headers: Option<BTreeMap<String, String>>,
    pub ca_bundle: Option<PathBuf>,
    pub connect_timeout_secs: Option<u64>,
    pub request_timeout_secs: Option<u64>,
    pub upload_timeout_secs: Option<u64>,
    /// Overrides keyed by operation (`Operation::key`); unknown keys are problems, not parse errors.
    pub paths: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    pub data_dir: Option<PathBuf>,
    pub master_key_file: Option<PathBuf>,
    pub max_spool_bytes: Option<u64>,
    pub min_free_bytes: Option<u64>,
    pub erase_after: Option<String>,
    pub document_backup_dir: Option<PathBuf>,
    pub max_retention_days: Option<u64>,
    pub device_key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvidence {
    pub max_image_bytes: Option<u64>,
    pub max_image_megapixels: Option<f64>,
    pub max_video_bytes: Option<u64>,
    pub send_manifest: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    pub concurrency: Option<usize>,
    pub backoff_base_secs: Option<f64>,
    pub backoff_cap_secs: Option<f64>,
    pub status_poll_secs: Option<f64>,
    pub max_resends: Option<u32>,
    pub max_unknown_status_secs: Option<f64>,
    pub max_server_errors: Option<u32>,
    pub max_upload_rate: Option<String>,
    pub video_windows: Option<Vec<String>>,
    pub orphan_lookups_per_hour: Option<u32>,
    pub orphan_search: Option<String>,
    pub probe_cap_secs: Option<f64>,
    pub heartbeat_secs: Option<f64>,
    pub review_poll_secs: Option<f64>,
    pub review_poll_late_secs: Option<f64>,
    pub review_follow_days: Option<f64>,
    pub webhook_listen: Option<String>,
    pub otp_wait_secs: Option<f64>,
}
