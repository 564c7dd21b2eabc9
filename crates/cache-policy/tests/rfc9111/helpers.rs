//! Small builders shared by the conformance suite. Every time is explicit: `at(s)` is `s`
//! seconds after a fixed instant; nothing reads a clock and nothing sleeps.

#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use cache_policy::{
    AfterResponse, CachePolicy, Lookup, NotStorable, PolicyOptions, ResponseAction, Revalidation,
    Serve, StaleReason, StoredResponse,
};
use http::{HeaderMap, Method, Request, Response};

/// The instant all tests count from (2023-11-14T22:13:20Z).
pub(crate) const T0: u64 = 1_700_000_000;

/// `seconds` after [`T0`].
pub(crate) fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + seconds)
}

/// An IMF-fixdate `offset` seconds from [`T0`] (negative: before).
pub(crate) fn date(offset: i64) -> String {
    let time = if offset >= 0 {
        at(offset as u64)
    } else {
        at(0) - Duration::from_secs(offset.unsigned_abs())
    };
    httpdate::fmt_http_date(time)
}

pub(crate) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub(crate) const URI: &str = "http://example.com/resource";

/// A request with these header lines (repeated names stay separate lines).
pub(crate) fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut builder = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap()
}

/// `GET` [`URI`] with these header lines.
pub(crate) fn get(headers: &[(&str, &str)]) -> Request<()> {
    req("GET", URI, headers)
}

/// A response with this status and header lines.
pub(crate) fn resp(status: u16, headers: &[(&str, &str)]) -> Response<()> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap()
}

pub(crate) fn headers(lines: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in lines {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    map
}

pub(crate) fn private() -> CachePolicy {
    CachePolicy::new(PolicyOptions::default())
}

pub(crate) fn shared() -> CachePolicy {
    CachePolicy::new(PolicyOptions::default().shared(true))
}

pub(crate) fn with(options: PolicyOptions) -> CachePolicy {
    CachePolicy::new(options)
}

pub(crate) const NONE: &[StoredResponse] = &[];

/// The decision for a response received at `at(s)` to a request sent at `at(s)`, nothing stored.
pub(crate) fn decide(
    policy: &CachePolicy,
    request: &Request<()>,
    response: &Response<()>,
) -> AfterResponse {
    policy.after_response(request, response, at(0), at(0), NONE)
}

/// Stores `response` (received at `at(s)`, requested at the same time), or panics.
pub(crate) fn store_at(
    policy: &CachePolicy,
    request: &Request<()>,
    response: &Response<()>,
    s: u64,
) -> StoredResponse {
    store_times(policy, request, response, at(s), at(s))
}

pub(crate) fn store(
    policy: &CachePolicy,
    request: &Request<()>,
    response: &Response<()>,
) -> StoredResponse {
    store_at(policy, request, response, 0)
}

pub(crate) fn store_times(
    policy: &CachePolicy,
    request: &Request<()>,
    response: &Response<()>,
    request_time: SystemTime,
    response_time: SystemTime,
) -> StoredResponse {
    match policy
        .after_response(request, response, request_time, response_time, NONE)
        .action
    {
        ResponseAction::Store { entry, .. } => {
            std::sync::Arc::unwrap_or_clone(entry).into_response()
        }
        other => panic!("expected Store, got {other:?}"),
    }
}

/// Why the response is not stored; `None` when it is stored.
pub(crate) fn storability(
    policy: &CachePolicy,
    request: &Request<()>,
    response: &Response<()>,
) -> Option<NotStorable> {
    match decide(policy, request, response).action {
        ResponseAction::Store { .. } => None,
        ResponseAction::PassThrough(reason) => Some(reason),
        other => panic!("expected Store or PassThrough, got {other:?}"),
    }
}

/// A short name for a lookup decision, for table-driven assertions.
pub(crate) fn kind(lookup: &Lookup) -> &'static str {
    match lookup {
        Lookup::Fresh(_) => "fresh",
        Lookup::NotModified(_) => "304",
        Lookup::Stale {
            reason: StaleReason::MaxStale,
            ..
        } => "stale:max-stale",
        Lookup::Stale {
            reason: StaleReason::StaleWhileRevalidate,
            ..
        } => "stale:swr",
        Lookup::Stale { .. } => "stale:other",
        Lookup::Revalidate(_) => "revalidate",
        Lookup::Forward(_) => "forward",
        Lookup::GatewayTimeout => "504",
        _ => "unknown",
    }
}

pub(crate) fn fresh(lookup: Lookup) -> Serve {
    match lookup {
        Lookup::Fresh(serve) => serve,
        other => panic!("expected Fresh, got {other:?}"),
    }
}

pub(crate) fn revalidate(lookup: Lookup) -> Revalidation {
    match lookup {
        Lookup::Revalidate(revalidation) => revalidation,
        other => panic!("expected Revalidate, got {other:?}"),
    }
}

/// All values of `name`, as strings, in order.
pub(crate) fn values(map: &HeaderMap, name: &str) -> Vec<String> {
    map.get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}
