//! [`CacheBody`]: the response body the cache hands out, streaming in every case.

use std::error::Error as StdError;
use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use cache_store::{BoxFuture, EntryWriter, StoreError, StoredBody};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// An error while streaming a [`CacheBody`]: from the origin's body, or from the store when a
/// stored body fails midway (a read error or a checksum mismatch, never wrong bytes).
#[derive(Debug)]
pub enum BodyError<E> {
    /// The origin's body failed.
    Origin(E),
    /// The stored body could not be read.
    Store(StoreError),
}

impl<E: fmt::Display> fmt::Display for BodyError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Origin(e) => write!(f, "origin body error: {e}"),
            BodyError::Store(e) => write!(f, "stored body error: {e}"),
        }
    }
}

impl<E: StdError + 'static> StdError for BodyError<E> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            BodyError::Origin(e) => Some(e),
            BodyError::Store(e) => Some(e),
        }
    }
}

/// Completes a teed entry: commits the writer, then runs the follow-up work (removing
/// superseded variants, waking coalesced requests).
pub(crate) type Finish = Box<dyn FnOnce(Box<dyn EntryWriter>) -> BoxFuture<'static, ()> + Send>;

pin_project! {
    /// The body of a response from a [`CacheService`](crate::CacheService).
    ///
    /// It streams in all three cases: a stored body read from the store, the origin's body
    /// passed through, or the origin's body teed into the store (each chunk goes to the caller
    /// as it arrives and to the store writer; the entry is committed when the body ends, and
    /// abandoned if the body fails or is dropped early).
    pub struct CacheBody<B> {
        #[pin]
        kind: Kind<B>,
    }

    impl<B> PinnedDrop for CacheBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let KindProj::Tee { committing, .. } = this.project().kind.project() else {
                return;
            };
            // The caller stopped reading after the last chunk (hyper's server stops once it
            // has written Content-Length bytes and drops the body) while the commit was under
            // way: let it finish in the background. A writer still held here belongs to an
            // incomplete body and is abandoned when dropped.
            if let (Some(commit), Ok(runtime)) =
                (committing.take(), tokio::runtime::Handle::try_current())
            {
                runtime.spawn(commit);
            }
        }
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Stored { body: StoredBody },
        Origin { #[pin] body: B },
        Tee {
            #[pin]
            body: B,
            writer: Option<Box<dyn EntryWriter>>,
            finish: Option<Finish>,
            committing: Option<BoxFuture<'static, ()>>,
        },
    }
}

impl<B> CacheBody<B> {
    pub(crate) fn empty() -> Self {
        CacheBody::stored(StoredBody::full(Bytes::new()))
    }

    pub(crate) fn stored(body: StoredBody) -> Self {
        CacheBody {
            kind: Kind::Stored { body },
        }
    }

    pub(crate) fn origin(body: B) -> Self {
        CacheBody {
            kind: Kind::Origin { body },
        }
    }

    pub(crate) fn tee(body: B, writer: Box<dyn EntryWriter>, finish: Finish) -> Self {
        CacheBody {
            kind: Kind::Tee {
                body,
                writer: Some(writer),
                finish: Some(finish),
                committing: None,
            },
        }
    }
}

fn to_bytes<D: Buf>(frame: Frame<D>) -> Frame<Bytes> {
    frame.map_data(|mut data| data.copy_to_bytes(data.remaining()))
}

impl<B> Body for CacheBody<B>
where
    B: Body,
    B::Data: Buf,
{
    type Data = Bytes;
    type Error = BodyError<B::Error>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Stored { body } => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|result| result.map_err(BodyError::Store))),
            KindProj::Origin { body } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|result| result.map(to_bytes).map_err(BodyError::Origin))),
            KindProj::Tee {
                mut body,
                writer,
                finish,
                committing,
            } => {
                if let Some(commit) = committing {
                    ready!(commit.as_mut().poll(cx));
                    *committing = None;
                    return Poll::Ready(None);
                }
                match ready!(body.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        let frame = to_bytes(frame);
                        if let (Some(data), Some(w)) = (frame.data_ref(), writer.as_mut()) {
                            if let Err(_error) = w.write(data.clone()) {
                                // Too large or failing: stop storing, keep streaming.
                                crate::log::store_error("write", &_error);
                                *writer = None;
                                *finish = None;
                            }
                        }
                        if body.is_end_stream() {
                            // The last chunk: commit now rather than on a further poll that a
                            // caller reading exactly Content-Length bytes may never make.
                            if let (Some(w), Some(f)) = (writer.take(), finish.take()) {
                                let mut commit = f(w);
                                if commit.as_mut().poll(cx).is_pending() {
                                    *committing = Some(commit);
                                }
                            }
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Some(Err(error)) => {
                        // An origin body error leaves no entry: dropping the writer aborts it.
                        *writer = None;
                        *finish = None;
                        Poll::Ready(Some(Err(BodyError::Origin(error))))
                    }
                    None => match (writer.take(), finish.take()) {
                        (Some(w), Some(f)) => {
                            let mut commit = f(w);
                            // Commit before reporting the end, so that a caller that has read
                            // the whole body finds the entry stored.
                            if commit.as_mut().poll(cx).is_pending() {
                                *committing = Some(commit);
                                return Poll::Pending;
                            }
                            Poll::Ready(None)
                        }
                        _ => Poll::Ready(None),
                    },
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Stored { body } => body.is_end_stream(),
            Kind::Origin { body } => body.is_end_stream(),
            // The commit runs when the inner body reports its end through poll_frame.
            Kind::Tee { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Stored { body } => body.size_hint(),
            Kind::Origin { body } | Kind::Tee { body, .. } => body.size_hint(),
        }
    }
}

impl<B> fmt::Debug for CacheBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Stored { .. } => "Stored",
            Kind::Origin { .. } => "Origin",
            Kind::Tee { .. } => "Tee",
        };
        f.debug_tuple("CacheBody").field(&kind).finish()
    }
}
