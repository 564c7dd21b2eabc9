//! The exchange, event by event: one test per behaviour, named after the section it checks.
//! Every time is explicit (`at(s)`); nothing reads a clock and nothing sleeps.

use std::time::{Duration, SystemTime};

use http::{Method, Request, Response, StatusCode, Uri};

use super::{
    Answer, CacheMode, CacheRules, CandidateId, Exchange, Next, Overrides, Reply, Respond,
};
use crate::{
    CacheOutcome, CacheStatusDetail, CacheStatusFwd, NotStorable, PolicyOptions, StoredResponse,
};

type Ex = Exchange<Vec<StoredResponse>>;

mod edges;
mod head_and_invalidation;
mod hits_and_misses;
mod modes;
mod stale;

pub(super) const URI: &str = "http://example.com/resource";
pub(super) const LAST_MODIFIED: &str = "Tue, 14 Nov 2023 22:00:00 GMT";

/// `s` seconds after a fixed instant.
pub(super) fn at(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
}

pub(super) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub(super) fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut builder = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap()
}

pub(super) fn get(headers: &[(&str, &str)]) -> Request<()> {
    req("GET", URI, headers)
}

pub(super) fn resp(status: u16, headers: &[(&str, &str)]) -> Response<()> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap()
}

/// A copy of `request`'s head (a `Request` is not `Clone`), as a driver would send it.
pub(super) fn copy(request: &Request<()>) -> Request<()> {
    let mut copy = Request::new(());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// A new exchange for `request`, given `candidates` at `at(s)`.
pub(super) fn start(
    rules: &CacheRules,
    request: &Request<()>,
    overrides: Overrides,
    candidates: Vec<StoredResponse>,
    s: u64,
) -> (Ex, Next) {
    let mut exchange = Ex::new(rules, request, URI.into(), overrides);
    let next = exchange.on_stored(rules, request, candidates, at(s));
    (exchange, next)
}

/// Departs `request` and feeds the origin's `response`, requested and received at `at(s)`.
/// Returns the request as sent.
pub(super) fn origin(
    exchange: &mut Ex,
    rules: &CacheRules,
    request: &Request<()>,
    response: &Response<()>,
    s: u64,
) -> (Request<()>, Answer) {
    let mut sent = copy(request);
    exchange.depart(&mut sent);
    let answer = exchange.on_response(rules, response, at(s), at(s));
    (sent, answer)
}

/// The whole miss under `overrides`: nothing stored, the origin answers `response` at `at(s)`.
pub(super) fn miss(
    rules: &CacheRules,
    request: &Request<()>,
    response: &Response<()>,
    overrides: Overrides,
    s: u64,
) -> Answer {
    let (mut exchange, next) = start(rules, request, overrides, Vec::new(), s);
    assert!(matches!(next, Next::Forward { .. }), "{next:?}");
    origin(&mut exchange, rules, request, response, s).1
}

/// What a miss at `at(s)` stores, or a panic.
pub(super) fn store(
    rules: &CacheRules,
    request: &Request<()>,
    response: &Response<()>,
    s: u64,
) -> StoredResponse {
    let answer = miss(rules, request, response, Overrides::default(), s);
    answer
        .effects
        .store
        .expect("stored")
        .entry
        .response()
        .clone()
}

pub(super) fn stored(respond: Respond) -> (http::response::Parts, Option<CandidateId>) {
    match respond {
        Respond::Stored { head, body } => (head, body),
        other => panic!("expected a stored response, got {other:?}"),
    }
}

pub(super) fn replied(next: Next) -> Reply {
    match next {
        Next::Reply(reply) => reply,
        other => panic!("expected Next::Reply, got {other:?}"),
    }
}

/// A stale (at 20 s) response with both validators, stored at 0.
pub(super) fn stale_with_validators(rules: &CacheRules) -> StoredResponse {
    let response = resp(
        200,
        &[
            ("cache-control", "max-age=10"),
            ("etag", "\"v1\""),
            ("last-modified", LAST_MODIFIED),
        ],
    );
    store(rules, &get(&[]), &response, 0)
}

pub(super) fn uris(list: &[&'static str]) -> Vec<Uri> {
    list.iter().map(|s| Uri::from_static(s)).collect()
}
