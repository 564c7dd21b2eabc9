//! One request's path through the cache: the key and mode settled, the store read, the policy
//! asked, the origin called when it says so, and its answer stored, refreshed or passed on.

use std::borrow::Cow;
use std::future::{poll_fn, Future};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Buf;
use cache_policy::{
    CachePolicy, CacheStatusDetail, CacheStatusFwd, Lookup, ParsedResponse, RequestHead,
    ResponseAction, Revalidation, Serve, Update,
};
use cache_store::{Entries, EntryWriter, StoreError, StoredEntry, VariantId, WriteOptions};
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, HOST};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use tower_service::Service;

use crate::body::{CacheBody, Finish};
use crate::coalesce::{self, Leader, Role};
use crate::invalidation::Generation;
use crate::layer::Shared;
use crate::log;
use crate::origin::Origin;
use crate::{CacheKey, CacheMode, CacheOutcome, CacheStatus, CacheTtl, ResponseFuture};

/// What a request takes with it to the origin.
struct Trip {
    /// The stored variants for the key, which a 304 or an error may still use.
    candidates: Entries,
    /// The validators to send, when revalidating.
    /// Boxed: only revalidations have one, and the trip is moved on every miss.
    revalidation: Option<Box<Revalidation>>,
    /// Held by the coalescing leader until its response is stored or passed through.
    leader: Option<Leader>,
    /// Why the request goes to the origin (RFC 9211 `fwd`).
    fwd: CacheStatusFwd,
}

/// What a request and the origin's answer to it left for [`Exchange::settle`].
struct Exchanged<'a> {
    head: &'a OwnedHead,
    context: &'a Keyed,
    candidates: &'a Entries,
    fwd: CacheStatusFwd,
    request_time: SystemTime,
    response_time: SystemTime,
}

/// What [`Exchange::settle`] decided.
enum Settled<ResB, E> {
    /// The answer, with nothing left to do: the origin failed, or its response is teed into
    /// a store that began the entry at once.
    Done(Result<Response<CacheBody<ResB>>, E>),
    /// Remove what is stored under `invalidate`, then go on as `then` says.
    Then {
        invalidate: Vec<Arc<str>>,
        then: Then<ResB>,
    },
}

/// What [`Exchange::answer`] made of the origin's answer.
enum Answer<ResB, E> {
    /// The response, with nothing left that waits.
    Now(Result<Response<CacheBody<ResB>>, E>),
    /// Store calls to await first, in [`Exchange::complete`] (boxed: rare, and large).
    Later(Box<Later<ResB>>),
}

/// The store calls an answer waits on, with what the request kept.
struct Later<ResB> {
    invalidate: Vec<Arc<str>>,
    then: Then<ResB>,
    kept: AtOrigin,
}

/// The store call an answer still needs, and what to do after it.
enum Then<ResB> {
    Respond(Response<CacheBody<ResB>>),
    /// Start writing the origin's response, then tee its body into the writer.
    Store(Storing<ResB>),
    /// Freshen the stored variants a 304 validated, then serve the chosen one.
    Refresh {
        updates: Vec<(VariantId, Update)>,
        serve: Serve,
        /// What the client gets: the chosen response freshened by the 304.
        refreshed: http::response::Parts,
        status: CacheStatus,
    },
    /// Update (or remove) the stored variants a HEAD response describes, then pass it on.
    UpdateFromHead {
        updates: Vec<(VariantId, Update)>,
        remove: Vec<VariantId>,
        response: Response<CacheBody<ResB>>,
    },
}

/// The origin's response to store, and what beginning its entry needs.
struct Storing<ResB> {
    options: WriteOptions,
    tee: Tee<ResB>,
}

/// The origin's response to tee into the store, and what the tee releases when the body is
/// stored.
struct Tee<ResB> {
    response: Response<ResB>,
    entry: Arc<ParsedResponse>,
    generation: Generation,
    status: CacheStatus,
    superseded: Vec<VariantId>,
    /// Given to the tee once the entry is begun.
    leader: Option<Leader>,
}

/// A request that found another one for its key at the origin: it waits for that one's
/// outcome, at most `timeout`.
struct Following {
    outcome: Arc<coalesce::Outcome>,
    /// When the follower stops waiting for leaders and goes to the origin alone.
    deadline: tokio::time::Instant,
}

/// The parts of the client's request kept while it is at the origin.
struct OwnedHead {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl<'a> From<&'a OwnedHead> for RequestHead<'a> {
    fn from(head: &'a OwnedHead) -> Self {
        RequestHead {
            method: &head.method,
            uri: &head.uri,
            headers: &head.headers,
        }
    }
}

/// A request on its way to the origin, with what the cache decided for it.
struct Forward<ReqB> {
    request: Request<ReqB>,
    context: Keyed,
    trip: Trip,
    /// Whether to join the requests for the same key already at the origin.
    coalesce: bool,
}

/// What a request keeps while it is at the origin.
struct AtOrigin {
    head: OwnedHead,
    context: Keyed,
    candidates: Entries,
    leader: Option<Leader>,
    fwd: CacheStatusFwd,
}

