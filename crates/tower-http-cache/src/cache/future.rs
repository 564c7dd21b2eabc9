//! [`ResponseFuture`]: the future a [`CacheService`](crate::CacheService) returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;

use crate::CacheBody;

type BoxedResponse<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<CacheBody<B>>, E>> + Send + 'static>>;

/// The response future of [`CacheService`](crate::CacheService).
///
/// A hit from a store that answers at once (memory) is ready when `call` returns. Any other
/// path awaits the store (an async trait object) or the origin, and is one boxed future, as in
/// hyper-util's client.
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<B, E> {
    kind: Kind<B, E>,
}

enum Kind<B, E> {
    /// Taken by the first poll.
    Ready(Option<Response<CacheBody<B>>>),
    Pending(BoxedResponse<B, E>),
}

impl<B, E> ResponseFuture<B, E> {
    pub(crate) fn new(
        future: impl Future<Output = Result<Response<CacheBody<B>>, E>> + Send + 'static,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Pending(Box::pin(future)),
        }
    }

    pub(crate) fn ready(response: Response<CacheBody<B>>) -> Self {
        ResponseFuture {
            kind: Kind::Ready(Some(response)),
        }
    }
}

// Neither variant is pinned in place: the response is moved out, the future is boxed.
impl<B, E> Unpin for ResponseFuture<B, E> {}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<CacheBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.kind {
            Kind::Ready(response) => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("ResponseFuture polled after completion"),
            },
            Kind::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

impl<B, E> fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ready = matches!(self.kind, Kind::Ready(_));
        f.debug_struct("ResponseFuture")
            .field("ready", &ready)
            .finish_non_exhaustive()
    }
}
