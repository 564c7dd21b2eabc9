//! The reading side: an object's header section, read from the start of its GET stream, and
//! the rest of the stream as a body checked against its trailer before its last bytes are
//! released.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use http_body::{Body, Frame, SizeHint};
use object_store::path::Path;

use super::Inner;
use crate::codec::{self, BodyChecksum, DecodeError, EntryMeta, PRELUDE_LEN, TRAILER_LEN};
use crate::StoreError;

/// The bytes of one GET, as object_store streams them.
pub(super) type ByteStream = BoxStream<'static, object_store::Result<Bytes>>;

/// An object whose header section was read and checked.
pub(super) struct Head {
    pub(super) meta: EntryMeta,
    /// The bytes read past the header section (the start of the body, maybe more).
    pub(super) rest: Bytes,
    pub(super) stream: ByteStream,
    /// The object's ETag, naming the version read.
    pub(super) e_tag: Option<String>,
}

/// Why an object could not be used.
pub(super) enum Refusal {
    /// Damaged, truncated, misplaced or expired: a miss, and the object should go.
    Unusable(&'static str),
    /// The store could not be read (the caller reports it).
    Failed(StoreError),
}

impl From<DecodeError> for Refusal {
    fn from(error: DecodeError) -> Self {
        Refusal::Unusable(match StoreError::from(error) {
            StoreError::Corrupt(why) => why,
            _ => "undecodable",
        })
    }
}

/// Reads the header section from the start of `stream` (an object of `size` bytes stored at
/// `path`) and checks it: the key, the variant the name says, the object's length, expiry.
pub(super) async fn read_head(
    inner: &Inner,
    key: &str,
    path: &Path,
    size: u64,
    e_tag: Option<String>,
    mut stream: ByteStream,
) -> Result<Head, Refusal> {
    let mut buf = BytesMut::new();
    let mut want = PRELUDE_LEN;
    let mut header_len = None;
    loop {
        while buf.len() < want {
            match stream.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(Refusal::Failed(inner.failure("reading an entry", e))),
                None => return Err(Refusal::Unusable("entry is truncated")),
            }
        }
        match header_len {
            Some(_) => break,
            None => {
                let len = codec::header_len(&buf)?;
                // Not read on a damaged length: at most what the object holds.
                if (len + TRAILER_LEN) as u64 > size {
                    return Err(Refusal::Unusable("entry is truncated"));
                }
                header_len = Some(len);
                want = len;
            }
        }
    }
    let (meta, header_len) = codec::decode_header(&buf)?;
    meta.check_key(key)?;
    if path.filename() != Some(super::layout::variant_name(&meta.variant).as_str()) {
        return Err(Refusal::Unusable(
            "entry is stored under another variant's name",
        ));
    }
    if meta.encoded_len(header_len) != size {
        return Err(Refusal::Unusable("entry length differs from its header"));
    }
    if meta.expires <= std::time::SystemTime::now() {
        return Err(Refusal::Unusable("entry expired"));
    }
    let rest = buf.split_off(header_len).freeze();
    Ok(Head {
        meta,
        rest,
        stream,
        e_tag,
    })
}

/// Reads the whole rest of `head` (a body small enough to hold) and checks it.
pub(super) async fn read_small(inner: &Inner, head: &mut Head) -> Result<Bytes, Refusal> {
    let body_len = head.meta.body_len as usize;
    let mut all = BytesMut::with_capacity(body_len + TRAILER_LEN);
    all.extend_from_slice(&head.rest);
    while let Some(chunk) = head.stream.next().await {
        let chunk = chunk.map_err(|e| Refusal::Failed(inner.failure("reading an entry", e)))?;
        all.extend_from_slice(&chunk);
        if all.len() > body_len + TRAILER_LEN {
            return Err(Refusal::Unusable("bytes after the trailer"));
        }
    }
    if all.len() != body_len + TRAILER_LEN {
        return Err(Refusal::Unusable("entry is truncated"));
    }
    let trailer = all.split_off(body_len);
    let mut crc = BodyChecksum::new();
    crc.update(&all);
    crc.verify(&trailer)?;
    Ok(all.freeze())
}

