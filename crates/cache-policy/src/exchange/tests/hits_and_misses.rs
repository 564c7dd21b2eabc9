//! RFC 9111 §3, §4.1, §4.2, §4.3.1–§4.3.4: hits, misses, variants and revalidation.

use super::*;

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
