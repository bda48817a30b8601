//! `check-config`: the configuration parses, and what it points at is usable — the master key,
//! the data directory — so a unit that starts after a clean check does not fail on its first
//! step and restart in a loop. (Secrets, credentials and the CA bundle are already checked while
//! the configuration loads.)

use std::path::Path;

use crate::config::Config;

/// Every problem with what `config` points at, each naming the setting.
pub fn environment_problems(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = crate::crypto::load_master_key(&config.storage.master_key_file) {
        problems.push(format!("storage.master_key_file: {e}"));
    }
    if let Err(rule) = data_dir_usable(&config.storage.data_dir, config.storage.min_free_bytes) {
        problems.push(format!("storage.data_dir: {rule}"));
    }
    problems
}

/// The data directory exists as a directory of this user's, writable, with room; or it can be
/// created (its nearest existing ancestor is a writable directory).
fn data_dir_usable(dir: &Path, min_free: u64) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    let me = rustix::process::geteuid().as_raw();
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Err(format!("{} exists and is not a directory", dir.display())),
        Ok(meta) if meta.uid() != me => Err(format!(
            "{} belongs to uid {}, not to this user (uid {me}); run as its owner or chown it",
            dir.display(),
            meta.uid()
        )),
        Ok(_) => {
            tempfile::tempfile_in(dir).map_err(|e| format!("{} is not writable: {e}", dir.display()))?;
            let free = crate::fsutil::available_bytes(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            if free < min_free {
                return Err(format!(
                    "{} has {free} bytes free, under storage.min_free_bytes ({min_free}); free {} bytes",
                    dir.display(),
                    min_free - free
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = dir.ancestors().skip(1).find(|p| p.exists()).unwrap_or(Path::new("/"));
            if !parent.is_dir() {
                return Err(format!("cannot be created: {} is not a directory", parent.display()));
            }
            tempfile::tempfile_in(parent)
                .map(drop)
                .map_err(|e| format!("cannot be created: {} is not writable ({e})", parent.display()))
        }
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}
