//! Sealed spills: a file too large to keep in memory (a long video sent to the API as
//! multipart) is written to the disk encrypted under a key that lives only in the daemon's
//! memory, so the disk never holds it in clear, not even for the seconds before it is queued.
//!
//! The cipher is AES-128-CBC with PKCS#7 padding because it is what FFmpeg's `crypto:` protocol
//! reads, seeking included: the capture helper probes the video straight from the sealed file
//! (see [`crate::evidence::HelperProber`]) and no step ever writes the plaintext. It gives
//! confidentiality only, which is what a spill needs: it lives for seconds in the daemon's own
//! 0700 directory, and is hashed and sealed with AES-256-GCM like every artifact once queued. A
//! key lost with the process (a crash, a power cut) leaves noise, which the next start erases.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use aes::cipher::{generic_array::GenericArray, BlockDecrypt, BlockDecryptMut, BlockEncryptMut, KeyInit, KeyIvInit};
use zeroize::Zeroize as _;

/// The cipher's block: a sealed file is a whole number of them, at least one.
const BLOCK: usize = 16;
/// Ciphertext read per step when unsealing.
const STEP: usize = 64 * 1024;

/// A spill's key and initialisation vector, random per file, never written anywhere.
pub struct SpillKey {
    key: [u8; 16],
    iv: [u8; 16],
}

impl Drop for SpillKey {
    fn drop(&mut self) {
        self.key.zeroize();
        self.iv.zeroize();
    }
}

impl std::fmt::Debug for SpillKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpillKey(..)")
    }
}

impl SpillKey {
    /// A fresh key from the operating system's generator.
    pub fn random() -> SpillKey {
        use rand::RngCore as _;
        let mut k = SpillKey { key: [0; 16], iv: [0; 16] };
        rand::rngs::OsRng.fill_bytes(&mut k.key);
        rand::rngs::OsRng.fill_bytes(&mut k.iv);
        k
    }

    /// Key and IV in hex (64 digits), the form FFmpeg's `key`/`iv` options take.
    pub fn to_hex(&self) -> String {
        format!("{}{}", hex::encode(self.key), hex::encode(self.iv))
    }

    /// The key back from [`SpillKey::to_hex`].
    pub fn from_hex(text: &str) -> Option<SpillKey> {
        let mut bytes = hex::decode(text.trim()).ok()?;
        let mut k = SpillKey { key: [0; 16], iv: [0; 16] };
        if bytes.len() == 32 {
            k.key.copy_from_slice(&bytes[..16]);
            k.iv.copy_from_slice(&bytes[16..]);
        }
        bytes.zeroize();
        (k.key != [0; 16]).then_some(k)
    }

    /// Starts sealing a new file.
    pub fn sealer(&self) -> Sealer {
        Sealer { cipher: cbc::Encryptor::new(&self.key.into(), &self.iv.into()), pending: Vec::new() }
    }

    /// Reads `inner` (a sealed file, from its start) in clear.
    pub fn unseal<R: Read>(&self, inner: R) -> Unsealer<R> {
        Unsealer {
            inner,
            cipher: cbc::Decryptor::new(&self.key.into(), &self.iv.into()),
            ready: Vec::new(),
            at: 0,
            held: None,
            started: false,
            ended: false,
        }
    }

    /// The size in clear of the sealed `file`, read from its last block's padding (its current
    /// position is left where it was).
    pub fn clear_len(&self, file: &File) -> std::io::Result<u64> {
        let size = file.metadata()?.len();
        if size == 0 || size % BLOCK as u64 != 0 {
            return Err(damaged("its size is not a whole number of cipher blocks"));
        }
        let mut tail = [0u8; 2 * BLOCK];
        let mut reader = file;
        let at = reader.stream_position()?;
        let (previous, last) = if size >= 2 * BLOCK as u64 {
            reader.seek(SeekFrom::Start(size - 2 * BLOCK as u64))?;
            reader.read_exact(&mut tail)?;
            tail.split_at_mut(BLOCK)
        } else {
            reader.seek(SeekFrom::Start(0))?;
            tail[..BLOCK].copy_from_slice(&self.iv);
            reader.read_exact(&mut tail[BLOCK..])?;
            tail.split_at_mut(BLOCK)
        };
        reader.seek(SeekFrom::Start(at))?;
        aes::Aes128::new(&self.key.into()).decrypt_block(GenericArray::from_mut_slice(last));
        last.iter_mut().zip(previous.iter()).for_each(|(b, p)| *b ^= p);
        let pad = padding(last).ok_or_else(|| damaged("its padding is wrong (another key, or damage)"))?;
        tail.zeroize();
        Ok(size - pad as u64)
    }
}