/// A streamed body: the object's bytes after the header, released as they come except the
/// last body bytes, which wait until the trailer matched. A damaged object ends in an error
/// (never in a complete-looking body) and is removed if it is still the version read.
pub(super) struct ObjectBody {
    stream: ByteStream,
    remaining: u64,
    crc: BodyChecksum,
    trailer: BytesMut,
    /// Bytes to hand out next.
    ready: Option<Bytes>,
    /// The last body bytes, held until the trailer is verified.
    held: Option<Bytes>,
    done: bool,
    /// To remove the object if it turns out damaged.
    owner: Option<(Arc<Inner>, Path, Option<String>)>,
}

impl ObjectBody {
    pub(super) fn new(inner: Arc<Inner>, path: Path, head: Head) -> Self {
        let mut body = ObjectBody {
            stream: head.stream,
            remaining: head.meta.body_len,
            crc: BodyChecksum::new(),
            trailer: BytesMut::new(),
            ready: None,
            held: None,
            done: false,
            owner: Some((inner, path, head.e_tag)),
        };
        let rest = head.rest;
        // The object's length was checked against its header, so this fails only if the
        // server sends more than it said.
        if let Err(why) = body.absorb(rest) {
            body.done = true;
            body.fail(why);
        }
        body
    }

    /// Splits a chunk into body bytes (ready, or held if they end the body) and trailer bytes.
    fn absorb(&mut self, chunk: Bytes) -> Result<(), &'static str> {
        let take = (self.remaining.min(chunk.len() as u64)) as usize;
        let body = chunk.slice(..take);
        let tail = &chunk[take..];
        if self.trailer.len() + tail.len() > TRAILER_LEN {
            return Err("bytes after the trailer");
        }
        self.trailer.extend_from_slice(tail);
        self.crc.update(&body);
        self.remaining -= take as u64;
        if !body.is_empty() {
            if self.remaining == 0 {
                self.held = Some(body);
            } else {
                self.ready = Some(body);
            }
        }
        Ok(())
    }

    /// Removes the object (if still the version read), in the background; returns the error.
    fn fail(&mut self, why: &'static str) -> StoreError {
        if let Some((inner, path, e_tag)) = self.owner.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { inner.remove_damaged(&path, e_tag.as_deref()).await });
            }
        }
        self.held = None;
        StoreError::Corrupt(why)
    }

    fn finish(&mut self) -> Result<(), &'static str> {
        if self.remaining > 0 || self.trailer.len() != TRAILER_LEN {
            return Err("entry is truncated");
        }
        let crc = std::mem::take(&mut self.crc);
        crc.verify(&self.trailer)
            .map_err(|_| "body checksum mismatch")
    }
}

impl Body for ObjectBody {
    type Data = Bytes;
    type Error = StoreError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StoreError>>> {
        loop {
            if let Some(bytes) = self.ready.take() {
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            if self.done {
                return Poll::Ready(None);
            }
            match self.stream.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Err(why) = self.absorb(chunk) {
                        self.done = true;
                        return Poll::Ready(Some(Err(self.fail(why))));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    self.done = true;
                    self.held = None;
                    let error = match &self.owner {
                        Some((inner, _, _)) => inner.failure("streaming an entry's body", e),
                        None => StoreError::unavailable(e),
                    };
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(None) => {
                    self.done = true;
                    if let Err(why) = self.finish() {
                        return Poll::Ready(Some(Err(self.fail(why))));
                    }
                    self.ready = self.held.take();
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.ready.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let held = self.held.as_ref().map_or(0, |b| b.len() as u64);
        let ready = self.ready.as_ref().map_or(0, |b| b.len() as u64);
        SizeHint::with_exact(self.remaining + held + ready)
    }
}
