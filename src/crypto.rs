//! Encryption at rest: a master key wraps one random data key per enrollment; the data key seals
//! the enrollment's personal fields (one AEAD blob) and streams its artifact files.
//!
//! Everything uses AES-256-GCM from `ring` (already in the build for rustls). It was chosen over
//! RustCrypto's `aes-gcm` because the video is decrypted on the upload path and ring's
//! assembly ran at ~8 GB/s against ~1.4 GB/s on the same machine. Keys are never reused across
//! enrollments, and random 96-bit nonces stay far below the birthday bound: the master key seals
//! one data key per enrollment, a data key seals one blob.
//!
//! Artifact files use the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015), as in
//! RustCrypto's `aead::stream::StreamBE32`, which ring does not provide: chunk `i` is sealed
//! under the nonce `prefix(7 random bytes) ‖ i (u32 big-endian) ‖ last-flag (1 byte)`. A file of
//! any size is encrypted and decrypted in constant memory, and reordered, dropped or truncated
//! chunks fail to open. Every ciphertext is bound to its enrollment id (and artifact name) as
//! associated data, so a blob or file moved to another enrollment does not decrypt.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rand::rngs::OsRng;
use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use sha2::{Digest, Sha256};

/// Plaintext bytes per STREAM chunk: large enough that per-chunk costs vanish, small enough
/// that a few in flight cost nothing.
pub const CHUNK: usize = 256 * 1024;
const TAG: usize = 16;
const NONCE: usize = 12;
/// STREAM's nonce prefix: the 96-bit nonce minus the 32-bit counter and the last-chunk flag.
const STREAM_PREFIX: usize = 7;
const FILE_MAGIC: &[u8; 4] = b"KAE2";
/// Name of the key file systemd's `LoadCredential=` provides in `$CREDENTIALS_DIRECTORY`.
pub const CREDENTIAL_NAME: &str = "kiosk-agent.key";

/// Why a key could not be loaded or data could not be decrypted.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("master key {path}: {error}")]
    KeyIo { path: PathBuf, error: io::Error },
    #[error("master key {path} must hold 32 bytes (raw or 64 hex digits)")]
    KeyFormat { path: PathBuf },
    #[error("no master key: looked for {}; create one on purpose with `kiosk-agent key init` (or provide it through the unit's LoadCredential=)", .looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and "))]
    KeyMissing { looked: Vec<PathBuf> },
    #[error(
        "master key {path} already exists; `key init` never replaces a key (the queued evidence is encrypted under it)"
    )]
    KeyExists { path: PathBuf },
    #[error("master key: {0}")]
    KeyUnsafe(String),
    #[error("decryption failed for {what}: wrong key or damaged data")]
    Decrypt { what: String },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A 256-bit key. `Debug` never shows the bytes, and they are wiped from memory on drop.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl Drop for SecretKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

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

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("a 32-byte key is valid for AES-256-GCM"))
    }

    /// Seals `plaintext` as `nonce || ciphertext || tag`, bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE];
        OsRng.fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(NONCE + plaintext.len() + TAG);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .aead()
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut out[NONCE..])
            .expect("AES-GCM sealing of in-memory data below 64 GiB cannot fail");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Opens what [`SecretKey::seal`] produced.
    pub fn open(&self, sealed: &[u8], aad: &[u8], what: &str) -> Result<Vec<u8>, CryptoError> {
        let fail = || CryptoError::Decrypt { what: what.to_owned() };
        if sealed.len() < NONCE + TAG {
            return Err(fail());
        }
        let nonce: [u8; NONCE] = sealed[..NONCE].try_into().expect("length checked");
        let mut buf = sealed[NONCE..].to_vec();
        let len = self
            .aead()
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf)
            .map_err(|_| fail())?
            .len();
        buf.truncate(len);
        Ok(buf)
    }

    /// Wraps a data key under this (master) key.
    pub fn wrap(&self, data_key: &SecretKey, aad: &[u8]) -> Vec<u8> {
        self.seal(&data_key.0, aad)
    }

    pub fn unwrap_key(&self, wrapped: &[u8], aad: &[u8]) -> Result<SecretKey, CryptoError> {
        let bytes = self.open(wrapped, aad, "data key")?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::Decrypt { what: "data key".into() })?;
        Ok(SecretKey(arr))
    }
}

