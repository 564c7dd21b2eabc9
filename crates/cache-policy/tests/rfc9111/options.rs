//! The options of issue 2 §5: each documented option, tested. Section numbers cite what the
//! option changes.

use std::time::Duration;

use cache_policy::{
    CachePolicy, ForwardReason, FreshnessSource, Lookup, NotStorable, PolicyOptions,
    ResponseAction, RevalidateReason,
};
use http::{Method, StatusCode};

use crate::helpers::*;

#[test]
fn rfc9111_3_option_private_is_the_default_and_shared_is_opt_in() {
    assert!(!PolicyOptions::default().shared);
    assert!(!CachePolicy::default().options().shared);
    assert!(shared().options().shared);
    let response = resp(200, &[("cache-control", "private, max-age=60")]);
    assert_eq!(
        storability(&CachePolicy::default(), &get(&[]), &response),
        None
    );
    assert_eq!(
        storability(&shared(), &get(&[]), &response),
        Some(NotStorable::Private)
    );
}

#[test]
fn rfc9111_3_option_cacheable_methods_post_is_opt_in() {
    let post = req("POST", URI, &[]);
    let ok = resp(200, &[("cache-control", "max-age=60")]);
    assert_eq!(
        storability(&private(), &post, &ok),
        Some(NotStorable::Method)
    );
    assert!(matches!(
        private().lookup(&post, NONE, at(0)),
        Lookup::Forward(ForwardReason::Method)
    ));
    let policy =
        with(PolicyOptions::default().cacheable_methods([Method::GET, Method::HEAD, Method::POST]));
    let decision = policy.after_response(&post, &ok, at(0), at(0), NONE);
    let ResponseAction::Store { entry, .. } = decision.action else {
        panic!("{:?}", decision.action)
    };
    assert_eq!(entry.method, Method::POST);
    // Still an unsafe method: the URI's other stored responses are invalidated (§4.4).
    assert_eq!(decision.invalidate, [URI]);
    let stored = [entry];
    assert_eq!(fresh(policy.lookup(&post, &stored, at(1))).index, 0);
    // A stored POST response never answers a GET.
    assert_eq!(kind(&policy.lookup(&get(&[]), &stored, at(1))), "forward");
    // Removing GET makes GET uncacheable.
    let head_only = with(PolicyOptions::default().cacheable_methods([Method::HEAD]));
    assert_eq!(
        storability(&head_only, &get(&[]), &ok),
        Some(NotStorable::Method)
    );
}

#[test]
fn rfc9111_3_option_cacheable_statuses_override() {
    let policy =
        with(PolicyOptions::default().cacheable_statuses([StatusCode::OK, StatusCode::FOUND]));
    assert_eq!(
        storability(&policy, &get(&[]), &resp(302, &[("location", "/x")])),
        None
    );
    assert_eq!(
        storability(
            &policy,
            &get(&[]),
            &resp(404, &[("cache-control", "max-age=60")])
        ),
        Some(NotStorable::Status)
    );
    assert_eq!(storability(&policy, &get(&[]), &resp(200, &[])), None);
    // The rest of the rules still apply.
    assert_eq!(
        storability(
            &policy,
            &get(&[]),
            &resp(200, &[("cache-control", "no-store")])
        ),
        Some(NotStorable::NoStore)
    );
}

#[test]
fn rfc9111_4_2_2_option_heuristics() {
    let lines = [("date", date(0)), ("last-modified", date(-10_000))];
    let lines: Vec<(&str, &str)> = lines.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let response = resp(200, &lines);
    for (options, expected) in [
        (PolicyOptions::default(), 1000),
        (PolicyOptions::default().heuristics(None), 0),
        (
            PolicyOptions::default().heuristics(Some(cache_policy::Heuristics {
                fraction: 0.2,
                max: secs(86_400),
            })),
            2000,
        ),
        (
            PolicyOptions::default().heuristics(Some(cache_policy::Heuristics {
                fraction: 0.2,
                max: secs(30),
            })),
            30,
        ),
    ] {
        let policy = with(options);
        let entry = store(&policy, &get(&[]), &response);
        assert_eq!(policy.freshness(&entry, at(0)).lifetime.as_secs(), expected);
    }
}

#[test]
fn rfc9111_4_2_option_always_revalidate() {
    let policy = with(PolicyOptions::default().always_revalidate(true));
    let stored = [store(
        &policy,
        &get(&[]),
        &resp(200, &[("cache-control", "max-age=100"), ("etag", "\"a\"")]),
    )];
    let r = revalidate(policy.lookup(&get(&[]), &stored, at(1)));
    assert_eq!(r.reason, RevalidateReason::AlwaysRevalidate);
    assert_eq!(r.conditional_headers["if-none-match"], "\"a\"");
    assert_eq!(
        RevalidateReason::AlwaysRevalidate.cache_status_fwd(),
        cache_policy::CacheStatusFwd::Stale
    );
}

