//! [`CacheService`]: the tower `Service` of the cache; each request's path through it is an
//! [`Exchange`](crate::exchange::Exchange).

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Buf;
use http::{Request, Response};
use http_body::Body;
use tokio::sync::Mutex;
use tower_service::Service;

use crate::exchange::Exchange;
use crate::layer::Shared;
use crate::{CacheBody, ResponseFuture};

/// Caches the responses of the inner service `S`. Built by [`CacheLayer`](crate::CacheLayer).
///
/// `CacheService` is `Clone` whatever `S` is: clones share the inner service, the store and
/// the in-flight requests.
///
/// # Readiness
///
/// `poll_ready` is always ready: a request served from the cache never waits for the origin.
/// When a request does go to the origin, its future waits for the inner service's
/// `poll_ready` and calls it right away while holding it (requests queue in order), so the
/// readiness reserved is exactly the one the call uses, and the inner service needs no `Clone`.
pub struct CacheService<S> {
    inner: Arc<Mutex<S>>,
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
            inner: Arc::new(Mutex::new(inner)),
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

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        Exchange::new(self.shared.clone(), self.inner.clone()).start(request)
    }
}
