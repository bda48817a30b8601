//! An encrypted artifact or document sent as an HTTP body without ever being held whole.
//!
//! The body decrypts the file a chunk at a time (verifying each) when the connection asks for
//! more, on the connection's own thread when the chunk is already in the page cache (a read
//! that cannot wait for the disk, `RWF_NOWAIT`), on a blocking thread when it is not: disk I/O
//! never runs on the executor. It was always a blocking thread feeding a bounded channel: that
//! hop per chunk, a wake-up each way between two threads, made a 200 MB video 3–4 % slower on a
//! 2-core machine than the same body produced where it is sent (alternating runs against the
//! sandbox, `bench/pipeline.py`). A cached chunk is a 256 KiB copy and ring's AES-GCM over it,
//! tens of microseconds: CPU work short enough to run between two awaits. A paced chunk waits
//! on a timer, never by blocking the thread.
//!
//! The body says why it stopped early, if it did: a chunk that fails to decrypt is damaged
//! evidence, which no retry can fix, and must not be mistaken for a network failure of the
//! request it broke off.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::Stream;

use tokio::task::JoinHandle;

use crate::crypto::{CryptoError, DecryptingReader};

/// How many sent chunks' buffers are kept for reuse (the connection holds one or two at once).
const SPARE: usize = 4;

/// Why a body stopped decrypting early, read once the request is over.
#[derive(Debug, Clone, Default)]
pub(super) struct Decrypting(Arc<Mutex<Option<String>>>);

impl Decrypting {
    /// Why decryption stopped before the end (`Err`), once the request is over. A body the
    /// connection stopped reading ends quietly: the request's own error says why.
    pub(super) fn outcome(self) -> Result<(), String> {
        match self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take() {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    fn fail(&self, reason: String) {
        *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(reason);
    }
}

/// `reader` as a request body. `before_each` runs with each chunk's length before the chunk is
/// handed over (progress, crash points); it must not block, and answers when the chunk may go
/// (`sync.max_upload_rate`), or `None` for at once.
pub(super) fn body(
    reader: DecryptingReader,
    before_each: impl FnMut(u64) -> Option<Instant> + Send + Sync + Unpin + 'static,
) -> (reqwest::Body, Decrypting) {
    let (stream, decrypting) = DecryptingBody::new(reader, before_each);
    (reqwest::Body::wrap_stream(stream), decrypting)
}

/// The stream behind [`body`].
struct DecryptingBody<F> {
    /// `None` while a blocking read has it.
    reader: Option<DecryptingReader>,
    /// A chunk that was not in the page cache, being read on a blocking thread.
    reading: Option<JoinHandle<BlockingRead>>,
    /// Whether to try the page cache first (tests turn it off to take the blocking path).
    from_cache: bool,
    before_each: F,
    buffers: Buffers,
    /// A chunk waiting for the rate budget, and the timer it waits on.
    held: Option<(Bytes, Pin<Box<tokio::time::Sleep>>)>,
    failed: Decrypting,
    ended: bool,
}

/// What a blocking read hands back: the reader, the buffer and what became of the chunk.
type BlockingRead = (DecryptingReader, Vec<u8>, Result<bool, CryptoError>);

impl<F> DecryptingBody<F> {
    fn new(reader: DecryptingReader, before_each: F) -> (Self, Decrypting) {
        let decrypting = Decrypting::default();
        let stream = DecryptingBody {
            reader: Some(reader),
            reading: None,
            from_cache: true,
            before_each,
            buffers: Buffers::default(),
            held: None,
            failed: decrypting.clone(),
            ended: false,
        };
        (stream, decrypting)
    }

    /// The next chunk: from the page cache at once, or `Pending` while a blocking thread reads
    /// it from the disk.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<(Vec<u8>, Result<bool, CryptoError>)> {
        if self.reading.is_none() {
            let mut buf = self.buffers.take();
            let reader = self.reader.as_mut().expect("the reader is here unless a read has it");
            if self.from_cache {
                match reader.next_chunk_if_cached(&mut buf) {
                    Ok(Some(more)) => return Poll::Ready((buf, Ok(more))),
                    Ok(None) => {}
                    Err(e) => return Poll::Ready((buf, Err(e))),
                }
            }
            let mut reader = self.reader.take().expect("checked above");
            self.reading = Some(tokio::task::spawn_blocking(move || {
                let result = reader.next_chunk_into(&mut buf);
                (reader, buf, result)
            }));
        }
        let task = self.reading.as_mut().expect("set above");
        let (reader, buf, result) = match Pin::new(task).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(read)) => read,
            Poll::Ready(Err(e)) => {
                self.reading = None;
                // The reader went with the task; nothing more can be read.
                self.ended = true;
                let reason = format!("the reading task failed: {e}");
                return Poll::Ready((Vec::new(), Err(CryptoError::Io(std::io::Error::other(reason)))));
            }
        };
        self.reading = None;
        self.reader = Some(reader);
        Poll::Ready((buf, result))
    }
}

