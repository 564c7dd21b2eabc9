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
/// A request's path through the cache awaits the store (an async trait object) and possibly
/// the origin, so the work is one boxed future, as in hyper-util's client.
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<B, E> {
    inner: BoxedResponse<B, E>,
}

impl<B, E> ResponseFuture<B, E> {
    pub(crate) fn new(
        future: impl Future<Output = Result<Response<CacheBody<B>>, E>> + Send + 'static,
    ) -> Self {
        ResponseFuture {
            inner: Box::pin(future),
        }
    }
}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<CacheBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<B, E> fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
