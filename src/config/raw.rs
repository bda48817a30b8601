//! The configuration file as written: every key optional, unknown keys rejected by name.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub oneshot: Option<RawOneShot>,
    pub storage: Option<RawStorage>,
    pub evidence: Option<RawEvidence>,
    pub sync: Option<RawSync>,
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
    pub headers: Option<BTreeMap<String, String>>,
    pub ca_bundle: Option<PathBuf>,
    pub connect_timeout_secs: Option<u64>,
    pub request_timeout_secs: Option<u64>,
    pub upload_timeout_secs: Option<u64>,
    pub paths: Option<RawPaths>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPaths {
    pub create: Option<String>,
    pub evidences: Option<String>,
    pub video: Option<String>,
    pub status: Option<String>,
    pub hello: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    pub data_dir: Option<PathBuf>,
    pub master_key_file: Option<PathBuf>,
    pub max_spool_bytes: Option<u64>,
    pub min_free_bytes: Option<u64>,
    pub erase_after: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvidence {
    pub max_image_bytes: Option<u64>,
    pub max_video_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    pub concurrency: Option<usize>,
    pub backoff_base_secs: Option<f64>,
    pub backoff_cap_secs: Option<f64>,
    pub status_poll_secs: Option<f64>,
    pub max_resends: Option<u32>,
}
