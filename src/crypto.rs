//! Encryption at rest: a master key wraps one random data key per enrollment; the data key seals
//! the enrollment's personal fields (one AEAD blob) and streams its artifact files.
//!
//! Everything uses XChaCha20-Poly1305 (RustCrypto). Artifact files use the STREAM construction
//! (`aead::stream`, big-endian 32-bit counter) over 64 KiB chunks, so a file of any size is
//! encrypted and decrypted in constant memory, and truncation or reordering is detected. Every
//! ciphertext is bound to its enrollment id (and artifact name) as associated data, so a blob or
//! file moved to another enrollment does not decrypt.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Plaintext bytes per STREAM chunk.
pub const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
const FILE_MAGIC: &[u8; 4] = b"KAE1";
const STREAM_NONCE: usize = 19;
/// Name of the key file systemd's `LoadCredential=` provides in `$CREDENTIALS_DIRECTORY`.
pub const CREDENTIAL_NAME: &str = "kiosk-agent.key";

/// Why a key could not be loaded or data could not be decrypted.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("master key {path}: {source}")]
    KeyIo { path: PathBuf, source: io::Error },
    #[error("master key {path} must hold 32 bytes (raw or 64 hex digits)")]
    KeyFormat { path: PathBuf },
    #[error("decryption failed for {what}: wrong key or damaged data")]
    Decrypt { what: String },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A 256-bit key. `Debug` never shows the bytes.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    pub fn random() -> Self {
        let mut k = [0u8; 32];
        OsRng.fill_bytes(&mut k);
        SecretKey(k)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(Key::from_slice(&self.0))
    }

    /// Seals `plaintext` as `nonce || ciphertext`, bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ct = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory data");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        out
    }

    /// Opens what [`SecretKey::seal`] produced.
    pub fn open(&self, sealed: &[u8], aad: &[u8], what: &str) -> Result<Vec<u8>, CryptoError> {
        let fail = || CryptoError::Decrypt {
            what: what.to_owned(),
        };
        if sealed.len() < 24 + TAG {
            return Err(fail());
        }
        let (nonce, ct) = sealed.split_at(24);
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| fail())
    }

    /// Wraps a data key under this (master) key.
    pub fn wrap(&self, data_key: &SecretKey, aad: &[u8]) -> Vec<u8> {
        self.seal(&data_key.0, aad)
    }

    pub fn unwrap_key(&self, wrapped: &[u8], aad: &[u8]) -> Result<SecretKey, CryptoError> {
        let bytes = self.open(wrapped, aad, "data key")?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::Decrypt {
            what: "data key".into(),
        })?;
        Ok(SecretKey(arr))
    }
}

/// Loads the master key: `$CREDENTIALS_DIRECTORY/kiosk-agent.key` when systemd provides it,
/// else `key_file`, which is created (mode 0600, fsync'd) with a random key when absent.
pub fn load_master_key(key_file: &Path) -> Result<SecretKey, CryptoError> {
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let path = Path::new(&dir).join(CREDENTIAL_NAME);
        if path.exists() {
            return read_key(&path);
        }
    }
    match read_key(key_file) {
        Err(CryptoError::KeyIo { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            generate_key_file(key_file)
        }
        other => other,
    }
}

fn read_key(path: &Path) -> Result<SecretKey, CryptoError> {
    let bytes = std::fs::read(path).map_err(|source| CryptoError::KeyIo {
        path: path.into(),
        source,
    })?;
    let text = std::str::from_utf8(&bytes).map(str::trim).unwrap_or("");
    let key: Option<[u8; 32]> = if text.len() == 64 {
        hex::decode(text).ok().and_then(|v| v.try_into().ok())
    } else {
        bytes.clone().try_into().ok()
    };
    key.map(SecretKey)
        .ok_or_else(|| CryptoError::KeyFormat { path: path.into() })
}