impl<ReqB> Forward<ReqB> {
    /// Splits the trip into the request to send (with its validators when revalidating) and
    /// what is kept while it is at the origin. A plain function, so that the request's future
    /// does not keep the trip's parts after they are used.
    fn depart(self) -> (Request<ReqB>, AtOrigin) {
        let Forward {
            mut request,
            context,
            trip,
            ..
        } = self;
        let head = OwnedHead {
            method: request.method().clone(),
            uri: request.uri().clone(),
            headers: request.headers().clone(),
        };
        if let Some(revalidation) = trip.revalidation {
            revalidation.apply_to(request.headers_mut());
        }
        let kept = AtOrigin {
            head,
            context,
            candidates: trip.candidates,
            leader: trip.leader,
            fwd: trip.fwd,
        };
        (request, kept)
    }
}

/// What [`Exchange::decide`] settled: an answer from the store, or a trip to the origin.
enum Next<ReqB, ResB> {
    Respond(Response<CacheBody<ResB>>),
    /// Boxed: it is three times the size of a response, and it goes into a boxed future anyway.
    Forward(Box<Forward<ReqB>>),
}

/// One request's trip through the cache.
///
/// It borrows the service's shared state while the request is decided inside `call`, and owns
/// a handle on it (`'static`) once the request needs a future: a hit answered at once clones
/// no reference count.
pub(crate) struct Exchange<'a, S, ReqB, ResB> {
    shared: Cow<'a, Arc<Shared>>,
    inner: Cow<'a, Arc<Origin<S>>>,
    _bodies: PhantomData<fn(ReqB) -> ResB>,
}

impl<'a, S, ReqB, ResB> Exchange<'a, S, ReqB, ResB> {
    pub(crate) fn new(shared: &'a Arc<Shared>, inner: &'a Arc<Origin<S>>) -> Self {
        Exchange {
            shared: Cow::Borrowed(shared),
            inner: Cow::Borrowed(inner),
            _bodies: PhantomData,
        }
    }

    /// The same exchange, holding its own handles, for a future or a spawned task.
    fn to_owned(&self) -> Exchange<'static, S, ReqB, ResB> {
        Exchange {
            shared: Cow::Owned(Arc::clone(&self.shared)),
            inner: Cow::Owned(Arc::clone(&self.inner)),
            _bodies: PhantomData,
        }
    }
}

/// What the cache knows about a request once its key and mode are settled.
struct Keyed {
    /// Shared with the `CacheStatus` of the response.
    key: Arc<str>,
    mode: CacheMode,
    ttl: Option<Duration>,
    /// Whether responses to this request may be looked up and stored: a configured method,
    /// and for methods other than GET and HEAD an explicit [`CacheKey`] (which
    /// [`BodyKeyLayer`](crate::BodyKeyLayer) derives from the body). A POST response is never
    /// reused for a POST with another body.
    cacheable: bool,
    /// Whether the key came from a [`CacheKey`] rather than from the target URI.
    explicit_key: bool,
    /// The key's invalidation generation before the store was read.
    generation: Generation,
    /// Set once the request followed a leader: when it stops waiting for leaders.
    follow_deadline: Option<tokio::time::Instant>,
}

impl Keyed {
    /// Whether the request's mode uses stored responses at all.
    fn mode_reads_cache(&self) -> bool {
        !matches!(self.mode, CacheMode::NoStore | CacheMode::Reload)
    }

    /// Whether the store is read for this request: a cacheable request whose mode does not
    /// skip the stored responses.
    fn reads_cache(&self) -> bool {
        self.cacheable && self.mode_reads_cache()
    }
}

/// Whether the request's `Cache-Control` carries `only-if-cached`.
fn only_if_cached(headers: &HeaderMap) -> bool {
    headers.contains_key(CACHE_CONTROL)
        && cache_policy::RequestDirectives::from_headers(headers).only_if_cached
}

/// RFC 9112 §3.2.2: the target's authority wins over `Host`. A request in absolute form goes
/// to the origin with the `Host` its target names (without user information), so that the
/// origin answers for the host the response is keyed by, and a client cannot have one host's
/// answer stored under another's URL. A request without `Host` is left to the client, which
/// adds it from the target.
fn align_host<B>(request: &mut Request<B>) {
    let Some(authority) = request.uri().authority() else {
        return;
    };
    let host = match authority.as_str().rsplit_once('@') {
        Some((_user_info, host)) => host,
        None => authority.as_str(),
    };
    let mut lines = request.headers().get_all(HOST).iter();
    let agrees = match (lines.next(), lines.next()) {
        (None, _) => return,
        (Some(line), None) => line.as_bytes().eq_ignore_ascii_case(host.as_bytes()),
        (Some(_), Some(_)) => false,
    };
    if !agrees {
        if let Ok(value) = HeaderValue::from_str(host) {
            request.headers_mut().insert(HOST, value);
        }
    }
}

