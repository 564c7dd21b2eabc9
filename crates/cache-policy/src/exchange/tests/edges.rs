//! The body size limit, unusable 304s, `Host` alignment and misuse of the machine.

use super::stale::stale_if_error;
use super::*;

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
