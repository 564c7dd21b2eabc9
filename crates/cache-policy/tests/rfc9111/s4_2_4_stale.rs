//! RFC 9111 §4.2.4 (serving stale responses) and RFC 5861 (stale-while-revalidate,
//! stale-if-error).

use cache_policy::{
    CachePolicy, Lookup, PolicyOptions, ResponseAction, RevalidateReason, ServeStale, StaleReason,
};

use crate::helpers::*;

/// Stores a response with this Cache-Control (and an ETag) at `at(0)`, and looks it up at
/// `at(now)` with these request lines.
fn look(policy: &CachePolicy, cc: &str, request: &[(&str, &str)], now: u64) -> Lookup {
    let entry = store(
        policy,
        &get(&[]),
        &resp(
            200,
            &[("cache-control", cc), ("etag", "\"e\""), ("date", &date(0))],
        ),
    );
    policy.lookup(&get(request), &[entry], at(now))
}

fn stale_entry(policy: &CachePolicy, cc: &str) -> cache_policy::StoredResponse {
    store(
        policy,
        &get(&[]),
        &resp(
            200,
            &[("cache-control", cc), ("etag", "\"e\""), ("date", &date(0))],
        ),
    )
}

#[test]
fn rfc9111_4_2_4_stale_is_not_served_without_permission() {
    for policy in [private(), shared()] {
        assert_eq!(kind(&look(&policy, "max-age=10", &[], 11)), "revalidate");
        let Lookup::Revalidate(r) = look(&policy, "max-age=10", &[], 11) else {
            unreachable!()
        };
        assert_eq!(r.reason, RevalidateReason::Stale);
    }
}

#[test]
fn rfc9111_4_2_4_and_5_2_1_2_max_stale_allows_stale() {
    let table = [
        ("max-stale", 1000, "stale:max-stale"),
        ("max-stale=5", 15, "stale:max-stale"),
        ("max-stale=5", 16, "revalidate"),
        ("max-stale=0", 11, "revalidate"),
        ("max-stale=bogus", 11, "revalidate"),
        // Fresh responses are served fresh whatever max-stale says.
        ("max-stale=5", 5, "fresh"),
    ];
    for (request_cc, now, expected) in table {
        let got = kind(&look(
            &private(),
            "max-age=10",
            &[("cache-control", request_cc)],
            now,
        ));
        assert_eq!(got, expected, "{request_cc} at {now}");
    }
}

#[test]
fn rfc9111_4_2_4_and_5_2_2_2_never_stale_with_must_revalidate() {
    for policy in [private(), shared()] {
        let cc = "max-age=10, must-revalidate, stale-while-revalidate=100, stale-if-error=100";
        assert_eq!(
            kind(&look(&policy, cc, &[("cache-control", "max-stale")], 20)),
            "revalidate"
        );
        let entry = stale_entry(&policy, cc);
        assert!(policy
            .on_error(&get(&[]), std::slice::from_ref(&entry), at(20))
            .is_none());
        let decision = policy.after_response(&get(&[]), &resp(500, &[]), at(20), at(20), &[entry]);
        assert!(
            matches!(decision.action, ResponseAction::PassThrough(_)),
            "{:?}",
            decision.action
        );
    }
}

#[test]
fn rfc9111_4_2_4_and_5_2_2_8_proxy_revalidate_only_binds_shared_caches() {
    let cc = "max-age=10, proxy-revalidate, stale-while-revalidate=100, stale-if-error=100";
    let max_stale = &[("cache-control", "max-stale")][..];
    assert_eq!(kind(&look(&shared(), cc, max_stale, 20)), "revalidate");
    assert_eq!(kind(&look(&shared(), cc, &[], 20)), "revalidate");
    assert!(shared()
        .on_error(&get(&[]), &[stale_entry(&shared(), cc)], at(20))
        .is_none());
    assert_eq!(
        kind(&look(&private(), cc, max_stale, 20)),
        "stale:max-stale"
    );
    assert_eq!(kind(&look(&private(), cc, &[], 20)), "stale:swr");
    // s-maxage implies proxy-revalidate in a shared cache (§5.2.2.10).
    assert_eq!(
        kind(&look(&shared(), "s-maxage=10", max_stale, 20)),
        "revalidate"
    );
}

#[test]
fn rfc9111_4_2_4_and_5_2_2_4_never_stale_with_no_cache() {
    let cc = "no-cache, max-age=10, stale-while-revalidate=100, stale-if-error=100";
    for policy in [private(), shared()] {
        assert_eq!(
            kind(&look(&policy, cc, &[("cache-control", "max-stale")], 20)),
            "revalidate"
        );
        assert_eq!(kind(&look(&policy, cc, &[], 20)), "revalidate");
        assert!(policy
            .on_error(&get(&[]), &[stale_entry(&policy, cc)], at(20))
            .is_none());
    }
}