/// The nonce of STREAM chunk `index` under `prefix`.
fn stream_nonce(prefix: &[u8; STREAM_PREFIX], index: u32, last: bool) -> Nonce {
    let mut n = [0u8; NONCE];
    n[..STREAM_PREFIX].copy_from_slice(prefix);
    n[STREAM_PREFIX..NONCE - 1].copy_from_slice(&index.to_be_bytes());
    n[NONCE - 1] = u8::from(last);
    Nonce::assume_unique_for_key(n)
}

/// Loads the master key: `$CREDENTIALS_DIRECTORY/kiosk-agent.key` when systemd provides it,
/// else `key_file`. Nothing here creates a key: a missing one is an error that says where it
/// looked ([`create_master_key`] is `kiosk-agent key init`'s, and only its).
pub fn load_master_key(key_file: &Path) -> Result<SecretKey, CryptoError> {
    let mut looked = Vec::new();
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let path = Path::new(&dir).join(CREDENTIAL_NAME);
        if path.exists() {
            return read_key(&path);
        }
        looked.push(path);
    }
    match read_private_key(key_file) {
        Err(CryptoError::KeyIo { error, .. }) if error.kind() == io::ErrorKind::NotFound => {
            looked.push(key_file.to_owned());
            Err(CryptoError::KeyMissing { looked })
        }
        other => other,
    }
}

/// Creates the master key file on purpose (mode 0600, fsync'd); an existing one is never
/// replaced.
pub fn create_master_key(key_file: &Path) -> Result<SecretKey, CryptoError> {
    if key_file.exists() {
        return Err(CryptoError::KeyExists { path: key_file.to_owned() });
    }
    generate_key_file(key_file)
}

impl SecretKey {
    /// A short public fingerprint of the key (it reveals nothing of the key): what the queue
    /// records to refuse a different key later.
    pub fn fingerprint(&self) -> String {
        let mut h = sha2::Sha256::new();
        sha2::Digest::update(&mut h, b"kiosk-agent master key fingerprint v1");
        sha2::Digest::update(&mut h, self.0);
        hex::encode(&sha2::Digest::finalize(h)[..8])
    }
}

fn read_key(path: &Path) -> Result<SecretKey, CryptoError> {
    use zeroize::Zeroizing;
    let bytes = Zeroizing::new(
        crate::fsutil::read_bounded(path, crate::fsutil::MAX_SECRET_BYTES)
            .map_err(|error| CryptoError::KeyIo { path: path.into(), error })?,
    );
    let text = std::str::from_utf8(&bytes).map(str::trim).unwrap_or("");
    let mut key = Zeroizing::new([0u8; 32]);
    let ok = if text.len() == 64 {
        hex::decode_to_slice(text, key.as_mut_slice()).is_ok()
    } else if bytes.len() == 32 {
        key.copy_from_slice(&bytes);
        true
    } else {
        false
    };
    if !ok {
        return Err(CryptoError::KeyFormat { path: path.into() });
    }
    Ok(SecretKey(*key))
}

/// [`read_key`] for a key the operator provisioned: it must also be private to this user.
/// (Keys from `$CREDENTIALS_DIRECTORY` are systemd's to protect.)
fn read_private_key(path: &Path) -> Result<SecretKey, CryptoError> {
    if let Err(rule) = crate::fsutil::check_private(path) {
        if path.exists() {
            return Err(CryptoError::KeyUnsafe(rule));
        }
    }
    read_key(path)
}

