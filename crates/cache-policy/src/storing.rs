//! RFC 9111 §3: storing responses in caches. Whether a response may be stored (§3, §3.5),
//! which of its header lines are kept (§3.1), for how long, and what a freshened response may
//! write back.
//!
//! [`CachePolicy::after_response`] is also where the origin's answer is dispatched: a 304 or a
//! 200 to HEAD goes to [`freshening`](crate::freshening), a 5xx may be answered stale by
//! [`CachePolicy::on_error`], and the URIs to invalidate come from
//! [`invalidation`](crate::invalidation).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{self, AUTHORIZATION};
use http::{HeaderMap, Method, StatusCode};

use crate::decision::{AfterResponse, NotStorable, ResponseAction, Update};
use crate::directives::{RequestDirectives, ResponseDirectives};
use crate::freshness::{self, Freshness};
use crate::headers::{headers_to_store, http_date};
use crate::parsed::{Candidate, Facts, ParsedResponse, Scan};
use crate::policy::{is_safe, method_allows, RequestScan};
use crate::{
    validation, vary, CachePolicy, RequestHead, ResponseHead, SharedCookies, StoredResponse,
};

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

/// Statuses whose caching requirements this cache implements (RFC 9111 §3, must-understand):
/// every final status with defined semantics, except 206 and 304, which are never stored.
fn is_understood(status: StatusCode) -> bool {
    status.canonical_reason().is_some()
        && !status.is_informational()
        && status != StatusCode::PARTIAL_CONTENT
        && status != StatusCode::NOT_MODIFIED
}

impl CachePolicy {
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
        // An unparseable `ETag` or `Last-Modified` validates nothing, and must not keep the
        // response for revalidation. The stored lines are those scanned unless rewritten.
        let has_validator = if rewritten {
            scan.saw_validator() && validation::has_validator(&entry)
        } else {
            scan.has_validator()
        };
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

    /// RFC 9111 §3: whether a response may be stored.
    fn storable(
        &self,
        request: RequestHead<'_>,
        request_cc: &RequestDirectives,
        request_range: bool,
        response: ResponseHead<'_>,
        scan: &Scan<'_>,
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

    /// The physical TTL of a stored response: freshness left, plus the stale windows, plus a
    /// retention period when it has validators (a stale response is still worth a conditional
    /// request).
    /// How long to keep a response: while fresh, plus while stale responses may be served,
    /// plus (when it has a validator) a while to revalidate it.
    pub(crate) fn ttl(
        &self,
        has_validator: bool,
        cc: &ResponseDirectives,
        freshness: Freshness,
    ) -> Duration {
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

    /// Adds to `replaces` the least recently stored candidates that storing one more variant
    /// would take over [`PolicyOptions::max_variants`](crate::PolicyOptions::max_variants).
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

    /// What a freshened response may write back into the store, by the rules storing applies
    /// (§3, §3.1, §3.5): nothing when a shared cache would not have stored it (`private`,
    /// `no-store`, or a request with `Authorization` that the response does not allow to be
    /// shared), and never a field storing leaves out (fields named by a qualified `no-cache`,
    /// or in a shared cache by a qualified `private`, and cookies not to be shared).
    pub(crate) fn update_to_store(
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
}
