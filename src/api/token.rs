//! The local API's token: created on purpose by `key init` (and the package's postinst), never
//! guessed or defaulted; `run` refuses to serve the API without one.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::{anyhow, Context as _};
use rand::RngCore as _;
use zeroize::Zeroizing;

use crate::config::ApiConfig;

/// Writes a new random token (32 bytes from the system's generator, hex: 64 characters) to
/// `path`, mode 0600, durably. Fails if the file exists: a token is never replaced.
pub fn create(path: &Path) -> anyhow::Result<()> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    let text = Zeroizing::new(format!("{}\n", hex::encode(bytes.as_ref())));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("api.token_file: cannot create {}", dir.display()))?;
    }
    // create_new: two `key init` at once cannot both write it.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("api.token_file: cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("api.token_file: cannot write {}", path.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::fsutil::sync_dir(dir)?;
    }
    Ok(())
}

/// The API is served only with a token: when it listens (TCP or a Unix socket) and none was
/// found, the error names the file and the command that creates it.
pub fn require(api: &ApiConfig) -> anyhow::Result<()> {
    let serves = api.listen.is_some() || api.unix_socket.is_some();
    if serves && api.token.is_none() {
        return Err(anyhow!(
            "api.token_file: no API token at {} (the local API is never served without one); \
             run `kiosk-agent key init` to create it, or set api.listen = \"off\"",
            api.token_file.display()
        ));
    }
    Ok(())
}
