//! A chunked body streamed from its chunk keys, verified against its checksum at the end.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};

use super::ops::Removal;
use super::Inner;
use crate::codec::BodyChecksum;
use crate::StoreError;

/// Chunks fetched per round trip (one `MGET`: the chunks of an entry share its slot).
const CHUNKS_PER_READ: u32 = 4;

/// What one read produced: frames, and the running checksum to continue with.
type BatchRead = Result<(Vec<Bytes>, BodyChecksum), StoreError>;

type Reading = Pin<Box<dyn Future<Output = BatchRead> + Send>>;

/// The body of one write (by write id: a replaced or removed write's chunks are never another
/// write's), read a few chunks per round trip.
pub(super) struct ChunkBody {
    read: Arc<Read>,
    /// The next chunk to read.
    next: u32,
    /// Body bytes not yet read.
    remaining: u64,
    /// The checksum of the bytes read so far; with the read future while one runs.
    crc: Option<BodyChecksum>,
    /// Frames read and checked, not yet yielded.
    ready: VecDeque<Bytes>,
    reading: Option<Reading>,
    done: bool,
}

/// What every read of the body needs.
struct Read {
    inner: Arc<Inner>,
    key: String,
    field: Vec<u8>,
    write_id: String,
    chunks: u32,
    expected: [u8; 4],
}

impl ChunkBody {
    pub(super) fn new(
        inner: Arc<Inner>,
        key: String,
        field: Vec<u8>,
        write_id: String,
        chunks: u32,
        len: u64,
        expected: [u8; 4],
    ) -> Self {
        ChunkBody {
            read: Arc::new(Read {
                inner,
                key,
                field,
                write_id,
                chunks,
                expected,
            }),
            next: 0,
            remaining: len,
            crc: Some(BodyChecksum::new()),
            ready: VecDeque::new(),
            reading: None,
            done: false,
        }
    }
}

impl Read {
    /// Reads chunks `from..` (a few), checks that each is there and that they do not run past
    /// the body's length, and verifies the checksum before returning the last chunk. A
    /// damaged body removes its variant (while the index still names this write).
    async fn batch(self: Arc<Self>, from: u32, remaining: u64, crc: BodyChecksum) -> BatchRead {
        let result = self.checked(from, remaining, crc).await;
        if matches!(result, Err(StoreError::Corrupt(_))) {
            let removal = Removal::If(&self.field, self.write_id.as_bytes());
            // A failed removal leaves a variant that fails again: still never served whole.
            let _ = self.inner.remove(&self.key, removal).await;
        }
        result
    }

    async fn checked(&self, from: u32, mut remaining: u64, mut crc: BodyChecksum) -> BatchRead {
        let to = self.chunks.min(from.saturating_add(CHUNKS_PER_READ));
        let base = self.inner.keys.chunk_base(&self.key);
        let keys: Vec<String> = (from..to)
            .map(|n| format!("{base}{}:{n}", self.write_id))
            .collect();
        let inner = &self.inner;
        let found: Vec<Option<Vec<u8>>> = inner
            .conn
            .query(
                inner.timeout,
                "MGET (body chunks)",
                redis::cmd("MGET").arg(&keys),
            )
            .await?;
        if found.len() != keys.len() {
            return Err(StoreError::Corrupt("a body chunk is missing"));
        }
        let mut frames = Vec::with_capacity(found.len());
        for (n, data) in (from..to).zip(found) {
            let data = data.ok_or(StoreError::Corrupt("a body chunk is missing"))?;
            let len = data.len() as u64;
            let last = n + 1 == self.chunks;
            if data.is_empty() || len > remaining || (last && len != remaining) {
                return Err(StoreError::Corrupt("a body chunk has the wrong length"));
            }
            remaining -= len;
            crc.update(&data);
            frames.push(Bytes::from(data));
        }
        if to == self.chunks {
            crc.clone().verify(&self.expected)?;
        }
        Ok((frames, crc))
    }
}

impl Body for ChunkBody {
    type Data = Bytes;
    type Error = StoreError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StoreError>>> {
        let this = &mut *self;
        loop {
            if let Some(frame) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(frame))));
            }
            if let Some(reading) = &mut this.reading {
                let result = ready!(reading.as_mut().poll(cx));
                this.reading = None;
                match result {
                    Ok((frames, crc)) => {
                        let read: u64 = frames.iter().map(|f| f.len() as u64).sum();
                        this.next += frames.len() as u32;
                        this.remaining -= read;
                        this.crc = Some(crc);
                        this.ready.extend(frames);
                    }
                    Err(e) => {
                        this.done = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                continue;
            }
            if this.done || this.next >= this.read.chunks {
                this.done = true;
                return Poll::Ready(None);
            }
            let Some(crc) = this.crc.take() else {
                return Poll::Ready(None);
            };
            let read = this.read.clone();
            this.reading = Some(Box::pin(read.batch(this.next, this.remaining, crc)));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || (self.next >= self.read.chunks && self.ready.is_empty())
    }
}
