//! The IO around one request's [`Exchange`](cache_policy::Exchange): reading the store,
//! calling the origin, carrying out the effects the exchange asks for, and building the
//! response it says to send. The rules are the exchange's; this adds only IO, coalescing and
//! background refreshes.

use std::future::{poll_fn, Future};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Buf;
use cache_policy::{Answer, CacheStatusDetail, Effects, Next, Overrides, Reply, Respond};
use cache_store::{Entries, StoreError};
use http::{Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;

mod coalesce;
mod effects;
mod refresh;

pub(crate) use coalesce::{InFlight, Leader};
pub(crate) use refresh::RefreshSlots;

use super::body::CacheBody;
use super::invalidation::Generation;
use super::layer::Shared;
use super::origin::Origin;
use crate::log;
use crate::{CacheKey, CacheMode, CacheOutcome, CacheStatus, CacheTtl, ResponseFuture};
use effects::write_options;

/// The exchange of one request, over the candidates a store hands out.
type Exchange = cache_policy::Exchange<Entries>;

/// A request the cache is handling: its exchange, and what the driver keeps beside it.
struct Trip {
    exchange: Exchange,
    /// The key's invalidation generation before the store was read: a write begun before a
    /// later invalidation must not land after it (RFC 9111 §4.4).
    generation: Generation,
    /// Held by the coalescing leader until its response is stored or passed through.
    leader: Option<Leader>,
    /// Set once the request followed a leader: when it stops waiting for leaders.
    follow_deadline: Option<tokio::time::Instant>,
}

/// A request on its way to the origin.
struct Forward<ReqB> {
    request: Request<ReqB>,
    trip: Trip,
    /// Whether to join the requests for the same key already at the origin.
    coalesce: bool,
}

/// What [`Driver::decide`] settled: an answer from the store, or a trip to the origin.
enum Step<ReqB, ResB> {
    Respond(Response<CacheBody<ResB>>),
    /// Boxed: it is larger than a response, and it goes into a boxed future anyway.
    Forward(Box<Forward<ReqB>>),
}

/// What [`Driver::answer`] made of the origin's answer.
enum Answered<ResB, E> {
    /// The response, with nothing left that waits.
    Now(Result<Response<CacheBody<ResB>>, E>),
    /// Store calls to await first, in [`Driver::complete`] (boxed: rare, and large).
    Later(Box<Later<ResB>>),
}

/// An answer that waits on store calls.
struct Later<ResB> {
    trip: Trip,
    reply: Reply,
    effects: Effects,
    response: Response<ResB>,
}

/// Drives the exchanges of one service's requests: one per request, holding the service's
/// shared state and inner service.
pub(crate) struct Driver<S, ReqB, ResB> {
    shared: Arc<Shared>,
    inner: Arc<Origin<S>>,
    _bodies: PhantomData<fn(ReqB) -> ResB>,
}

impl<S, ReqB, ResB> Driver<S, ReqB, ResB> {
    pub(crate) fn new(shared: Arc<Shared>, inner: Arc<Origin<S>>) -> Self {
        Driver {
            shared,
            inner,
            _bodies: PhantomData,
        }
    }
}

impl<S, ReqB, ResB> Clone for Driver<S, ReqB, ResB> {
    fn clone(&self) -> Self {
        Driver::new(self.shared.clone(), self.inner.clone())
    }
}

/// The candidates a store read gave; a failing store is an empty cache.
fn candidates_or_log(read: Result<Entries, StoreError>) -> Entries {
    read.unwrap_or_else(|error| {
        log::store_error("get", &error);
        Entries::default()
    })
}

impl<S, ReqB, ResB> Driver<S, ReqB, ResB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
    ResB: Body + Send + 'static,
    ResB::Data: Buf + Send,
    ResB::Error: Send,
{
    /// Waits for the inner service to be ready and calls it, holding it in between.
    ///
    /// An `async` block rather than an `async fn`, whose future would keep a second copy of
    /// the request (parameters are moved into locals).
    #[allow(clippy::manual_async_fn)]
    fn call_origin(
        &self,
        request: Request<ReqB>,
    ) -> impl Future<Output = Result<Response<ResB>, S::Error>> + '_ {
        async move {
            let future = {
                let mut inner = poll_fn(|cx| self.inner.poll_acquire(cx)).await?;
                self.inner.used();
                inner.call(request)
            };
            future.await
        }
    }

    fn now(&self) -> SystemTime {
        self.shared.clock.0.now()
    }

    /// Starts the trip of one request: the mode and key are settled here, synchronously, so
    /// that the boxed future holds only the path the request takes.
    pub(crate) fn start(self, mut request: Request<ReqB>) -> ResponseFuture<ResB, S::Error> {
        let mode = request
            .extensions()
            .get::<CacheMode>()
            .copied()
            .unwrap_or_default();
        let explicit_key = request.extensions().get::<CacheKey>();
        let key: Option<Arc<str>> = match explicit_key {
            _ if mode == CacheMode::Disabled => None,
            Some(CacheKey(key)) => Some(key.as_str().into()),
            // Client side: the URI is already absolute, no need to rebuild it.
            None if request.uri().scheme().is_some() && request.uri().authority().is_some() => {
                Some(self.shared.key_for(request.uri()))
            }
            None => self
                .shared
                .rules
                .policy()
                .target_uri(&request)
                .map(|uri| self.shared.key_for(&uri)),
        };
        let Some(key) = key else {
            cache_policy::align_host(&mut request);
            return ResponseFuture::new(async move {
                let response = self.call_origin(request).await?.map(CacheBody::origin);
                if mode == CacheMode::Disabled {
                    return Ok(response);
                }
                let status = CacheStatus::new(CacheOutcome::Bypass, None);
                Ok(self.finish(response, status))
            });
        };
        let overrides = Overrides::default()
            .mode(mode)
            .ttl(request.extensions().get::<CacheTtl>().map(|ttl| ttl.0))
            .explicit_key(explicit_key.is_some())
            .background_refresh(self.can_spawn());
        let exchange = Exchange::new(&self.shared.rules, &request, key, overrides);
        let trip = Trip {
            generation: self.shared.invalidations.generation(exchange.key()),
            exchange,
            leader: None,
            follow_deadline: None,
        };
        // A store that answers at once (memory) lets a hit be answered here, without a boxed
        // future; anything else takes the asynchronous path.
        let read_now = if trip.exchange.reads_store() {
            self.shared.store.get_now(trip.exchange.key())
        } else {
            Some(Ok(Entries::default()))
        };
        match read_now {
            Some(read) => match self.decide(request, trip, candidates_or_log(read), true) {
                Step::Respond(response) => ResponseFuture::ready(response),
                Step::Forward(forward) => ResponseFuture::new(self.go_to_origin(forward)),
            },
            None => ResponseFuture::new(self.lookup(request, trip, true)),
        }
    }

    /// Whether a background refresh can be spawned (enabled, and inside a tokio runtime).
    fn can_spawn(&self) -> bool {
        self.shared.background_revalidation && tokio::runtime::Handle::try_current().is_ok()
    }

    /// Reads the store, then answers or goes to the origin as [`decide`](Self::decide) says.
    async fn lookup(
        self,
        request: Request<ReqB>,
        trip: Trip,
        may_coalesce: bool,
    ) -> Result<Response<CacheBody<ResB>>, S::Error> {
        let candidates = if trip.exchange.reads_store() {
            let key = trip.exchange.key();
            let read = match self.shared.store.get_now(key) {
                Some(read) => read,
                None => self.shared.store.get(key).await,
            };
            candidates_or_log(read)
        } else {
            Entries::default()
        };
        match self.decide(request, trip, candidates, may_coalesce) {
            Step::Respond(response) => Ok(response),
            // Boxed: the future of a hit does not carry the origin path.
            Step::Forward(forward) => Box::pin(self.go_to_origin(forward)).await,
        }
    }

    /// Feeds the stored `candidates` to the exchange, and answers from the store when it
    /// says so: everything up to the origin, without waiting.
    fn decide(
        &self,
        request: Request<ReqB>,
        mut trip: Trip,
        candidates: Entries,
        may_coalesce: bool,
    ) -> Step<ReqB, ResB> {
        let now = self.now();
        match trip
            .exchange
            .on_stored(&self.shared.rules, &request, candidates, now)
        {
            Next::Reply(reply) => Step::Respond(self.respond(&trip.exchange, reply, None)),
            Next::ReplyAndRefresh(reply) => {
                let response = self.respond(&trip.exchange, reply, None);
                self.refresh_in_background(request, trip);
                Step::Respond(response)
            }
            Next::Forward { coalesce } => Step::Forward(Box::new(Forward {
                request,
                trip,
                coalesce: coalesce && may_coalesce,
            })),
        }
    }

    /// The response `reply` describes: the origin's `response`, a stored one, or one the
    /// cache generates; with its status recorded.
    fn respond(
        &self,
        exchange: &Exchange,
        reply: Reply,
        response: Option<Response<ResB>>,
    ) -> Response<CacheBody<ResB>> {
        let Reply {
            respond,
            mut status,
        } = reply;
        let response = match respond {
            Respond::Origin => match response {
                Some(response) => response.map(CacheBody::origin),
                None => generated(StatusCode::BAD_GATEWAY),
            },
            Respond::Stored { head, body: None } => Response::from_parts(head, CacheBody::empty()),
            Respond::Stored {
                head,
                body: Some(id),
            } => match exchange.candidate(id).map(|entry| entry.body()) {
                Some(Some(body)) => Response::from_parts(head, CacheBody::stored(body)),
                // A streamed body is handed out once. Only a stale-while-revalidate refresh
                // can come back for it (a 304 after the stale response was served with it),
                // and its response is drained, not served.
                Some(None) => {
                    status.detail = Some(CacheStatusDetail::StoredBodyTaken);
                    generated(StatusCode::BAD_GATEWAY)
                }
                None => generated(StatusCode::BAD_GATEWAY),
            },
            Respond::Generated(code) => generated(code),
        };
        self.finish(response, status)
    }

    fn finish(
        &self,
        mut response: Response<CacheBody<ResB>>,
        status: CacheStatus,
    ) -> Response<CacheBody<ResB>> {
        if self.shared.cache_status_header {
            let value = status.to_header_value(&self.shared.cache_name);
            response
                .headers_mut()
                .insert(http::HeaderName::from_static("cache-status"), value);
        }
        response.extensions_mut().insert(status);
        response
    }

    /// Goes to the origin, first joining the requests for the same key already there when the
    /// trip says so, sends the request (with validators when revalidating), and acts on the
    /// answer as the exchange says.
    ///
    /// The origin call is this future's only await on a plain miss: joining is synchronous,
    /// the answer is made by [`answer`](Self::answer), a plain function, and whatever waits on
    /// the store (a follower's wait, invalidations, updates, a store that does IO) is a boxed
    /// future of its own. So this future stays small, and boxing and moving it is cheap on
    /// every miss.
    async fn go_to_origin(
        self,
        mut forward: Box<Forward<ReqB>>,
    ) -> Result<Response<CacheBody<ResB>>, S::Error> {
        if forward.coalesce {
            match self.join(&forward.trip) {
                Ok(leader) => forward.trip.leader = leader,
                // Boxed: it is rare, and its future would otherwise be part of every trip's.
                Err(following) => return Box::pin(self.follow(following, forward)).await,
            }
        }
        let Forward {
            mut request,
            mut trip,
            ..
        } = *forward;
        trip.exchange.depart(&mut request);
        let request_time = self.now();
        let result = match self.shared.origin_timeout {
            None => self.call_origin(request).await,
            // Boxed: only a layer with a timeout pays for the timer in its future.
            Some(limit) => {
                match Box::pin(tokio::time::timeout(limit, self.call_origin(request))).await {
                    Ok(result) => result,
                    Err(_elapsed) => {
                        if let Some(leader) = &trip.leader {
                            leader.failed();
                        }
                        let reply = trip.exchange.on_timeout(&self.shared.rules, self.now());
                        return Ok(self.respond(&trip.exchange, reply, None));
                    }
                }
            }
        };
        match self.answer(trip, request_time, result) {
            Answered::Now(result) => result,
            // Boxed: what waits on the store would otherwise make every miss's future larger.
            Answered::Later(later) => Ok(Box::pin(self.complete(later)).await),
        }
    }

    /// Feeds the origin's answer (or its failure) to the exchange, and answers when that
    /// takes no store call that waits: a response passed on, or one teed into a store that
    /// begins entries at once (memory). Anything else is left for
    /// [`complete`](Self::complete).
    ///
    /// A plain function, so that none of its locals is part of the future that awaits the
    /// origin.
    fn answer(
        &self,
        mut trip: Trip,
        request_time: SystemTime,
        result: Result<Response<ResB>, S::Error>,
    ) -> Answered<ResB, S::Error> {
        let response_time = self.now();
        let failed = match &result {
            Err(_) => true,
            Ok(response) => response.status().is_server_error(),
        };
        if let (true, Some(leader)) = (failed, &trip.leader) {
            leader.failed();
        }
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                let stale = trip.exchange.on_error(&self.shared.rules, response_time);
                let answer = stale.map(|reply| self.respond(&trip.exchange, reply, None));
                return Answered::Now(answer.ok_or(error));
            }
        };
        let Answer { reply, mut effects } =
            trip.exchange
                .on_response(&self.shared.rules, &response, request_time, response_time);
        if effects.is_empty() {
            return Answered::Now(Ok(self.respond(&trip.exchange, reply, Some(response))));
        }
        if effects.invalidate.is_empty() && !effects.invalidate_own_key {
            if let Some(store) = effects.store.take() {
                let options = write_options(&store);
                match self
                    .shared
                    .store
                    .begin_now(trip.exchange.key(), &store.entry, options)
                {
                    Some(begun) => {
                        return Answered::Now(Ok(self.tee(begun, store, reply, response, trip)));
                    }
                    None => effects.store = Some(store),
                }
            }
        }
        Answered::Later(Box::new(Later {
            trip,
            reply,
            effects,
            response,
        }))
    }
}

/// A response the cache makes itself, with an empty body.
fn generated<B>(status: StatusCode) -> Response<CacheBody<B>> {
    let mut response = Response::new(CacheBody::empty());
    *response.status_mut() = status;
    response
}
