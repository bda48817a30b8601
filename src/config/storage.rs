//! The `[storage]` and `[evidence]` sections: where evidence is kept, for how long, and how big
//! it may be.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{RawEvidence, RawStorage};

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
    /// Images with more pixels than this (width × height from the header) are refused before
    /// anything is decoded: a small file can declare a huge picture (a decompression bomb).
    pub max_image_pixels: u64,
    pub max_video_bytes: u64,
    /// Send the signed capture manifest inside `acceptance` (which the API lets us extend).
    pub send_manifest: bool,
}

impl Default for EvidenceLimits {
    fn default() -> Self {
        EvidenceLimits {
            max_image_bytes: 10 * 1024 * 1024,
            max_image_pixels: 40_000_000,
            max_video_bytes: 512 * 1024 * 1024,
            send_manifest: false,
        }
    }
}

/// Validates `[storage]` and `[evidence]` (together: the spool's limits share their rule).
pub(super) fn validate_storage(
    raw: Option<RawStorage>,
    evidence: Option<RawEvidence>,
    base_dir: &Path,
    problem: &mut dyn FnMut(&str, String),
) -> (StorageConfig, EvidenceLimits) {
    let resolve = |p: PathBuf| if p.is_absolute() { p } else { base_dir.join(p) };
    let s = raw.unwrap_or_default();
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

    let e = evidence.unwrap_or_default();
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
        max_image_pixels: defaults.max_image_pixels,
        send_manifest: e.send_manifest.unwrap_or(false),
    };
    let max_spool_bytes = positive("storage.max_spool_bytes", s.max_spool_bytes, 20 * 1024 * 1024 * 1024);
    let min_free_bytes = s.min_free_bytes.unwrap_or(1024 * 1024 * 1024);
    // Range-checked: a number of days past a century would overflow the millisecond clock the
    // queue compares with, and erase everything at once.
    let max_retention = Duration::from_secs(
        86_400
            * match s.max_retention_days {
                None => 30,
                Some(d @ 1..=36_500) => d,
                Some(d) => {
                    problem("storage.max_retention_days", format!("must be between 1 and 36500 days, not {d}"));
                    30
                }
            },
    );
    let mut evidence = evidence;
    match e.max_image_megapixels {
        None => {}
        // Up to 144 MP: the decoder's own side limit (12,000 px) allows no more.
        Some(mp) if mp.is_finite() && (0.1..=144.0).contains(&mp) => evidence.max_image_pixels = (mp * 1e6) as u64,
        Some(mp) => {
            problem("evidence.max_image_megapixels", format!("must be a number of megapixels in [0.1, 144], not {mp}"))
        }
    }

    let storage = StorageConfig {
        document_backup_dir: s.document_backup_dir.map(resolve).unwrap_or_else(|| data_dir.join("document-backup")),
        data_dir,
        master_key_file,
        device_key_file,
        max_spool_bytes,
        min_free_bytes,
        erase_after,
        max_retention,
    };
    (storage, evidence)
}
