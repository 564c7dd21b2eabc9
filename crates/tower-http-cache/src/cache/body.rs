//! [`CacheBody`]: the response body the cache hands out, streaming in every case.

use std::error::Error as StdError;
use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use std::sync::Arc;

use bytes::{Buf, Bytes};
use cache_policy::ParsedResponse;
use cache_store::{BoxFuture, EntryWriter, Store, StoreError, StoredBody, VariantId};

use super::driver::Leader;
use super::invalidation::{Generation, Invalidations};
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

/// What completes a teed entry once its body has ended: the commit, then the removal of the
/// variants the new response superseded, then the release of the coalescing leader (whose
/// drop lets coalesced requests look again).
///
/// Plain data rather than a boxed closure and an `async` block: a stored miss then allocates
/// nothing to finish, beyond what the store's commit needs (and, when the new response
/// superseded stored variants, their removal).
pub(crate) struct Finish {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) key: Arc<str>,
    pub(crate) superseded: Vec<VariantId>,
    pub(crate) leader: Option<Leader>,
    /// The response being stored, whose variant an invalidation may have to remove again.
    pub(crate) entry: Arc<ParsedResponse>,
    pub(crate) invalidations: Arc<Invalidations>,
    /// The key's generation before the request read the store.
    pub(crate) generation: Generation,
}

impl Finish {
    /// Whether an invalidation of the key began since the request read the store (RFC 9111
    /// §4.4): then the response predates it, and must not be stored.
    fn overtaken(&self) -> bool {
        !self.invalidations.unchanged_since(self.generation)
    }

    /// The work left after the commit ended with `result`, if any: removing what an
    /// invalidation overtook, or the superseded variants. The leader is released when that
    /// work is done, or now.
    fn after(self, result: Result<(), StoreError>) -> Option<BoxFuture<'static, ()>> {
        match result {
            // The invalidation came between the check before the commit and its end: what was
            // just committed goes again.
            Ok(()) if self.overtaken() => Some(Box::pin(async move {
                let variant = VariantId::of(&self.entry);
                if let Err(error) = self.store.remove(&self.key, Some(&variant)).await {
                    crate::log::store_error("remove", &error);
                }
                drop(self.leader);
            })),
            Ok(()) if !self.superseded.is_empty() => Some(Box::pin(async move {
                for variant in &self.superseded {
                    if let Err(error) = self.store.remove(&self.key, Some(variant)).await {
                        crate::log::store_error("remove", &error);
                    }
                }
                drop(self.leader);
            })),
            Ok(()) => None,
            Err(error) => {
                crate::log::store_error("commit", &error);
                None
            }
        }
    }
}

/// Where a teed entry stands. Gone (`None` in the body) once the entry is abandoned or
/// complete.
enum Teeing {
    /// Chunks go to the writer; `finish` completes the entry when the body ends.
    Writing {
        writer: Box<dyn EntryWriter>,
        finish: Finish,
    },
    /// The body ended; the entry is being completed.
    Committing(Committing),
}

/// A teed entry being completed.
enum Committing {
    /// The store's commit is under way.
    Commit {
        commit: BoxFuture<'static, Result<(), StoreError>>,
        finish: Finish,
    },
    /// Committed; superseded variants are being removed.
    After(BoxFuture<'static, ()>),
    /// Everything is done.
    Done,
}

impl Committing {
    /// Starts completing the entry written by `writer`; abandons it when an invalidation
    /// overtook it.
    fn start(writer: Box<dyn EntryWriter>, finish: Finish) -> Self {
        if finish.overtaken() {
            return Committing::Done;
        }
        Committing::Commit {
            commit: writer.commit(),
            finish,
        }
    }

