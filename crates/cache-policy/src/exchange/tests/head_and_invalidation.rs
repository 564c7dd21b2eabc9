//! RFC 9111 §4.3.5 HEAD, §4.4 invalidation and §5.2.1.7 only-if-cached.

use super::*;

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
