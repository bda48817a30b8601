//! The evidence model: an enrollment manifest, its validation, and the One-Shot payloads.
//!
//! Validation collects every problem at once, each naming the manifest field and the rule it
//! breaks, and it only reads: it opens each artifact once ([`open`]), decodes images and cleans
//! them of metadata ([`media`]), starts the video's probe ([`probe`], awaited before the
//! enrollment is committed), and writes nothing, so a rejected manifest leaves no trace.

pub mod countries;
mod manifest;
pub mod media;
pub mod open;
mod payload;
pub mod probe;
mod sniff;
pub mod strict_json;

pub use manifest::{
    validate_manifest, ArtifactSource, Content, Customer, Enrollment, ManifestOptions, Pii, IMAGE_NAMES,
};
pub use payload::{create_body, evidences_body};
pub use probe::{HelperProber, PendingProbe, VideoCheck, VideoProber, STANDBY_SOCKET};
pub use sniff::{sniff_image, sniff_video, MediaKind};

use std::fmt;

/// One thing wrong with a manifest: the field (dotted path) and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub rule: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.rule)
    }
}

/// Why a manifest was rejected.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("cannot read manifest {path}: {error}")]
    ReadManifest { path: std::path::PathBuf, error: std::io::Error },
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("manifest has {} problem(s):\n{}", .0.len(), .0.iter().map(|v| format!("  - {v}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Violation>),
}

impl EvidenceError {
    /// The violations, when the manifest was readable JSON.
    pub fn violations(&self) -> &[Violation] {
        match self {
            EvidenceError::Invalid(v) => v,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests;