fn generate_key_file(path: &Path) -> Result<SecretKey, CryptoError> {
    let key = SecretKey::random();
    let io_err = |source| CryptoError::KeyIo {
        path: path.into(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err)?;
    }
    // create_new: if another process won the race, use its key instead of overwriting it.
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut f) => {
            f.write_all(format!("{}\n", hex::encode(key.0)).as_bytes())
                .map_err(io_err)?;
            f.sync_all().map_err(io_err)?;
            crate::fsutil::sync_dir(path.parent().unwrap_or(Path::new("."))).map_err(io_err)?;
            Ok(key)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_key(path),
        Err(e) => Err(io_err(e)),
    }
}

/// What [`encrypt_stream`] saw of the plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    pub plaintext_len: u64,
    pub sha256: String,
}

/// Encrypts `input` into `output` chunk by chunk, hashing the plaintext on the way. Fails with
/// `InvalidData` once more than `limit` bytes arrive (the file grew after it was validated).
pub fn encrypt_stream(
    key: &SecretKey,
    aad: &[u8],
    input: &mut impl Read,
    output: &mut impl Write,
    limit: u64,
) -> io::Result<StreamSummary> {
    let mut nonce = [0u8; STREAM_NONCE];
    OsRng.fill_bytes(&mut nonce);
    output.write_all(FILE_MAGIC)?;
    output.write_all(&nonce)?;
    let mut enc = EncryptorBE32::from_aead(key.cipher(), nonce.as_slice().into());
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; CHUNK];
    // One chunk is held back so that the last one can be sealed with the STREAM "last" flag.
    let mut filled = read_full(input, &mut buf)?;
    loop {
        total += filled as u64;
        if total > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("input exceeds the limit of {limit} bytes"),
            ));
        }
        hasher.update(&buf[..filled]);
        if filled < CHUNK {
            let ct = enc
                .encrypt_last(Payload {
                    msg: &buf[..filled],
                    aad,
                })
                .map_err(aead_err)?;
            output.write_all(&ct)?;
            break;
        }
        let mut next = vec![0u8; CHUNK];
        let next_filled = read_full(input, &mut next)?;
        if next_filled == 0 {
            let ct = enc
                .encrypt_last(Payload {
                    msg: &buf[..filled],
                    aad,
                })
                .map_err(aead_err)?;
            output.write_all(&ct)?;
            break;
        }
        let ct = enc
            .encrypt_next(Payload {
                msg: &buf[..filled],
                aad,
            })
            .map_err(aead_err)?;
        output.write_all(&ct)?;
        buf = next;
        filled = next_filled;
    }
    Ok(StreamSummary {
        plaintext_len: total,
        sha256: hex::encode(hasher.finalize()),
    })
}

fn aead_err(_: chacha20poly1305::aead::Error) -> io::Error {
    io::Error::other("AEAD failure")
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Decrypts an artifact file one chunk at a time; each `next_chunk` returns plaintext or a
/// decryption error (tampering, truncation, wrong key). Memory use is one chunk.
pub struct DecryptingReader {
    file: File,
    remaining: u64,
    dec: Option<DecryptorBE32<XChaCha20Poly1305>>,
    aad: Vec<u8>,
    what: String,
}

impl std::fmt::Debug for DecryptingReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptingReader")
            .field("what", &self.what)
            .field("remaining", &self.remaining)
            .finish()
    }
}

impl DecryptingReader {
    pub fn open(key: &SecretKey, aad: &[u8], path: &Path) -> Result<Self, CryptoError> {
        let what = path.display().to_string();
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut header = [0u8; 4 + STREAM_NONCE];
        file.read_exact(&mut header)
            .map_err(|_| CryptoError::Decrypt { what: what.clone() })?;
        if &header[..4] != FILE_MAGIC {
            return Err(CryptoError::Decrypt { what });
        }
        let dec = DecryptorBE32::from_aead(key.cipher(), header[4..].into());
        Ok(DecryptingReader {
            file,
            remaining: len - header.len() as u64,
            dec: Some(dec),
            aad: aad.to_vec(),
            what,
        })
    }

