//! RFC 5861: serving stale while revalidating and on error; the origin timeout.

use super::*;

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
pub(super) fn stale_if_error(rules: &CacheRules) -> StoredResponse {
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
