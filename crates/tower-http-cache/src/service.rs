//! [`CacheService`]: the tower `Service` of the cache; each request's path through it is an
//! [`Exchange`](crate::exchange::Exchange).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use http::{Request, Response};
use http_body::Body;
use sync_wrapper::SyncWrapper;
use tokio::sync::{Mutex, OwnedMutexGuard};
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
/// `poll_ready` forwards to the inner service's `poll_ready`: when the origin applies
/// backpressure (a concurrency limit, a full pool), callers see it, and an error from the inner
/// `poll_ready` is returned as it is. The readiness reserved stays with the inner service until
/// a request goes to the origin: the next origin call uses it, and a request answered from the
/// cache leaves it in place rather than wasting it.
///
/// The inner service needs no `Clone`: clones and response futures share it behind an
/// asynchronous mutex, taken only to poll its readiness and call it, never across the
/// origin's response. One waiter at a time polls the inner service, so none of them loses its
/// wake-up.
pub struct CacheService<S> {
    inner: Arc<Mutex<S>>,
    shared: Arc<Shared>,
    /// Where this handle's `poll_ready` stands.
    readiness: Readiness<S>,
}

/// Waits for the inner service's lock. Only ever used through `&mut`, so it can be `Sync`.
type Locking<S> = SyncWrapper<Pin<Box<dyn Future<Output = OwnedMutexGuard<S>> + Send>>>;

/// The steps of [`CacheService::poll_ready`]: take the inner service, then wait for it to be
/// ready while holding it.
enum Readiness<S> {
    Idle,
    Locking(Locking<S>),
    Polling(OwnedMutexGuard<S>),
}

impl<S> Clone for CacheService<S> {
    fn clone(&self) -> Self {
        // A clone has reserved nothing yet (tower's rule for cloned services).
        CacheService {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            readiness: Readiness::Idle,
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
            readiness: Readiness::Idle,
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
        if matches!(self.readiness, Readiness::Idle)
            && self.shared.inner_reserved.load(Ordering::Acquire)
        {
            // Still reserved from an earlier poll that no origin call has used (the requests
            // since were hits): ready without taking the lock.
            return Poll::Ready(Ok(()));
        }
        loop {
            match &mut self.readiness {
                Readiness::Idle => {
                    self.readiness = match self.inner.clone().try_lock_owned() {
                        Ok(guard) => Readiness::Polling(guard),
                        Err(_) => Readiness::Locking(SyncWrapper::new(Box::pin(
                            self.inner.clone().lock_owned(),
                        ))),
                    };
                }
                Readiness::Locking(locking) => {
                    let guard = ready!(locking.get_mut().as_mut().poll(cx));
                    self.readiness = Readiness::Polling(guard);
                }
                Readiness::Polling(inner) => {
                    // Held while the inner service is not ready, so that it has one waiter.
                    let result = ready!(inner.poll_ready(cx));
                    if result.is_ok() {
                        self.shared.inner_reserved.store(true, Ordering::Release);
                    }
                    // Released once it is: the reservation stays with the inner service.
                    self.readiness = Readiness::Idle;
                    return Poll::Ready(result);
                }
            }
        }
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        Exchange::new(&self.shared, &self.inner).start(request)
    }
}
