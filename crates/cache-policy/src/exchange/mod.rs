//! One request's flow through a cache, as a sans-IO state machine: events and the time in,
//! what to do next out.
//!
//! ```text
//!  Exchange::new(request, key, overrides)
//!        │ reads_store()? the driver reads the stored responses for the key
//!        ▼
//!  on_stored(candidates, now) ──► Next::Reply ─────────────► answer; done
//!        │                        Next::ReplyAndRefresh ───► answer, then the origin in the
//!        │                                                   background, as below
//!        └─► Next::Forward ─► depart(request): validators set, the head kept
//!                 │ the driver sends the request
//!                 ├─► on_response(head, times) ─► Answer { reply, effects }
//!                 ├─► on_error(now) ────────────► a stale reply (RFC 5861 §4), or the error
//!                 └─► on_timeout(now) ──────────► a stale reply, or 504
//! ```
//!
//! The driver carries out the [`Effects`] in their order (invalidations first, RFC 9111
//! §4.4) and sends the [`Reply`]: the origin's response, a stored one (the exchange names it
//! by a [`CandidateId`]), or one the cache generates. It adds nothing of its own but IO:
//! coalescing, background tasks and the store are its business, the rules are this one's.

mod actions;
mod mode;
mod rules;
#[cfg(test)]
mod tests;

use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{CACHE_CONTROL, CONTENT_LENGTH};
use http::{HeaderMap, Method, Request, StatusCode, Uri};

pub use actions::{Answer, CandidateId, Effects, Freshen, Next, Reply, Respond, StoreResponse};
pub use mode::CacheMode;
pub use rules::CacheRules;

use crate::{
    CacheOutcome, CacheStatus, CacheStatusDetail, CacheStatusFwd, Candidate, ForwardReason, Lookup,
    ParsedResponse, RequestDirectives, RequestHead, ResponseAction, ResponseHead, Revalidation,
    Serve,
};

/// The stored responses for one key, as a driver holds them: anything that dereferences to a
/// slice of [`Candidate`]s (a `Vec<StoredResponse>`, a store's shared list).
pub trait Candidates: Deref<Target = [Self::Candidate]> {
    /// One stored response.
    type Candidate: Candidate;
}

impl<L, C> Candidates for L
where
    L: Deref<Target = [C]>,
    C: Candidate,
{
    type Candidate = C;
}

/// What the caller chose for one request, over the cache's configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Overrides {
    /// How the request uses the cache.
    pub mode: CacheMode,
    /// The freshness lifetime to store the response with, in place of the one it states
    /// (see [`override_freshness_lifetime`](crate::override_freshness_lifetime)).
    pub ttl: Option<Duration>,
    /// Whether the caller chose the key, rather than deriving it from the target URI. Only
    /// such a key lets methods other than GET and HEAD be cached (a key of their body, say),
    /// and an unsafe request with one invalidates it too.
    pub explicit_key: bool,
    /// Whether the caller can refresh a stale response after answering with it (RFC 5861 §3).
    /// Without, `stale-while-revalidate` revalidates before answering.
    pub background_refresh: bool,
}

impl Overrides {
    /// The default overrides with `mode`.
    pub fn mode(mut self, mode: CacheMode) -> Self {
        self.mode = mode;
        self
    }

    /// With a freshness lifetime override.
    pub fn ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    /// With a key the caller chose.
    pub fn explicit_key(mut self, explicit: bool) -> Self {
        self.explicit_key = explicit;
        self
    }

    /// Whether a stale response may be refreshed in the background.
    pub fn background_refresh(mut self, can: bool) -> Self {
        self.background_refresh = can;
        self
    }
}

/// The parts of the request kept while it is at the origin.
#[derive(Debug)]
struct SentHead {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl<'a> From<&'a SentHead> for RequestHead<'a> {
    fn from(head: &'a SentHead) -> Self {
        RequestHead {
            method: &head.method,
            uri: &head.uri,
            headers: &head.headers,
        }
    }
}

