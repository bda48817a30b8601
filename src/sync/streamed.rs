//! An encrypted artifact or document sent as an HTTP body without ever being held whole.
//!
//! A blocking thread decrypts the file chunk by chunk (verifying each) into a small bounded
//! channel that the body reads from, so memory stays at a few chunks whatever the size. The
//! thread says why it stopped early, if it did: a chunk that fails to decrypt is damaged
//! evidence, which no retry can fix, and must not be mistaken for a network failure of the
//! request it broke off.

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
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(AHEAD);
    let task = tokio::task::spawn_blocking(move || loop {
        match reader.next_chunk() {
            Ok(Some(chunk)) => {
                before_each(chunk.len() as u64);
                if tx.blocking_send(Ok(chunk)).is_err() {
                    return Ok(()); // the request ended first; its error tells why
                }
            }
            Ok(None) => return Ok(()),
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
