//! Cache modes, the TTL override and methods cached by an explicit key.

use super::*;

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