#[test]
fn rfc5861_3_stale_while_revalidate_window() {
    let cc = "max-age=10, stale-while-revalidate=30";
    assert_eq!(kind(&look(&private(), cc, &[], 5)), "fresh");
    assert_eq!(kind(&look(&private(), cc, &[], 10)), "stale:swr");
    assert_eq!(kind(&look(&private(), cc, &[], 39)), "stale:swr");
    assert_eq!(kind(&look(&private(), cc, &[], 40)), "revalidate");
    let Lookup::Stale {
        serve,
        reason,
        revalidate,
    } = look(&private(), cc, &[], 20)
    else {
        unreachable!()
    };
    assert_eq!(reason, StaleReason::StaleWhileRevalidate);
    assert_eq!(serve.freshness.age, std::time::Duration::from_secs(20));
    assert_eq!(
        revalidate
            .expect("a background revalidation")
            .conditional_headers["if-none-match"],
        "\"e\""
    );
    // The client's own constraints still apply: no SWR when it asks for validation.
    assert_eq!(
        kind(&look(&private(), cc, &[("cache-control", "no-cache")], 20)),
        "revalidate"
    );
    assert_eq!(
        kind(&look(
            &private(),
            cc,
            &[("cache-control", "max-age=15")],
            20
        )),
        "revalidate"
    );
}

#[test]
fn rfc5861_3_min_fresh_is_not_answered_by_stale_while_revalidate() {
    // Fresh, but not fresh enough for min-fresh: the client wants a fresher response.
    let cc = "max-age=10, stale-while-revalidate=30";
    let lookup = look(&private(), cc, &[("cache-control", "min-fresh=8")], 5);
    let Lookup::Revalidate(r) = lookup else {
        panic!("{lookup:?}")
    };
    assert_eq!(r.reason, RevalidateReason::RequestMinFresh);
}

#[test]
fn rfc5861_4_stale_if_error_window_on_error() {
    let policy = private();
    let entry = [stale_entry(&policy, "max-age=10, stale-if-error=30")];
    assert_eq!(
        kind(&policy.lookup(&get(&[]), &entry, at(20))),
        "revalidate"
    );
    for (now, served) in [
        (5, true),
        (10, true),
        (39, true),
        (40, false),
        (1000, false),
    ] {
        assert_eq!(
            policy.on_error(&get(&[]), &entry, at(now)).is_some(),
            served,
            "at {now}"
        );
    }
    let serve = policy.on_error(&get(&[]), &entry, at(20)).unwrap();
    let head = serve.response_head(&entry[serve.index]);
    assert_eq!(head.status, 200);
    assert_eq!(head.headers["age"], "20");
    // Without stale-if-error a stale response is not served on error.
    let plain = [stale_entry(&policy, "max-age=10")];
    assert!(policy.on_error(&get(&[]), &plain, at(10)).is_none());
    assert!(policy.on_error(&get(&[]), &plain, at(20)).is_none());
    assert!(
        policy.on_error(&get(&[]), &plain, at(5)).is_some(),
        "a fresh response may be used"
    );
}

#[test]
fn rfc5861_4_stale_if_error_on_5xx_answers() {
    let policy = private();
    let entry = [stale_entry(&policy, "max-age=10, stale-if-error=30")];
    for status in [500, 502, 503, 504] {
        let decision = policy.after_response(&get(&[]), &resp(status, &[]), at(20), at(20), &entry);
        let ResponseAction::ServeStale(serve) = decision.action else {
            panic!("{status}: {:?}", decision.action)
        };
        assert_eq!(serve.index, 0);
        assert!(!serve.not_modified);
    }
    for status in [404, 501, 505] {
        let decision = policy.after_response(&get(&[]), &resp(status, &[]), at(20), at(20), &entry);
        assert!(
            !matches!(decision.action, ResponseAction::ServeStale(_)),
            "{status}"
        );
    }
    let late = policy.after_response(&get(&[]), &resp(500, &[]), at(50), at(50), &entry);
    assert!(!matches!(late.action, ResponseAction::ServeStale(_)));
}

#[test]
fn rfc5861_4_request_stale_if_error_sets_the_window() {
    let policy = private();
    let entry = [stale_entry(&policy, "max-age=10")];
    let request = get(&[("cache-control", "stale-if-error=60")]);
    assert!(policy.on_error(&request, &entry, at(50)).is_some());
    assert!(policy.on_error(&request, &entry, at(80)).is_none());
    // ...and narrows the response's.
    let entry = [stale_entry(&policy, "max-age=10, stale-if-error=600")];
    let request = get(&[("cache-control", "stale-if-error=5")]);
    assert!(policy.on_error(&request, &entry, at(20)).is_none());
}