fn generate_key_file(path: &Path) -> Result<SecretKey, CryptoError> {
    let key = SecretKey::random();
    let io_err = |error| CryptoError::KeyIo { path: path.into(), error };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err)?;
    // Write the key completely to a private temporary file, then publish it with link(2), which
    // fails if the name exists: two processes starting at once agree on one key, and nobody
    // ever reads a half-written key file.
    let tmp = dir.join(format!(".master.key.{}.tmp", uuid::Uuid::new_v4()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(format!("{}\n", hex::encode(key.0)).as_bytes())?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match result {
        Ok(()) => {
            crate::fsutil::sync_dir(dir).map_err(io_err)?;
            Ok(key)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(CryptoError::KeyExists { path: path.to_owned() }),
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
///
/// Two threads share the work, about evenly: a helper thread reads each chunk and hashes it
/// (SHA-256 and the copy out of the page cache), this one encrypts it in place and writes it
/// (AES-GCM and the copy into the page cache). Each chunk is hashed before it is encrypted, in
/// the same buffer, so what is hashed is exactly what is sealed, and nothing is copied twice.
pub fn encrypt_stream(
    key: &SecretKey,
    aad: &[u8],
    input: &mut (impl Read + Send),
    output: &mut impl Write,
    limit: u64,
) -> io::Result<StreamSummary> {
    let mut prefix = [0u8; STREAM_PREFIX];
    OsRng.fill_bytes(&mut prefix);
    output.write_all(FILE_MAGIC)?;
    output.write_all(&prefix)?;
    let aead = key.aead();
    // Read and hashed chunks go one way, emptied buffers come back: memory stays at a few
    // chunks whatever the size.
    let (to_sealer, read) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
    let (recycle, spare) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || -> io::Result<(u64, String)> {
            let mut h = Sha256::new();
            let mut total = 0u64;
            loop {
                let mut buf = spare.try_recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK + TAG));
                buf.resize(CHUNK, 0);
                let filled = read_full(input, &mut buf)?;
                buf.truncate(filled);
                total += filled as u64;
                if total > limit {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("input exceeds the limit of {limit} bytes"),
                    ));
                }
                h.update(&buf);
                // An empty chunk is sent only for an empty input, which is sealed as one.
                if (filled > 0 || total == 0) && to_sealer.send(buf).is_err() {
                    // The sealer stopped on an error of its own, which it reports.
                    break;
                }
                if filled < CHUNK {
                    break;
                }
            }
            Ok((total, hex::encode(h.finalize())))
        });
        let sealed = (|| -> io::Result<()> {
            // One chunk is held back so that the last one can be sealed with the "last" flag.
            let Ok(mut current) = read.recv() else { return Ok(()) };
            let mut index = 0u32;
            loop {
                let next = read.recv().ok();
                let last = next.is_none();
                let tag = aead
                    .seal_in_place_separate_tag(stream_nonce(&prefix, index, last), Aad::from(aad), &mut current)
                    .map_err(|_| io::Error::other("AES-GCM sealing failed"))?;
                current.extend_from_slice(tag.as_ref());
                output.write_all(&current)?;
                current.clear();
                let _ = recycle.send(current);
                let Some(next) = next else { return Ok(()) };
                current = next;
                index = index.checked_add(1).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "file too large for the STREAM counter")
                })?;
            }
        })();
        // Stops the reader if this side failed (its next send fails).
        drop(read);
        let read = reader.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        // The reader's error first: a file that grew or could not be read is what went wrong.
        let (plaintext_len, sha256) = read?;
        sealed?;
        Ok(StreamSummary { plaintext_len, sha256 })
    })
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

/// Decrypts an artifact file one chunk at a time; each `next_chunk_into` gives plaintext or a
/// decryption error (tampering, truncation, wrong key). Memory use is one chunk.
pub struct DecryptingReader {
    file: File,
    /// Where the next chunk starts in the file (reads are positional).
    offset: u64,
    remaining: u64,
    aead: LessSafeKey,
    prefix: [u8; STREAM_PREFIX],
    index: u32,
    done: bool,
    aad: Vec<u8>,
    what: String,
}

impl std::fmt::Debug for DecryptingReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptingReader").field("what", &self.what).field("remaining", &self.remaining).finish()
    }
}

