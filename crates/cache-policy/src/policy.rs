//! The state machine: [`CachePolicy::lookup`] before the origin, [`CachePolicy::after_response`]
//! after it, [`CachePolicy::on_error`] when it cannot be reached.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{self, AUTHORIZATION};
use http::{HeaderMap, Method, StatusCode, Uri};

use crate::decision::{
    AfterResponse, ForwardReason, Lookup, NotStorable, ResponseAction, RevalidateReason,
    Revalidation, Serve, StaleReason, Update,
};
use crate::directives::{MaxStale, RequestDirectives, ResponseDirectives};
use crate::freshness::{self, date_value, Freshness};
use crate::headers::{headers_to_store, http_date, update_stored_headers};
use crate::parsed::{Candidate, Facts, FactsOf, ParsedResponse, Scan};
use crate::uri::{resolve, same_origin, target_uri};
use crate::{validation, vary, PolicyOptions, SharedCookies, StoredResponse};

/// A stored response freshened by a 304 or a HEAD response.
struct Freshened {
    /// What the client whose request brought the new header lines receives.
    served: ParsedResponse,
    /// What is written back for later requests, if storing allows it.
    update: Option<Update>,
}

/// What storing does with the `Set-Cookie` lines of a response (see [`SharedCookies`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cookies {
    /// Store them (a private cache, or an explicitly shareable response).
    Keep,
    /// Store the response without them.
    Strip,
    /// Do not store the response.
    Refuse,
}

/// How long a stale response with validators is kept so it can be revalidated, at least.
const REVALIDATION_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// The parts of a request the policy reads. Build one from a `Request<B>` or its `Parts`.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request target, in absolute form or origin form (then `Host` gives the authority).
    pub uri: &'a Uri,
    /// The request header lines.
    pub headers: &'a HeaderMap,
}

impl<'a> From<&'a http::request::Parts> for RequestHead<'a> {
    fn from(parts: &'a http::request::Parts) -> Self {
        RequestHead {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
        }
    }
}

impl<'a, B> From<&'a http::Request<B>> for RequestHead<'a> {
    fn from(request: &'a http::Request<B>) -> Self {
        RequestHead {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
        }
    }
}

/// The parts of a response the policy reads. Build one from a `Response<B>` or its `Parts`.
#[derive(Debug, Clone, Copy)]
pub struct ResponseHead<'a> {
    /// The response status.
    pub status: StatusCode,
    /// The response header lines.
    pub headers: &'a HeaderMap,
}

impl<'a> From<&'a http::response::Parts> for ResponseHead<'a> {
    fn from(parts: &'a http::response::Parts) -> Self {
        ResponseHead {
            status: parts.status,
            headers: &parts.headers,
        }
    }
}

impl<'a, B> From<&'a http::Response<B>> for ResponseHead<'a> {
    fn from(response: &'a http::Response<B>) -> Self {
        ResponseHead {
            status: response.status(),
            headers: response.headers(),
        }
    }
}

/// The RFC 9111 state machine. It holds only options: every decision takes the request, the
/// stored candidates and the current time, and returns what to do next.
///
/// # Example
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use cache_policy::{CachePolicy, Lookup, ResponseAction};
/// use http::{Request, Response};
///
/// let policy = CachePolicy::default();
/// let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// let request = Request::get("http://example.com/a").body(()).unwrap();
///
/// // Nothing stored yet: go to the origin.
/// let candidates: Vec<cache_policy::StoredResponse> = Vec::new();
/// assert!(matches!(policy.lookup(&request, &candidates, t0), Lookup::Forward(_)));
///
/// // The origin answers; the policy says to store it.
/// let response = Response::builder()
///     .header("cache-control", "max-age=60")
///     .body(())
///     .unwrap();
/// let decision = policy.after_response(&request, &response, t0, t0, &candidates);
/// let ResponseAction::Store { entry, .. } = decision.action else { panic!() };
///
/// // Thirty seconds later the stored response is fresh, with `Age: 30`.
/// let later = t0 + Duration::from_secs(30);
/// let stored = [entry];
/// let Lookup::Fresh(serve) = policy.lookup(&request, &stored, later) else { panic!() };
/// assert_eq!(serve.response_head(&stored[serve.index]).headers["age"], "30");
/// ```
#[derive(Debug, Clone, Default)]
pub struct CachePolicy {
    options: PolicyOptions,
}