/// The candidates a store read gave; a failing store is an empty cache.
fn candidates_or_log(read: Result<Entries, StoreError>) -> Entries {
    read.unwrap_or_else(|error| {
        log::store_error("get", &error);
        Entries::default()
    })
}

impl<'a, S, ReqB, ResB> Exchange<'a, S, ReqB, ResB>
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
    fn call_origin(
        &self,
        mut request: Request<ReqB>,
    ) -> impl Future<Output = Result<Response<ResB>, S::Error>> + '_ {
        align_host(&mut request);
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
    pub(crate) fn start(self, request: Request<ReqB>) -> ResponseFuture<ResB, S::Error> {
        let mode = request
            .extensions()
            .get::<CacheMode>()
            .copied()
            .unwrap_or_default();
        if mode == CacheMode::Disabled {
            let this = self.to_owned();
            return ResponseFuture::new(async move {
                let response = this.call_origin(request).await?;
                Ok(response.map(CacheBody::origin))
            });
        }
        let explicit_key = request.extensions().get::<CacheKey>();
        let cacheable = self
            .shared
            .policy
            .options()
            .cacheable_methods
            .contains(request.method())
            && (matches!(*request.method(), Method::GET | Method::HEAD) || explicit_key.is_some());
        let key: Option<Arc<str>> = match explicit_key {
            Some(CacheKey(key)) => Some(key.as_str().into()),
            // Client side: the URI is already absolute, no need to rebuild it.
            None if request.uri().scheme().is_some() && request.uri().authority().is_some() => {
                Some(self.shared.key_for(request.uri()))
            }
            None => self
                .shared
                .policy
                .target_uri(&request)
                .map(|uri| self.shared.key_for(&uri)),
        };
        let Some(key) = key else {
            let this = self.to_owned();
            return ResponseFuture::new(async move {
                let response = this.call_origin(request).await?;
                let status = CacheStatus::new(CacheOutcome::Bypass, None);
                Ok(this.finish(response.map(CacheBody::origin), status))
            });
        };
        let context = Keyed {
            generation: self.shared.invalidations.generation(&key),
            follow_deadline: None,
            key,
            explicit_key: explicit_key.is_some(),
            mode,
            ttl: request.extensions().get::<CacheTtl>().map(|ttl| ttl.0),
            cacheable,
        };
        // A store that answers at once (memory) lets a hit be answered here, without a boxed
        // future; anything else takes the asynchronous path.
        let read_now = if context.reads_cache() {
            self.shared.store.get_now(&context.key)
        } else {
            Some(Ok(Entries::default()))
        };
        match read_now {
            Some(read) => match self.decide(request, context, candidates_or_log(read), true) {
                Next::Respond(response) => ResponseFuture::ready(response),
                Next::Forward(forward) => {
                    ResponseFuture::new(self.to_owned().go_to_origin(forward))
                }
            },
            None => ResponseFuture::new(self.to_owned().lookup(request, context, true)),
        }
    }

    fn lookup_policy(&self, mode: CacheMode) -> &CachePolicy {
        match mode {
            CacheMode::NoCache => &self.shared.revalidating,
            CacheMode::ForceCache | CacheMode::OnlyIfCached => &self.shared.forcing,
            CacheMode::IgnoreRules => &self.shared.ignoring,
            _ => &self.shared.policy,
        }
    }

    fn storing_policy(&self, mode: CacheMode) -> &CachePolicy {
        match mode {
            CacheMode::IgnoreRules => &self.shared.ignoring,
            _ => &self.shared.policy,
        }
    }

    /// Reads the candidates for the key; a failing store is an empty cache.
    async fn candidates(&self, key: &str) -> Entries {
        let read = match self.shared.store.get_now(key) {
            Some(read) => read,
            None => self.shared.store.get(key).await,
        };
        candidates_or_log(read)
    }

    /// Reads the store, then answers or goes to the origin as [`decide`](Self::decide) says.
    async fn lookup(
        self,
        request: Request<ReqB>,
        context: Keyed,
        may_coalesce: bool,
    ) -> Result<Response<CacheBody<ResB>>, S::Error> {
        let candidates = if context.reads_cache() {
            self.candidates(&context.key).await
        } else {
            Entries::default()
        };
        match self.decide(request, context, candidates, may_coalesce) {
            Next::Respond(response) => Ok(response),
            // Boxed: the future of a hit does not carry the origin path.
            Next::Forward(forward) => Box::pin(self.go_to_origin(forward)).await,
        }
    }

    /// Asks the policy what to do with `request` given the stored `candidates`, and answers
    /// from the store when it can: everything up to the origin, without waiting.
    fn decide(
        &self,
        request: Request<ReqB>,
        context: Keyed,
        candidates: Entries,
        may_coalesce: bool,
    ) -> Next<ReqB, ResB> {
        let reads_cache = context.mode_reads_cache();
        let cacheable = context.cacheable;
        let lookup = if context.reads_cache() {
            self.lookup_policy(context.mode)
                .lookup(&request, &candidates, self.now())
        } else if reads_cache && only_if_cached(request.headers()) {
            // RFC 9111 §5.2.1.7: not even a request the cache cannot answer goes to the origin.
            // (A request whose CacheMode skips the stored responses goes there as its mode
            // says: the explicit mode wins over the header.)
            Lookup::GatewayTimeout
        } else if !cacheable {
            Lookup::Forward(cache_policy::ForwardReason::Method)
        } else {
            Lookup::Forward(cache_policy::ForwardReason::UriMiss)
        };
        let forcing = matches!(
            context.mode,
            CacheMode::ForceCache | CacheMode::OnlyIfCached
        );

        let method = request.method().clone();
        let (revalidation, fwd, coalesce) = match lookup {
            Lookup::Fresh(serve) | Lookup::NotModified(serve) => {
                let status =
                    self.served_status(CacheOutcome::Hit, context.key, &serve, &candidates);
                return Next::Respond(self.serve_stored(serve, &candidates, &method, status));
            }
            Lookup::Stale {
                serve, revalidate, ..
            } => {
                let outcome = if serve.freshness.is_fresh() {
                    CacheOutcome::Hit
                } else {
                    CacheOutcome::Stale
                };
                let status = self.served_status(outcome, context.key.clone(), &serve, &candidates);
                match revalidate {
                    // stale-while-revalidate without a runtime to refresh in: revalidate now.
                    Some(revalidation) if !forcing && !self.can_spawn() => {
                        (Some(Box::new(revalidation)), CacheStatusFwd::Stale, false)
                    }
                    Some(revalidation) if !forcing => {
                        let response = self.serve_stored(serve, &candidates, &method, status);
                        self.revalidate_in_background(request, context, candidates, revalidation);
                        return Next::Respond(response);
                    }
                    _ => {
                        return Next::Respond(self.serve_stored(
                            serve,
                            &candidates,
                            &method,
                            status,
                        ))
                    }
                }
            }
            Lookup::GatewayTimeout => return Next::Respond(self.gateway_timeout(&context)),
            Lookup::Revalidate(_) | Lookup::Forward(_)
                if context.mode == CacheMode::OnlyIfCached =>
            {
                return Next::Respond(self.gateway_timeout(&context));
            }
            // Force-cache found nothing usable: a plain request, stored by the usual rules.
            Lookup::Revalidate(revalidation) if forcing => {
                (None, revalidation.reason.cache_status_fwd(), false)
            }
            Lookup::Revalidate(revalidation) => {
                let fwd = revalidation.reason.cache_status_fwd();
                (Some(Box::new(revalidation)), fwd, true)
            }
            Lookup::Forward(reason) if reads_cache => (
                None,
                reason.cache_status_fwd(),
                cacheable && reason != cache_policy::ForwardReason::Method,
            ),
            Lookup::Forward(_) => (None, CacheStatusFwd::Request, false),
            _ => (None, CacheStatusFwd::Miss, false),
        };
        Next::Forward(Box::new(Forward {
            request,
            context,
            trip: Trip {
                candidates,
                revalidation,
                leader: None,
                fwd,
            },
            coalesce: coalesce && may_coalesce,
        }))
    }

    /// Whether a background refresh can be spawned (enabled, and inside a tokio runtime).
    fn can_spawn(&self) -> bool {
        self.shared.background_revalidation && tokio::runtime::Handle::try_current().is_ok()
    }

    /// Joins the in-flight requests for the key: `Ok(Some)` leads, `Ok(None)` goes alone
    /// (coalescing is off, or the mode does not store), `Err` follows the request already at
    /// the origin.
    fn join(&self, context: &Keyed) -> Result<Option<Leader>, Following> {
        let Some(timeout) = self.shared.coalesce else {
            return Ok(None);
        };
        if matches!(context.mode, CacheMode::NoStore | CacheMode::Reload) {
            return Ok(None);
        }
        let deadline = match context.follow_deadline {
            // Followed long enough: lead if the key is free, else go alone.
            Some(deadline) if tokio::time::Instant::now() >= deadline => {
                return Ok(self.shared.in_flight.lead(&context.key));
            }
            Some(deadline) => deadline,
            None => tokio::time::Instant::now() + timeout,
        };
        match self.shared.in_flight.join(&context.key) {
            Role::Leader(leader) => Ok(Some(leader)),
            Role::Follower(outcome) => Err(Following { outcome, deadline }),
        }
    }

    /// Waits for the request for the same key already at the origin, then looks in the store
    /// again. When the leader failed and nothing usable is there, the first follower to look
    /// leads the next attempt and the others follow it, until their deadline: a failed leader
    /// hands over to one new leader, not to a stampede. When the leader's response was not
    /// one to store, each follower goes to the origin for its own.
    async fn follow(
        self,
        following: Following,
        forward: Box<Forward<ReqB>>,
    ) -> Result<Response<CacheBody<ResB>>, S::Error> {
        let handed_over = coalesce::wait(
            following.outcome,
            following.deadline,
            self.shared.coalesce_streaming_wait,
        )
        .await;
        let Forward {
            request,
            mut context,
            ..
        } = *forward;
        context.follow_deadline = Some(following.deadline);
        self.lookup(request, context, handed_over).await
    }

    /// The status of a response served from the store, under `key` (moved in where the
    /// request is done with it: a hit then touches no reference count for it).
    fn served_status(
        &self,
        outcome: CacheOutcome,
        key: Arc<str>,
        serve: &Serve,
        candidates: &[StoredEntry],
    ) -> CacheStatus {
        let mut status = CacheStatus::new(outcome, Some(key));
        status.age = Some(serve.freshness.age);
        status.ttl = Some(serve.freshness.time_to_live());
        status.stored_at = candidates
            .get(serve.index)
            .map(|c| c.response.response_time);
        status
    }

    /// Answers with the stored response `serve` chose among `candidates`.
    fn serve_stored(
        &self,
        serve: Serve,
        candidates: &[StoredEntry],
        method: &Method,
        status: CacheStatus,
    ) -> Response<CacheBody<ResB>> {
        match candidates.get(serve.index) {
            Some(candidate) => {
                let head = serve.response_head(&candidate.response);
                self.respond_stored(serve, head, candidates, method, status)
            }
            // The policy only chooses among the candidates it was given.
            None => self.finish(bad_gateway(), status),
        }
    }

    /// Answers with `head` and the stored body of the candidate `serve` chose (none for HEAD
    /// and for a 304).
    fn respond_stored(
        &self,
        serve: Serve,
        head: http::response::Parts,
        candidates: &[StoredEntry],
        method: &Method,
        mut status: CacheStatus,
    ) -> Response<CacheBody<ResB>> {
        let body = match candidates.get(serve.index) {
            Some(entry) if *method != Method::HEAD && !serve.not_modified => match entry.body() {
                Some(body) => CacheBody::stored(body),
                // A streamed body is handed out once. Only a stale-while-revalidate refresh
                // can come back for it (a 304 after the stale response was served with it),
                // and its response is drained, not served.
                None => {
                    status.detail = Some(CacheStatusDetail::StoredBodyTaken);
                    return self.finish(bad_gateway(), status);
                }
            },
            _ => CacheBody::empty(),
        };
        self.finish(Response::from_parts(head, body), status)
    }

    fn gateway_timeout(&self, context: &Keyed) -> Response<CacheBody<ResB>> {
        let mut response = Response::new(CacheBody::empty());
        *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
        let mut status = CacheStatus::new(CacheOutcome::Generated, Some(context.key.clone()));
        status.detail = Some(CacheStatusDetail::OnlyIfCached);
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
    /// answer as the policy says.
    ///
    /// The origin call is this future's only await on a plain miss: joining is synchronous,
    /// the answer is made by [`answer`](Self::answer), a plain function, and whatever waits on
    /// the store (a follower's wait, invalidations, updates, a store that does IO) is a boxed
    /// future of its own. So this future stays small (under 800 bytes), and boxing and moving
    /// it is cheap on every miss.
    async fn go_to_origin(
        self,
        mut forward: Box<Forward<ReqB>>,
    ) -> Result<Response<CacheBody<ResB>>, S::Error> {
        if forward.coalesce {
            match self.join(&forward.context) {
                Ok(leader) => forward.trip.leader = leader,
                // Boxed: it is rare, and its future would otherwise be part of every trip's.
                Err(following) => return Box::pin(self.follow(following, forward)).await,
            }
        }
        let (request, kept) = (*forward).depart();
        let request_time = self.now();
        let result = match self.shared.origin_timeout {
            None => self.call_origin(request).await,
            // Boxed: only a layer with a timeout pays for the timer in its future.
            Some(limit) => {
                match Box::pin(tokio::time::timeout(limit, self.call_origin(request))).await {
                    Ok(result) => result,
                    Err(_elapsed) => {
                        if let Some(leader) = &kept.leader {
                            leader.failed();
                        }
                        return Ok(self.origin_timed_out(kept, request_time));
                    }
                }
            }
        };
        match self.answer(kept, request_time, result) {
            Answer::Now(result) => result,
            // Boxed: what waits on the store (invalidations, updates after a revalidation, a
            // store that does IO) would otherwise make every miss's future larger, and moving
            // it costs.
            Answer::Later(later) => Ok(Box::pin(self.complete(later)).await),
        }
    }

    /// Answers the origin's response (or its failure) as the policy says, when that takes no
    /// store call that waits: a response passed on, or one teed into a store that begins
    /// entries at once (memory, see [`settle`](Self::settle)). Anything else is left for
    /// [`complete`](Self::complete).
    ///
    /// A plain function, so that none of its locals is part of the future that awaits the
    /// origin.
    fn answer(
        &self,
        mut kept: AtOrigin,
        request_time: SystemTime,
        result: Result<Response<ResB>, S::Error>,
    ) -> Answer<ResB, S::Error> {
        let exchanged = Exchanged {
            head: &kept.head,
            context: &kept.context,
            candidates: &kept.candidates,
            fwd: kept.fwd,
            request_time,
            response_time: self.now(),
        };
        let failed = match &result {
            Err(_) => true,
            Ok(response) => response.status().is_server_error(),
        };
        if let (true, Some(leader)) = (failed, &kept.leader) {
            leader.failed();
        }
        let (invalidate, then) = match self.settle(&exchanged, &mut kept.leader, result) {
            Settled::Done(result) => return Answer::Now(result),
            Settled::Then { invalidate, then } => (invalidate, then),
        };
        let then = match then {
            Then::Respond(response) if invalidate.is_empty() => return Answer::Now(Ok(response)),
            then => then,
        };
        Answer::Later(Box::new(Later {
            invalidate,
            then,
            kept,
        }))
    }

    /// The answers that wait on the store: the invalidations first (RFC 9111 §4.4), then the
    /// write, refresh or update that the answer needs.
    async fn complete(&self, later: Box<Later<ResB>>) -> Response<CacheBody<ResB>> {
        let Later {
            invalidate,
            then,
            kept:
                AtOrigin {
                    head,
                    mut context,
                    candidates,
                    leader,
                    ..
                },
        } = *later;
        let own_key = invalidate.contains(&context.key);
        self.invalidate(invalidate).await;
        if own_key {
            // This request's own invalidation comes before what it stores (a POST cached by
            // its body's key): only a later one overtakes its write.
            context.generation = self.shared.invalidations.generation(&context.key);
        }
        match then {
            Then::Respond(response) => response,
            Then::Store(Storing { options, mut tee }) => {
                tee.generation = context.generation;
                let begun = self
                    .shared
                    .store
                    .begin(&context.key, tee.entry.clone(), options)
                    .await;
                tee.leader = leader;
                self.tee(begun, tee, &context.key)
            }
            Then::Refresh {
                updates,
                serve,
                refreshed,
                status,
            } => {
                self.apply_updates(&context, updates).await;
                drop(leader);
                self.respond_stored(serve, refreshed, &candidates, &head.method, status)
            }
            Then::UpdateFromHead {
                updates,
                remove,
                response,
            } => {
                self.apply_updates(&context, updates).await;
                self.remove_variants(&context.key, remove).await;
                response
            }
        }
    }

    /// Tees the origin's response into the writer the store began; when it could not begin,
    /// passes the response on unstored.
    fn tee(
        &self,
        begun: Result<Box<dyn EntryWriter>, StoreError>,
        tee: Tee<ResB>,
        key: &Arc<str>,
    ) -> Response<CacheBody<ResB>> {
        let Tee {
            response,
            entry,
            generation,
            mut status,
            superseded,
            leader,
        } = tee;
        match begun {
            Ok(writer) => {
                status.stored = true;
                if let Some(leader) = &leader {
                    leader.streaming();
                }
                let writer = self.limit(writer);
                let finish = Finish {
                    store: self.shared.store.clone(),
                    key: key.clone(),
                    superseded,
                    leader,
                    entry,
                    invalidations: self.shared.invalidations.clone(),
                    generation,
                };
                self.finish(
                    response.map(|body| CacheBody::tee(body, writer, finish)),
                    status,
                )
            }
            Err(error) => {
                log::store_error("begin", &error);
                self.finish(response.map(CacheBody::origin), status)
            }
        }
    }

    /// RFC 5861 §4: the stale response to serve when the origin failed or did not answer in
    /// time, if the policy allows one.
    fn stale_on_error(&self, exchanged: &Exchanged<'_>) -> Option<Response<CacheBody<ResB>>> {
        let Exchanged {
            head,
            context,
            candidates,
            fwd,
            response_time,
            ..
        } = *exchanged;
        let policy = self.storing_policy(context.mode);
        let serve = policy.on_error(head, candidates, response_time)?;
        let mut status =
            self.served_status(CacheOutcome::Stale, context.key.clone(), &serve, candidates);
        status.fwd = Some(fwd);
        status.detail = Some(CacheStatusDetail::StaleIfError);
        Some(self.serve_stored(serve, candidates, &head.method, status))
    }

    /// The answer when the origin sent no response head within the layer's origin timeout:
    /// a stale response where RFC 5861 §4 allows one, else a generated 504.
    fn origin_timed_out(
        &self,
        kept: AtOrigin,
        request_time: SystemTime,
    ) -> Response<CacheBody<ResB>> {
        let exchanged = Exchanged {
            head: &kept.head,
            context: &kept.context,
            candidates: &kept.candidates,
            fwd: kept.fwd,
            request_time,
            response_time: self.now(),
        };
        if let Some(stale) = self.stale_on_error(&exchanged) {
            return stale;
        }
        let mut response = Response::new(CacheBody::empty());
        *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
        let mut status = CacheStatus::new(CacheOutcome::Generated, Some(kept.context.key.clone()));
        status.fwd = Some(kept.fwd);
        status.detail = Some(CacheStatusDetail::OriginTimeout);
        self.finish(response, status)
    }

    /// Acts on the origin's answer (or its failure) as the policy says, up to the store calls
    /// it needs, which [`complete`](Self::complete) awaits.
    ///
    /// A response to store is teed here into a store that begins entries at once, unless
    /// invalidations must come first: then `leader` goes with it (released when its body is
    /// stored).
    fn settle(
        &self,
        exchanged: &Exchanged<'_>,
        leader: &mut Option<Leader>,
        result: Result<Response<ResB>, S::Error>,
    ) -> Settled<ResB, S::Error> {
        let Exchanged {
            head,
            context,
            candidates,
            fwd,
            request_time,
            response_time,
        } = *exchanged;
        let policy = self.storing_policy(context.mode);

        let response = match result {
            Ok(response) => response,
            Err(error) => {
                // RFC 5861 §4: the origin cannot be reached; a stale response may do.
                return Settled::Done(self.stale_on_error(exchanged).ok_or(error));
            }
        };

        let decision =
            policy.after_response(head, &response, request_time, response_time, candidates);
        // RFC 9111 §4.4, by key: the target's, and its explicit `CacheKey` if it has one (the
        // stored responses of that key describe the same resource, by the caller's choice).
        let explicit =
            (context.explicit_key && !decision.invalidate.is_empty()).then(|| context.key.clone());
        let invalidate: Vec<Arc<str>> = decision
            .invalidate
            .iter()
            .map(|uri| self.shared.key_for(uri))
            .chain(explicit)
            .collect();

        let mut status = CacheStatus::new(CacheOutcome::Miss, Some(context.key.clone()));
        status.fwd = Some(fwd);
        status.fwd_status = Some(response.status());

        let then = match decision.action {
            ResponseAction::Store {
                mut entry,
                mut ttl,
                freshness,
                replaces,
            } if context.cacheable && context.mode != CacheMode::NoStore => {
                if let Some(override_ttl) = context.ttl {
                    // The stored response says what the cache decided, so later lookups agree.
                    let mut response = Arc::unwrap_or_clone(entry).into_response();
                    cache_policy::override_freshness_lifetime(&mut response.headers, override_ttl);
                    entry = Arc::new(ParsedResponse::new(response));
                    ttl = override_ttl;
                }
                let announced_length = content_length(&response);
                let too_large = match (self.shared.max_body_size, announced_length) {
                    (Some(max), Some(len)) => len > max,
                    _ => false,
                };
                if ttl.is_zero() || too_large {
                    status.detail = Some(if too_large {
                        CacheStatusDetail::TooLarge
                    } else {
                        CacheStatusDetail::NotReusable
                    });
                    return Settled::Then {
                        invalidate,
                        then: Then::Respond(self.finish(response.map(CacheBody::origin), status)),
                    };
                }
                status.ttl = Some(if context.ttl.is_some() {
                    ttl
                } else {
                    freshness.time_to_live()
                });
                let superseded: Vec<VariantId> = replaces
                    .iter()
                    .filter_map(|&i| candidates.get(i))
                    .map(|c| c.variant.clone())
                    .filter(|v| *v != VariantId::of(&entry))
                    .collect();
                let options = WriteOptions {
                    ttl,
                    content_length: announced_length,
                };
                let mut tee = Tee {
                    response,
                    entry,
                    generation: context.generation,
                    status,
                    superseded,
                    leader: None,
                };
                if invalidate.is_empty() {
                    if let Some(begun) =
                        self.shared
                            .store
                            .begin_now(&context.key, &tee.entry, options)
                    {
                        tee.leader = leader.take();
                        return Settled::Done(Ok(self.tee(begun, tee, &context.key)));
                    }
                }
                Then::Store(Storing { options, tee })
            }
            ResponseAction::Refresh {
                updates,
                serve,
                head: refreshed,
            } => {
                let updates = with_variants(candidates, updates);
                let mut status = self.served_status(
                    CacheOutcome::Revalidated,
                    context.key.clone(),
                    &serve,
                    candidates,
                );
                status.fwd = Some(fwd);
                status.fwd_status = Some(StatusCode::NOT_MODIFIED);
                status.stored = true;
                Then::Refresh {
                    updates,
                    serve,
                    refreshed,
                    status,
                }
            }
            ResponseAction::UpdateFromHead { updates, remove } => Then::UpdateFromHead {
                updates: with_variants(candidates, updates),
                remove: variants_at(candidates, remove),
                response: self.finish(response.map(CacheBody::origin), status),
            },
            ResponseAction::ServeStale(serve) => {
                let mut status = self.served_status(
                    CacheOutcome::Stale,
                    context.key.clone(),
                    &serve,
                    candidates,
                );
                status.fwd = Some(fwd);
                status.fwd_status = Some(response.status());
                status.detail = Some(CacheStatusDetail::StaleIfError);
                Then::Respond(self.serve_stored(serve, candidates, &head.method, status))
            }
            ResponseAction::Refetch => {
                // The 304 matched no stored response and the client did not ask for one. The
                // request body is gone, so the request cannot be repeated: answer 502 rather
                // than pass a 304 to a client that cannot use it.
                status.detail = Some(CacheStatusDetail::Unmatched304);
                Then::Respond(self.finish(bad_gateway(), status))
            }
            ResponseAction::PassThrough(reason) => {
                status.detail = Some(CacheStatusDetail::NotStorable(reason));
                Then::Respond(self.finish(response.map(CacheBody::origin), status))
            }
            _ => Then::Respond(self.finish(response.map(CacheBody::origin), status)),
        };
        Settled::Then { invalidate, then }
    }

    /// RFC 9111 §4.4: removes what is stored under the invalidated keys, after marking them
    /// invalidated so that no write begun earlier lands afterwards.
    async fn invalidate(&self, keys: Vec<Arc<str>>) {
        for key in keys {
            self.shared.invalidations.invalidate(&key);
            if let Err(error) = self.shared.store.remove(&key, None).await {
                log::store_error("invalidate", &error);
            }
        }
    }

    /// Writes the freshened metadata of stored variants (RFC 9111 §4.3.4), unless an
    /// invalidation of the key began since the request read them: then the freshening would
    /// bring back what the invalidation removed. One that lands in the middle of the writes
    /// has what they wrote removed again.
    async fn apply_updates(&self, context: &Keyed, updates: Vec<(VariantId, Update)>) {
        let invalidations = &self.shared.invalidations;
        let key = &*context.key;
        let mut written = Vec::new();
        for (variant, update) in updates {
            if !invalidations.unchanged_since(context.generation) {
                break;
            }
            let result = self
                .shared
                .store
                .update(key, &variant, update.entry, update.ttl)
                .await;
            match result {
                Ok(()) => written.push(variant),
                Err(error) => log::store_error("update", &error),
            }
        }
        if !invalidations.unchanged_since(context.generation) {
            self.remove_variants(key, written).await;
        }
    }

    async fn remove_variants(&self, key: &str, variants: Vec<VariantId>) {
        for variant in variants {
            if let Err(error) = self.shared.store.remove(key, Some(&variant)).await {
                log::store_error("remove", &error);
            }
        }
    }

    fn limit(&self, writer: Box<dyn EntryWriter>) -> Box<dyn EntryWriter> {
        match self.shared.max_body_size {
            Some(limit) => Box::new(LimitedWriter {
                inner: writer,
                written: 0,
                limit,
            }),
            None => writer,
        }
    }

    /// RFC 5861 §3: refreshes a stale response after it was served, in a spawned task, at most
    /// one per key at a time.
    fn revalidate_in_background(
        &self,
        request: Request<ReqB>,
        context: Keyed,
        candidates: Entries,
        revalidation: Revalidation,
    ) {
        // Nothing to do when a refresh (or a miss) for this key is already at the origin, or
        // when as many refreshes as allowed are under way: the stale response was served, and
        // a later request refreshes it.
        let Some(slot) = self.shared.background_refreshes.take() else {
            return;
        };
        let Some(leader) = self.shared.in_flight.lead(&context.key) else {
            return;
        };
        let exchange = self.to_owned();
        tokio::spawn(async move {
            let _slot = slot;
            let fwd = revalidation.reason.cache_status_fwd();
            let response = exchange
                .go_to_origin(Box::new(Forward {
                    request,
                    context,
                    trip: Trip {
                        candidates,
                        revalidation: Some(Box::new(revalidation)),
                        leader: Some(leader),
                        fwd,
                    },
                    coalesce: false,
                }))
                .await;
            if let Ok(response) = response {
                // Drain the body so that a teed response is stored.
                let mut body = std::pin::pin!(response.into_body());
                while let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
                    if frame.is_err() {
                        break;
                    }
                }
            }
        });
    }
}

