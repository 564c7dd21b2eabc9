//! The body of a stored entry, as an [`http_body::Body`].

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::StoreError;

type BoxBody = Pin<Box<dyn Body<Data = Bytes, Error = StoreError> + Send + 'static>>;

/// The body of a stored entry.
///
/// Small bodies held in memory are one `Bytes` (a cheap reference-counted clone); backends that
/// stream from disk or the network wrap their own [`Body`].
///
/// ```
/// use bytes::Bytes;
/// use cache_store::StoredBody;
/// use http_body::Body;
///
/// let body = StoredBody::full(Bytes::from_static(b"hello"));
/// assert_eq!(body.size_hint().exact(), Some(5));
/// ```
pub struct StoredBody {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Stream { body: BoxBody, len: Option<u64> },
}

impl StoredBody {
    /// A body held in memory.
    #[inline]
    pub fn full(bytes: Bytes) -> Self {
        let bytes = if bytes.is_empty() { None } else { Some(bytes) };
        StoredBody {
            kind: Kind::Full(bytes),
        }
    }

    /// The bytes of a body held in memory; a streamed body is given back.
    pub(crate) fn into_bytes(self) -> Result<Bytes, StoredBody> {
        match self.kind {
            Kind::Full(bytes) => Ok(bytes.unwrap_or_default()),
            kind @ Kind::Stream { .. } => Err(StoredBody { kind }),
        }
    }

    /// A streamed body, of `len` bytes when known.
    pub fn stream<B>(body: B, len: Option<u64>) -> Self
    where
        B: Body<Data = Bytes, Error = StoreError> + Send + 'static,
    {
        StoredBody {
            kind: Kind::Stream {
                body: Box::pin(body),
                len,
            },
        }
    }
}

impl Body for StoredBody {
    type Data = Bytes;
    type Error = StoreError;

    #[inline]
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StoreError>>> {
        match &mut self.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream { body, .. } => body.as_mut().poll_frame(cx),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream { body, .. } => body.is_end_stream(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream { body, len } => match len {
                Some(len) => SizeHint::with_exact(*len),
                None => body.size_hint(),
            },
        }
    }
}

impl fmt::Debug for StoredBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Full(bytes) => f
                .debug_struct("StoredBody")
                .field("len", &bytes.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Stream { len, .. } => f
                .debug_struct("StoredBody")
                .field("len", len)
                .field("streaming", &true)
                .finish_non_exhaustive(),
        }
    }
}
