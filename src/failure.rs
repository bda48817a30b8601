//! What a command's failure means to whoever ran it: an exit code (2 bad input or
//! configuration, nothing changed; 4 a damaged queue database, left for a person; 1 anything
//! else) and the error. The CLI exits with it; the API maps it to an HTTP status.

use crate::config::ConfigError;
use crate::evidence::EvidenceError;
use crate::queue::QueueError;

/// A failure with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn bad_input(error: impl Into<anyhow::Error>) -> Self {
        Failure { code: 2, error: error.into() }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        let error: anyhow::Error = e.into();
        // Classify by the root error type so `.context()` does not hide bad input.
        let bad_input = error.chain().any(|c| {
            c.is::<ConfigError>()
                || c.is::<kiosk_common::BadInput>()
                || c.is::<EvidenceError>()
                || matches!(
                    c.downcast_ref::<QueueError>(),
                    Some(
                        QueueError::Space(_)
                            | QueueError::Evidence(_)
                            | QueueError::NotFound(_)
                            | QueueError::WrongState { .. }
                            | QueueError::BadDocument { .. }
                            | QueueError::WrongKey { .. }
                            | QueueError::ForeignDataDir { .. }
                            | QueueError::DeviceKey(_)
                            | QueueError::Crypto(
                                crate::crypto::CryptoError::KeyMissing { .. }
                                    | crate::crypto::CryptoError::KeyExists { .. }
                                    | crate::crypto::CryptoError::KeyFormat { .. }
                                    | crate::crypto::CryptoError::KeyUnsafe(_)
                            )
                    )
                )
        });
        // A damaged database needs a person, not a restart: exit 4, which the systemd unit
        // excludes from automatic restarts, so the service does not crash-loop on it.
        // Malformed pages met after the open count too.
        let damaged = error.chain().any(|c| match c.downcast_ref::<QueueError>() {
            Some(QueueError::DamagedDatabase { .. } | QueueError::LostDatabase { .. }) => true,
            Some(QueueError::Sqlite(e)) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
            ),
            _ => false,
        });
        // A full disk is the installation's problem, not the input's, but nothing was changed
        // and retrying will not help: exit 2, saying so plainly.
        let full = error.chain().any(|c| {
            let io = c.downcast_ref::<std::io::Error>().or(match c.downcast_ref::<QueueError>() {
                Some(QueueError::Io { error, .. }) => Some(error),
                _ => None,
            });
            // SQLite says "full" for its database and WAL; growing its shared-memory file on a
            // full disk is an I/O error of its own (SQLITE_IOERR_SHMSIZE).
            let sqlite_full = matches!(
                c.downcast_ref::<QueueError>(),
                Some(QueueError::Sqlite(e)) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
                    || e.sqlite_error().is_some_and(|e| e.extended_code == SQLITE_IOERR_SHMSIZE)
            );
            sqlite_full
                || io.is_some_and(|e| e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28))
        });
        if full && !damaged {
            let error = error.context(
                "no space left on the data directory's file system; nothing was changed (free some room and try again)",
            );
            return Failure { code: 2, error };
        }
        let code = if damaged {
            4
        } else if bad_input {
            2
        } else {
            1
        };
        Failure { code, error }
    }
}

/// SQLite's extended code for a shared-memory file it could not grow (`SQLITE_IOERR_SHMSIZE`).
const SQLITE_IOERR_SHMSIZE: std::os::raw::c_int = 4874;
