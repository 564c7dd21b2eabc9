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

const URI: &str = "http://example.com/resource";
const LAST_MODIFIED: &str = "Tue, 14 Nov 2023 22:00:00 GMT";

/// `s` seconds after a fixed instant.
fn at(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut builder = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap()
}

fn get(headers: &[(&str, &str)]) -> Request<()> {
    req("GET", URI, headers)
}

fn resp(status: u16, headers: &[(&str, &str)]) -> Response<()> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap()
}

/// A copy of `request`'s head (a `Request` is not `Clone`), as a driver would send it.
fn copy(request: &Request<()>) -> Request<()> {
    let mut copy = Request::new(());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// A new exchange for `request`, given `candidates` at `at(s)`.
fn start(
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
fn origin(
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
fn miss(
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
fn store(
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

fn stored(respond: Respond) -> (http::response::Parts, Option<CandidateId>) {
    match respond {
        Respond::Stored { head, body } => (head, body),
        other => panic!("expected a stored response, got {other:?}"),
    }
}

fn replied(next: Next) -> Reply {
    match next {
        Next::Reply(reply) => reply,
        other => panic!("expected Next::Reply, got {other:?}"),
    }
}

/// A stale (at 20 s) response with both validators, stored at 0.
fn stale_with_validators(rules: &CacheRules) -> StoredResponse {
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

fn uris(list: &[&'static str]) -> Vec<Uri> {
    list.iter().map(|s| Uri::from_static(s)).collect()
}

/// RFC 9111 §4.2: a fresh stored response is served without the origin, with its `Age`.
#[test]
fn rfc9111_4_2_fresh_hit_is_served_with_age() {
    let rules = CacheRules::default();
    let entry = store(
        &rules,
        &get(&[]),
        &resp(200, &[("cache-control", "max-age=60")]),
        0,
    );
    let (_, next) = start(&rules, &get(&[]), Overrides::default(), vec![entry], 10);
    let reply = replied(next);
    assert_eq!(reply.status.outcome, CacheOutcome::Hit);
    assert!(reply.status.is_hit());
    assert_eq!(reply.status.key.as_deref(), Some(URI));
    assert_eq!(reply.status.age, Some(secs(10)));
    assert_eq!(reply.status.ttl, Some(secs(50)));
    assert_eq!(reply.status.stored_at, Some(at(0)));
    assert_eq!(reply.status.fwd, None);
    assert_eq!(reply.status.fwd_status, None);
    let (head, body) = stored(reply.respond);
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["age"], "10");
    assert_eq!(head.headers["cache-control"], "max-age=60");
    assert_eq!(body, Some(CandidateId(0)));
}

/// RFC 9111 §3: with nothing stored the request is forwarded (`uri-miss`) and a storable
/// answer is passed on and stored, under the default mode.
#[test]
fn rfc9111_3_miss_is_forwarded_and_stored() {
    let rules = CacheRules::default();
    let request = get(&[]);
    let overrides = Overrides::default();
    assert_eq!(overrides.mode, CacheMode::Default);
    let (mut exchange, next) = start(&rules, &request, overrides, Vec::new(), 0);
    assert_eq!(exchange.mode(), CacheMode::Default);
    assert!(exchange.reads_store());
    assert!(exchange.may_reuse_others());
    assert_eq!(exchange.key().as_ref(), URI);
    assert!(matches!(next, Next::Forward { coalesce: true }), "{next:?}");
    let response = resp(200, &[("cache-control", "max-age=60")]);
    let (_, answer) = origin(&mut exchange, &rules, &request, &response, 0);
    assert!(matches!(answer.reply.respond, Respond::Origin));
    let status = answer.reply.status;
    assert_eq!(status.outcome, CacheOutcome::Miss);
    assert_eq!(status.fwd, Some(CacheStatusFwd::UriMiss));
    assert_eq!(status.fwd_status, Some(StatusCode::OK));
    assert_eq!(status.ttl, Some(secs(60)));
    assert_eq!(status.detail, None);
    assert!(answer.effects.invalidate.is_empty());
    assert!(!answer.effects.invalidate_own_key);
    let store = answer.effects.store.expect("stored");
    assert_eq!(store.ttl, secs(60));
    assert_eq!(store.content_length, None);
    assert!(store.superseded.is_empty());
    let entry = store.entry.response();
    assert_eq!(entry.method, Method::GET);
    assert_eq!(entry.uri, URI);
    assert_eq!(entry.status, StatusCode::OK);
    assert_eq!(entry.response_time, at(0));
}

/// RFC 9111 §3: a `no-store` response is passed on and not stored, with the reason.
#[test]
fn rfc9111_3_no_store_response_is_not_stored() {
    let rules = CacheRules::default();
    let response = resp(200, &[("cache-control", "no-store, max-age=60")]);
    let answer = miss(&rules, &get(&[]), &response, Overrides::default(), 0);
    assert!(matches!(answer.reply.respond, Respond::Origin));
    assert!(answer.effects.is_empty());
    assert_eq!(
        answer.reply.status.detail,
        Some(CacheStatusDetail::NotStorable(NotStorable::NoStore))
    );
}

/// RFC 9111 §4.1: responses stored for the key, none matching the request's `Vary` fields:
/// forwarded as a `vary-miss`, and the new variant supersedes nothing.
#[test]
fn rfc9111_4_1_vary_mismatch_is_a_vary_miss() {
    let rules = CacheRules::default();
    let response = resp(
        200,
        &[("cache-control", "max-age=60"), ("vary", "accept-language")],
    );
    let entry = store(&rules, &get(&[("accept-language", "en")]), &response, 0);
    let french = get(&[("accept-language", "fr")]);
    let (mut exchange, next) = start(&rules, &french, Overrides::default(), vec![entry], 10);
    assert!(matches!(next, Next::Forward { coalesce: true }), "{next:?}");
    let (_, answer) = origin(&mut exchange, &rules, &french, &response, 10);
    assert_eq!(answer.reply.status.fwd, Some(CacheStatusFwd::VaryMiss));
    assert_eq!(answer.reply.status.outcome, CacheOutcome::Miss);
    let store = answer.effects.store.expect("stored");
    assert!(store.superseded.is_empty());
    assert_eq!(
        store.entry.response().vary_request_headers["accept-language"],
        "fr"
    );
}

/// RFC 9111 §4.3.1: a stale response with validators is revalidated: the request goes out
/// with `If-None-Match` and `If-Modified-Since` from it, and may coalesce.
#[test]
fn rfc9111_4_3_1_stale_response_is_revalidated_with_its_validators() {
    let rules = CacheRules::default();
    let entry = stale_with_validators(&rules);
    let request = get(&[]);
    let (mut exchange, next) = start(&rules, &request, Overrides::default(), vec![entry], 20);
    assert!(matches!(next, Next::Forward { coalesce: true }), "{next:?}");
    let mut sent = copy(&request);
    exchange.depart(&mut sent);
    assert_eq!(sent.headers()["if-none-match"], "\"v1\"");
    assert_eq!(sent.headers()["if-modified-since"], LAST_MODIFIED);
    assert!(exchange.candidate(CandidateId(0)).is_some());
    assert!(exchange.candidate(CandidateId(1)).is_none());
}

/// RFC 9111 §4.3.3, §4.3.4: a 304 to the revalidation serves the stored response, freshened,
/// and asks to freshen that candidate in the store.
#[test]
fn rfc9111_4_3_4_not_modified_serves_and_freshens_the_stored_response() {
    let rules = CacheRules::default();
    let entry = stale_with_validators(&rules);
    let request = get(&[]);
    let (mut exchange, _) = start(&rules, &request, Overrides::default(), vec![entry], 20);
    let not_modified = resp(304, &[("cache-control", "max-age=10"), ("etag", "\"v1\"")]);
    let (_, answer) = origin(&mut exchange, &rules, &request, &not_modified, 20);
    let status = &answer.reply.status;
    assert_eq!(status.outcome, CacheOutcome::Revalidated);
    assert_eq!(status.fwd, Some(CacheStatusFwd::Stale));
    assert_eq!(status.fwd_status, Some(StatusCode::NOT_MODIFIED));
    assert!(status.stored);
    assert_eq!(status.ttl, Some(secs(10)));
    assert_eq!(answer.effects.freshen.len(), 1);
    let freshen = &answer.effects.freshen[0];
    assert_eq!(freshen.candidate, CandidateId(0));
    assert_eq!(freshen.entry.response().response_time, at(20));
    assert!(answer.effects.store.is_none());
    assert!(answer.effects.remove.is_empty());
    let (head, body) = stored(answer.reply.respond);
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["age"], "0");
    assert_eq!(head.headers["etag"], "\"v1\"");
    assert_eq!(body, Some(CandidateId(0)));
}

/// RFC 9111 §4.3.3: a full response to the revalidation is passed on and stored, superseding
/// the stored response it replaces.
#[test]
fn rfc9111_4_3_3_full_response_to_revalidation_supersedes_the_candidate() {
    let rules = CacheRules::default();
    let entry = stale_with_validators(&rules);
    let request = get(&[]);
    let (mut exchange, _) = start(&rules, &request, Overrides::default(), vec![entry], 20);
    let fresh = resp(200, &[("cache-control", "max-age=10"), ("etag", "\"v2\"")]);
    let (_, answer) = origin(&mut exchange, &rules, &request, &fresh, 20);
    assert!(matches!(answer.reply.respond, Respond::Origin));
    assert_eq!(answer.reply.status.outcome, CacheOutcome::Miss);
    assert_eq!(answer.reply.status.fwd, Some(CacheStatusFwd::Stale));
    assert_eq!(answer.reply.status.fwd_status, Some(StatusCode::OK));
    let store = answer.effects.store.expect("stored");
    assert_eq!(store.superseded, vec![CandidateId(0)]);
    assert_eq!(store.entry.response().headers["etag"], "\"v2\"");
    assert!(answer.effects.freshen.is_empty());
}

/// RFC 9111 §4.3.2: a client's conditional request that a fresh stored response satisfies
/// gets a 304 from the cache, without a body.
#[test]
fn rfc9111_4_3_2_client_conditional_request_gets_304_from_fresh_entry() {
    let rules = CacheRules::default();
    let response = resp(200, &[("cache-control", "max-age=60"), ("etag", "\"v1\"")]);
    let entry = store(&rules, &get(&[]), &response, 0);
    let request = get(&[("if-none-match", "\"v1\"")]);
    let (_, next) = start(&rules, &request, Overrides::default(), vec![entry], 10);
    let reply = replied(next);
    assert_eq!(reply.status.outcome, CacheOutcome::Hit);
    let (head, body) = stored(reply.respond);
    assert_eq!(head.status, StatusCode::NOT_MODIFIED);
    assert_eq!(head.headers["etag"], "\"v1\"");
    assert_eq!(head.headers["age"], "10");
    assert_eq!(body, None);
}

/// RFC 5861 §3: within `stale-while-revalidate`, a driver that can refresh in the background
/// answers with the stale response, then revalidates it.
#[test]
fn rfc5861_3_stale_while_revalidate_replies_then_refreshes() {
    let rules = CacheRules::default();
    let response = resp(
        200,
        &[
            ("cache-control", "max-age=10, stale-while-revalidate=60"),
            ("etag", "\"v1\""),
        ],
    );
    let entry = store(&rules, &get(&[]), &response, 0);
    let request = get(&[]);
    let overrides = Overrides::default().background_refresh(true);
    let (mut exchange, next) = start(&rules, &request, overrides, vec![entry], 20);
    let Next::ReplyAndRefresh(reply) = next else {
        panic!("expected ReplyAndRefresh, got {next:?}");
    };
    assert_eq!(reply.status.outcome, CacheOutcome::Stale);
    assert_eq!(reply.status.age, Some(secs(20)));
    let (head, body) = stored(reply.respond);
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["age"], "20");
    assert_eq!(body, Some(CandidateId(0)));
    let not_modified = resp(304, &[("cache-control", "max-age=10"), ("etag", "\"v1\"")]);
    let (sent, answer) = origin(&mut exchange, &rules, &request, &not_modified, 21);
    assert_eq!(sent.headers()["if-none-match"], "\"v1\"");
    assert_eq!(answer.reply.status.outcome, CacheOutcome::Revalidated);
    assert_eq!(answer.reply.status.fwd, Some(CacheStatusFwd::Stale));
    assert_eq!(answer.effects.freshen.len(), 1);
    assert_eq!(answer.effects.freshen[0].candidate, CandidateId(0));
}

/// RFC 5861 §3: without a way to refresh in the background, `stale-while-revalidate`
/// revalidates before answering (`fwd=stale`), alone.
#[test]
fn rfc5861_3_stale_while_revalidate_without_background_refresh_revalidates_first() {
    let rules = CacheRules::default();
    let response = resp(
        200,
        &[
            ("cache-control", "max-age=10, stale-while-revalidate=60"),
            ("etag", "\"v1\""),
        ],
    );
    let entry = store(&rules, &get(&[]), &response, 0);
    let request = get(&[]);
    let overrides = Overrides::default().background_refresh(false);
    let (mut exchange, next) = start(&rules, &request, overrides, vec![entry], 20);
    assert!(
        matches!(next, Next::Forward { coalesce: false }),
        "{next:?}"
    );
    let not_modified = resp(304, &[("cache-control", "max-age=10"), ("etag", "\"v1\"")]);
    let (sent, answer) = origin(&mut exchange, &rules, &request, &not_modified, 20);
    assert_eq!(sent.headers()["if-none-match"], "\"v1\"");
    assert_eq!(answer.reply.status.fwd, Some(CacheStatusFwd::Stale));
    assert_eq!(answer.reply.status.outcome, CacheOutcome::Revalidated);
    let (_, body) = stored(answer.reply.respond);
    assert_eq!(body, Some(CandidateId(0)));
}

/// A response with `stale-if-error=60`, stored at 0, stale from 10.
fn stale_if_error(rules: &CacheRules) -> StoredResponse {
    let response = resp(200, &[("cache-control", "max-age=10, stale-if-error=60")]);
    store(rules, &get(&[]), &response, 0)
}

/// RFC 5861 §4: the origin cannot be reached, and `stale-if-error` allows the stale response.
#[test]
fn rfc5861_4_on_error_serves_stale_if_error() {
    let rules = CacheRules::default();
    let request = get(&[]);
    let (mut exchange, next) = start(
        &rules,
        &request,
        Overrides::default(),
        vec![stale_if_error(&rules)],
        20,
    );
    assert!(matches!(next, Next::Forward { coalesce: true }), "{next:?}");
    exchange.depart(&mut copy(&request));
    let reply = exchange.on_error(&rules, at(20)).expect("stale-if-error");
    assert_eq!(reply.status.outcome, CacheOutcome::Stale);
    assert_eq!(reply.status.detail, Some(CacheStatusDetail::StaleIfError));
    assert_eq!(reply.status.fwd, Some(CacheStatusFwd::Stale));
    let (head, body) = stored(reply.respond);
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["age"], "20");
    assert_eq!(body, Some(CandidateId(0)));
}

/// RFC 5861 §4: a 500 from the origin is replaced by the stale response `stale-if-error`
/// allows, and nothing is stored.
#[test]
fn rfc5861_4_server_error_is_replaced_by_stale_if_error() {
    let rules = CacheRules::default();
    let request = get(&[]);
    let (mut exchange, _) = start(
        &rules,
        &request,
        Overrides::default(),
        vec![stale_if_error(&rules)],
        20,
    );
    let (_, answer) = origin(&mut exchange, &rules, &request, &resp(500, &[]), 20);
    assert!(answer.effects.is_empty());
    let status = &answer.reply.status;
    assert_eq!(status.outcome, CacheOutcome::Stale);
    assert_eq!(status.detail, Some(CacheStatusDetail::StaleIfError));
    assert_eq!(status.fwd, Some(CacheStatusFwd::Stale));
    assert_eq!(status.fwd_status, Some(StatusCode::INTERNAL_SERVER_ERROR));
    let (head, body) = stored(answer.reply.respond);
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(body, Some(CandidateId(0)));
}

/// RFC 5861 §4: without `stale-if-error` (or beyond its window) the error goes to the client.
#[test]
fn rfc5861_4_on_error_without_stale_if_error_is_none() {
    let rules = CacheRules::default();
    let request = get(&[]);
    let plain = store(
        &rules,
        &request,
        &resp(200, &[("cache-control", "max-age=10")]),
        0,
    );
    let (mut exchange, _) = start(&rules, &request, Overrides::default(), vec![plain], 20);
    exchange.depart(&mut copy(&request));
    assert!(exchange.on_error(&rules, at(20)).is_none());

    let (mut exchange, _) = start(
        &rules,
        &request,
        Overrides::default(),
        vec![stale_if_error(&rules)],
        100,
    );
    exchange.depart(&mut copy(&request));
    assert!(
        exchange.on_error(&rules, at(100)).is_none(),
        "beyond the window"
    );
}

/// RFC 5861 §4: an origin that times out is answered like one that fails: stale when
/// `stale-if-error` allows.
#[test]
fn rfc5861_4_on_timeout_serves_stale_if_error() {
    let rules = CacheRules::default();
    let request = get(&[]);
    let (mut exchange, _) = start(
        &rules,
        &request,
        Overrides::default(),
        vec![stale_if_error(&rules)],
        20,
    );
    exchange.depart(&mut copy(&request));
    let reply = exchange.on_timeout(&rules, at(20));
    assert_eq!(reply.status.outcome, CacheOutcome::Stale);
    assert_eq!(reply.status.detail, Some(CacheStatusDetail::StaleIfError));
    let (head, body) = stored(reply.respond);
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(body, Some(CandidateId(0)));
}

/// RFC 9111 §4 (no stale response allowed): an origin that times out gets a generated 504,
/// `detail=origin-timeout`.
#[test]
fn rfc9111_4_on_timeout_without_stale_response_is_504() {
    let rules = CacheRules::default();
    let request = get(&[]);
    let (mut exchange, _) = start(&rules, &request, Overrides::default(), Vec::new(), 0);
    exchange.depart(&mut copy(&request));
    let reply = exchange.on_timeout(&rules, at(30));
    assert!(matches!(
        reply.respond,
        Respond::Generated(StatusCode::GATEWAY_TIMEOUT)
    ));
    assert_eq!(reply.status.outcome, CacheOutcome::Generated);
    assert_eq!(reply.status.detail, Some(CacheStatusDetail::OriginTimeout));
    assert_eq!(reply.status.fwd, Some(CacheStatusFwd::UriMiss));
}

/// RFC 9111 §4.3.5 / RFC 9110 §9.3.2: a HEAD request is answered from a stored GET response,
/// without its body.
#[test]
fn rfc9111_4_3_5_head_hit_is_served_without_body() {
    let rules = CacheRules::default();
    let entry = store(
        &rules,
        &get(&[]),
        &resp(200, &[("cache-control", "max-age=60")]),
        0,
    );
    let head_request = req("HEAD", URI, &[]);
    let (_, next) = start(&rules, &head_request, Overrides::default(), vec![entry], 10);
    let reply = replied(next);
    assert_eq!(reply.status.outcome, CacheOutcome::Hit);
    let (head, body) = stored(reply.respond);
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["age"], "10");
    assert_eq!(body, None);
}

/// A GET response with an ETag and a length, stale from 10.
fn stale_get_with_length(rules: &CacheRules) -> StoredResponse {
    let response = resp(
        200,
        &[
            ("cache-control", "max-age=10"),
            ("etag", "\"v1\""),
            ("content-length", "5"),
        ],
    );
    store(rules, &get(&[]), &response, 0)
}

/// RFC 9111 §4.3.5: a 200 to HEAD that matches a stored GET response freshens it.
#[test]
fn rfc9111_4_3_5_head_response_freshens_matching_get_response() {
    let rules = CacheRules::default();
    let head_request = req("HEAD", URI, &[]);
    let (mut exchange, next) = start(
        &rules,
        &head_request,
        Overrides::default(),
        vec![stale_get_with_length(&rules)],
        20,
    );
    assert!(matches!(next, Next::Forward { .. }), "{next:?}");
    let response = resp(
        200,
        &[
            ("cache-control", "max-age=10"),
            ("etag", "\"v1\""),
            ("content-length", "5"),
        ],
    );
    let (_, answer) = origin(&mut exchange, &rules, &head_request, &response, 20);
    assert!(matches!(answer.reply.respond, Respond::Origin));
    assert_eq!(answer.effects.freshen.len(), 1);
    assert_eq!(answer.effects.freshen[0].candidate, CandidateId(0));
    assert_eq!(
        answer.effects.freshen[0].entry.response().response_time,
        at(20)
    );
    assert!(answer.effects.remove.is_empty());
    assert!(answer.effects.store.is_none());
}

/// RFC 9111 §4.3.5: a 200 to HEAD that contradicts a stored GET response (another ETag)
/// removes it.
#[test]
fn rfc9111_4_3_5_head_response_removes_contradicted_get_response() {
    let rules = CacheRules::default();
    let head_request = req("HEAD", URI, &[]);
    let (mut exchange, _) = start(
        &rules,
        &head_request,
        Overrides::default(),
        vec![stale_get_with_length(&rules)],
        20,
    );
    let response = resp(200, &[("cache-control", "max-age=10"), ("etag", "\"v2\"")]);
    let (_, answer) = origin(&mut exchange, &rules, &head_request, &response, 20);
    assert!(matches!(answer.reply.respond, Respond::Origin));
    assert_eq!(answer.effects.remove, vec![CandidateId(0)]);
    assert!(answer.effects.freshen.is_empty());
    assert!(answer.effects.store.is_none());
}

/// RFC 9111 §4.4: POST, PUT and DELETE answered 2xx invalidate the target URI and a
/// same-origin `Location`, not a `Content-Location` of another origin.
#[test]
fn rfc9111_4_4_unsafe_success_invalidates_target_and_same_origin_locations() {
    let rules = CacheRules::default();
    for method in ["POST", "PUT", "DELETE"] {
        let request = req(method, URI, &[]);
        let (mut exchange, next) = start(&rules, &request, Overrides::default(), Vec::new(), 0);
        assert!(!exchange.reads_store(), "{method}");
        assert!(
            matches!(next, Next::Forward { coalesce: false }),
            "{method}: {next:?}"
        );
        let response = resp(
            200,
            &[
                ("location", "/created"),
                ("content-location", "http://elsewhere.example/c"),
            ],
        );
        let (_, answer) = origin(&mut exchange, &rules, &request, &response, 0);
        assert!(matches!(answer.reply.respond, Respond::Origin), "{method}");
        assert_eq!(
            answer.effects.invalidate,
            uris(&[URI, "http://example.com/created"]),
            "{method}"
        );
        assert!(!answer.effects.invalidate_own_key, "{method}");
        assert!(answer.effects.store.is_none(), "{method}");
        assert_eq!(
            answer.reply.status.fwd,
            Some(CacheStatusFwd::Method),
            "{method}"
        );
    }
    // Content-Location of the same origin counts too.
    let request = req("PUT", URI, &[]);
    let response = resp(201, &[("content-location", "/resource?v=2")]);
    let answer = miss(&rules, &request, &response, Overrides::default(), 0);
    assert_eq!(
        answer.effects.invalidate,
        uris(&[URI, "http://example.com/resource?v=2"])
    );
}

/// RFC 9111 §4.4: an unsafe request that fails (5xx) invalidates nothing, its own key neither.
#[test]
fn rfc9111_4_4_unsafe_server_error_invalidates_nothing() {
    let rules = CacheRules::default();
    let request = req("POST", URI, &[]);
    for overrides in [
        Overrides::default(),
        Overrides::default().explicit_key(true),
    ] {
        let answer = miss(&rules, &request, &resp(500, &[]), overrides, 0);
        assert!(answer.effects.invalidate.is_empty());
        assert!(!answer.effects.invalidate_own_key);
        assert!(answer.effects.is_empty());
        assert!(matches!(answer.reply.respond, Respond::Origin));
    }
}

/// RFC 9111 §4.4, by key: an unsafe request with a key the caller chose invalidates that key
/// too, and only then.
#[test]
fn rfc9111_4_4_explicit_key_invalidates_own_key() {
    let rules = CacheRules::default();
    let request = req("DELETE", URI, &[]);
    let with_key = miss(
        &rules,
        &request,
        &resp(204, &[]),
        Overrides::default().explicit_key(true),
        0,
    );
    assert!(with_key.effects.invalidate_own_key);
    assert_eq!(with_key.effects.invalidate, uris(&[URI]));
    let without = miss(&rules, &request, &resp(204, &[]), Overrides::default(), 0);
    assert!(!without.effects.invalidate_own_key);
    assert_eq!(without.effects.invalidate, uris(&[URI]));
}

/// RFC 9111 §5.2.1.7: `only-if-cached` with nothing stored is answered 504 by the cache.
#[test]
fn rfc9111_5_2_1_7_only_if_cached_with_nothing_stored_is_504() {
    let rules = CacheRules::default();
    let request = get(&[("cache-control", "only-if-cached")]);
    let (_, next) = start(&rules, &request, Overrides::default(), Vec::new(), 0);
    let reply = replied(next);
    assert!(matches!(
        reply.respond,
        Respond::Generated(StatusCode::GATEWAY_TIMEOUT)
    ));
    assert_eq!(reply.status.outcome, CacheOutcome::Generated);
    assert_eq!(reply.status.detail, Some(CacheStatusDetail::OnlyIfCached));
    assert_eq!(reply.status.key.as_deref(), Some(URI));
}

/// RFC 9111 §5.2.1.7: `only-if-cached` on a request that is never looked up (POST) still
/// never reaches the origin.
#[test]
fn rfc9111_5_2_1_7_only_if_cached_unsafe_request_is_504() {
    let rules = CacheRules::default();
    let request = req("POST", URI, &[("cache-control", "only-if-cached")]);
    let (_, next) = start(&rules, &request, Overrides::default(), Vec::new(), 0);
    let reply = replied(next);
    assert!(matches!(
        reply.respond,
        Respond::Generated(StatusCode::GATEWAY_TIMEOUT)
    ));
    assert_eq!(reply.status.detail, Some(CacheStatusDetail::OnlyIfCached));
}

/// RFC 9111 §5.2.1.7 as a mode: `CacheMode::OnlyIfCached` answers 504 with nothing stored,
/// and serves a stored response however stale.
#[test]
fn rfc9111_5_2_1_7_only_if_cached_mode_serves_stale_or_504() {
    let rules = CacheRules::default();
    let request = get(&[]);
    let overrides = Overrides::default().mode(CacheMode::OnlyIfCached);
    let (_, next) = start(&rules, &request, overrides, Vec::new(), 0);
    let reply = replied(next);
    assert!(matches!(
        reply.respond,
        Respond::Generated(StatusCode::GATEWAY_TIMEOUT)
    ));
    assert_eq!(reply.status.outcome, CacheOutcome::Generated);
    assert_eq!(reply.status.detail, Some(CacheStatusDetail::OnlyIfCached));

    let entry = store(
        &rules,
        &request,
        &resp(200, &[("cache-control", "max-age=10")]),
        0,
    );
    let (_, next) = start(&rules, &request, overrides, vec![entry], 1000);
    let reply = replied(next);
    assert_eq!(reply.status.outcome, CacheOutcome::Stale);
    let (head, body) = stored(reply.respond);
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["age"], "1000");
    assert_eq!(body, Some(CandidateId(0)));
}

/// Fetch `no-store` mode: neither look up nor store, even with `only-if-cached` (the mode
/// wins), but still invalidate after an unsafe request (RFC 9111 §4.4).
#[test]
fn mode_no_store_neither_reads_nor_stores_but_invalidates() {
    let rules = CacheRules::default();
    let overrides = Overrides::default().mode(CacheMode::NoStore);
    let request = get(&[("cache-control", "only-if-cached")]);
    let (mut exchange, next) = start(&rules, &request, overrides, Vec::new(), 0);
    assert!(!exchange.reads_store());
    assert!(!exchange.may_reuse_others());
    assert!(
        matches!(next, Next::Forward { coalesce: false }),
        "{next:?}"
    );
    let response = resp(200, &[("cache-control", "max-age=60")]);
    let (_, answer) = origin(&mut exchange, &rules, &request, &response, 0);
    assert!(matches!(answer.reply.respond, Respond::Origin));
    assert!(answer.effects.is_empty());
    assert_eq!(answer.reply.status.fwd, Some(CacheStatusFwd::Request));
    assert_eq!(answer.reply.status.ttl, None);

    let post = req("POST", URI, &[]);
    let answer = miss(&rules, &post, &resp(200, &[]), overrides, 0);
    assert_eq!(answer.effects.invalidate, uris(&[URI]));
    assert!(answer.effects.store.is_none());
}

/// Fetch `reload` mode: no lookup (even with `only-if-cached`), straight to the origin, and
/// the answer is stored.
#[test]
fn mode_reload_skips_lookup_and_stores() {
    let rules = CacheRules::default();
    let overrides = Overrides::default().mode(CacheMode::Reload);
    let request = get(&[("cache-control", "only-if-cached")]);
    let (mut exchange, next) = start(&rules, &request, overrides, Vec::new(), 0);
    assert!(!exchange.reads_store());
    assert!(
        matches!(next, Next::Forward { coalesce: false }),
        "{next:?}"
    );
    let response = resp(200, &[("cache-control", "max-age=60")]);
    let (_, answer) = origin(&mut exchange, &rules, &request, &response, 0);
    assert!(matches!(answer.reply.respond, Respond::Origin));
    assert_eq!(answer.reply.status.fwd, Some(CacheStatusFwd::Request));
    assert!(answer.effects.store.is_some());
}

/// Fetch `no-cache` mode: even a fresh stored response is revalidated before reuse.
#[test]
fn mode_no_cache_revalidates_fresh_response() {
    let rules = CacheRules::default();
    let response = resp(200, &[("cache-control", "max-age=60"), ("etag", "\"v1\"")]);
    let entry = store(&rules, &get(&[]), &response, 0);
    let request = get(&[]);
    let overrides = Overrides::default().mode(CacheMode::NoCache);
    let (mut exchange, next) = start(&rules, &request, overrides, vec![entry], 10);
    assert!(exchange.reads_store());
    assert!(matches!(next, Next::Forward { coalesce: true }), "{next:?}");
    let not_modified = resp(304, &[("cache-control", "max-age=60"), ("etag", "\"v1\"")]);
    let (sent, answer) = origin(&mut exchange, &rules, &request, &not_modified, 10);
    assert_eq!(sent.headers()["if-none-match"], "\"v1\"");
    assert_eq!(answer.reply.status.outcome, CacheOutcome::Revalidated);
    assert_eq!(
        answer.reply.status.fwd_status,
        Some(StatusCode::NOT_MODIFIED)
    );
    assert_eq!(answer.effects.freshen.len(), 1);
    let (_, body) = stored(answer.reply.respond);
    assert_eq!(body, Some(CandidateId(0)));
}

/// Fetch `force-cache` mode: a stale stored response is served without the origin; with
/// nothing stored, the request goes to the origin and its answer is stored.
#[test]
fn mode_force_cache_serves_stale_or_forwards_and_stores() {
    let rules = CacheRules::default();
    let request = get(&[]);
    let overrides = Overrides::default().mode(CacheMode::ForceCache);
    let entry = store(
        &rules,
        &request,
        &resp(200, &[("cache-control", "max-age=10")]),
        0,
    );
    let (_, next) = start(&rules, &request, overrides, vec![entry], 1000);
    let reply = replied(next);
    assert_eq!(reply.status.outcome, CacheOutcome::Stale);
    let (head, body) = stored(reply.respond);
    assert_eq!(head.headers["age"], "1000");
    assert_eq!(body, Some(CandidateId(0)));

    let (mut exchange, next) = start(&rules, &request, overrides, Vec::new(), 0);
    assert!(matches!(next, Next::Forward { .. }), "{next:?}");
    let response = resp(200, &[("cache-control", "max-age=60")]);
    let (_, answer) = origin(&mut exchange, &rules, &request, &response, 0);
    assert_eq!(answer.reply.status.fwd, Some(CacheStatusFwd::UriMiss));
    assert!(answer.effects.store.is_some());
}

/// `IgnoreRules` mode: a `no-store` response is stored (for its own freshness) and reused.
#[test]
fn mode_ignore_rules_stores_a_no_store_response() {
    let rules = CacheRules::default();
    let request = get(&[]);
    let overrides = Overrides::default().mode(CacheMode::IgnoreRules);
    let response = resp(200, &[("cache-control", "no-store, max-age=60")]);
    let answer = miss(&rules, &request, &response, overrides, 0);
    assert!(matches!(answer.reply.respond, Respond::Origin));
    assert_eq!(answer.reply.status.ttl, Some(secs(60)));
    let entry = answer
        .effects
        .store
        .expect("stored")
        .entry
        .response()
        .clone();
    let (_, next) = start(&rules, &request, overrides, vec![entry], 10);
    assert_eq!(replied(next).status.outcome, CacheOutcome::Hit);
}

/// RFC 9111 §4.2.1 with a TTL override: the stored `Cache-Control` gets `max-age=<ttl>` and
/// keeps `must-revalidate` and `stale-if-error`; the status reports the override.
#[test]
fn rfc9111_4_2_1_ttl_override_keeps_other_directives() {
    let rules = CacheRules::default();
    let request = get(&[]);
    let overrides = Overrides::default().ttl(Some(secs(60)));
    let response = resp(
        200,
        &[(
            "cache-control",
            "max-age=5, must-revalidate, stale-if-error=600",
        )],
    );
    let answer = miss(&rules, &request, &response, overrides, 0);
    assert_eq!(answer.reply.status.ttl, Some(secs(60)));
    let store = answer.effects.store.expect("stored");
    assert_eq!(store.ttl, secs(60));
    let entry = store.entry.response().clone();
    assert_eq!(
        entry.headers["cache-control"],
        "must-revalidate, stale-if-error=600, max-age=60"
    );
    let (_, next) = start(&rules, &request, Overrides::default(), vec![entry], 30);
    let reply = replied(next);
    assert_eq!(reply.status.outcome, CacheOutcome::Hit);
    assert_eq!(reply.status.ttl, Some(secs(30)));
}

/// A TTL override under the default mode changes how long a storable response is fresh, not
/// whether a response is storable: a `no-store` response stays unstored (as `CacheTtl`
/// documents: "stored when storable, or always under IgnoreRules").
#[test]
fn rfc9111_3_ttl_override_does_not_store_a_no_store_response_by_default() {
    let rules = CacheRules::default();
    let overrides = Overrides::default().ttl(Some(secs(60)));
    let response = resp(200, &[("cache-control", "no-store")]);
    let answer = miss(&rules, &get(&[]), &response, overrides, 0);
    assert!(answer.effects.store.is_none());
    assert_eq!(
        answer.reply.status.detail,
        Some(CacheStatusDetail::NotStorable(NotStorable::NoStore))
    );
}

/// A TTL override under `IgnoreRules`: a `no-store` response, or one without any caching
/// header, is stored as `max-age=<ttl>` and later lookups by the usual rules agree.
#[test]
fn mode_ignore_rules_with_ttl_override_stores_for_the_ttl() {
    let rules = CacheRules::default();
    let request = get(&[]);
    let overrides = Overrides::default()
        .mode(CacheMode::IgnoreRules)
        .ttl(Some(secs(60)));
    for response in [resp(200, &[("cache-control", "no-store")]), resp(200, &[])] {
        let answer = miss(&rules, &request, &response, overrides, 0);
        assert_eq!(answer.reply.status.ttl, Some(secs(60)));
        let store = answer.effects.store.expect("stored");
        assert_eq!(store.ttl, secs(60));
        let entry = store.entry.response().clone();
        assert_eq!(entry.headers["cache-control"], "max-age=60");
        let (_, next) = start(&rules, &request, Overrides::default(), vec![entry], 30);
        let reply = replied(next);
        assert_eq!(reply.status.outcome, CacheOutcome::Hit);
        let (head, _) = stored(reply.respond);
        assert_eq!(head.headers["cache-control"], "max-age=60");
    }
}

/// RFC 9111 §4 / RFC 9211 `fwd=method`: a POST without a key of the caller's goes to the
/// origin alone and is never stored, even when POST is a cacheable method.
#[test]
fn rfc9111_4_post_without_explicit_key_is_forwarded_and_not_stored() {
    let configured = CacheRules::new(PolicyOptions::default().cacheable_methods([
        Method::GET,
        Method::HEAD,
        Method::POST,
    ]));
    for rules in [CacheRules::default(), configured] {
        let request = req("POST", URI, &[]);
        let (mut exchange, next) = start(&rules, &request, Overrides::default(), Vec::new(), 0);
        assert!(!exchange.reads_store());
        assert!(
            matches!(next, Next::Forward { coalesce: false }),
            "{next:?}"
        );
        let response = resp(200, &[("cache-control", "max-age=60")]);
        let (_, answer) = origin(&mut exchange, &rules, &request, &response, 0);
        assert_eq!(answer.reply.status.fwd, Some(CacheStatusFwd::Method));
        assert!(answer.effects.store.is_none());
        assert_eq!(answer.effects.invalidate, uris(&[URI]));
    }
}

/// RFC 9111 §3 (methods defined as cacheable): with POST configured and a key of the
/// caller's, a POST response is stored and reused by a POST with that key.
#[test]
fn rfc9111_3_post_with_explicit_key_and_cacheable_method_is_stored() {
    let rules = CacheRules::new(PolicyOptions::default().cacheable_methods([
        Method::GET,
        Method::HEAD,
        Method::POST,
    ]));
    let request = req("POST", URI, &[]);
    let overrides = Overrides::default().explicit_key(true);
    let (mut exchange, next) = start(&rules, &request, overrides, Vec::new(), 0);
    assert!(exchange.reads_store());
    assert!(matches!(next, Next::Forward { coalesce: true }), "{next:?}");
    let response = resp(200, &[("cache-control", "max-age=60")]);
    let (_, answer) = origin(&mut exchange, &rules, &request, &response, 0);
    assert_eq!(answer.reply.status.fwd, Some(CacheStatusFwd::UriMiss));
    // The invalidations come first (§4.4), then the write.
    assert!(answer.effects.invalidate_own_key);
    let entry = answer
        .effects
        .store
        .expect("stored")
        .entry
        .response()
        .clone();
    assert_eq!(entry.method, Method::POST);
    let (_, next) = start(&rules, &request, overrides, vec![entry], 10);
    assert_eq!(replied(next).status.outcome, CacheOutcome::Hit);
}

/// The body size limit: a response announcing a longer body is passed on, not stored,
/// `detail=too-large`; one at the limit is stored.
#[test]
fn body_size_limit_refuses_announced_large_body() {
    let rules = CacheRules::default().max_body_size(Some(10));
    let large = resp(
        200,
        &[("cache-control", "max-age=60"), ("content-length", "100")],
    );
    let answer = miss(&rules, &get(&[]), &large, Overrides::default(), 0);
    assert!(matches!(answer.reply.respond, Respond::Origin));
    assert!(answer.effects.store.is_none());
    assert_eq!(
        answer.reply.status.detail,
        Some(CacheStatusDetail::TooLarge)
    );
    assert_eq!(answer.reply.status.ttl, None);

    let small = resp(
        200,
        &[("cache-control", "max-age=60"), ("content-length", "10")],
    );
    let answer = miss(&rules, &get(&[]), &small, Overrides::default(), 0);
    assert_eq!(
        answer.effects.store.expect("stored").content_length,
        Some(10)
    );
}

/// RFC 9111 §4.3.3: a 304 that matches no stored response, to an unconditional client
/// request, cannot be used: the cache answers 502, `detail=unmatched-304`, and stores nothing.
#[test]
fn rfc9111_4_3_3_unmatched_304_to_unconditional_request_is_502() {
    let rules = CacheRules::default();
    let entry = stale_with_validators(&rules);
    let request = get(&[]);
    let (mut exchange, _) = start(&rules, &request, Overrides::default(), vec![entry], 20);
    let not_modified = resp(304, &[("etag", "\"v2\"")]);
    let (_, answer) = origin(&mut exchange, &rules, &request, &not_modified, 20);
    assert!(matches!(
        answer.reply.respond,
        Respond::Generated(StatusCode::BAD_GATEWAY)
    ));
    assert_eq!(
        answer.reply.status.detail,
        Some(CacheStatusDetail::Unmatched304)
    );
    assert_eq!(
        answer.reply.status.fwd_status,
        Some(StatusCode::NOT_MODIFIED)
    );
    assert!(answer.effects.is_empty());
}

/// RFC 9111 §4.3.3: a 304 that matches no stored response, to a client's own conditional
/// request, is the client's to use: passed on.
#[test]
fn rfc9111_4_3_3_unmatched_304_to_conditional_request_passes_through() {
    let rules = CacheRules::default();
    let entry = stale_with_validators(&rules);
    let request = get(&[("if-none-match", "\"v2\"")]);
    let (mut exchange, _) = start(&rules, &request, Overrides::default(), vec![entry], 20);
    let not_modified = resp(304, &[("etag", "\"v2\"")]);
    let (_, answer) = origin(&mut exchange, &rules, &request, &not_modified, 20);
    assert!(matches!(answer.reply.respond, Respond::Origin));
    assert!(answer.effects.is_empty());
}

/// RFC 9112 §3.2.2: `depart` makes `Host` agree with the authority of an absolute target.
#[test]
fn rfc9112_3_2_2_depart_rewrites_host_to_target_authority() {
    let rules = CacheRules::default();
    for (uri, host) in [
        (URI, "example.com"),
        ("http://example.com:8080/x", "example.com:8080"),
    ] {
        let request = req("GET", uri, &[("host", "other.example")]);
        let mut exchange = Ex::new(&rules, &request, uri.into(), Overrides::default());
        let next = exchange.on_stored(&rules, &request, Vec::new(), at(0));
        assert!(matches!(next, Next::Forward { .. }), "{next:?}");
        let mut sent = copy(&request);
        exchange.depart(&mut sent);
        assert_eq!(sent.headers()["host"], host);
        assert_eq!(sent.headers().get_all("host").iter().count(), 1);
    }
}

/// Safe fallback: an answer fed without `depart` (the exchange does not know what was sent)
/// is passed on and changes nothing in the store; an error then has no stale reply.
#[test]
fn on_response_without_depart_passes_through_without_effects() {
    let rules = CacheRules::default();
    let request = get(&[]);
    let entry = stale_if_error(&rules);
    let (mut exchange, next) = start(&rules, &request, Overrides::default(), vec![entry], 20);
    assert!(matches!(next, Next::Forward { .. }), "{next:?}");
    let response = resp(200, &[("cache-control", "max-age=60")]);
    let answer = exchange.on_response(&rules, &response, at(20), at(20));
    assert!(matches!(answer.reply.respond, Respond::Origin));
    assert!(answer.effects.is_empty());
    assert_eq!(answer.reply.status.outcome, CacheOutcome::Miss);
    assert_eq!(answer.reply.status.fwd_status, Some(StatusCode::OK));
    assert!(exchange.on_error(&rules, at(20)).is_none());
}

/// `CacheMode::Disabled` bypasses the cache: no lookup, no storage, no invalidation.
#[test]
fn mode_disabled_stores_and_invalidates_nothing() {
    let rules = CacheRules::default();
    let overrides = Overrides::default().mode(CacheMode::Disabled);
    let response = resp(200, &[("cache-control", "max-age=60")]);
    let answer = miss(&rules, &get(&[]), &response, overrides, 0);
    assert!(answer.effects.store.is_none());
    let answer = miss(
        &rules,
        &req("POST", URI, &[]),
        &resp(200, &[]),
        overrides,
        0,
    );
    assert!(answer.effects.invalidate.is_empty());
}