fn damaged(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("sealed spill: {why}"))
}

/// The PKCS#7 padding length of a decrypted last block, if it is well formed.
fn padding(last: &[u8]) -> Option<usize> {
    let n = *last.last()? as usize;
    ((1..=BLOCK).contains(&n) && last[BLOCK - n..].iter().all(|&b| b as usize == n)).then_some(n)
}

/// The sealed files of one submission, by the path its manifest names them with, with their
/// keys: what tells the validation to read them through [`SpillKey::unseal`].
#[derive(Debug, Default)]
pub struct SealedFiles(HashMap<String, Arc<SpillKey>>);

impl SealedFiles {
    /// Records that the file at `path` is sealed under `key`.
    pub fn insert(&mut self, path: &Path, key: Arc<SpillKey>) {
        self.0.insert(path.display().to_string(), key);
    }

    /// The key of the file a manifest names `rel`, if it is sealed.
    pub fn key_for(&self, rel: &str) -> Option<Arc<SpillKey>> {
        self.0.get(rel).cloned()
    }
}

/// Encrypts a file as it is written, in the pieces it arrives in.
pub struct Sealer {
    cipher: cbc::Encryptor<aes::Aes128>,
    /// Bytes that do not yet fill a block.
    pending: Vec<u8>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// The ciphertext of the whole blocks `data` completes; the rest waits for the next call.
    pub fn seal(&mut self, data: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(data);
        let whole = self.pending.len() / BLOCK * BLOCK;
        let rest = self.pending.split_off(whole);
        let mut out = std::mem::replace(&mut self.pending, rest);
        self.encrypt(&mut out);
        out
    }

    /// The last block, padded (PKCS#7: a file whose size is a whole number of blocks gets a
    /// block of padding, so every sealed file ends in one).
    pub fn finish(mut self) -> Vec<u8> {
        let n = BLOCK - self.pending.len();
        let mut out = std::mem::take(&mut self.pending);
        out.resize(BLOCK, n as u8);
        self.encrypt(&mut out);
        out
    }

    fn encrypt(&mut self, blocks: &mut [u8]) {
        for block in blocks.chunks_exact_mut(BLOCK) {
            self.cipher.encrypt_block_mut(GenericArray::from_mut_slice(block));
        }
    }
}

impl Drop for Sealer {
    fn drop(&mut self) {
        self.pending.zeroize();
    }
}

/// A sealed file read in clear: the last block is held back until the end shows it is the
/// last, then its padding is checked and removed.
pub struct Unsealer<R> {
    inner: R,
    cipher: cbc::Decryptor<aes::Aes128>,
    /// Clear bytes ready to be read, from `at`.
    ready: Vec<u8>,
    at: usize,
    /// The last block decrypted, not yet known to be the file's last.
    held: Option<[u8; BLOCK]>,
    started: bool,
    ended: bool,
}

impl<R> std::fmt::Debug for Unsealer<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Unsealer(..)")
    }
}

