//! Reading entry files: headers decoded and checked, small bodies read whole, large streamed.

use std::fs::{self, File};
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use tokio::task::JoinHandle;

use super::files::{is_would_block, read_exact_at, read_full_at, would_block, Wait};
use super::{Inner, Reads, CHUNK};
use crate::codec::{self, BodyChecksum, DecodeError, EntryMeta, PRELUDE_LEN, TRAILER_LEN};
use crate::{StoreError, StoredBody};

pub(super) enum ReadError {
    Io(io::Error),
    Decode(DecodeError),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

impl From<DecodeError> for ReadError {
    fn from(e: DecodeError) -> Self {
        ReadError::Decode(e)
    }
}

/// Reads and decodes the header section of an entry file; checks the file length against it.
pub(super) fn read_header(file: &File, file_len: u64) -> Result<(EntryMeta, usize), ReadError> {
    let mut prelude = [0; PRELUDE_LEN];
    if read_full_at(file, &mut prelude, 0, Wait::Allowed)? < PRELUDE_LEN {
        return Err(DecodeError::Truncated.into());
    }
    let header_len = codec::header_len(&prelude)?;
    if header_len as u64 > file_len {
        return Err(DecodeError::Truncated.into());
    }
    let mut header = vec![0; header_len];
    read_exact_at(file, &mut header, 0, Wait::Allowed)?;
    let (meta, len) = codec::decode_header(&header)?;
    check_len(&meta, len, file_len)?;
    Ok((meta, len))
}

fn check_len(meta: &EntryMeta, header_len: usize, file_len: u64) -> Result<(), DecodeError> {
    let expected = (header_len as u64)
        .checked_add(meta.body_len)
        .and_then(|n| n.checked_add(TRAILER_LEN as u64));
    match expected {
        Some(n) if n == file_len => Ok(()),
        Some(n) if n > file_len => Err(DecodeError::Truncated),
        _ => Err(DecodeError::Invalid("bytes after the trailer")),
    }
}

/// Decodes an open entry file. A small entry is read whole and checked at once; a larger one
/// keeps the file open and streams its body from it (where `reads` says).
pub(super) fn decode_open(
    key: &str,
    file: File,
    source: EntryFile,
    reads: Reads,
    wait: Wait,
) -> Result<(EntryMeta, StoredBody), ReadError> {
    let file_len = source.opened.len();
    let first_len = usize::try_from(file_len).unwrap_or(usize::MAX).min(CHUNK);
    let mut buf = BytesMut::zeroed(first_len);
    let n = read_full_at(&file, &mut buf, 0, wait)?;
    buf.truncate(n);
    let header_len = codec::header_len(&buf)?;
    if header_len > buf.len() {
        // A header section larger than the first read: rare, read it whole.
        if header_len as u64 > file_len {
            return Err(DecodeError::Truncated.into());
        }
        buf.resize(header_len, 0);
        read_exact_at(&file, &mut buf[n..], n as u64, wait)?;
    }
    let (meta, header_len) = codec::decode_header(&buf)?;
    meta.check_key(key)?;
    check_len(&meta, header_len, file_len)?;

    if meta.body_len + TRAILER_LEN as u64 <= CHUNK as u64 {
        // Small: have the whole file in memory, verify it, serve it as one `Bytes`.
        let total = file_len as usize;
        if buf.len() < total {
            let have = buf.len();
            buf.resize(total, 0);
            read_exact_at(&file, &mut buf[have..], have as u64, wait)?;
        }
        let mut buf = buf.freeze();
        let mut body = buf.split_off(header_len);
        let trailer = body.split_off(meta.body_len as usize);
        let mut crc = BodyChecksum::new();
        crc.update(&body);
        crc.verify(&trailer)?;
        return Ok((meta, StoredBody::full(body)));
    }

    // Large: the body bytes already read (always fewer than the whole body, so that the last
    // read from the file is the one that reaches the trailer and can verify it) are the first
    // frame; the rest streams from the open file.
    let body_len = meta.body_len;
    let mut first = buf.freeze().split_off(header_len);
    first.truncate(usize::try_from(body_len - 1).unwrap_or(usize::MAX));
    let mut crc = BodyChecksum::new();
    crc.update(&first);
    let body = FileBody {
        file: Arc::new(file),
        offset: (header_len + first.len()) as u64,
        remaining: body_len - first.len() as u64,
        crc: Some(crc),
        source: Some(source),
        ready: Some(first).filter(|f| !f.is_empty()).into_iter().collect(),
        reading: None,
        reads,
        done: false,
    };
    Ok((meta, StoredBody::stream(body, Some(body_len))))
}

/// What one read of a [`FileBody`] produced: frames, and the running checksum to continue
/// with. The read that reaches the end of the body also checks the trailer, and yields an
/// error instead of its frames if the body does not match.
type BatchRead = Result<(Vec<Bytes>, BodyChecksum), StoreError>;

/// Where an open entry file came from, so that a body found damaged while streaming can be
/// removed at once rather than served damaged to every later reader until it expires.
pub(super) struct EntryFile {
    pub(super) store: Weak<Inner>,
    pub(super) path: PathBuf,
    pub(super) opened: fs::Metadata,
}

impl EntryFile {
    /// Removes the file (if its name still holds it), off the executor when there is one.
    fn remove(self) {
        let remove = move || {
            if let Some(store) = self.store.upgrade() {
                // A failed removal leaves a file that fails its checksum again: still a miss.
                let _ = store.remove_damaged(&self.path, &self.opened);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// A body streamed from an open entry file, verified against its checksum at the end.
struct FileBody {
    file: Arc<File>,
    /// Offset of the next byte to read.
    offset: u64,
    /// Body bytes not yet read from the file.
    remaining: u64,
    /// The checksum of the body bytes read so far; with the read task while one runs.
    crc: Option<BodyChecksum>,
    /// Where the file came from; taken to remove it if the body turns out damaged.
    source: Option<EntryFile>,
    /// Frames read and checked, not yet yielded.
    ready: std::collections::VecDeque<Bytes>,
    reading: Option<JoinHandle<BatchRead>>,
    /// Where chunks are read: on the polling task or the blocking pool.
    reads: Reads,
    done: bool,
}

/// Reads up to `chunks` chunks of [`CHUNK`] bytes from `offset`; when that reaches the end of
/// the body, also the trailer, which is verified before anything is returned.
fn read_batch(
    file: &File,
    offset: u64,
    remaining: u64,
    mut crc: BodyChecksum,
    chunks: usize,
    wait: Wait,
) -> BatchRead {
    let want = remaining.min((CHUNK * chunks) as u64) as usize;
    let last = want as u64 == remaining;
    let mut buf = BytesMut::zeroed(want + if last { TRAILER_LEN } else { 0 });
    read_exact_at(file, &mut buf, offset, wait)?;
    let trailer = buf.split_off(want);
    crc.update(&buf);
    if last {
        crc.clone().verify(&trailer)?;
    }
    let mut data = buf.freeze();
    let mut frames = Vec::with_capacity(chunks);
    while !data.is_empty() {
        frames.push(data.split_to(data.len().min(CHUNK)));
    }
    Ok((frames, crc))
}

impl Body for FileBody {
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
                let (file, offset, remaining) = (this.file.clone(), this.offset, this.remaining);
                let pool = tokio::runtime::Handle::try_current().ok();
                match pool.filter(|_| this.reads != Reads::Inline) {
                    None => read_batch(&file, offset, remaining, crc, 1, Wait::Allowed),
                    Some(pool) => {
                        let cached = match this.reads {
                            Reads::Cached => {
                                read_batch(&file, offset, remaining, crc.clone(), 1, Wait::Never)
                            }
                            _ => Err(would_block().into()),
                        };
                        match cached {
                            // Several chunks per trip to the blocking pool: each trip costs a
                            // thread handoff. Polled on the next turn of the loop.
                            Err(StoreError::Io(e)) if is_would_block(&e) => {
                                this.reading = Some(pool.spawn_blocking(move || {
                                    read_batch(&file, offset, remaining, crc, 4, Wait::Allowed)
                                }));
                                continue;
                            }
                            read => read,
                        }
                    }
                }
            };
            match result {
                Ok((frames, crc)) => {
                    let read: u64 = frames.iter().map(|f| f.len() as u64).sum();
                    this.offset += read;
                    this.remaining -= read;
                    this.crc = Some(crc);
                    this.ready.extend(frames);
                }
                Err(e) => {
                    this.done = true;
                    // A body that fails its checksum or ends early is damaged on disk; a
                    // failure of the blocking pool is not, and leaves the file alone.
                    if matches!(e, StoreError::Corrupt(_) | StoreError::Io(_)) {
                        if let Some(source) = this.source.take() {
                            source.remove();
                        }
                    }
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || (self.remaining == 0 && self.ready.is_empty())
    }
}
