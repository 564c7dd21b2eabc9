//! RFC 9111 §4: reusing stored responses. Selecting the stored response that answers a
//! request (§4.1), serving it fresh, as a 304 (§4.3.2) or stale (§4.2.4, RFC 5861
//! `stale-while-revalidate` and `stale-if-error`), or building the conditional request that
//! revalidates it (§4.3.1).

use std::time::{Duration, SystemTime};

use http::StatusCode;

use crate::decision::{ForwardReason, Lookup, RevalidateReason, Revalidation, Serve, StaleReason};
use crate::directives::{MaxStale, RequestDirectives, ResponseDirectives};
use crate::freshness::{date_value, Freshness};
use crate::parsed::{Candidate, FactsOf};
use crate::policy::{method_allows, RequestScan};
use crate::{validation, vary, CachePolicy, RequestHead, StoredResponse};

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

impl CachePolicy {
    /// Whether directives forbid serving this response stale (RFC 9111 §4.2.4): `no-cache`,
    /// `must-revalidate`, and in a shared cache `proxy-revalidate` or `s-maxage`.
    pub(crate) fn forbids_stale(&self, cc: &ResponseDirectives) -> bool {
        if self.options.ignore_rules {
            return false;
        }
        cc.no_cache.is_whole()
            || cc.must_revalidate
            || (self.options.shared && (cc.proxy_revalidate || cc.s_maxage.is_some()))
    }

    pub(crate) fn stale_while_revalidate(&self, cc: &ResponseDirectives) -> Duration {
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

    pub(crate) fn stale_if_error(
        &self,
        cc: &ResponseDirectives,
        request: &RequestDirectives,
    ) -> Duration {
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

    pub(crate) fn serve_or_not_modified(
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
}
