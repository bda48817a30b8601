//! The two Optimizer generations deployed in the field.

use std::fmt;

/// Which Optimizer a kiosk talks to. They differ in base path, envelope, keying of the uploads
/// and several later paths (`docs/protocol.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Generation {
    /// The old Optimizer: base `/api/v1`, `{"status": "200 OK", "details": …}`, uploads keyed by
    /// `request_pk`. Configured as `layout = "legacy"`.
    Old,
    /// The new Optimizer: base `/oneshot/api/v1`, `{"status": "success", "message": …,
    /// "detail": …}`, uploads keyed by `videoid_pk`. Configured as `layout = "current"`.
    New,
}

impl Generation {
    /// The base path a server of this generation serves its API under.
    pub fn base_path(self) -> &'static str {
        match self {
            Generation::Old => "/api/v1",
            Generation::New => "/oneshot/api/v1",
        }
    }

    /// The generation a configuration word (`oneshot.layout`) selects.
    pub fn from_layout_name(name: &str) -> Option<Generation> {
        [Generation::New, Generation::Old].into_iter().find(|g| g.layout_name() == name)
    }

    /// The configuration word (`oneshot.layout`) that selects this generation.
    pub fn layout_name(self) -> &'static str {
        match self {
            Generation::Old => "legacy",
            Generation::New => "current",
        }
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Generation::Old => "old Optimizer (/api/v1)",
            Generation::New => "new Optimizer (/oneshot/api/v1)",
        })
    }
}