impl<F: FnMut(u64) -> Option<Instant> + Unpin> Stream for DecryptingBody<F> {
    type Item = std::io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some((_, sleep)) = &mut this.held {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let (chunk, _) = this.held.take().expect("matched above");
            return Poll::Ready(Some(Ok(chunk)));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        let (buf, result) = match this.poll_chunk(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(read) => read,
        };
        match result {
            Ok(true) => {
                let due = (this.before_each)(buf.len() as u64);
                let chunk = Bytes::from_owner(Lent { buf, home: this.buffers.clone() });
                match due.filter(|due| *due > Instant::now()) {
                    None => Poll::Ready(Some(Ok(chunk))),
                    Some(due) => {
                        let mut sleep = Box::pin(tokio::time::sleep_until(due.into()));
                        if sleep.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Some(Ok(chunk)));
                        }
                        this.held = Some((chunk, sleep));
                        Poll::Pending
                    }
                }
            }
            Ok(false) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Err(e) => {
                this.ended = true;
                let reason = e.to_string();
                this.failed.fail(reason.clone());
                Poll::Ready(Some(Err(std::io::Error::other(reason))))
            }
        }
    }
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
        if spare.len() < SPARE {
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

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use futures_util::StreamExt as _;

    use super::*;
    use crate::crypto::{encrypt_stream, SecretKey, CHUNK};
    use crate::sync::pacer::Pacer;

    /// `data` sealed as a spool file, and a reader of it.
    fn sealed(dir: &tempfile::TempDir, data: &[u8], tamper_at: Option<usize>) -> DecryptingReader {
        let key = SecretKey::random();
        let path = dir.path().join("video.enc");
        encrypt_stream(&key, b"id/video", &mut &data[..], &mut File::create(&path).unwrap(), u64::MAX).unwrap();
        if let Some(at) = tamper_at {
            let mut raw = std::fs::read(&path).unwrap();
            raw[at] ^= 1;
            std::fs::write(&path, raw).unwrap();
        }
        DecryptingReader::open(&key, b"id/video", &path).unwrap()
    }

    /// The body of `reader`, reading what is cached on its own thread (`from_cache`) or every
    /// chunk on a blocking thread, as when the spool is not in the page cache.
    fn stream_of<F>(reader: DecryptingReader, from_cache: bool, before_each: F) -> (DecryptingBody<F>, Decrypting) {
        let (mut stream, decrypting) = DecryptingBody::new(reader, before_each);
        stream.from_cache = from_cache;
        (stream, decrypting)
    }

    #[tokio::test]
    async fn the_body_is_the_plaintext_chunk_by_chunk_each_reported_before_it_goes() {
        for from_cache in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
            let reported = Arc::new(Mutex::new(Vec::new()));
            let seen = Arc::clone(&reported);
            let (mut stream, decrypting) = stream_of(sealed(&dir, &data, None), from_cache, move |n| {
                seen.lock().unwrap().push(n);
                None
            });
            let mut back = Vec::new();
            while let Some(chunk) = stream.next().await {
                back.extend_from_slice(&chunk.unwrap());
            }
            assert!(back == data, "from_cache {from_cache}: the plaintext differs");
            assert_eq!(*reported.lock().unwrap(), [CHUNK as u64, CHUNK as u64, CHUNK as u64, 17], "{from_cache}");
            assert_eq!(decrypting.outcome(), Ok(()));
        }
    }

    #[tokio::test]
    async fn a_damaged_chunk_ends_the_body_with_an_error_and_says_why() {
        for from_cache in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let data = vec![5u8; 3 * CHUNK];
            // A bit of the second chunk's ciphertext flipped: the first goes, the second does not.
            let (mut stream, decrypting) = stream_of(sealed(&dir, &data, Some(20 + CHUNK + 100)), from_cache, |_| None);
            assert_eq!(stream.next().await.unwrap().unwrap().len(), CHUNK);
            let err = stream.next().await.unwrap().unwrap_err();
            assert!(err.to_string().contains("video.enc"), "{err}");
            assert!(stream.next().await.is_none(), "nothing after the damaged chunk");
            let reason = decrypting.outcome().unwrap_err();
            assert!(reason.contains("video.enc"), "{reason}");
        }
    }

    /// A spool file that is not in the page cache: the cached read declines without consuming
    /// anything, and the blocking read then returns the chunk. Where the file system keeps
    /// files in memory (tmpfs), nothing can be evicted and the test says so.
    #[test]
    fn a_chunk_not_in_the_page_cache_is_left_to_the_blocking_read() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..2 * CHUNK).map(|i| (i % 241) as u8).collect();
        let mut reader = sealed(&dir, &data, None);
        let spool = File::open(dir.path().join("video.enc")).unwrap();
        spool.sync_all().unwrap();
        rustix::fs::fadvise(&spool, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        let mut buf = Vec::new();
        match reader.next_chunk_if_cached(&mut buf).unwrap() {
            None => {
                assert!(reader.next_chunk_into(&mut buf).unwrap());
                assert!(buf == data[..CHUNK], "the blocking read after a declined one starts at the chunk");
                assert!(reader.next_chunk_into(&mut buf).unwrap());
                assert!(buf == data[CHUNK..]);
            }
            Some(_) => eprintln!("skipped: this file system kept the file in memory after DONTNEED"),
        }
    }

    /// Paced chunks wait for the budget without holding the thread: on a single-threaded
    /// runtime, another task keeps running while the body waits.
    #[tokio::test(flavor = "current_thread")]
    async fn paced_chunks_wait_for_the_budget_without_blocking_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![1u8; 3 * CHUNK];
        let reader = sealed(&dir, &data, None);
        // 3 chunks at 1 MiB/s: the last may go 0.75 s after the budget's window opened, which
        // is when the pacer is made (so the clock starts before it, not after the setup).
        let start = Instant::now();
        let pacer = Pacer::new(1 << 20);
        let (mut stream, _) = DecryptingBody::new(reader, move |n| Some(pacer.reserve(n)));
        let ticks = Arc::new(AtomicUsize::new(0));
        let ticking = Arc::clone(&ticks);
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ticking.fetch_add(1, Ordering::Relaxed);
            }
        });
        let mut sent = 0;
        while let Some(chunk) = stream.next().await {
            sent += chunk.unwrap().len();
        }
        let took = start.elapsed();
        ticker.abort();
        assert_eq!(sent, data.len());
        assert!(took >= Duration::from_millis(740), "the rate was not held: {took:?}");
        // Blocking sleeps would have let the ticker in only between chunks (a handful of times).
        let ticks = ticks.load(Ordering::Relaxed);
        assert!(ticks >= 20, "the body blocked its thread while it waited: {ticks} ticks in {took:?}");
    }
}