#[test]
fn rfc9111_4_2_4_serve_stale_policy_option() {
    // Directives can be ignored...
    let never = with(PolicyOptions::default().serve_stale(ServeStale::never()));
    assert_eq!(
        kind(&look(
            &never,
            "max-age=10, stale-while-revalidate=30",
            &[],
            20
        )),
        "revalidate"
    );
    assert!(never
        .on_error(
            &get(&[]),
            &[stale_entry(&never, "max-age=10, stale-if-error=30")],
            at(20)
        )
        .is_none());
    // ...but max-stale from the client still counts.
    assert_eq!(
        kind(&look(
            &never,
            "max-age=10",
            &[("cache-control", "max-stale")],
            20
        )),
        "stale:max-stale"
    );
    // Configured windows apply to responses without directives.
    let windows = with(PolicyOptions::default().serve_stale(ServeStale {
        use_directives: true,
        default_stale_while_revalidate: secs(60),
        default_stale_if_error: secs(120),
    }));
    assert_eq!(kind(&look(&windows, "max-age=10", &[], 60)), "stale:swr");
    assert_eq!(kind(&look(&windows, "max-age=10", &[], 70)), "revalidate");
    assert!(windows
        .on_error(&get(&[]), &[stale_entry(&windows, "max-age=10")], at(120))
        .is_some());
    assert!(windows
        .on_error(&get(&[]), &[stale_entry(&windows, "max-age=10")], at(140))
        .is_none());
    // They never override a prohibition.
    assert_eq!(
        kind(&look(&windows, "max-age=10, must-revalidate", &[], 20)),
        "revalidate"
    );
}

#[test]
fn rfc5861_stale_windows_extend_the_storage_ttl() {
    let decision = decide(
        &private(),
        &get(&[]),
        &resp(
            200,
            &[(
                "cache-control",
                "max-age=10, stale-while-revalidate=30, stale-if-error=300",
            )],
        ),
    );
    let ResponseAction::Store { ttl, .. } = decision.action else {
        panic!()
    };
    assert_eq!(ttl, secs(310));
    // must-revalidate: nothing beyond freshness (no validators to keep it for).
    let decision = decide(
        &private(),
        &get(&[]),
        &resp(
            200,
            &[(
                "cache-control",
                "max-age=10, must-revalidate, stale-if-error=300",
            )],
        ),
    );
    let ResponseAction::Store { ttl, .. } = decision.action else {
        panic!()
    };
    assert_eq!(ttl, secs(10));
}

#[test]
fn rfc9110_8_8_an_unparseable_validator_does_not_keep_a_response_for_revalidation() {
    // A stored response is kept past its freshness to be revalidated only when it has a
    // validator (RFC 9110 §8.8): an `ETag` that is not an entity tag, or a `Last-Modified`
    // that is not a date, is none. Rewritten or not (`Connection` makes the stored lines
    // differ from the response's), the TTL is the same.
    for (name, value) in [("etag", "abc"), ("last-modified", "0")] {
        for connection in [None, Some("close")] {
            let d = date(0);
            let mut lines = vec![
                ("cache-control", "no-cache"),
                ("date", d.as_str()),
                (name, value),
            ];
            lines.extend(connection.map(|c| ("connection", c)));
            let ResponseAction::Store { ttl, .. } =
                decide(&private(), &get(&[]), &resp(200, &lines)).action
            else {
                panic!("storable")
            };
            assert_eq!(ttl, secs(0), "{name}: {value}, connection {connection:?}");
        }
    }
    // A valid one does.
    let d = date(0);
    let lines = [
        ("cache-control", "no-cache"),
        ("date", &d),
        ("etag", "\"v1\""),
    ];
    let ResponseAction::Store { ttl, .. } =
        decide(&private(), &get(&[]), &resp(200, &lines)).action
    else {
        panic!("storable")
    };
    assert!(ttl > secs(0), "{ttl:?}");
    // What counts is what is stored: a valid validator that is not stored (named by
    // `Connection`) keeps nothing, and of several `ETag` lines the first is the validator.
    for lines in [
        vec![
            ("cache-control", "no-cache"),
            ("date", d.as_str()),
            ("etag", "\"v1\""),
            ("connection", "etag"),
        ],
        vec![
            ("cache-control", "no-cache"),
            ("date", d.as_str()),
            ("etag", "abc"),
            ("etag", "\"v1\""),
        ],
    ] {
        let ResponseAction::Store { ttl, .. } =
            decide(&private(), &get(&[]), &resp(200, &lines)).action
        else {
            panic!("storable")
        };
        assert_eq!(ttl, secs(0), "{lines:?}");
    }
}