    /// The next plaintext chunk, or `None` after the last one.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, CryptoError> {
        let Some(dec) = self.dec.as_mut() else {
            return Ok(None);
        };
        let fail = |what: &str| CryptoError::Decrypt {
            what: what.to_owned(),
        };
        if self.remaining < TAG as u64 {
            return Err(fail(&self.what));
        }
        let n = (self.remaining as usize).min(CHUNK + TAG);
        let mut ct = vec![0u8; n];
        self.file.read_exact(&mut ct)?;
        self.remaining -= n as u64;
        let payload = Payload {
            msg: &ct,
            aad: &self.aad,
        };
        let pt = if self.remaining == 0 {
            let dec = self.dec.take().expect("checked above");
            dec.decrypt_last(payload).map_err(|_| fail(&self.what))?
        } else {
            dec.decrypt_next(payload).map_err(|_| fail(&self.what))?
        };
        Ok(Some(pt))
    }

    /// Decrypts the whole file into memory (for images, which are small and capped).
    pub fn read_all(mut self) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::new();
        while let Some(chunk) = self.next_chunk()? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(len: usize) {
        let key = SecretKey::random();
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.enc");
        let mut out = File::create(&path).unwrap();
        let s =
            encrypt_stream(&key, b"id/video", &mut data.as_slice(), &mut out, u64::MAX).unwrap();
        assert_eq!(s.plaintext_len, len as u64);
        assert_eq!(s.sha256, hex::encode(Sha256::digest(&data)));
        let back = DecryptingReader::open(&key, b"id/video", &path)
            .unwrap()
            .read_all()
            .unwrap();
        assert_eq!(back, data, "len {len}");
        // The ciphertext does not contain the plaintext.
        if len >= 64 {
            let raw = std::fs::read(&path).unwrap();
            assert!(!raw.windows(64).any(|w| w == &data[..64]));
        }
        // Another enrollment's associated data does not open it.
        assert!(DecryptingReader::open(&key, b"other/video", &path)
            .unwrap()
            .read_all()
            .is_err());
    }

    #[test]
    fn stream_roundtrips_at_chunk_boundaries() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17] {
            roundtrip(len);
        }
    }

    #[test]
    fn truncation_and_tampering_are_detected() {
        let key = SecretKey::random();
        let data = vec![42u8; 3 * CHUNK];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.enc");
        encrypt_stream(
            &key,
            b"x",
            &mut data.as_slice(),
            &mut File::create(&path).unwrap(),
            u64::MAX,
        )
        .unwrap();
        let raw = std::fs::read(&path).unwrap();
        // Dropping the last chunk leaves a stream whose final chunk lacks the "last" flag.
        std::fs::write(&path, &raw[..raw.len() - (CHUNK + TAG)]).unwrap();
        assert!(DecryptingReader::open(&key, b"x", &path)
            .unwrap()
            .read_all()
            .is_err());
        let mut flipped = raw.clone();
        flipped[100] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert!(DecryptingReader::open(&key, b"x", &path)
            .unwrap()
            .read_all()
            .is_err());
    }

    #[test]
    fn limit_is_enforced_while_streaming() {
        let key = SecretKey::random();
        let err = encrypt_stream(&key, b"x", &mut [0u8; 100].as_slice(), &mut Vec::new(), 99)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn sealed_blobs_and_wrapped_keys_are_bound_to_their_aad() {
        let master = SecretKey::random();
        let dk = SecretKey::random();
        let wrapped = master.wrap(&dk, b"e1");
        assert_eq!(master.unwrap_key(&wrapped, b"e1").unwrap().0, dk.0);
        assert!(master.unwrap_key(&wrapped, b"e2").is_err());
        let blob = dk.seal(b"{\"given_name\":\"Ana\"}", b"e1/pii");
        assert_eq!(
            dk.open(&blob, b"e1/pii", "pii").unwrap(),
            b"{\"given_name\":\"Ana\"}"
        );
        assert!(SecretKey::random().open(&blob, b"e1/pii", "pii").is_err());
    }

    #[test]
    fn master_key_is_generated_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/master.key");
        let k1 = load_master_key(&path).unwrap();
        let k2 = load_master_key(&path).unwrap();
        assert_eq!(k1.0, k2.0);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::write(&path, "short").unwrap();
        assert!(matches!(
            load_master_key(&path),
            Err(CryptoError::KeyFormat { .. })
        ));
    }
}