impl<R: Read> Unsealer<R> {
    /// Reads the next step of ciphertext (whole blocks) and decrypts it into `ready`.
    fn refill(&mut self) -> std::io::Result<()> {
        let mut cipher = vec![0u8; STEP];
        let mut got = 0;
        while got < STEP {
            match self.inner.read(&mut cipher[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.ready.clear();
        self.at = 0;
        if got % BLOCK != 0 {
            return Err(damaged("it ends inside a cipher block"));
        }
        if got == 0 {
            self.ended = true;
            let Some(mut last) = self.held.take() else {
                return Err(damaged(if self.started { "nothing follows" } else { "it is empty" }));
            };
            let pad = padding(&last).ok_or_else(|| damaged("its padding is wrong (another key, or damage)"))?;
            self.ready.extend_from_slice(&last[..BLOCK - pad]);
            last.zeroize();
            return Ok(());
        }
        self.started = true;
        cipher.truncate(got);
        for block in cipher.chunks_exact_mut(BLOCK) {
            self.cipher.decrypt_block_mut(GenericArray::from_mut_slice(block));
        }
        if let Some(held) = self.held.take() {
            self.ready.extend_from_slice(&held);
        }
        let mut last = [0u8; BLOCK];
        last.copy_from_slice(&cipher[got - BLOCK..]);
        self.held = Some(last);
        self.ready.extend_from_slice(&cipher[..got - BLOCK]);
        cipher.zeroize();
        Ok(())
    }
}

impl<R: Read> Read for Unsealer<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.ready.len() {
            if self.ended {
                return Ok(0);
            }
            self.refill()?;
        }
        let n = out.len().min(self.ready.len() - self.at);
        out[..n].copy_from_slice(&self.ready[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl<R> Drop for Unsealer<R> {
    fn drop(&mut self) {
        self.ready.zeroize();
        if let Some(held) = self.held.as_mut() {
            held.zeroize();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn sealed(key: &SpillKey, clear: &[u8], pieces: usize) -> Vec<u8> {
        let mut sealer = key.sealer();
        let mut out = Vec::new();
        for piece in clear.chunks(pieces.max(1)) {
            out.extend(sealer.seal(piece));
        }
        out.extend(sealer.finish());
        out
    }

    #[test]
    fn what_is_sealed_in_any_pieces_reads_back_whole_and_never_appears_in_clear() {
        let key = SpillKey::random();
        for len in [0, 1, 15, 16, 17, 4095, STEP - 1, STEP, STEP + 1, 3 * STEP + 7] {
            let clear: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            for pieces in [1, 13, 16, 1000, STEP + 3] {
                let cipher = sealed(&key, &clear, pieces);
                assert_eq!(cipher.len(), (len / BLOCK + 1) * BLOCK, "len {len}");
                if len >= 64 {
                    assert!(!cipher.windows(32).any(|w| w == &clear[..32]), "the clear text shows");
                }
                let mut back = Vec::new();
                key.unseal(cipher.as_slice()).read_to_end(&mut back).unwrap();
                assert_eq!(back, clear, "len {len}, pieces {pieces}");
                let mut file = tempfile::tempfile().unwrap();
                file.write_all(&cipher).unwrap();
                file.seek(SeekFrom::Start(3)).unwrap();
                assert_eq!(key.clear_len(&file).unwrap(), len as u64);
                assert_eq!(file.stream_position().unwrap(), 3, "the position is kept");
            }
        }
    }

    #[test]
    fn another_key_a_cut_or_an_empty_file_is_damage_not_data() {
        // Fixed keys: with random ones, a wrong key's last block would pass as padded once in
        // about 256 runs.
        let key = SpillKey::from_hex(&"1f".repeat(32)).unwrap();
        let cipher = sealed(&key, b"ftypisom and the rest of a video", 5);
        let other = SpillKey::from_hex(&"2e".repeat(32)).unwrap();
        let mut out = Vec::new();
        let err = other.unseal(cipher.as_slice()).read_to_end(&mut out).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
        let err = key.unseal(&cipher[..cipher.len() - 3]).read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("inside a cipher block"), "{err}");
        let err = key.unseal(&[][..]).read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let empty = tempfile::tempfile().unwrap();
        assert!(key.clear_len(&empty).is_err());
    }

    #[test]
    fn the_key_goes_to_hex_and_back_and_nothing_else_is_a_key() {
        let key = SpillKey::random();
        let back = SpillKey::from_hex(&key.to_hex()).unwrap();
        assert_eq!((back.key, back.iv), (key.key, key.iv));
        assert_eq!(format!("{key:?}"), "SpillKey(..)");
        for bad in ["", "zz", &key.to_hex()[..62], &"0".repeat(64)] {
            assert!(SpillKey::from_hex(bad).is_none(), "{bad:?}");
        }
    }
}