    /// Drives the completion; ready when everything is done.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match self {
                Committing::Commit { commit, .. } => {
                    let result = ready!(commit.as_mut().poll(cx));
                    let Committing::Commit { finish, .. } =
                        std::mem::replace(self, Committing::Done)
                    else {
                        return Poll::Ready(());
                    };
                    if let Some(after) = finish.after(result) {
                        *self = Committing::After(after);
                    }
                }
                Committing::After(after) => {
                    ready!(after.as_mut().poll(cx));
                    *self = Committing::Done;
                }
                Committing::Done => return Poll::Ready(()),
            }
        }
    }

    /// The rest of the work as one future, to run in the background when the body is dropped
    /// mid-commit.
    fn into_future(self) -> BoxFuture<'static, ()> {
        match self {
            Committing::Commit { commit, finish } => Box::pin(async move {
                if let Some(after) = finish.after(commit.await) {
                    after.await;
                }
            }),
            Committing::After(after) => after,
            Committing::Done => Box::pin(std::future::ready(())),
        }
    }
}

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
            let KindProj::Tee { teeing, .. } = this.project().kind.project() else {
                return;
            };
            // The caller stopped reading after the last chunk (hyper's server stops once it
            // has written Content-Length bytes and drops the body) while the commit was under
            // way: let it finish in the background. A writer still held here belongs to an
            // incomplete body and is abandoned when dropped.
            match (teeing.take().map(|teeing| *teeing), tokio::runtime::Handle::try_current()) {
                (Some(Teeing::Committing(Committing::Done)), _) => {}
                (Some(Teeing::Committing(commit)), Ok(runtime)) => {
                    runtime.spawn(commit.into_future());
                }
                _ => {}
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
            // Boxed: a response is moved several times, and most responses are hits.
            teeing: Option<Box<Teeing>>,
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
                teeing: Some(Box::new(Teeing::Writing { writer, finish })),
            },
        }
    }
}

fn to_bytes<D: Buf>(frame: Frame<D>) -> Frame<Bytes> {
    frame.map_data(|mut data| data.copy_to_bytes(data.remaining()))
}

/// Starts completing the entry when it is still being written, and drives the completion;
/// ready when nothing is left to do.
fn commit(teeing: &mut Option<Box<Teeing>>, cx: &mut Context<'_>) -> Poll<()> {
    let Some(state) = teeing.as_deref_mut() else {
        return Poll::Ready(());
    };
    if let Teeing::Writing { .. } = state {
        // In place: the box the entry was written from holds its completion.
        let writing = std::mem::replace(state, Teeing::Committing(Committing::Done));
        if let Teeing::Writing { writer, finish } = writing {
            *state = Teeing::Committing(Committing::start(writer, finish));
        }
    }
    if let Teeing::Committing(committing) = state {
        ready!(committing.poll(cx));
    }
    *teeing = None;
    Poll::Ready(())
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
            KindProj::Tee { mut body, teeing } => {
                if let Some(Teeing::Committing(commit)) = teeing.as_deref_mut() {
                    ready!(commit.poll(cx));
                    *teeing = None;
                    return Poll::Ready(None);
                }
                // Backpressure: a store that is behind with what it was given is waited for
                // before more is read from the origin; one that gave up is no longer fed.
                if let Some(Teeing::Writing { writer, .. }) = teeing.as_deref_mut() {
                    if let Err(_error) = ready!(writer.poll_ready(cx)) {
                        crate::log::store_error("write", &_error);
                        *teeing = None;
                    }
                }
                match ready!(body.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        let frame = to_bytes(frame);
                        if let (Some(data), Some(Teeing::Writing { writer, .. })) =
                            (frame.data_ref(), teeing.as_deref_mut())
                        {
                            if let Err(_error) = writer.write(data.clone()) {
                                // Too large or failing: stop storing, keep streaming.
                                crate::log::store_error("write", &_error);
                                *teeing = None;
                            }
                        }
                        if body.is_end_stream() {
                            // The last chunk: commit now rather than on a further poll that a
                            // caller reading exactly Content-Length bytes may never make.
                            let _ = commit(teeing, cx);
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Some(Err(error)) => {
                        // An origin body error leaves no entry: dropping the writer aborts it,
                        // and the coalesced requests try again behind one of them.
                        if let Some(Teeing::Writing { finish, .. }) = teeing.as_deref() {
                            if let Some(leader) = &finish.leader {
                                leader.failed();
                            }
                        }
                        *teeing = None;
                        Poll::Ready(Some(Err(BodyError::Origin(error))))
                    }
                    // Commit before reporting the end, so that a caller that has read the
                    // whole body finds the entry stored.
                    None => commit(teeing, cx).map(|()| None),
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
