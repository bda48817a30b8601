//! The files a configuration names (secrets, the CA bundle, the API token), read in a step of
//! their own after validation.
//!
//! Validation is pure: it checks what the file says and records, under each key, what must be
//! read and where the value goes ([`Files`]). [`Unread::read_files`] then reads them all and
//! reports every failure with its key, as validation does. [`super::load`] runs both, so a
//! missing secret is still a configuration error (exit 2) before anything starts; a test or a
//! tool can validate a file without touching the disk.

use std::fmt;

use kiosk_common::config::{ConfigError, Problem};

use super::Config;

/// A read the configuration asks for: fills its part of the configuration, or says what is
/// wrong with the file.
type Read = Box<dyn FnOnce(&mut Config) -> Result<(), String> + Send>;

/// The reads recorded during validation, each under the key it belongs to.
#[derive(Default)]
pub struct Files {
    reads: Vec<(String, Read)>,
}

impl fmt::Debug for Files {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.reads.iter().map(|(key, _)| key)).finish()
    }
}

impl Files {
    /// Records a read for `key`.
    pub fn read(&mut self, key: &str, read: impl FnOnce(&mut Config) -> Result<(), String> + Send + 'static) {
        self.reads.push((key.to_owned(), Box::new(read)));
    }
}

/// A validated configuration whose files are not read yet.
#[derive(Debug)]
pub struct Unread {
    pub(super) config: Config,
    pub(super) files: Files,
}

impl Unread {
    /// The keys whose files [`Self::read_files`] will read.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.files.reads.iter().map(|(key, _)| key.as_str())
    }

    /// Reads every file the configuration names; every failure is reported with its key.
    pub fn read_files(self) -> Result<Config, ConfigError> {
        let Unread { mut config, files } = self;
        let mut problems = Vec::new();
        for (key, read) in files.reads {
            if let Err(message) = read(&mut config) {
                problems.push(Problem { key, message });
            }
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}