/// One request's exchange with the cache and, when needed, the origin.
///
/// ```
/// use std::sync::Arc;
/// use std::time::{Duration, SystemTime};
/// use cache_policy::{CacheRules, CacheOutcome, Exchange, Next, Overrides, Respond, StoredResponse};
/// use http::{Request, Response};
///
/// let rules = CacheRules::default();
/// let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// let mut request = Request::get("http://example.com/").body(()).unwrap();
/// let key: Arc<str> = "http://example.com/".into();
///
/// // Nothing stored: go to the origin.
/// let mut exchange: Exchange<Vec<StoredResponse>> =
///     Exchange::new(&rules, &request, key.clone(), Overrides::default());
/// assert!(exchange.reads_store());
/// let Next::Forward { .. } = exchange.on_stored(&rules, &request, Vec::new(), t0) else { panic!() };
/// exchange.depart(&mut request);
///
/// // The origin answers: pass its response on, and store it.
/// let response = Response::builder().header("cache-control", "max-age=60").body(()).unwrap();
/// let answer = exchange.on_response(&rules, &response, t0, t0);
/// assert!(matches!(answer.reply.respond, Respond::Origin));
/// let stored = answer.effects.store.expect("storable").entry.response().clone();
///
/// // Ten seconds later: a hit.
/// let mut exchange = Exchange::new(&rules, &request, key, Overrides::default());
/// let later = t0 + Duration::from_secs(10);
/// let Next::Reply(reply) = exchange.on_stored(&rules, &request, vec![stored], later) else { panic!() };
/// assert_eq!(reply.status.outcome, CacheOutcome::Hit);
/// let Respond::Stored { head, .. } = reply.respond else { panic!() };
/// assert_eq!(head.headers["age"], "10");
/// ```
#[derive(Debug)]
pub struct Exchange<L> {
    key: Arc<str>,
    overrides: Overrides,
    /// Whether responses to this request may be looked up and stored: a configured method,
    /// and for methods other than GET and HEAD a key the caller chose. A POST response is
    /// never reused for a POST with another body.
    cacheable: bool,
    candidates: L,
    /// The validators to send, when revalidating (boxed: only revalidations have one).
    revalidation: Option<Box<Revalidation>>,
    /// Why the request goes to the origin (RFC 9211 `fwd`).
    fwd: CacheStatusFwd,
    /// The request as sent, once it departed.
    sent: Option<Box<SentHead>>,
}

impl<L: Candidates + Default> Exchange<L> {
    /// Starts the exchange of `request`, whose responses are stored under `key`.
    pub fn new<'r>(
        rules: &CacheRules,
        request: impl Into<RequestHead<'r>>,
        key: Arc<str>,
        overrides: Overrides,
    ) -> Self {
        let request = request.into();
        let cacheable = overrides.mode != CacheMode::Disabled
            && rules
                .policy()
                .options()
                .cacheable_methods
                .contains(request.method)
            && (matches!(*request.method, Method::GET | Method::HEAD) || overrides.explicit_key);
        Exchange {
            key,
            overrides,
            cacheable,
            candidates: L::default(),
            revalidation: None,
            fwd: CacheStatusFwd::Miss,
            sent: None,
        }
    }
}

impl<L: Candidates> Exchange<L> {
    /// The primary key the exchange stores and reads under.
    pub fn key(&self) -> &Arc<str> {
        &self.key
    }

    /// The request's cache mode.
    pub fn mode(&self) -> CacheMode {
        self.overrides.mode
    }

    /// Whether the driver reads the stored responses for the key before
    /// [`on_stored`](Self::on_stored); when not, it passes none.
    pub fn reads_store(&self) -> bool {
        self.cacheable && self.overrides.mode.reads_cache()
    }

    /// Whether the request may wait for another request for its key already at the origin,
    /// and reuse what that one stores: not when its mode skips the stored responses.
    pub fn may_reuse_others(&self) -> bool {
        self.overrides.mode.reads_cache()
    }

    /// The stored response `id` names.
    pub fn candidate(&self, id: CandidateId) -> Option<&L::Candidate> {
        self.candidates.get(id.0)
    }

