//! A large body streamed from the chunks table, verified against its checksum at the end.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::task::JoinHandle;

use super::db::Db;
use super::CHUNK;
use crate::codec::BodyChecksum;
use crate::StoreError;

/// Chunks fetched per trip to the blocking pool.
const CHUNKS_PER_READ: usize = 4;

/// What one read produced: frames, and the running checksum to continue with.
type BatchRead = Result<(Vec<Bytes>, BodyChecksum), StoreError>;

/// The body of one entry (by id: a replaced or removed entry's chunks are never another
/// entry's, since ids are not reused), read chunk by chunk.
pub(super) struct ChunkBody {
    db: Arc<Db>,
    id: i64,
    /// The sequence number of the next chunk to read.
    next_seq: i64,
    /// Body bytes not yet read.
    remaining: u64,
    /// The stored checksum of the whole body.
    expected: [u8; 4],
    /// The checksum of the bytes read so far; with the read task while one runs.
    crc: Option<BodyChecksum>,
    /// Frames read and checked, not yet yielded.
    ready: VecDeque<Bytes>,
    reading: Option<JoinHandle<BatchRead>>,
    done: bool,
}

impl ChunkBody {
    pub(super) fn new(db: Arc<Db>, id: i64, len: u64, expected: [u8; 4]) -> Self {
        ChunkBody {
            db,
            id,
            next_seq: 0,
            remaining: len,
            expected,
            crc: Some(BodyChecksum::new()),
            ready: VecDeque::new(),
            reading: None,
            done: false,
        }
    }
}

/// Reads up to `chunks` chunks from `seq`. Each must be there and be [`CHUNK`] bytes long
/// (the last one, the rest of the body); the read that reaches the end of the body verifies
/// the checksum before it returns anything. A damaged body is deleted at once, so the next
/// read is a miss.
fn read_batch(
    db: &Db,
    id: i64,
    seq: i64,
    remaining: u64,
    crc: BodyChecksum,
    expected: [u8; 4],
    chunks: usize,
) -> BatchRead {
    let result = read_checked(db, id, seq, remaining, crc, expected, chunks);
    if matches!(result, Err(StoreError::Corrupt(_))) {
        // A failed delete leaves an entry that fails again: still never served whole.
        let _ = db.delete(&[id]);
    }
    result
}

fn read_checked(
    db: &Db,
    id: i64,
    seq: i64,
    mut remaining: u64,
    mut crc: BodyChecksum,
    expected: [u8; 4],
    chunks: usize,
) -> BatchRead {
    let left = remaining.div_ceil(CHUNK as u64);
    let want = left.min(chunks as u64) as i64;
    let rows = db.chunks(id, seq, seq + want)?;
    if rows.len() as i64 != want {
        return Err(StoreError::Corrupt("a body chunk is missing"));
    }
    let mut frames = Vec::with_capacity(rows.len());
    for (i, (at, data)) in rows.into_iter().enumerate() {
        let expected_len = remaining.min(CHUNK as u64);
        if at != seq + i as i64 || data.len() as u64 != expected_len {
            return Err(StoreError::Corrupt(
                "a body chunk is missing or has the wrong length",
            ));
        }
        remaining -= expected_len;
        crc.update(&data);
        frames.push(Bytes::from(data));
    }
    if remaining == 0 {
        crc.clone().verify(&expected)?;
    }
    Ok((frames, crc))
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
            let result = if let Some(reading) = &mut this.reading {
                let result = ready!(Pin::new(reading).poll(cx));
                this.reading = None;
                result.unwrap_or_else(|e| Err(StoreError::unavailable(e)))
            } else {
                if this.done || this.remaining == 0 {
                    return Poll::Ready(None);
                }
                let Some(crc) = this.crc.take() else {
                    return Poll::Ready(None);
                };
                let (db, id, seq, remaining, expected) = (
                    this.db.clone(),
                    this.id,
                    this.next_seq,
                    this.remaining,
                    this.expected,
                );
                match tokio::runtime::Handle::try_current() {
                    // Polled on the next turn of the loop.
                    Ok(handle) => {
                        this.reading = Some(handle.spawn_blocking(move || {
                            read_batch(&db, id, seq, remaining, crc, expected, CHUNKS_PER_READ)
                        }));
                        continue;
                    }
                    // No runtime: nothing to block but the caller's own thread.
                    Err(_) => read_batch(&db, id, seq, remaining, crc, expected, 1),
                }
            };
            match result {
                Ok((frames, crc)) => {
                    let read: u64 = frames.iter().map(|f| f.len() as u64).sum();
                    this.next_seq += frames.len() as i64;
                    this.remaining -= read;
                    this.crc = Some(crc);
                    this.ready.extend(frames);
                }
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || (self.remaining == 0 && self.ready.is_empty())
    }
}
