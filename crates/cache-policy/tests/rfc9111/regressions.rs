//! Regression tests for bugs found in other caches (see the peers survey): each must stay
//! impossible here.

use cache_policy::{Lookup, ResponseAction};

use crate::helpers::*;

fn stale(cc: &str, policy: &cache_policy::CachePolicy) -> [cache_policy::StoredResponse; 1] {
    [store(
        policy,
        &get(&[]),
        &resp(
            200,
            &[("cache-control", cc), ("etag", "\"e\""), ("date", &date(0))],
        ),
    )]
}

/// http-cache-semantics #22, undici #5508: `max-stale` must not override `no-cache`,
/// `must-revalidate`, `proxy-revalidate` or `s-maxage` (RFC 9111 §4.2.4).
#[test]
fn rfc9111_4_2_4_max_stale_does_not_override_no_cache_or_must_revalidate() {
    let max_stale = get(&[("cache-control", "max-stale")]);
    for (policy, cc) in [
        (private(), "no-cache"),
        (private(), "no-cache, max-age=100"),
        (private(), "max-age=10, must-revalidate"),
        (shared(), "max-age=10, proxy-revalidate"),
        (shared(), "s-maxage=10"),
    ] {
        let got = policy.lookup(&max_stale, &stale(cc, &policy), at(50));
        assert_eq!(kind(&got), "revalidate", "{cc}");
    }
}

/// http-cache-semantics #36: the apparent age from `Date` must count (RFC 9111 §4.2.3).
#[test]
fn rfc9111_4_2_3_apparent_age_from_date_counts() {
    let policy = private();
    let entry = [store(
        &policy,
        &get(&[]),
        &resp(
            200,
            &[("cache-control", "max-age=60"), ("date", &date(-3600))],
        ),
    )];
    assert_eq!(kind(&policy.lookup(&get(&[]), &entry, at(0))), "revalidate");
    assert_eq!(policy.freshness(&entry[0], at(0)).age, secs(3600));
}

/// http-cache-semantics #35: `Date` must not be rewritten on hits, or downstream caches
/// double-count the age (RFC 9111 §4.2.3, §5.1).
#[test]
fn rfc9111_4_2_3_date_is_not_rewritten_on_hits() {
    let policy = private();
    let sent = date(-5);
    let entry = [store(
        &policy,
        &get(&[]),
        &resp(200, &[("cache-control", "max-age=600"), ("date", &sent)]),
    )];
    let serve = fresh(policy.lookup(&get(&[]), &entry, at(100)));
    let head = serve.response_head(&entry[serve.index]);
    assert_eq!(values(&head.headers, "date"), std::slice::from_ref(&sent));
    assert_eq!(head.headers["age"], "105");
    let Lookup::NotModified(serve) =
        policy.lookup(&get(&[("if-none-match", "*")]), &entry, at(100))
    else {
        panic!()
    };
    let head = serve.response_head(&entry[serve.index]);
    assert_eq!(head.status, 304);
    assert_eq!(values(&head.headers, "date"), [sent]);
}

/// http-cache-semantics #37: revalidation uses the new request, not the stored one
/// (RFC 9111 §4.3.1: the cache "starts with a request it is attempting to satisfy").
#[test]
fn rfc9111_4_3_1_revalidation_uses_the_new_request() {
    let policy = private();
    let old = req(
        "GET",
        "http://example.com/resource?v=1",
        &[("x-old", "1"), ("accept", "a")],
    );
    let entry = [store(
        &policy,
        &old,
        &resp(200, &[("cache-control", "max-age=10"), ("etag", "\"e\"")]),
    )];
    let new = req(
        "HEAD",
        "http://example.com/resource?v=1",
        &[("x-new", "2"), ("accept", "b")],
    );
    let r = revalidate(policy.lookup(&new, &entry, at(20)));
    // Only validators: method, target and other fields are the new request's own.
    let names: Vec<_> = r.conditional_headers.keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["if-none-match"]);
    // The 304 is evaluated against the new request: its own condition decides 200 or 304.
    let mut new_conditional = new.clone();
    new_conditional
        .headers_mut()
        .insert("if-none-match", "\"e\"".parse().unwrap());
    let decision = policy.after_response(
        &new_conditional,
        &resp(304, &[("etag", "\"e\"")]),
        at(20),
        at(20),
        &entry,
    );
    let ResponseAction::Refresh { serve, .. } = decision.action else {
        panic!()
    };
    assert!(serve.not_modified);
}