/// What orders stored responses from oldest to most recent (§4.1: "the most recent response,
/// as determined by the Date header field"), read from the parsed `Date` when there is one.
fn recency<C: Candidate>(candidate: &C) -> (SystemTime, SystemTime) {
    let stored = candidate.stored_response();
    let date = match candidate.parsed_response() {
        Some(parsed) => parsed.facts().date,
        None => date_value(stored),
    };
    (date, stored.response_time)
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Whether a stored response to `stored` may answer a request with method `presented` (RFC
/// 9111 §4): the same method, or a stored GET for a HEAD (§4.3.5).
fn method_allows(stored: &Method, presented: &Method) -> bool {
    stored == presented || (*stored == Method::GET && *presented == Method::HEAD)
}

/// Statuses whose caching requirements this cache implements (RFC 9111 §3, must-understand):
/// every final status with defined semantics, except 206 and 304, which are never stored.
fn is_understood(status: StatusCode) -> bool {
    status.canonical_reason().is_some()
        && !status.is_informational()
        && status != StatusCode::PARTIAL_CONTENT
        && status != StatusCode::NOT_MODIFIED
}

fn is_conditional(headers: &HeaderMap) -> bool {
    headers.contains_key(header::IF_NONE_MATCH) || headers.contains_key(header::IF_MODIFIED_SINCE)
}

/// The request fields that change a lookup, found in one pass over the field names instead of
/// one hash lookup each (most requests carry none of them).
#[derive(Default)]
struct RequestScan {
    /// `Range`.
    range: bool,
    /// `If-Match`, `If-Unmodified-Since` or `If-Range`.
    precondition: bool,
    /// `Cache-Control` or `Pragma`.
    directives: bool,
    /// `If-None-Match` or `If-Modified-Since`.
    conditional: bool,
}

impl RequestScan {
    fn new(headers: &HeaderMap) -> Self {
        let mut scan = RequestScan::default();
        for name in headers.keys() {
            if name == header::RANGE {
                scan.range = true;
            } else if name == header::IF_MATCH
                || name == header::IF_UNMODIFIED_SINCE
                || name == header::IF_RANGE
            {
                scan.precondition = true;
            } else if name == header::CACHE_CONTROL || name == header::PRAGMA {
                scan.directives = true;
            } else if name == header::IF_NONE_MATCH || name == header::IF_MODIFIED_SINCE {
                scan.conditional = true;
            }
        }
        scan
    }
}

impl CachePolicy {
    /// A policy with these options.
    pub fn new(options: PolicyOptions) -> Self {
        CachePolicy { options }
    }

    /// The options of this policy.
    pub fn options(&self) -> &PolicyOptions {
        &self.options
    }

    /// The target URI of a request (RFC 9110 §7.1, RFC 9112 §3.3): its request-target in
    /// absolute form, or, in origin form, [`origin_form_scheme`] with the authority of its
    /// one `Host` line. `None` when no authority is known or `Host` is ambiguous (see
    /// [`effective_uri`](crate::effective_uri)).
    ///
    /// [`origin_form_scheme`]: PolicyOptions::origin_form_scheme
    ///
    /// ```
    /// use cache_policy::{CachePolicy, PolicyOptions};
    /// use http::{uri::Scheme, Request};
    ///
    /// let policy = CachePolicy::new(PolicyOptions::default().origin_form_scheme(Scheme::HTTPS));
    /// let request = Request::get("/a").header("host", "example.com").body(()).unwrap();
    /// assert_eq!(policy.target_uri(&request).unwrap(), "https://example.com/a");
    /// ```
    pub fn target_uri<'r>(&self, request: impl Into<RequestHead<'r>>) -> Option<Uri> {
        let request = request.into();
        target_uri(
            request.uri,
            request.headers,
            &self.options.origin_form_scheme,
        )
    }

    fn request_directives(&self, headers: &HeaderMap) -> RequestDirectives {
        if self.options.ignore_rules {
            // Only the client's refusal to talk to the origin still counts.
            return RequestDirectives {
                only_if_cached: RequestDirectives::from_headers(headers).only_if_cached,
                ..RequestDirectives::default()
            };
        }
        RequestDirectives::from_headers(headers)
    }

    /// RFC 9111 §4.2: the freshness of a stored response at `now`.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use cache_policy::{CachePolicy, StoredResponse};
    /// use http::{HeaderMap, Method, StatusCode, Uri};
    ///
    /// let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    /// let mut headers = HeaderMap::new();
    /// headers.insert("cache-control", "max-age=100".parse().unwrap());
    /// headers.insert("age", "10".parse().unwrap());
    /// let stored = StoredResponse {
    ///     method: Method::GET, uri: Uri::from_static("http://a/"), status: StatusCode::OK,
    ///     headers, vary_request_headers: HeaderMap::new(), request_time: t0, response_time: t0,
    /// };
    /// let freshness = CachePolicy::default().freshness(&stored, t0 + Duration::from_secs(5));
    /// assert_eq!(freshness.age, Duration::from_secs(15));
    /// assert_eq!(freshness.time_to_live(), Duration::from_secs(85));
    /// ```
    pub fn freshness(&self, stored: &StoredResponse, now: SystemTime) -> Freshness {
        self.freshness_of(stored, &Facts::of(stored), now)
    }

    /// The freshness of `stored`, whose header values `facts` holds parsed, at `now`.
    fn freshness_of(&self, stored: &StoredResponse, facts: &Facts, now: SystemTime) -> Freshness {
        let (cc, use_expires) = facts.directives(&self.options);
        let (lifetime, source) = freshness::lifetime(stored, facts, cc, use_expires, &self.options);
        Freshness {
            lifetime,
            age: facts.current_age(stored, now),
            source,
        }
    }

    /// Whether directives forbid serving this response stale (RFC 9111 §4.2.4): `no-cache`,
    /// `must-revalidate`, and in a shared cache `proxy-revalidate` or `s-maxage`.
    fn forbids_stale(&self, cc: &ResponseDirectives) -> bool {
        if self.options.ignore_rules {
            return false;
        }
        cc.no_cache.is_whole()
            || cc.must_revalidate
            || (self.options.shared && (cc.proxy_revalidate || cc.s_maxage.is_some()))
    }

    /// What storing does with the `Set-Cookie` lines of a response whose governing directives
    /// are `cc` and whose `Expires` counts when `expires` (see [`SharedCookies`]).
    fn cookies(&self, cc: &ResponseDirectives, expires: bool) -> Cookies {
        if !self.options.shared {
            return Cookies::Keep;
        }
        // Named by a qualified `no-cache` or `private`: not stored anyway (§5.2.2.4, §5.2.2.7).
        let named = |fields: &[http::HeaderName]| fields.contains(&header::SET_COOKIE);
        if named(cc.no_cache.fields()) || named(cc.private.fields()) {
            return Cookies::Keep;
        }
        let explicit = cc.public || cc.max_age.is_some() || cc.s_maxage.is_some() || expires;
        match self.options.shared_cookies {
            SharedCookies::Refuse => Cookies::Refuse,
            _ if explicit => Cookies::Keep,
            SharedCookies::RequireExplicit => Cookies::Refuse,
            SharedCookies::StripUnlessExplicit => Cookies::Strip,
        }
    }

    fn stale_while_revalidate(&self, cc: &ResponseDirectives) -> Duration {
        let configured = self.options.serve_stale.default_stale_while_revalidate;
        let directive = match (
            self.options.serve_stale.use_directives,
            cc.stale_while_revalidate,
        ) {
            (true, Some(s)) => Duration::from_secs(s),
            _ => Duration::ZERO,
        };
        directive.max(configured)
    }

    fn stale_if_error(&self, cc: &ResponseDirectives, request: &RequestDirectives) -> Duration {
        let configured = self.options.serve_stale.default_stale_if_error;
        if !self.options.serve_stale.use_directives {
            return configured;
        }
        // RFC 5861 §4: the request directive, when present, says what the client accepts.
        if let Some(s) = request.stale_if_error {
            return Duration::from_secs(s);
        }
        cc.stale_if_error
            .map(Duration::from_secs)
            .unwrap_or(Duration::ZERO)
            .max(configured)
    }

    /// The candidate that would answer `request` (RFC 9111 §4.1: same method, matching `Vary`;
    /// the most recent by `Date` when several match), and whether any candidate had a usable
    /// method at all.
    fn select<'c, C: Candidate>(
        &self,
        request: RequestHead<'_>,
        candidates: &'c [C],
    ) -> (Option<(usize, &'c StoredResponse)>, bool) {
        let mut any_method_match = false;
        let mut best: Option<(usize, &'c C)> = None;
        for (index, candidate) in candidates.iter().enumerate() {
            let stored = candidate.stored_response();
            if !method_allows(&stored.method, request.method) {
                continue;
            }
            // Storing never keeps these; a store that hands one over (damaged, or written by
            // something else) must not have it served as a full response.
            if stored.status == StatusCode::PARTIAL_CONTENT
                || stored.status == StatusCode::NOT_MODIFIED
                || stored.status.is_informational()
            {
                continue;
            }
            any_method_match = true;
            // A parsed response without `Vary` matches every request: no lookup needed.
            let varies = candidate.parsed_response().is_none_or(|p| p.facts().vary);
            if varies && !vary::matches(stored, request.headers) {
                continue;
            }
            let newer = match best {
                None => true,
                Some((_, current)) => recency(candidate) > recency(current),
            };
            if newer {
                best = Some((index, candidate));
            }
        }
        let best = best.map(|(index, candidate)| (index, candidate.stored_response()));
        (best, any_method_match)
    }

    fn serve(&self, index: usize, freshness: Freshness) -> Serve {
        Serve {
            index,
            freshness,
            not_modified: false,
        }
    }

    /// A 304 for a client whose conditional request a stored response satisfies (§4.3.2).
    fn not_modified(&self, index: usize, freshness: Freshness) -> Serve {
        Serve {
            index,
            freshness,
            not_modified: true,
        }
    }

    fn serve_or_not_modified(
        &self,
        request: RequestHead<'_>,
        index: usize,
        stored: &StoredResponse,
        freshness: Freshness,
    ) -> Serve {
        if validation::client_condition_met(request, stored) == Some(true) {
            self.not_modified(index, freshness)
        } else {
            self.serve(index, freshness)
        }
    }

    fn revalidation<C: Candidate>(
        &self,
        request: RequestHead<'_>,
        index: usize,
        selected: &StoredResponse,
        candidates: &[C],
        reason: RevalidateReason,
        freshness: Freshness,
    ) -> Revalidation {
        let usable = candidates
            .iter()
            .map(Candidate::stored_response)
            .filter(|c| method_allows(&c.method, request.method));
        Revalidation {
            index,
            conditional_headers: validation::conditional_headers(selected, usable),
            reason,
            freshness,
        }
    }

    /// RFC 9111 §4: decides how to answer `request` given the stored responses for its primary
    /// key (`candidates`, in any order; the store's variants) at time `now`.
    ///
    /// The caller serves, revalidates, forwards or answers 504 as the returned [`Lookup`] says.
    pub fn lookup<'r, C: Candidate>(
        &self,
        request: impl Into<RequestHead<'r>>,
        candidates: &[C],
        now: SystemTime,
    ) -> Lookup {
        let request = request.into();
        let scan = RequestScan::new(request.headers);
        let request_cc = if scan.directives {
            self.request_directives(request.headers)
        } else {
            RequestDirectives::default()
        };
        let unanswerable = if !self.options.cacheable_methods.contains(request.method) {
            Some(ForwardReason::Method)
        } else if scan.range {
            Some(ForwardReason::Range)
        } else if scan.precondition {
            Some(ForwardReason::Precondition)
        } else {
            None
        };
        if let Some(reason) = unanswerable {
            // §5.2.1.7: a client that wants only a stored response gets one or a 504, never a
            // trip to the origin, even for a request the cache cannot answer itself.
            if request_cc.only_if_cached {
                return Lookup::GatewayTimeout;
            }
            return Lookup::Forward(reason);
        }
        let (selected, any_method_match) = self.select(request, candidates);
        let Some((index, stored)) = selected else {
            if request_cc.only_if_cached {
                return Lookup::GatewayTimeout;
            }
            return Lookup::Forward(if any_method_match {
                ForwardReason::VaryMiss
            } else {
                ForwardReason::UriMiss
            });
        };

        let facts = FactsOf::of(&candidates[index]);
        let (cc, _) = facts.directives(&self.options);
        let freshness = self.freshness_of(stored, &facts, now);

        let must_validate = if cc.no_cache.is_whole() && !self.options.ignore_rules {
            Some(RevalidateReason::ResponseNoCache)
        } else if self.options.always_revalidate {
            Some(RevalidateReason::AlwaysRevalidate)
        } else if request_cc.no_cache {
            Some(RevalidateReason::RequestNoCache)
        } else if request_cc
            .max_age
            .is_some_and(|max_age| freshness.age > Duration::from_secs(max_age))
        {
            Some(RevalidateReason::RequestMaxAge)
        } else {
            None
        };

        if must_validate.is_none() {
            let fresh_enough = freshness.is_fresh()
                && request_cc.min_fresh.is_none_or(|min_fresh| {
                    freshness.time_to_live() >= Duration::from_secs(min_fresh)
                });
            if fresh_enough {
                return if scan.conditional
                    && validation::client_condition_met(request, stored) == Some(true)
                {
                    Lookup::NotModified(self.not_modified(index, freshness))
                } else {
                    Lookup::Fresh(self.serve(index, freshness))
                };
            }
            // A fresh response that fails only `min-fresh` is not served stale: the client
            // asked for a fresher one (§5.2.1.3).
            if !freshness.is_fresh() && !self.forbids_stale(cc) {
                let staleness = freshness.staleness();
                let max_stale_allows = match request_cc.max_stale {
                    Some(MaxStale::Any) => true,
                    Some(MaxStale::Seconds(s)) => staleness <= Duration::from_secs(s),
                    None => false,
                };
                if max_stale_allows {
                    return Lookup::Stale {
                        serve: self.serve_or_not_modified(request, index, stored, freshness),
                        reason: StaleReason::MaxStale,
                        revalidate: None,
                    };
                }
                if staleness < self.stale_while_revalidate(cc) && !request_cc.only_if_cached {
                    let revalidate = self.revalidation(
                        request,
                        index,
                        stored,
                        candidates,
                        RevalidateReason::Stale,
                        freshness,
                    );
                    return Lookup::Stale {
                        serve: self.serve_or_not_modified(request, index, stored, freshness),
                        reason: StaleReason::StaleWhileRevalidate,
                        revalidate: Some(revalidate),
                    };
                }
            }
        }

        if request_cc.only_if_cached {
            return Lookup::GatewayTimeout;
        }
        let reason = must_validate.unwrap_or(if freshness.is_fresh() {
            RevalidateReason::RequestMinFresh
        } else {
            RevalidateReason::Stale
        });
        Lookup::Revalidate(self.revalidation(request, index, stored, candidates, reason, freshness))
    }

    /// RFC 5861 §4: whether a stale response may be served because the origin could not be
    /// reached (`stale-if-error`). Returns the response to serve, if any.
    ///
    /// Call it when the request to the origin failed with a transport error. For 5xx answers
    /// [`after_response`](Self::after_response) makes the same decision.
    pub fn on_error<'r, C: Candidate>(
        &self,
        request: impl Into<RequestHead<'r>>,
        candidates: &[C],
        now: SystemTime,
    ) -> Option<Serve> {
        let request = request.into();
        if !self.options.cacheable_methods.contains(request.method) {
            return None;
        }
        let (Some((index, stored)), _) = self.select(request, candidates) else {
            return None;
        };
        let facts = FactsOf::of(&candidates[index]);
        let (cc, _) = facts.directives(&self.options);
        let freshness = self.freshness_of(stored, &facts, now);
        if self.forbids_stale(cc) {
            return None;
        }
        let request_cc = self.request_directives(request.headers);
        // Strictly inside the window: with no window, a response is never served stale, even
        // at the instant it becomes stale (age == lifetime, staleness 0).
        if freshness.is_fresh() || freshness.staleness() < self.stale_if_error(cc, &request_cc) {
            Some(self.serve_or_not_modified(request, index, stored, freshness))
        } else {
            None
        }
    }

    /// RFC 9111 §4.4: the URIs to invalidate after `response` to an unsafe `request`: the
    /// target URI, and the `Location` and `Content-Location` URIs when they share its origin.
    fn invalidations(&self, request: RequestHead<'_>, response: ResponseHead<'_>) -> Vec<Uri> {
        let status = response.status;
        if is_safe(request.method) || !(status.is_success() || status.is_redirection()) {
            return Vec::new();
        }
        let Some(target) = self.target_uri(request) else {
            return Vec::new();
        };
        let mut uris = Vec::new();
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            if let Some(value) = response.headers.get(name) {
                if let Some(uri) = resolve(&target, value.as_bytes()) {
                    if same_origin(&target, &uri) && uri != target && !uris.contains(&uri) {
                        uris.push(uri);
                    }
                }
            }
        }
        uris.insert(0, target);
        uris
    }

    /// RFC 9111 §3: whether a response may be stored.
    fn storable(
        &self,
        request: RequestHead<'_>,
        request_cc: &RequestDirectives,
        request_range: bool,
        response: ResponseHead<'_>,
        scan: &Scan,
    ) -> Result<(), NotStorable> {
        let (cc, use_expires) = scan.facts.directives(&self.options);
        let status = response.status;
        if !self.options.cacheable_methods.contains(request.method) {
            return Err(NotStorable::Method);
        }
        if *request.method == Method::HEAD {
            return Err(NotStorable::HeadResponse);
        }
        if request_range {
            return Err(NotStorable::Range);
        }
        if status == StatusCode::PARTIAL_CONTENT {
            return Err(NotStorable::PartialContent);
        }
        if status.is_informational() || status == StatusCode::NOT_MODIFIED {
            return Err(NotStorable::Status);
        }
        if let Some(statuses) = &self.options.cacheable_statuses {
            if !statuses.contains(&status) {
                return Err(NotStorable::Status);
            }
        }
        let varies = scan.facts.vary;
        if let Some(reason) = varies
            .then(|| vary::unmatchable(response.headers))
            .flatten()
        {
            return Err(reason);
        }
        if scan.set_cookie
            && self.cookies(cc, use_expires && scan.facts.expires.is_some()) == Cookies::Refuse
        {
            return Err(NotStorable::SetCookie);
        }
        if self.options.ignore_rules {
            return Ok(());
        }
        if request_cc.no_store {
            return Err(NotStorable::RequestNoStore);
        }
        let understood = is_understood(status);
        if cc.must_understand && !understood {
            return Err(NotStorable::MustUnderstand);
        }
        if cc.no_store && !(cc.must_understand && understood) {
            return Err(NotStorable::NoStore);
        }
        if self.options.shared && cc.private.is_whole() {
            return Err(NotStorable::Private);
        }
        if self.options.shared
            && request.headers.contains_key(AUTHORIZATION)
            && !(cc.must_revalidate || cc.public || cc.s_maxage.is_some())
        {
            return Err(NotStorable::Authorization);
        }
        let reusable = cc.public
            || (!self.options.shared && cc.private != Default::default())
            || (use_expires && scan.facts.expires.is_some())
            || cc.max_age.is_some()
            || (self.options.shared && cc.s_maxage.is_some())
            || freshness::is_heuristically_cacheable(status)
            || self.options.default_ttl.is_some()
            || self.options.cacheable_statuses.is_some();
        if !reusable {
            return Err(NotStorable::NoFreshnessInformation);
        }
        Ok(())
    }

    /// The physical TTL of a stored response: freshness left, plus the stale windows, plus a
    /// retention period when it has validators (a stale response is still worth a conditional
    /// request).
    /// How long to keep a response: while fresh, plus while stale responses may be served,
    /// plus (when it has a validator) a while to revalidate it.
    fn ttl(&self, has_validator: bool, cc: &ResponseDirectives, freshness: Freshness) -> Duration {
        let mut keep = Duration::ZERO;
        if !self.forbids_stale(cc) {
            let request_default = RequestDirectives::default();
            keep = self
                .stale_while_revalidate(cc)
                .max(self.stale_if_error(cc, &request_default));
        }
        if has_validator {
            keep = keep.max(freshness.lifetime.max(REVALIDATION_RETENTION));
        }
        freshness.time_to_live().saturating_add(keep)
    }

    /// RFC 9111 §3.2, §4.3.4: `stored` with the header lines of a 304 (or of a HEAD
    /// response, §4.3.5) and the new exchange's times.
    fn freshen(
        &self,
        request: RequestHead<'_>,
        index: usize,
        stored: &StoredResponse,
        new_headers: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Freshened {
        let mut entry = stored.clone();
        update_stored_headers(&mut entry.headers, new_headers);
        if !new_headers.contains_key(header::DATE) {
            // The stored Date would make the refreshed response look old (RFC 9110 §6.6.1).
            entry.headers.insert(header::DATE, http_date(response_time));
        }
        if !new_headers.contains_key(header::AGE) {
            // The Age of the old exchange does not apply to the new one.
            entry.headers.remove(header::AGE);
            crate::headers::reserve_age(&mut entry.headers);
        }
        entry.request_time = request_time;
        entry.response_time = response_time;
        let served = ParsedResponse::new(entry);
        let update = self.update_to_store(request, index, &served);
        Freshened { served, update }
    }

    /// What a freshened response may write back into the store, by the rules storing applies
    /// (§3, §3.1, §3.5): nothing when a shared cache would not have stored it (`private`,
    /// `no-store`, or a request with `Authorization` that the response does not allow to be
    /// shared), and never a field storing leaves out (fields named by a qualified `no-cache`,
    /// or in a shared cache by a qualified `private`, and cookies not to be shared).
    fn update_to_store(
        &self,
        request: RequestHead<'_>,
        index: usize,
        served: &ParsedResponse,
    ) -> Option<Update> {
        let (cc, use_expires) = served.facts().directives(&self.options);
        let shared = self.options.shared;
        if !self.options.ignore_rules {
            if cc.no_store || (shared && cc.private.is_whole()) {
                return None;
            }
            if shared
                && request.headers.contains_key(AUTHORIZATION)
                && !(cc.must_revalidate || cc.public || cc.s_maxage.is_some())
            {
                return None;
            }
        }
        let mut left_out: Vec<&http::HeaderName> = cc.no_cache.fields().iter().collect();
        if shared {
            left_out.extend(cc.private.fields());
        }
        let expires = use_expires && served.facts().expires.is_some();
        if served.headers.contains_key(header::SET_COOKIE)
            && self.cookies(cc, expires) != Cookies::Keep
        {
            left_out.push(&header::SET_COOKIE);
        }
        let entry = if left_out
            .iter()
            .any(|name| served.headers.contains_key(*name))
        {
            let mut entry = served.response().clone();
            for name in left_out {
                entry.headers.remove(name);
            }
            if !entry.headers.contains_key(header::DATE) {
                entry
                    .headers
                    .insert(header::DATE, http_date(entry.response_time));
            }
            crate::headers::reserve_age(&mut entry.headers);
            ParsedResponse::new(entry)
        } else {
            served.clone()
        };
        let freshness = self.freshness_of(&entry, entry.facts(), entry.response_time);
        let cc = entry.facts().directives(&self.options).0;
        let ttl = self.ttl(validation::has_validator(&entry), cc, freshness);
        Some(Update {
            index,
            entry: Arc::new(entry),
            ttl,
        })
    }

    /// Decides what to do with the origin's answer (RFC 9111 §3, §4.3.3 to §4.3.5, §4.4,
    /// RFC 5861 §4).
    ///
    /// `request` is the client's request as received (without the validators the cache added),
    /// `request_time` and `response_time` bracket the exchange with the origin (§4.2.3), and
    /// `candidates` are the stored responses passed to [`lookup`](Self::lookup).
    pub fn after_response<'r, 's, C: Candidate>(
        &self,
        request: impl Into<RequestHead<'r>>,
        response: impl Into<ResponseHead<'s>>,
        request_time: SystemTime,
        response_time: SystemTime,
        candidates: &[C],
    ) -> AfterResponse {
        let request = request.into();
        let response = response.into();
        let invalidate = self.invalidations(request, response);
        let action =
            self.response_action(request, response, request_time, response_time, candidates);
        AfterResponse { action, invalidate }
    }

    fn response_action<C: Candidate>(
        &self,
        request: RequestHead<'_>,
        response: ResponseHead<'_>,
        request_time: SystemTime,
        response_time: SystemTime,
        candidates: &[C],
    ) -> ResponseAction {
        let usable: Vec<(usize, &StoredResponse)> = if is_safe(request.method) {
            candidates
                .iter()
                .map(Candidate::stored_response)
                .enumerate()
                .filter(|(_, c)| method_allows(&c.method, request.method))
                .collect()
        } else {
            Vec::new()
        };

        if response.status == StatusCode::NOT_MODIFIED && !usable.is_empty() {
            return self.on_not_modified(request, response, request_time, response_time, &usable);
        }

        if matches!(response.status.as_u16(), 500 | 502 | 503 | 504) && !usable.is_empty() {
            if let Some(serve) = self.on_error(request, candidates, response_time) {
                return ResponseAction::ServeStale(serve);
            }
        }

        if *request.method == Method::HEAD {
            if response.status == StatusCode::OK && !usable.is_empty() {
                return self.on_head(request, response, request_time, response_time, &usable);
            }
            return ResponseAction::PassThrough(NotStorable::HeadResponse);
        }

        if !self.options.cacheable_methods.contains(request.method) {
            return ResponseAction::PassThrough(NotStorable::Method);
        }
        let request_scan = RequestScan::new(request.headers);
        let request_cc = if request_scan.directives {
            self.request_directives(request.headers)
        } else {
            RequestDirectives::default()
        };
        let scan = Facts::scan(response.headers, request_time, response_time);
        if let Err(reason) =
            self.storable(request, &request_cc, request_scan.range, response, &scan)
        {
            return ResponseAction::PassThrough(reason);
        }
        let (cc, use_expires) = scan.facts.directives(&self.options);
        let strip_cookies = scan.set_cookie
            && self.cookies(cc, use_expires && scan.facts.expires.is_some()) == Cookies::Strip;
        // The stored header lines lose the fields `Connection`, `no-cache="..."` or (shared)
        // `private="..."` name (and cookies that are not to be shared), and get a `Date` when
        // it is invalid: then the facts of what is stored may differ from the response's.
        let rewritten = !scan.valid_date
            || scan.connection
            || strip_cookies
            || !cc.no_cache.fields().is_empty()
            || (self.options.shared && !cc.private.fields().is_empty());
        let vary_request_headers = if scan.facts.vary {
            vary::selecting_headers(response.headers, request.headers)
        } else {
            HeaderMap::new()
        };
        let entry = StoredResponse {
            method: request.method.clone(),
            uri: self
                .target_uri(request)
                .unwrap_or_else(|| request.uri.clone()),
            status: response.status,
            headers: headers_to_store(
                response.headers,
                cc,
                self.options.shared,
                strip_cookies,
                &scan,
                response_time,
            ),
            vary_request_headers,
            request_time,
            response_time,
        };
        // A validator line is parsed only when the scan saw one: an unparseable `ETag` or
        // `Last-Modified` validates nothing, and must not keep the response for revalidation.
        let has_validator = scan.validator && validation::has_validator(&entry);
        let facts = if rewritten {
            Facts::of(&entry)
        } else {
            scan.facts
        };
        let freshness = self.freshness_of(&entry, &facts, response_time);
        let ttl = self.ttl(has_validator, facts.directives(&self.options).0, freshness);
        let mut replaces: Vec<usize> = usable
            .iter()
            .filter(|(_, c)| c.method == entry.method && vary::matches(c, request.headers))
            .map(|(i, _)| *i)
            .collect();
        self.bound_variants(candidates, &mut replaces);
        ResponseAction::Store {
            entry: Arc::new(ParsedResponse::from_parts(entry, facts)),
            ttl,
            freshness,
            replaces,
        }
    }

    /// Adds to `replaces` the least recently stored candidates that storing one more variant
    /// would take over [`PolicyOptions::max_variants`].
    fn bound_variants<C: Candidate>(&self, candidates: &[C], replaces: &mut Vec<usize>) {
        let kept = candidates.len() - replaces.len().min(candidates.len());
        let excess = (kept + 1).saturating_sub(self.options.max_variants.max(1));
        if excess == 0 {
            return;
        }
        let mut oldest: Vec<(SystemTime, usize)> = candidates
            .iter()
            .enumerate()
            .filter(|(i, _)| !replaces.contains(i))
            .map(|(i, c)| (c.stored_response().response_time, i))
            .collect();
        oldest.sort_unstable();
        replaces.extend(oldest.into_iter().take(excess).map(|(_, i)| i));
    }

    /// RFC 9111 §4.3.3 and §4.3.4: a 304 from the origin.
    fn on_not_modified(
        &self,
        request: RequestHead<'_>,
        response: ResponseHead<'_>,
        request_time: SystemTime,
        response_time: SystemTime,
        usable: &[(usize, &StoredResponse)],
    ) -> ResponseAction {
        let stored: Vec<&StoredResponse> = usable.iter().map(|(_, c)| *c).collect();
        let mut selected = validation::select_for_update(response.headers, &stored);
        if selected.is_empty()
            && response.headers.get(header::ETAG).is_none()
            && response.headers.get(header::LAST_MODIFIED).is_none()
        {
            // A bare 304 (RFC 9110 §15.4.5 does not require a 304 to repeat Last-Modified, and
            // common servers omit it) answers the conditional request built from the stored
            // response this request selects: that one is validated. The strict reading of
            // §4.3.4 would refetch instead, for nothing.
            selected.extend(
                stored
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| vary::matches(c, request.headers))
                    .max_by_key(|(_, c)| (date_value(c), c.response_time))
                    .map(|(i, _)| i),
            );
        }
        let freshened: Vec<(usize, Freshened)> = selected
            .into_iter()
            .map(|i| {
                let (index, candidate) = usable[i];
                let freshened = self.freshen(
                    request,
                    index,
                    candidate,
                    response.headers,
                    request_time,
                    response_time,
                );
                (index, freshened)
            })
            .collect();
        // Serve the most recent refreshed response that matches this request. When none does,
        // the origin still selected one of them for this request (the validators it was sent
        // cover every candidate, §4.3.1): that one answers it (§4.3.3), as the most recent.
        let most_recent =
            |(_, f): &&(usize, Freshened)| (date_value(&f.served), f.served.response_time);
        let chosen = freshened
            .iter()
            .filter(|(_, f)| vary::matches(&f.served, request.headers))
            .max_by_key(most_recent)
            .or_else(|| freshened.iter().max_by_key(most_recent));
        match chosen {
            Some((index, chosen)) => {
                let served = &chosen.served;
                let freshness = self.freshness_of(served, served.facts(), response_time);
                let serve = self.serve_or_not_modified(request, *index, served, freshness);
                let head = serve.response_head(served);
                let updates = freshened
                    .into_iter()
                    .filter_map(|(_, f)| f.update)
                    .collect();
                ResponseAction::Refresh {
                    updates,
                    serve,
                    head,
                }
            }
            None if is_conditional(request.headers) => {
                ResponseAction::PassThrough(NotStorable::Status)
            }
            None => ResponseAction::Refetch,
        }
    }

    /// RFC 9111 §4.3.5: a 200 response to HEAD refreshes or invalidates stored GET responses.
    fn on_head(
        &self,
        request: RequestHead<'_>,
        response: ResponseHead<'_>,
        request_time: SystemTime,
        response_time: SystemTime,
        usable: &[(usize, &StoredResponse)],
    ) -> ResponseAction {
        let mut updates = Vec::new();
        let mut remove = Vec::new();
        if self.options.shared && request.headers.contains_key(AUTHORIZATION) {
            // §3.5: what a request with credentials learns changes nothing that other clients
            // get, unless the response allows a shared cache to reuse it.
            let cc = ResponseDirectives::parse(response.headers.get_all(header::CACHE_CONTROL));
            if !(cc.must_revalidate || cc.public || cc.s_maxage.is_some()) {
                return ResponseAction::UpdateFromHead { updates, remove };
            }
        }
        for &(index, candidate) in usable {
            if !vary::matches(candidate, request.headers) {
                continue;
            }
            if validation::head_matches(response.headers, candidate) {
                let freshened = self.freshen(
                    request,
                    index,
                    candidate,
                    response.headers,
                    request_time,
                    response_time,
                );
                updates.extend(freshened.update);
            } else {
                remove.push(index);
            }
        }
        ResponseAction::UpdateFromHead { updates, remove }
    }
}
