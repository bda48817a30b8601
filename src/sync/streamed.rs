//! An encrypted artifact or document sent as an HTTP body without ever being held whole.
//!
//! A blocking thread decrypts the file chunk by chunk (verifying each) into a small bounded
//! channel that the body reads from, so memory stays at a few chunks whatever the size. The
//! thread says why it stopped early, if it did: a chunk that fails to decrypt is damaged
//! evidence, which no retry can fix, and must not be mistaken for a network failure of the
//! request it broke off.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::stream;
use tokio::task::JoinHandle;

use crate::crypto::DecryptingReader;

/// How many decrypted chunks may wait for the connection.
const AHEAD: usize = 4;

/// The decrypting side of a streamed body.
#[derive(Debug)]
pub(super) struct Decrypting {
    task: JoinHandle<Result<(), String>>,
}

impl Decrypting {
    /// Why decryption stopped before the end (`Err`), once the request is over. A body the
    /// connection stopped reading ends the thread quietly: the request's own error says why.
    pub(super) async fn outcome(self) -> Result<(), String> {
        self.task.await.unwrap_or_else(|e| Err(format!("the decrypting task failed: {e}")))
    }
}

/// `reader` as a request body. `before_each` runs on the decrypting thread with each chunk's
/// length before the chunk is handed over (progress, pacing, crash points).
pub(super) fn body(
    mut reader: DecryptingReader,
    mut before_each: impl FnMut(u64) + Send + 'static,
) -> (reqwest::Body, Decrypting) {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(AHEAD);
    let buffers = Buffers::default();
    let task = tokio::task::spawn_blocking(move || loop {
        let mut chunk = buffers.take();
        match reader.next_chunk_into(&mut chunk) {
            Ok(true) => {
                before_each(chunk.len() as u64);
                let lent = Bytes::from_owner(Lent { buf: chunk, home: buffers.clone() });
                if tx.blocking_send(Ok(lent)).is_err() {
                    return Ok(()); // the request ended first; its error tells why
                }
            }
            Ok(false) => return Ok(()),
            Err(e) => {
                let reason = e.to_string();
                let _ = tx.blocking_send(Err(std::io::Error::other(reason.clone())));
                return Err(reason);
            }
        }
    });
    let body =
        reqwest::Body::wrap_stream(stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }));
    (body, Decrypting { task })
}

/// The chunk buffers of one body, each handed back once the connection has sent (dropped) it,
/// so that a 200 MB video goes out through a handful of buffers instead of 800 allocations,
/// whose pages the allocator kept returning to the kernel and faulting back in, zeroed.
#[derive(Clone, Default)]
struct Buffers(Arc<Mutex<Vec<Vec<u8>>>>);

impl Buffers {
    fn take(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop().unwrap_or_default()
    }

    fn give_back(&self, buf: Vec<u8>) {
        let mut spare = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // As many as can be in flight at once; any more are freed.
        if spare.len() <= AHEAD {
            spare.push(buf);
        }
    }
}

/// A decrypted chunk on its way to the connection; its buffer goes home when it is dropped.
struct Lent {
    buf: Vec<u8>,
    home: Buffers,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        self.home.give_back(std::mem::take(&mut self.buf));
    }
}