/// undici #4596 / #5505, bartventer/httpcache #27: a 304 must refresh the stored response.
#[test]
fn rfc9111_4_3_4_a_304_refreshes_the_stored_response() {
    let policy = private();
    let entry = stale("max-age=10", &policy);
    let decision = policy.after_response(
        &get(&[]),
        &resp(304, &[("etag", "\"e\""), ("cache-control", "max-age=100")]),
        at(50),
        at(50),
        &entry,
    );
    let ResponseAction::Refresh { updates, .. } = decision.action else {
        panic!()
    };
    let refreshed = [updates.into_iter().next().unwrap().entry];
    assert_eq!(
        kind(&policy.lookup(&get(&[]), &refreshed, at(120))),
        "fresh"
    );
}

/// souin #794: a 304 must not leak to a client that did not ask conditionally.
#[test]
fn rfc9111_4_3_3_a_304_is_not_served_to_an_unconditional_client() {
    let policy = private();
    let entry = stale("max-age=10", &policy);
    let decision = policy.after_response(
        &get(&[]),
        &resp(304, &[("etag", "\"e\"")]),
        at(50),
        at(50),
        &entry,
    );
    let ResponseAction::Refresh { serve, .. } = decision.action else {
        panic!()
    };
    assert!(!serve.not_modified);
    let decision = policy.after_response(
        &get(&[]),
        &resp(304, &[("etag", "\"other\"")]),
        at(50),
        at(50),
        &entry,
    );
    assert!(matches!(decision.action, ResponseAction::Refetch));
}

/// bartventer/httpcache #32: several `Vary` lines must be combined (RFC 9111 §4.1).
#[test]
fn rfc9111_4_1_several_vary_lines_are_not_dropped() {
    let policy = private();
    let response = resp(
        200,
        &[
            ("cache-control", "max-age=60"),
            ("vary", "accept"),
            ("vary", "accept-language"),
        ],
    );
    let entry = [store(
        &policy,
        &get(&[("accept", "a"), ("accept-language", "en")]),
        &response,
    )];
    assert_eq!(
        kind(&policy.lookup(
            &get(&[("accept", "a"), ("accept-language", "fr")]),
            &entry,
            at(1)
        )),
        "forward"
    );
    assert_eq!(
        kind(&policy.lookup(
            &get(&[("accept", "a"), ("accept-language", "en")]),
            &entry,
            at(1)
        )),
        "fresh"
    );
}

/// http-cache: a stale `must-revalidate` response served on 5xx (inverted), and
/// `stale-if-error` ignored on 5xx (RFC 9111 §4.2.4, RFC 5861 §4).
#[test]
fn rfc5861_4_5xx_must_revalidate_not_served_and_stale_if_error_served() {
    let policy = private();
    let mr = stale("max-age=0, must-revalidate", &policy);
    let decision = policy.after_response(&get(&[]), &resp(500, &[]), at(5), at(5), &mr);
    assert!(!matches!(decision.action, ResponseAction::ServeStale(_)));
    let sie = stale("max-age=0, stale-if-error=600", &policy);
    let decision = policy.after_response(&get(&[]), &resp(500, &[]), at(5), at(5), &sie);
    assert!(matches!(decision.action, ResponseAction::ServeStale(_)));
}

/// http-cache-semantics: `must-understand, no-store` on a 200 is storable (RFC 9111 §5.2.2.3);
/// shared `private="x"` strips the field instead of refusing the response (§5.2.2.7).
#[test]
fn rfc9111_5_2_2_must_understand_and_qualified_private_are_honoured() {
    assert_eq!(
        storability(
            &shared(),
            &get(&[]),
            &resp(
                200,
                &[("cache-control", "must-understand, no-store, max-age=60")]
            )
        ),
        None
    );
    assert_eq!(
        storability(
            &shared(),
            &get(&[]),
            &resp(
                200,
                &[("cache-control", "private=\"x\", max-age=60"), ("x", "1")]
            )
        ),
        None
    );
}

/// tower-http-cache: a HEAD response must never be served to a GET (RFC 9111 §4).
#[test]
fn rfc9111_4_3_5_head_response_is_not_served_to_get() {
    let policy = private();
    let decision = policy.after_response(
        &req("HEAD", URI, &[]),
        &resp(200, &[("cache-control", "max-age=60")]),
        at(0),
        at(0),
        NONE,
    );
    assert!(matches!(decision.action, ResponseAction::PassThrough(_)));
}