/// Pairs updates with the variant ids of the candidates they update.
fn with_variants(candidates: &[StoredEntry], updates: Vec<Update>) -> Vec<(VariantId, Update)> {
    updates
        .into_iter()
        .filter_map(|u| Some((candidates.get(u.index)?.variant.clone(), u)))
        .collect()
}

/// The variant ids of the candidates at `indices`.
fn variants_at(candidates: &[StoredEntry], indices: Vec<usize>) -> Vec<VariantId> {
    indices
        .into_iter()
        .filter_map(|i| Some(candidates.get(i)?.variant.clone()))
        .collect()
}

fn bad_gateway<B>() -> Response<CacheBody<B>> {
    let mut response = Response::new(CacheBody::empty());
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

fn content_length<B>(response: &Response<B>) -> Option<u64> {
    response
        .headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Enforces the layer's body size limit on top of the store's own.
struct LimitedWriter {
    inner: Box<dyn EntryWriter>,
    written: u64,
    limit: u64,
}

impl EntryWriter for LimitedWriter {
    fn write(&mut self, chunk: bytes::Bytes) -> Result<(), StoreError> {
        self.written += chunk.len() as u64;
        if self.written > self.limit {
            return Err(StoreError::TooLarge { limit: self.limit });
        }
        self.inner.write(chunk)
    }

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), StoreError>> {
        self.inner.poll_ready(cx)
    }

    fn commit(self: Box<Self>) -> cache_store::BoxFuture<'static, Result<(), StoreError>> {
        self.inner.commit()
    }
}
