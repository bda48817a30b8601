//! The per-device Ed25519 signing key: it signs each enrollment's capture manifest, so what the
//! kiosk captured (hashes, camera, quality verdicts) can later be shown to come from this device
//! and to be unchanged. Created only by `kiosk-agent key init`, beside the master key; read like
//! it (`$CREDENTIALS_DIRECTORY/device.key` first), private to this user.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use zeroize::Zeroizing;

/// The credential name under `$CREDENTIALS_DIRECTORY`.
pub const CREDENTIAL_NAME: &str = "device.key";

/// Why the device key is unusable.
#[derive(Debug, thiserror::Error)]
pub enum DeviceKeyError {
    #[error("no device signing key at {0}; create it with `kiosk-agent key init` (it never replaces an existing key)")]
    Missing(PathBuf),
    #[error("device key: {0}")]
    Unsafe(String),
    #[error("device key {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("device key {0} is not an Ed25519 key in PKCS#8 (hex)")]
    Format(PathBuf),
    #[error("device key {0} already exists; `key init` never replaces a key")]
    Exists(PathBuf),
}

/// A loaded device key.
pub struct DeviceKey(Ed25519KeyPair);

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceKey({})", self.device_id())
    }
}

impl DeviceKey {
    /// The public key, hex.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.0.public_key().as_ref())
    }

    /// A short id for this device: the start of the public key's SHA-256.
    pub fn device_id(&self) -> String {
        use sha2::Digest as _;
        hex::encode(&sha2::Sha256::digest(self.0.public_key().as_ref())[..8])
    }

    /// The Ed25519 signature of `message`, hex.
    pub fn sign_hex(&self, message: &[u8]) -> String {
        hex::encode(self.0.sign(message).as_ref())
    }
}

/// Whether `signature_hex` is `public_key_hex`'s signature of `message`.
pub fn verify(public_key_hex: &str, message: &[u8], signature_hex: &str) -> bool {
    let (Ok(public), Ok(signature)) = (hex::decode(public_key_hex), hex::decode(signature_hex)) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, public).verify(message, &signature).is_ok()
}

/// Loads the device key: `$CREDENTIALS_DIRECTORY/device.key` when the unit provides it, else
/// `path`, which must be private to this user.
pub fn load(path: &Path) -> Result<DeviceKey, DeviceKeyError> {
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let candidate = Path::new(&dir).join(CREDENTIAL_NAME);
        if candidate.exists() {
            return read(&candidate);
        }
    }
    if !path.exists() {
        return Err(DeviceKeyError::Missing(path.to_owned()));
    }
    crate::fsutil::check_private(path).map_err(DeviceKeyError::Unsafe)?;
    read(path)
}

fn read(path: &Path) -> Result<DeviceKey, DeviceKeyError> {
    let text = Zeroizing::new(
        crate::fsutil::read_bounded_text(path, crate::fsutil::MAX_SECRET_BYTES)
            .map_err(|error| DeviceKeyError::Io { path: path.to_owned(), error })?,
    );
    let der = Zeroizing::new(hex::decode(text.trim()).map_err(|_| DeviceKeyError::Format(path.to_owned()))?);
    Ed25519KeyPair::from_pkcs8(&der).map(DeviceKey).map_err(|_| DeviceKeyError::Format(path.to_owned()))
}

/// Creates a new device key at `path` (0600, fsync'd); an existing one is never replaced.
pub fn create(path: &Path) -> Result<DeviceKey, DeviceKeyError> {
    let io = |error| DeviceKeyError::Io { path: path.to_owned(), error };
    if path.exists() {
        return Err(DeviceKeyError::Exists(path.to_owned()));
    }
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| io(std::io::Error::other("the system random source failed")))?;
    let text = Zeroizing::new(format!("{}\n", hex::encode(pkcs8.as_ref())));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    // create_new: two `key init` at once cannot both write the key.
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            DeviceKeyError::Exists(path.to_owned())
        } else {
            io(e)
        }
    })?;
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(io)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::fsutil::sync_dir(dir).map_err(io)?;
    }
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map(DeviceKey).map_err(|_| DeviceKeyError::Format(path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_signs_and_only_its_signatures_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        let key = create(&path).unwrap();
        assert!(matches!(create(&path), Err(DeviceKeyError::Exists(_))), "never replaced");
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.public_key_hex(), key.public_key_hex());
        let sig = loaded.sign_hex(b"manifest");
        assert!(verify(&key.public_key_hex(), b"manifest", &sig));
        assert!(!verify(&key.public_key_hex(), b"manifesT", &sig), "another message");
        let other = create(&dir.path().join("other.key")).unwrap();
        assert!(!verify(&other.public_key_hex(), b"manifest", &sig), "another key");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    use std::os::unix::fs::PermissionsExt as _;
}
