//! A chunked body streamed from its chunk keys, verified against its checksum at the end.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_util::stream::{FuturesOrdered, StreamExt};
use http_body::{Body, Frame};

use super::ops::Removal;
use super::Inner;
use crate::codec::BodyChecksum;
use crate::StoreError;

/// Chunks fetched per round trip (one `MGET`: the chunks of an entry share its slot).
pub(super) const CHUNKS_PER_READ: u32 = 4;

/// The chunks one `MGET` found, in order (`None`: missing).
type Fetched = Result<Vec<Option<Vec<u8>>>, StoreError>;

type Fetch = Pin<Box<dyn Future<Output = Fetched> + Send>>;

type Removing = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The body of one write (by write id: a replaced or removed write's chunks are never another
/// write's), read a few chunks per round trip, several round trips at a time (the store's
/// `read_ahead_batches`): while one batch is read and handed out, Redis sends the next. A
/// reader holds at most that many batches.
pub(super) struct ChunkBody {
    read: Arc<Read>,
    /// The next chunk to ask for.
    asked: u32,
    /// The next chunk to check and hand out.
    next: u32,
    /// Body bytes not yet checked.
    remaining: u64,
    /// The checksum of the bytes checked so far.
    crc: BodyChecksum,
    /// Frames checked, not yet handed out.
    ready: VecDeque<Bytes>,
    /// The batches asked for, answered in order.
    fetching: FuturesOrdered<Fetch>,
    /// A damaged body's removal, and the error that ends the body once it is done.
    failing: Option<(Removing, StoreError)>,
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
            asked: 0,
            next: 0,
            remaining: len,
            crc: BodyChecksum::new(),
            ready: VecDeque::new(),
            fetching: FuturesOrdered::new(),
            failing: None,
            done: false,
        }
    }

    /// Asks for batches until the store's read-ahead is out (or every chunk is asked for).
    fn ask(&mut self) {
        let in_flight = self.read.inner.read_ahead_batches;
        while self.fetching.len() < in_flight && self.asked < self.read.chunks {
            let from = self.asked;
            self.asked = self.read.chunks.min(from.saturating_add(CHUNKS_PER_READ));
            let fetch: Fetch = Box::pin(self.read.clone().fetch(from, self.asked));
            self.fetching.push_back(fetch);
        }
    }

    /// Checks the next batch: each chunk is there, they do not run past the body's length,
    /// and the checksum is verified before the last chunk is handed out.
    fn take_in(&mut self, found: Vec<Option<Vec<u8>>>) -> Result<(), StoreError> {
        let to = self
            .read
            .chunks
            .min(self.next.saturating_add(CHUNKS_PER_READ));
        if found.len() != (to - self.next) as usize {
            return Err(StoreError::Corrupt("a body chunk is missing"));
        }
        let mut frames = Vec::with_capacity(found.len());
        for (n, data) in (self.next..to).zip(found) {
            let data = data.ok_or(StoreError::Corrupt("a body chunk is missing"))?;
            let len = data.len() as u64;
            let last = n + 1 == self.read.chunks;
            if data.is_empty() || len > self.remaining || (last && len != self.remaining) {
                return Err(StoreError::Corrupt("a body chunk has the wrong length"));
            }
            self.remaining -= len;
            self.crc.update(&data);
            frames.push(Bytes::from(data));
        }
        if to == self.read.chunks {
            self.crc.clone().verify(&self.read.expected)?;
        }
        self.next = to;
        self.ready.extend(frames);
        Ok(())
    }
}

impl Read {
    /// `MGET` of chunks `from..to`.
    async fn fetch(self: Arc<Self>, from: u32, to: u32) -> Fetched {
        let base = self.inner.keys.chunk_base(&self.key);
        let keys: Vec<String> = (from..to)
            .map(|n| format!("{base}{}:{n}", self.write_id))
            .collect();
        let inner = &self.inner;
        inner
            .conn
            .query(
                inner.timeout,
                "MGET (body chunks)",
                redis::cmd("MGET").arg(&keys),
            )
            .await
    }

    /// Removes the variant while the index still names this write. A failed removal leaves
    /// a variant that fails again: still never served whole.
    async fn remove(self: Arc<Self>) {
        let removal = Removal::If(&self.field, self.write_id.as_bytes());
        let _ = self.inner.remove(&self.key, removal).await;
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
            if let Some((removing, _)) = &mut this.failing {
                ready!(removing.as_mut().poll(cx));
                this.done = true;
                return Poll::Ready(this.failing.take().map(|(_, error)| Err(error)));
            }
            if this.done || this.next >= this.read.chunks {
                this.done = true;
                return Poll::Ready(None);
            }
            this.ask();
            let checked = match ready!(this.fetching.poll_next_unpin(cx)) {
                Some(Ok(found)) => this.take_in(found),
                Some(Err(error)) => Err(error),
                None => Err(StoreError::Corrupt("a body chunk is missing")),
            };
            match checked {
                Ok(()) => {}
                Err(StoreError::Corrupt(why)) => {
                    let removing: Removing = Box::pin(this.read.clone().remove());
                    this.failing = Some((removing, StoreError::Corrupt(why)));
                }
                Err(error) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(error)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || (self.next >= self.read.chunks && self.ready.is_empty())
    }
}