    /// Event: the stored responses for the key were read (none when the store was not read,
    /// or failed). Says whether to answer from the cache or go to the origin. May come again
    /// for the same exchange, after waiting for another request for the key.
    pub fn on_stored<'r>(
        &mut self,
        rules: &CacheRules,
        request: impl Into<RequestHead<'r>>,
        candidates: L,
        now: SystemTime,
    ) -> Next {
        let request = request.into();
        self.candidates = candidates;
        self.revalidation = None;
        let mode = self.overrides.mode;
        let reads_cache = mode.reads_cache();
        let lookup = if self.reads_store() {
            rules
                .lookup_policy(mode)
                .lookup(request, &self.candidates, now)
        } else if reads_cache && only_if_cached(request.headers) {
            // RFC 9111 §5.2.1.7: not even a request the cache cannot answer goes to the origin.
            // (A mode that skips the stored responses goes there as it says: the explicit mode
            // wins over the header.)
            Lookup::GatewayTimeout
        } else if !self.cacheable {
            Lookup::Forward(ForwardReason::Method)
        } else {
            Lookup::Forward(ForwardReason::UriMiss)
        };
        let forcing = mode.forces_cache();
        let method = request.method;

        let coalesce = match lookup {
            Lookup::Fresh(serve) | Lookup::NotModified(serve) => {
                return Next::Reply(self.serve(serve, CacheOutcome::Hit, method));
            }
            Lookup::Stale {
                serve, revalidate, ..
            } => {
                let outcome = if serve.freshness.is_fresh() {
                    CacheOutcome::Hit
                } else {
                    CacheOutcome::Stale
                };
                match revalidate {
                    // RFC 5861 §3 asks for a refresh after answering; without a way to do
                    // one, revalidate before answering.
                    Some(revalidation) if !forcing && !self.overrides.background_refresh => {
                        self.revalidate(revalidation);
                        self.fwd = CacheStatusFwd::Stale;
                        false
                    }
                    Some(revalidation) if !forcing => {
                        let reply = self.serve(serve, outcome, method);
                        self.revalidate(revalidation);
                        return Next::ReplyAndRefresh(reply);
                    }
                    _ => return Next::Reply(self.serve(serve, outcome, method)),
                }
            }
            Lookup::GatewayTimeout => return Next::Reply(self.only_if_cached()),
            Lookup::Revalidate(_) | Lookup::Forward(_) if mode == CacheMode::OnlyIfCached => {
                return Next::Reply(self.only_if_cached());
            }
            // Force-cache found nothing usable: a plain request, stored by the usual rules.
            Lookup::Revalidate(revalidation) if forcing => {
                self.fwd = revalidation.reason.cache_status_fwd();
                false
            }
            Lookup::Revalidate(revalidation) => {
                self.revalidate(revalidation);
                true
            }
            Lookup::Forward(reason) if reads_cache => {
                self.fwd = reason.cache_status_fwd();
                self.cacheable && reason != ForwardReason::Method
            }
            Lookup::Forward(_) => {
                self.fwd = CacheStatusFwd::Request;
                false
            }
        };
        Next::Forward { coalesce }
    }

    fn revalidate(&mut self, revalidation: Revalidation) {
        self.fwd = revalidation.reason.cache_status_fwd();
        self.revalidation = Some(Box::new(revalidation));
    }

    /// Prepares the request to send to the origin: the validators of a revalidation
    /// (RFC 9111 §4.3.1) replace the client's, and `Host` agrees with an absolute target
    /// ([`align_host`](crate::align_host)). Keeps the request head, which the origin's answer
    /// is judged against.
    pub fn depart<B>(&mut self, request: &mut Request<B>) {
        crate::align_host(request);
        self.sent = Some(Box::new(SentHead {
            method: request.method().clone(),
            uri: request.uri().clone(),
            headers: request.headers().clone(),
        }));
        if let Some(revalidation) = self.revalidation.take() {
            revalidation.apply_to(request.headers_mut());
        }
    }

    /// Event: the origin answered with `response` (its head), requested at `request_time`
    /// and received at `response_time`. Says what to answer and which store calls to make.
    pub fn on_response<'r>(
        &mut self,
        rules: &CacheRules,
        response: impl Into<ResponseHead<'r>>,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Answer {
        let response = response.into();
        let mut status = CacheStatus::new(CacheOutcome::Miss, Some(self.key.clone()));
        status.fwd = Some(self.fwd);
        status.fwd_status = Some(response.status);
        let mode = self.overrides.mode;
        let Some(sent) = self.sent.take().filter(|_| mode != CacheMode::Disabled) else {
            // The cache is bypassed, or the driver did not say what it sent: pass the answer
            // on, and store nothing.
            return Answer::pass(status);
        };
        let decision = rules.storing_policy(mode).after_response(
            &*sent,
            response,
            request_time,
            response_time,
            &self.candidates,
        );
        let mut effects = Effects {
            invalidate_own_key: self.overrides.explicit_key && !decision.invalidate.is_empty(),
            invalidate: decision.invalidate,
            ..Effects::default()
        };
        let respond = match decision.action {
            ResponseAction::Store {
                entry,
                ttl,
                freshness,
                replaces,
            } if self.cacheable && mode != CacheMode::NoStore => {
                let ttl = self.overrides.ttl.unwrap_or(ttl);
                let content_length = content_length(response.headers);
                let too_large = matches!(
                    (rules.body_size_limit(), content_length),
                    (Some(max), Some(length)) if length > max
                );
                if too_large {
                    status.detail = Some(CacheStatusDetail::TooLarge);
                } else if ttl.is_zero() {
                    status.detail = Some(CacheStatusDetail::NotReusable);
                } else {
                    status.ttl = Some(
                        self.overrides
                            .ttl
                            .unwrap_or_else(|| freshness.time_to_live()),
                    );
                    let entry = match self.overrides.ttl {
                        // The stored response says what the cache decided, so later lookups
                        // agree.
                        Some(lifetime) => with_lifetime(entry, lifetime),
                        None => entry,
                    };
                    effects.store = Some(StoreResponse {
                        entry,
                        ttl,
                        content_length,
                        superseded: self.ids(replaces),
                    });
                }
                Respond::Origin
            }
            ResponseAction::Refresh {
                updates,
                serve,
                head,
            } => {
                effects.freshen = self.freshenings(updates);
                status = self.served_status(CacheOutcome::Revalidated, &serve);
                status.fwd = Some(self.fwd);
                status.fwd_status = Some(StatusCode::NOT_MODIFIED);
                status.stored = true;
                self.stored(serve, head, &sent.method)
            }
            ResponseAction::UpdateFromHead { updates, remove } => {
                effects.freshen = self.freshenings(updates);
                effects.remove = self.ids(remove);
                Respond::Origin
            }
            ResponseAction::ServeStale(serve) => {
                let fwd_status = status.fwd_status;
                let reply = self.serve(serve, CacheOutcome::Stale, &sent.method);
                status = reply.status;
                status.fwd = Some(self.fwd);
                status.fwd_status = fwd_status;
                status.detail = Some(CacheStatusDetail::StaleIfError);
                reply.respond
            }
            ResponseAction::Refetch => {
                // The 304 matched no stored response and the client did not ask for one. The
                // request cannot be repeated by the cache (its body is gone): answer 502 rather
                // than pass on a 304 the client cannot use.
                status.detail = Some(CacheStatusDetail::Unmatched304);
                Respond::Generated(StatusCode::BAD_GATEWAY)
            }
            ResponseAction::PassThrough(reason) => {
                status.detail = Some(CacheStatusDetail::NotStorable(reason));
                Respond::Origin
            }
            _ => Respond::Origin,
        };
        self.sent = Some(sent);
        Answer {
            reply: Reply { respond, status },
            effects,
        }
    }

    /// Event: the origin could not be reached at `now`. RFC 5861 §4: a stale response may
    /// answer instead; `None` when none may, and the error goes to the client.
    pub fn on_error(&mut self, rules: &CacheRules, now: SystemTime) -> Option<Reply> {
        let sent = self.sent.as_deref()?;
        let serve =
            rules
                .storing_policy(self.overrides.mode)
                .on_error(sent, &self.candidates, now)?;
        let mut reply = self.serve(serve, CacheOutcome::Stale, &sent.method);
        reply.status.fwd = Some(self.fwd);
        reply.status.detail = Some(CacheStatusDetail::StaleIfError);
        Some(reply)
    }

    /// Event: the origin sent no response head within the driver's time limit, at `now`. A
    /// stale response where RFC 5861 §4 allows one, else 504.
    pub fn on_timeout(&mut self, rules: &CacheRules, now: SystemTime) -> Reply {
        if let Some(stale) = self.on_error(rules, now) {
            return stale;
        }
        let mut reply = self.gateway_timeout(CacheStatusDetail::OriginTimeout);
        reply.status.fwd = Some(self.fwd);
        reply
    }

    /// RFC 9111 §5.2.1.7: nothing usable is stored for an `only-if-cached` request.
    fn only_if_cached(&self) -> Reply {
        self.gateway_timeout(CacheStatusDetail::OnlyIfCached)
    }

    /// A 504 the cache generates, for `detail`.
    fn gateway_timeout(&self, detail: CacheStatusDetail) -> Reply {
        let mut status = CacheStatus::new(CacheOutcome::Generated, Some(self.key.clone()));
        status.detail = Some(detail);
        Reply {
            respond: Respond::Generated(StatusCode::GATEWAY_TIMEOUT),
            status,
        }
    }

    /// Answers with the stored response `serve` chose.
    fn serve(&self, serve: Serve, outcome: CacheOutcome, method: &Method) -> Reply {
        let status = self.served_status(outcome, &serve);
        let respond = match self.candidates.get(serve.index) {
            Some(candidate) => {
                let head = serve.response_head(candidate.stored_response());
                self.stored(serve, head, method)
            }
            // The policy only chooses among the candidates it was given.
            None => Respond::Generated(StatusCode::BAD_GATEWAY),
        };
        Reply { respond, status }
    }

    /// `head` with the stored body of the candidate `serve` chose (none for a 304 or HEAD).
    fn stored(&self, serve: Serve, head: http::response::Parts, method: &Method) -> Respond {
        let with_body = *method != Method::HEAD && !serve.not_modified;
        Respond::Stored {
            head,
            body: with_body.then_some(CandidateId(serve.index)),
        }
    }

    /// The status of a response served from the store.
    fn served_status(&self, outcome: CacheOutcome, serve: &Serve) -> CacheStatus {
        let mut status = CacheStatus::new(outcome, Some(self.key.clone()));
        status.age = Some(serve.freshness.age);
        status.ttl = Some(serve.freshness.time_to_live());
        status.stored_at = self
            .candidates
            .get(serve.index)
            .map(|c| c.stored_response().response_time);
        status
    }

    /// The handles of the candidates at `indices`.
    fn ids(&self, indices: Vec<usize>) -> Vec<CandidateId> {
        indices
            .into_iter()
            .filter(|&i| i < self.candidates.len())
            .map(CandidateId)
            .collect()
    }

    fn freshenings(&self, updates: Vec<crate::Update>) -> Vec<Freshen> {
        updates
            .into_iter()
            .filter(|update| update.index < self.candidates.len())
            .map(|update| Freshen {
                candidate: CandidateId(update.index),
                entry: update.entry,
                ttl: update.ttl,
            })
            .collect()
    }
}

impl Answer {
    fn pass(status: CacheStatus) -> Self {
        Answer {
            reply: Reply {
                respond: Respond::Origin,
                status,
            },
            effects: Effects::default(),
        }
    }
}

/// `entry` with its freshness lifetime overridden.
fn with_lifetime(entry: Arc<ParsedResponse>, lifetime: Duration) -> Arc<ParsedResponse> {
    let mut response = Arc::unwrap_or_clone(entry).into_response();
    crate::override_freshness_lifetime(&mut response.headers, lifetime);
    Arc::new(ParsedResponse::new(response))
}

/// Whether the request's `Cache-Control` carries `only-if-cached`.
fn only_if_cached(headers: &HeaderMap) -> bool {
    headers.contains_key(CACHE_CONTROL) && RequestDirectives::from_headers(headers).only_if_cached
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}