impl DecryptingReader {
    pub fn open(key: &SecretKey, aad: &[u8], path: &Path) -> Result<Self, CryptoError> {
        let what = path.display().to_string();
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        // Read front to back once: a larger read-ahead keeps more of a streamed upload in the
        // page cache by the time it is read, which the connection's thread then does itself
        // (`next_chunk_if_cached`). Only advice; nothing depends on it.
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::Sequential);
        let mut header = [0u8; 4 + STREAM_PREFIX];
        file.read_exact(&mut header).map_err(|_| CryptoError::Decrypt { what: what.clone() })?;
        if &header[..4] != FILE_MAGIC {
            return Err(CryptoError::Decrypt { what });
        }
        Ok(DecryptingReader {
            file,
            offset: header.len() as u64,
            remaining: len - header.len() as u64,
            aead: key.aead(),
            prefix: header[4..].try_into().expect("sized above"),
            index: 0,
            done: false,
            aad: aad.to_vec(),
            what,
        })
    }

    /// The next plaintext chunk into `buf` (its contents replaced, its allocation reused), or
    /// `false` after the last one. A streamed upload hands the same few buffers round: reading
    /// each chunk into a fresh, zeroed allocation cost a tenth of a large upload's CPU time in
    /// page faults and memset. A reused buffer is only resized (its bytes are overwritten, so
    /// only growth is zeroed: the tag's 16 bytes) and filled with one read; `read_to_end` into
    /// spare capacity probed its way up from 8 KiB, six reads a chunk.
    pub fn next_chunk_into(&mut self, buf: &mut Vec<u8>) -> Result<bool, CryptoError> {
        let Some(n) = self.next_len(buf)? else { return Ok(false) };
        match std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, self.offset) {
            Ok(()) => self.open_chunk(buf, n),
            // The file ended before the length it had when opened: truncated under us.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(self.damaged()),
            Err(e) => Err(e.into()),
        }
    }

    /// [`Self::next_chunk_into`] if the whole chunk is already in the page cache (`None`, with
    /// nothing consumed, if reading it would wait for the disk, or the kernel cannot say): what
    /// an async task may call without blocking its thread.
    pub fn next_chunk_if_cached(&mut self, buf: &mut Vec<u8>) -> Result<Option<bool>, CryptoError> {
        let Some(n) = self.next_len(buf)? else { return Ok(Some(false)) };
        let read = rustix::io::preadv2(
            &self.file,
            &mut [io::IoSliceMut::new(buf)],
            self.offset,
            rustix::io::ReadWriteFlags::NOWAIT,
        );
        match read {
            Ok(got) if got == n => self.open_chunk(buf, n).map(Some),
            // Partly cached, not cached, or cut short: the blocking read decides.
            _ => Ok(None),
        }
    }

    /// The next chunk's length on disk with `buf` sized to it, or `None` (and `buf` emptied)
    /// after the last one.
    fn next_len(&self, buf: &mut Vec<u8>) -> Result<Option<usize>, CryptoError> {
        if self.done {
            buf.clear();
            return Ok(None);
        }
        if self.remaining < TAG as u64 {
            return Err(self.damaged());
        }
        let n = (self.remaining as usize).min(CHUNK + TAG);
        buf.resize(n, 0);
        Ok(Some(n))
    }

    /// Verifies and decrypts the `n` bytes read into `buf`, leaving the plaintext there.
    fn open_chunk(&mut self, buf: &mut Vec<u8>, n: usize) -> Result<bool, CryptoError> {
        let last = self.remaining == n as u64;
        let nonce = stream_nonce(&self.prefix, self.index, last);
        let len = self.aead.open_in_place(nonce, Aad::from(&self.aad), buf).map_err(|_| self.damaged())?.len();
        buf.truncate(len);
        self.offset += n as u64;
        self.remaining -= n as u64;
        self.index = self.index.wrapping_add(1);
        self.done = last;
        Ok(true)
    }

    fn damaged(&self) -> CryptoError {
        CryptoError::Decrypt { what: self.what.clone() }
    }

    /// Decrypts the whole file into memory (for images, which are small and capped).
    pub fn read_all(mut self) -> Result<Vec<u8>, CryptoError> {
        let (mut out, mut chunk) = (Vec::new(), Vec::new());
        while self.next_chunk_into(&mut chunk)? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// The plaintext's length and SHA-256 (hex), every chunk verified on the way, through one
    /// reused buffer: what checking a stored artifact or document against its record needs.
    pub fn size_and_sha256(mut self) -> Result<(u64, String), CryptoError> {
        let (mut hasher, mut size, mut chunk) = (Sha256::new(), 0u64, Vec::new());
        while self.next_chunk_into(&mut chunk)? {
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok((size, hex::encode(hasher.finalize())))
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
        let s = encrypt_stream(&key, b"id/video", &mut data.as_slice(), &mut out, u64::MAX).unwrap();
        assert_eq!(s.plaintext_len, len as u64);
        assert_eq!(s.sha256, hex::encode(Sha256::digest(&data)));
        let back = DecryptingReader::open(&key, b"id/video", &path).unwrap().read_all().unwrap();
        assert_eq!(back, data, "len {len}");
        // The ciphertext does not contain the plaintext.
        if len >= 64 {
            let raw = std::fs::read(&path).unwrap();
            assert!(!raw.windows(64).any(|w| w == &data[..64]));
        }
        // Another enrollment's associated data does not open it.
        assert!(DecryptingReader::open(&key, b"other/video", &path).unwrap().read_all().is_err());
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
        encrypt_stream(&key, b"x", &mut data.as_slice(), &mut File::create(&path).unwrap(), u64::MAX).unwrap();
        let raw = std::fs::read(&path).unwrap();
        // Dropping the last chunk leaves a stream whose final chunk lacks the "last" flag.
        std::fs::write(&path, &raw[..raw.len() - (CHUNK + TAG)]).unwrap();
        assert!(DecryptingReader::open(&key, b"x", &path).unwrap().read_all().is_err());
        // Swapping two full chunks (same plaintext!) breaks the counter in the nonce.
        let mut swapped = raw.clone();
        let (h, c) = (4 + STREAM_PREFIX, CHUNK + TAG);
        let first = raw[h..h + c].to_vec();
        swapped.copy_within(h + c..h + 2 * c, h);
        swapped[h + c..h + 2 * c].copy_from_slice(&first);
        std::fs::write(&path, &swapped).unwrap();
        assert!(DecryptingReader::open(&key, b"x", &path).unwrap().read_all().is_err());
        let mut flipped = raw.clone();
        flipped[100] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert!(DecryptingReader::open(&key, b"x", &path).unwrap().read_all().is_err());
    }

    #[test]
    fn chunks_into_a_reused_buffer_replace_what_it_held() {
        let key = SecretKey::random();
        let data: Vec<u8> = (0..2 * CHUNK + 5).map(|i| (i % 253) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.enc");
        encrypt_stream(&key, b"x", &mut data.as_slice(), &mut File::create(&path).unwrap(), u64::MAX).unwrap();
        let mut reader = DecryptingReader::open(&key, b"x", &path).unwrap();
        let mut buf = vec![7u8; 3 * CHUNK];
        let mut back = Vec::new();
        while reader.next_chunk_into(&mut buf).unwrap() {
            assert!(buf.len() <= CHUNK);
            back.extend_from_slice(&buf);
        }
        assert!(buf.is_empty(), "the end leaves nothing in the buffer");
        assert_eq!(back, data);
    }

    #[test]
    fn a_file_cut_short_while_being_read_is_a_decryption_error() {
        let key = SecretKey::random();
        let data = vec![9u8; 3 * CHUNK];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.enc");
        encrypt_stream(&key, b"x", &mut data.as_slice(), &mut File::create(&path).unwrap(), u64::MAX).unwrap();
        let mut reader = DecryptingReader::open(&key, b"x", &path).unwrap();
        let mut buf = Vec::new();
        assert!(reader.next_chunk_into(&mut buf).unwrap());
        // Cut in the middle of the second chunk after the reader measured the file.
        let len = std::fs::metadata(&path).unwrap().len();
        File::options().write(true).open(&path).unwrap().set_len(len - CHUNK as u64).unwrap();
        let outcome = loop {
            match reader.next_chunk_into(&mut buf) {
                Ok(true) => continue,
                other => break other,
            }
        };
        assert!(matches!(outcome, Err(CryptoError::Decrypt { .. })), "{outcome:?}");
    }

    #[test]
    fn limit_is_enforced_while_streaming() {
        let key = SecretKey::random();
        let err = encrypt_stream(&key, b"x", &mut [0u8; 100].as_slice(), &mut Vec::new(), 99).unwrap_err();
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
        assert_eq!(dk.open(&blob, b"e1/pii", "pii").unwrap(), b"{\"given_name\":\"Ana\"}");
        assert!(SecretKey::random().open(&blob, b"e1/pii", "pii").is_err());
    }

    #[test]
    fn concurrent_key_inits_make_exactly_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let made: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| create_master_key(&path).is_ok())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(made.iter().filter(|m| **m).count(), 1, "one init wins, the others are refused");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary files left");
    }

    #[test]
    fn a_key_is_created_only_on_purpose_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/master.key");
        assert!(matches!(load_master_key(&path), Err(CryptoError::KeyMissing { .. })));
        assert!(!path.exists(), "loading never creates");
        let k1 = create_master_key(&path).unwrap();
        let k2 = load_master_key(&path).unwrap();
        assert_eq!((k1.0, k1.fingerprint()), (k2.0, k2.fingerprint()));
        assert_ne!(k1.fingerprint(), SecretKey::random().fingerprint());
        assert!(matches!(create_master_key(&path), Err(CryptoError::KeyExists { .. })));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::write(&path, "short").unwrap();
        assert!(matches!(load_master_key(&path), Err(CryptoError::KeyFormat { .. })));
    }
}
