//! A sans-IO implementation of RFC 9111, HTTP Caching.
//!
//! This crate decides; it does no I/O, reads no clock and stores nothing. A cache (a tower
//! layer, a reqwest middleware, a proxy) asks [`CachePolicy`] what to do with a request given
//! the stored responses for its primary key and the current time, does it, and hands the
//! origin's answer back:
//!
//! 1. [`CachePolicy::lookup`] → [`Lookup`]: serve a fresh response, answer 304, serve stale
//!    (and maybe revalidate in the background), revalidate with a conditional request, forward,
//!    or answer 504 for `only-if-cached`.
//! 2. [`CachePolicy::after_response`] → [`AfterResponse`]: store (with the header lines and
//!    TTL to store), refresh stored responses after a 304 or a HEAD, serve stale on a 5xx,
//!    refetch, or pass through; plus the URIs to invalidate after an unsafe method.
//! 3. [`CachePolicy::on_error`]: serve stale when the origin cannot be reached.
//!
//! Every decision carries its reason, so a cache can emit RFC 9211 `Cache-Status` without
//! recomputing anything. What is stored is a plain [`StoredResponse`].
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use cache_policy::{CachePolicy, Lookup, PolicyOptions, ResponseAction};
//! use http::{Request, Response, StatusCode};
//!
//! let policy = CachePolicy::new(PolicyOptions::default().shared(true));
//! let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
//! let request = Request::get("https://example.com/").body(()).unwrap();
//! let response = Response::builder()
//!     .header("cache-control", "max-age=10")
//!     .header("etag", "\"v1\"")
//!     .body(())
//!     .unwrap();
//! let none: [cache_policy::StoredResponse; 0] = [];
//! let ResponseAction::Store { entry, .. } =
//!     policy.after_response(&request, &response, t0, t0, &none).action
//! else {
//!     panic!("a max-age response is storable")
//! };
//!
//! // After 20 seconds it is stale: revalidate with If-None-Match.
//! let stored = [entry];
//! let later = t0 + Duration::from_secs(20);
//! let Lookup::Revalidate(revalidation) = policy.lookup(&request, &stored, later) else {
//!     panic!("stale")
//! };
//! assert_eq!(revalidation.conditional_headers["if-none-match"], "\"v1\"");
//!
//! // The origin answers 304: refresh the stored response and serve it.
//! let not_modified = Response::builder()
//!     .status(StatusCode::NOT_MODIFIED)
//!     .header("cache-control", "max-age=10")
//!     .header("etag", "\"v1\"")
//!     .body(())
//!     .unwrap();
//! let decision = policy.after_response(&request, &not_modified, later, later, &stored);
//! assert!(matches!(decision.action, ResponseAction::Refresh { .. }));
//! ```
//!
//! Stored responses reach the policy as anything implementing [`Candidate`]: a plain
//! [`StoredResponse`], or a [`ParsedResponse`] whose `Cache-Control`, `Date`, `Age` and
//! `Expires` are parsed once, which is what a store that keeps entries in memory hands out so
//! that a hit parses nothing.
//!
//! Module map, by RFC 9111 section. The rules of [`CachePolicy`], one `impl` block each:
//! `storing` (§3, §3.1, §3.5: whether and how long to store, and the dispatch of the origin's
//! answer), `reuse` (§4, §4.1 selection, §4.2.4 and RFC 5861 serving stale), `freshening`
//! (§4.3.3 to §4.3.5: 304 and HEAD responses) and `invalidation` (§4.4), with `policy` holding
//! the type itself and what they share. Their building blocks: [`directives`] (§5.2),
//! `freshness` (§4.2 freshness and age), `vary` (§4.1), `headers` (§3.1, §3.2 header storage
//! and update), `validation` (§4.3), and `syntax` (the HTTP grammar they parse). One request's
//! whole flow, built on them: [`Exchange`] (`exchange`).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod cache_status;
mod decision;
pub mod directives;
mod exchange;
mod freshening;
mod freshness;
mod headers;
mod invalidation;
mod options;
mod parsed;
mod policy;
mod reuse;
mod stored;
mod storing;
mod syntax;
mod uri;
mod validation;
mod vary;

pub use cache_status::{CacheOutcome, CacheStatus, CacheStatusDetail, CacheStatusFwd};
pub use decision::{
    AfterResponse, ForwardReason, Lookup, NotStorable, ResponseAction, RevalidateReason,
    Revalidation, Serve, StaleReason, Update,
};
pub use directives::{FieldScope, MaxStale, RequestDirectives, ResponseDirectives};
pub use exchange::{
    Answer, CacheMode, CacheRules, CandidateId, Candidates, Effects, Exchange, Freshen, Next,
    Overrides, Reply, Respond, StoreResponse,
};
pub use freshness::{override_freshness_lifetime, Freshness, FreshnessSource};
pub use options::{Heuristics, PolicyOptions, ServeStale, SharedCookies};
pub use parsed::{Candidate, ParsedResponse};
pub use policy::{CachePolicy, RequestHead, ResponseHead};
pub use stored::StoredResponse;
pub use uri::{align_host, effective_uri};
