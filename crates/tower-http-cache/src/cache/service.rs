//! [`CacheService`]: the tower `Service` of the cache; each request's path through it is an
//! [`Driver`](super::driver::Driver).

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Buf;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::driver::Driver;
use super::layer::Shared;
use super::origin::Origin;
use crate::{CacheBody, ResponseFuture};

/// Caches the responses of the inner service `S`. Built by [`CacheLayer`](crate::CacheLayer).
///
/// `CacheService` is `Clone` whatever `S` is: clones share the inner service, the store and
/// the in-flight requests.
///
/// # Readiness
///
/// `poll_ready` forwards to the inner service's `poll_ready`: when the origin applies
/// backpressure (a concurrency limit, a full pool), callers see it, and an error from the inner
/// `poll_ready` is returned as it is. The readiness reserved stays with the inner service until
/// a request goes to the origin: the next origin call uses it, and a request answered from the
/// cache leaves it in place rather than wasting it. (So a cache that only serves hits keeps
/// one reservation of its inner service, as any tower service polled ready and not called.)
///
/// The inner service needs no `Clone`: clones and response futures share it behind a mutex
/// held only to poll its readiness or call it, never while waiting, so a handle that stops
/// polling holds nobody up. Every task waiting for the inner service is woken when it may be
/// ready, so none loses its wake-up.
pub struct CacheService<S> {
    inner: Arc<Origin<S>>,
    shared: Arc<Shared>,
}

impl<S> Clone for CacheService<S> {
    fn clone(&self) -> Self {
        CacheService {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S> fmt::Debug for CacheService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheService").finish_non_exhaustive()
    }
}

impl<S> CacheService<S> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared>) -> Self {
        CacheService {
            inner: Arc::new(Origin::new(inner)),
            shared,
        }
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for CacheService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
    ResB: Body + Send + 'static,
    ResB::Data: Buf + Send,
    ResB::Error: Send,
{
    type Response = Response<CacheBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        if self.inner.is_reserved() {
            // Still reserved from an earlier poll that no origin call has used (the requests
            // since were hits): ready without taking the lock.
            return Poll::Ready(Ok(()));
        }
        self.inner.poll_acquire(cx).map_ok(drop)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        Driver::new(self.shared.clone(), self.inner.clone()).start(request)
    }
}