#[test]
fn rfc9111_option_ignore_rules_stores_and_reuses_regardless_of_cache_control() {
    let policy = with(
        PolicyOptions::default()
            .shared(true)
            .ignore_rules(true)
            .default_ttl(secs(300)),
    );
    let rows: &[(&[(&str, &str)], &[(&str, &str)])] = &[
        (&[], &[("cache-control", "no-store")]),
        (&[], &[("cache-control", "private")]),
        (&[("cache-control", "no-store")], &[]),
        (&[("authorization", "x")], &[]),
        (
            &[],
            &[
                ("cache-control", "no-cache, max-age=0"),
                ("pragma", "no-cache"),
                ("expires", "0"),
            ],
        ),
    ];
    for (request, response) in rows {
        let entry = store(&policy, &get(request), &resp(200, response));
        let f = policy.freshness(&entry, at(0));
        assert_eq!(
            (f.lifetime, f.source),
            (secs(300), FreshnessSource::DefaultTtl),
            "{response:?}"
        );
        assert_eq!(
            kind(&policy.lookup(&get(request), &[entry], at(299))),
            "fresh",
            "{response:?}"
        );
    }
    // Client no-cache is ignored too; only-if-cached still avoids the origin.
    let entry = [store(&policy, &get(&[]), &resp(302, &[]))];
    assert_eq!(
        kind(&policy.lookup(&get(&[("cache-control", "no-cache")]), &entry, at(1))),
        "fresh"
    );
    assert_eq!(
        kind(&policy.lookup(
            &get(&[("cache-control", "only-if-cached")]),
            &entry,
            at(400)
        )),
        "504"
    );
    // What can never be reused still is not stored.
    assert_eq!(
        storability(&policy, &get(&[]), &resp(206, &[])),
        Some(NotStorable::PartialContent)
    );
    assert_eq!(
        storability(&policy, &get(&[]), &resp(200, &[("vary", "*")])),
        Some(NotStorable::VaryStar)
    );
    assert_eq!(
        storability(&policy, &req("POST", URI, &[]), &resp(200, &[])),
        Some(NotStorable::Method)
    );
    // Without default_ttl the response's own freshness is used.
    let own = with(PolicyOptions::default().ignore_rules(true));
    let entry = store(
        &own,
        &get(&[]),
        &resp(200, &[("cache-control", "no-store, max-age=50")]),
    );
    assert_eq!(own.freshness(&entry, at(0)).lifetime, secs(50));
}

#[test]
fn rfc9111_4_2_option_default_ttl_for_responses_without_freshness() {
    let policy = with(PolicyOptions::default().default_ttl(secs(120)));
    let entry = store(
        &policy,
        &get(&[]),
        &resp(200, &[("last-modified", &date(-10_000))]),
    );
    let f = policy.freshness(&entry, at(0));
    assert_eq!(
        (f.lifetime, f.source),
        (secs(120), FreshnessSource::DefaultTtl)
    );
    // Explicit freshness wins, even zero.
    let entry = store(
        &policy,
        &get(&[]),
        &resp(200, &[("cache-control", "max-age=0")]),
    );
    assert_eq!(policy.freshness(&entry, at(0)).lifetime, Duration::ZERO);
    // A status that is not heuristically cacheable becomes storable with it.
    assert_eq!(storability(&policy, &get(&[]), &resp(302, &[])), None);
    assert_eq!(PolicyOptions::default().default_ttl, None);
}

#[test]
fn rfc9111_4_2_option_max_ttl_caps_every_lifetime() {
    let policy = with(PolicyOptions::default().max_ttl(secs(60)));
    for lines in [
        &[("cache-control", "max-age=3600")][..],
        &[("cache-control", "max-age=30")][..],
        &[("expires", "Thu, 01 Jan 2099 00:00:00 GMT")][..],
    ] {
        let entry = store(&policy, &get(&[]), &resp(200, lines));
        assert!(
            policy.freshness(&entry, at(0)).lifetime <= secs(60),
            "{lines:?}"
        );
    }
    let entry = store(
        &policy,
        &get(&[]),
        &resp(200, &[("cache-control", "max-age=3600")]),
    );
    assert_eq!(
        kind(&policy.lookup(&get(&[]), &[entry], at(61))),
        "revalidate"
    );
    let capped = with(
        PolicyOptions::default()
            .ignore_rules(true)
            .default_ttl(secs(600))
            .max_ttl(secs(60)),
    );
    let entry = store(&capped, &get(&[]), &resp(200, &[]));
    assert_eq!(capped.freshness(&entry, at(0)).lifetime, secs(60));
}

#[test]
fn rfc9213_option_cdn_cache_control_for_shared_caches() {
    let lines = &[
        ("cache-control", "max-age=10"),
        ("cdn-cache-control", "max-age=600"),
        ("expires", "0"),
    ][..];
    let cdn = with(
        PolicyOptions::default()
            .shared(true)
            .cdn_cache_control(true),
    );
    let entry = store(&cdn, &get(&[]), &resp(200, lines));
    assert_eq!(cdn.freshness(&entry, at(0)).lifetime, secs(600));
    // Off by default, and ignored by private caches.
    assert_eq!(shared().freshness(&entry, at(0)).lifetime, secs(10));
    let private_cdn = with(PolicyOptions::default().cdn_cache_control(true));
    assert_eq!(private_cdn.freshness(&entry, at(0)).lifetime, secs(10));
    // The targeted field replaces Cache-Control entirely, both ways.
    let no_store = resp(
        200,
        &[
            ("cache-control", "max-age=600"),
            ("cdn-cache-control", "no-store"),
        ],
    );
    assert_eq!(
        storability(&cdn, &get(&[]), &no_store),
        Some(NotStorable::NoStore)
    );
    let store_it = resp(
        200,
        &[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=60"),
        ],
    );
    assert_eq!(storability(&cdn, &get(&[]), &store_it), None);
    assert_eq!(
        storability(&shared(), &get(&[]), &store_it),
        Some(NotStorable::NoStore)
    );
    // An invalid or empty targeted field is ignored (RFC 9213 §2.1).
    for garbage in ["", "x-unknown", "=,="] {
        let e = store(
            &cdn,
            &get(&[]),
            &resp(
                200,
                &[
                    ("cache-control", "max-age=10"),
                    ("cdn-cache-control", garbage),
                ],
            ),
        );
        assert_eq!(cdn.freshness(&e, at(0)).lifetime, secs(10), "{garbage:?}");
    }
    assert!(!PolicyOptions::default().cdn_cache_control);
}
