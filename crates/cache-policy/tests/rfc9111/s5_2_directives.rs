//! RFC 9111 §5.2: Cache-Control directives, in requests (§5.2.1) and responses (§5.2.2), and
//! §5.4 Pragma.

use cache_policy::{
    FieldScope, Lookup, MaxStale, NotStorable, RequestDirectives, ResponseAction,
    ResponseDirectives, RevalidateReason,
};
use http::HeaderValue;

use crate::helpers::*;

fn response_cc(value: &str) -> ResponseDirectives {
    ResponseDirectives::parse([&HeaderValue::from_str(value).unwrap()])
}

fn request_cc(value: &str) -> RequestDirectives {
    RequestDirectives::parse([&HeaderValue::from_str(value).unwrap()])
}

fn stored(cc: &str) -> [cache_policy::StoredResponse; 1] {
    [store(
        &private(),
        &get(&[]),
        &resp(
            200,
            &[("cache-control", cc), ("etag", "\"e\""), ("date", &date(0))],
        ),
    )]
}

fn reason(lookup: Lookup) -> RevalidateReason {
    revalidate(lookup).reason
}

#[test]
fn rfc9111_5_2_quoted_strings_may_contain_commas_and_escapes() {
    let cc = response_cc(r#"no-cache="set-cookie, x-a", x-ext="a,\"b\",c", max-age=30"#);
    assert_eq!(cc.no_cache.fields().len(), 2);
    assert_eq!(cc.max_age, Some(30));
    let cc = response_cc(r#"private="x-b", public, s-maxage=5"#);
    assert_eq!(cc.private.fields(), ["x-b"]);
    assert!(cc.public);
    assert_eq!(cc.s_maxage, Some(5));
}

#[test]
fn rfc9111_5_2_1_1_request_max_age() {
    let entry = stored("max-age=100");
    assert_eq!(request_cc("max-age=30").max_age, Some(30));
    assert_eq!(
        kind(&private().lookup(&get(&[("cache-control", "max-age=30")]), &entry, at(30))),
        "fresh"
    );
    assert_eq!(
        reason(private().lookup(&get(&[("cache-control", "max-age=30")]), &entry, at(31))),
        RevalidateReason::RequestMaxAge
    );
    assert_eq!(
        reason(private().lookup(&get(&[("cache-control", "max-age=0")]), &entry, at(1))),
        RevalidateReason::RequestMaxAge
    );
    // Invalid: the most restrictive reading.
    assert_eq!(request_cc("max-age=x").max_age, Some(0));
}

#[test]
fn rfc9111_5_2_1_2_request_max_stale() {
    assert_eq!(request_cc("max-stale").max_stale, Some(MaxStale::Any));
    assert_eq!(
        request_cc("max-stale=10").max_stale,
        Some(MaxStale::Seconds(10))
    );
    assert_eq!(
        request_cc("max-stale=10, max-stale=5").max_stale,
        Some(MaxStale::Seconds(5))
    );
    assert_eq!(request_cc("max-stale=x").max_stale, None);
    let entry = stored("max-age=10");
    let lookup = private().lookup(&get(&[("cache-control", "max-stale=10")]), &entry, at(15));
    let Lookup::Stale {
        serve, revalidate, ..
    } = lookup
    else {
        panic!("{lookup:?}")
    };
    assert!(revalidate.is_none());
    assert_eq!(
        serve.response_head(&entry[serve.index]).headers["age"],
        "15"
    );
}

#[test]
fn rfc9111_5_2_1_3_request_min_fresh() {
    let entry = stored("max-age=100");
    let request = get(&[("cache-control", "min-fresh=20")]);
    assert_eq!(kind(&private().lookup(&request, &entry, at(80))), "fresh");
    assert_eq!(
        reason(private().lookup(&request, &entry, at(81))),
        RevalidateReason::RequestMinFresh
    );
    // Invalid min-fresh asks for nothing.
    assert_eq!(request_cc("min-fresh=abc").min_fresh, None);
    assert_eq!(request_cc("min-fresh=5, min-fresh=10").min_fresh, Some(10));
}

#[test]
fn rfc9111_5_2_1_4_request_no_cache() {
    let entry = stored("max-age=100");
    assert_eq!(
        reason(private().lookup(&get(&[("cache-control", "no-cache")]), &entry, at(1))),
        RevalidateReason::RequestNoCache
    );
    assert_eq!(
        reason(private().lookup(
            &get(&[("cache-control", "no-cache, max-stale")]),
            &entry,
            at(1)
        )),
        RevalidateReason::RequestNoCache
    );
}

#[test]
fn rfc9111_5_4_pragma_no_cache_only_without_cache_control() {
    let entry = stored("max-age=100");
    assert_eq!(
        reason(private().lookup(&get(&[("pragma", "no-cache")]), &entry, at(1))),
        RevalidateReason::RequestNoCache
    );
    assert_eq!(
        reason(private().lookup(&get(&[("pragma", "x, No-Cache")]), &entry, at(1))),
        RevalidateReason::RequestNoCache
    );
    assert_eq!(
        kind(&private().lookup(
            &get(&[("pragma", "no-cache"), ("cache-control", "max-stale")]),
            &entry,
            at(1)
        )),
        "fresh"
    );
    assert_eq!(
        kind(&private().lookup(&get(&[("pragma", "other")]), &entry, at(1))),
        "fresh"
    );
    // Pragma in a response means nothing (§5.4 only defines it for requests).
    let e = [store(
        &private(),
        &get(&[]),
        &resp(
            200,
            &[("cache-control", "max-age=100"), ("pragma", "no-cache")],
        ),
    )];
    assert_eq!(kind(&private().lookup(&get(&[]), &e, at(1))), "fresh");
}

#[test]
fn rfc9111_5_2_1_5_request_no_store() {
    assert!(request_cc("no-store").no_store);
    assert_eq!(
        storability(
            &private(),
            &get(&[("cache-control", "no-store")]),
            &resp(200, &[("cache-control", "max-age=9")])
        ),
        Some(NotStorable::RequestNoStore)
    );
    // The request may still be answered from the cache.
    assert_eq!(
        kind(&private().lookup(
            &get(&[("cache-control", "no-store")]),
            &stored("max-age=100"),
            at(1)
        )),
        "fresh"
    );
}

#[test]
fn rfc9111_5_2_1_6_and_5_2_2_6_no_transform_is_parsed() {
    assert!(request_cc("no-transform").no_transform);
    assert!(response_cc("no-transform").no_transform);
    assert_eq!(
        kind(&private().lookup(
            &get(&[("cache-control", "no-transform")]),
            &stored("max-age=100, no-transform"),
            at(1)
        )),
        "fresh"
    );
}

#[test]
fn rfc9111_5_2_1_7_only_if_cached() {
    let request = get(&[("cache-control", "only-if-cached")]);
    assert!(matches!(
        private().lookup(&request, NONE, at(0)),
        Lookup::GatewayTimeout
    ));
    assert_eq!(
        kind(&private().lookup(&request, &stored("max-age=100"), at(1))),
        "fresh"
    );
    assert_eq!(
        kind(&private().lookup(&request, &stored("max-age=10"), at(20))),
        "504"
    );
    // A stale-while-revalidate response would need the origin: 504 too.
    assert_eq!(
        kind(&private().lookup(
            &request,
            &stored("max-age=10, stale-while-revalidate=60"),
            at(20)
        )),
        "504"
    );
    // With max-stale the stale response is acceptable.
    let lenient = get(&[("cache-control", "only-if-cached, max-stale")]);
    assert_eq!(
        kind(&private().lookup(&lenient, &stored("max-age=10"), at(20))),
        "stale:max-stale"
    );
    // A Vary mismatch is a miss.
    let varied = [store(
        &private(),
        &get(&[("accept", "a")]),
        &resp(200, &[("cache-control", "max-age=100"), ("vary", "accept")]),
    )];
    assert_eq!(
        kind(&private().lookup(
            &get(&[("cache-control", "only-if-cached"), ("accept", "b")]),
            &varied,
            at(1)
        )),
        "504"
    );
}

/// §5.2.1.7: "respond with either a stored response ... or a 504": requests the cache never
/// answers from storage (a range, a precondition, a method it does not cache) get the 504
/// instead of a trip to the origin.
#[test]
fn rfc9111_5_2_1_7_only_if_cached_never_forwards() {
    let stored = stored("max-age=100");
    for extra in [("range", "bytes=0-9"), ("if-match", "\"v1\"")] {
        let plain = get(&[extra]);
        assert_ne!(kind(&private().lookup(&plain, &stored, at(1))), "504");
        let only_cached = get(&[("cache-control", "only-if-cached"), extra]);
        assert_eq!(
            kind(&private().lookup(&only_cached, &stored, at(1))),
            "504",
            "{extra:?}"
        );
    }
    let post = req(
        "POST",
        "http://example.com/r",
        &[("cache-control", "only-if-cached")],
    );
    assert_eq!(kind(&private().lookup(&post, NONE, at(0))), "504");
    let plain_post = req("POST", "http://example.com/r", &[]);
    assert_ne!(kind(&private().lookup(&plain_post, NONE, at(0))), "504");
}

#[test]
fn rfc9111_5_2_2_1_response_max_age() {
    assert_eq!(response_cc("max-age=5").max_age, Some(5));
    assert_eq!(
        kind(&private().lookup(&get(&[]), &stored("max-age=5"), at(4))),
        "fresh"
    );
    assert_eq!(
        kind(&private().lookup(&get(&[]), &stored("max-age=5"), at(5))),
        "revalidate"
    );
}

#[test]
fn rfc9111_5_2_2_2_must_revalidate() {
    assert!(response_cc("must-revalidate").must_revalidate);
    // Fresh responses are used as usual.
    assert_eq!(
        kind(&private().lookup(&get(&[]), &stored("max-age=100, must-revalidate"), at(1))),
        "fresh"
    );
    assert_eq!(
        kind(&private().lookup(
            &get(&[("cache-control", "max-stale")]),
            &stored("max-age=10, must-revalidate"),
            at(11)
        )),
        "revalidate"
    );
}

#[test]
fn rfc9111_5_2_2_3_must_understand() {
    assert!(response_cc("must-understand, no-store").must_understand);
    assert_eq!(
        storability(
            &shared(),
            &get(&[]),
            &resp(
                200,
                &[("cache-control", "must-understand, no-store, max-age=5")]
            )
        ),
        None
    );
}

#[test]
fn rfc9111_5_2_2_4_response_no_cache_unqualified_requires_validation() {
    let entry = stored("no-cache, max-age=100");
    assert_eq!(
        reason(private().lookup(&get(&[]), &entry, at(1))),
        RevalidateReason::ResponseNoCache
    );
    // Stored and validated even without explicit freshness.
    assert_eq!(
        storability(
            &private(),
            &get(&[]),
            &resp(200, &[("cache-control", "no-cache"), ("etag", "\"x\"")])
        ),
        None
    );
}

#[test]
fn rfc9111_5_2_2_4_qualified_no_cache_strips_the_fields_and_reuses_the_rest() {
    let response = resp(
        200,
        &[
            (
                "cache-control",
                r#"max-age=100, no-cache="Set-Cookie, X-Token""#,
            ),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("x-token", "t"),
            ("x-kept", "k"),
        ],
    );
    for policy in [private(), shared()] {
        let entry = store(&policy, &get(&[]), &response);
        assert!(
            !entry.headers.contains_key("set-cookie") && !entry.headers.contains_key("x-token")
        );
        assert_eq!(entry.headers["x-kept"], "k");
        let serve = fresh(policy.lookup(&get(&[]), std::slice::from_ref(&entry), at(1)));
        assert!(!serve
            .response_head(&entry)
            .headers
            .contains_key("set-cookie"));
    }
    assert!(matches!(
        response_cc(r#"no-cache="a""#).no_cache,
        FieldScope::Fields(_)
    ));
}

#[test]
fn rfc9111_5_2_2_5_response_no_store() {
    assert!(response_cc("no-store").no_store);
    assert_eq!(
        storability(
            &private(),
            &get(&[]),
            &resp(200, &[("cache-control", "no-store, max-age=60")])
        ),
        Some(NotStorable::NoStore)
    );
}

#[test]
fn rfc9111_5_2_2_7_qualified_private_strips_fields_in_a_shared_cache() {
    let response = resp(
        200,
        &[
            ("cache-control", r#"max-age=100, private="x-user""#),
            ("x-user", "alice"),
            ("x-kept", "k"),
        ],
    );
    let entry = store(&shared(), &get(&[]), &response);
    assert!(!entry.headers.contains_key("x-user"));
    assert_eq!(entry.headers["x-kept"], "k");
    // A private cache is the user's own and keeps them.
    let entry = store(&private(), &get(&[]), &response);
    assert_eq!(entry.headers["x-user"], "alice");
}

#[test]
fn rfc9111_5_2_2_8_proxy_revalidate() {
    assert!(response_cc("proxy-revalidate").proxy_revalidate);
    let entry = [store(
        &shared(),
        &get(&[]),
        &resp(200, &[("cache-control", "max-age=10, proxy-revalidate")]),
    )];
    assert_eq!(
        kind(&shared().lookup(&get(&[("cache-control", "max-stale")]), &entry, at(20))),
        "revalidate"
    );
    assert_eq!(
        kind(&private().lookup(&get(&[("cache-control", "max-stale")]), &entry, at(20))),
        "stale:max-stale"
    );
}

#[test]
fn rfc9111_5_2_2_9_public() {
    assert!(response_cc("public").public);
    // public makes an otherwise unstorable status and an authorized request storable.
    assert_eq!(
        storability(
            &shared(),
            &get(&[]),
            &resp(307, &[("cache-control", "public, max-age=1")])
        ),
        None
    );
    assert_eq!(
        storability(
            &shared(),
            &get(&[("authorization", "x")]),
            &resp(200, &[("cache-control", "public")])
        ),
        None
    );
}

#[test]
fn rfc9111_5_2_2_10_s_maxage() {
    assert_eq!(response_cc("s-maxage=7").s_maxage, Some(7));
    let entry = [store(
        &shared(),
        &get(&[]),
        &resp(200, &[("cache-control", "max-age=1, s-maxage=100")]),
    )];
    assert_eq!(kind(&shared().lookup(&get(&[]), &entry, at(50))), "fresh");
    assert_eq!(
        kind(&private().lookup(&get(&[]), &entry, at(50))),
        "revalidate"
    );
}

#[test]
fn rfc9111_5_2_3_extensions_and_rfc5861_rfc8246_directives() {
    let cc = response_cc("immutable, stale-while-revalidate=30, stale-if-error=60, x-unknown=\"1, 2\", community=\"UCI\"");
    assert!(cc.immutable);
    assert_eq!(cc.stale_while_revalidate, Some(30));
    assert_eq!(cc.stale_if_error, Some(60));
    assert_eq!(request_cc("stale-if-error=9").stale_if_error, Some(9));
    // Unknown directives are ignored, not fatal.
    assert_eq!(
        kind(&private().lookup(
            &get(&[("cache-control", "x-foo, max-stale=bogus")]),
            &stored("max-age=100, x-ext"),
            at(1)
        )),
        "fresh"
    );
}

#[test]
fn rfc9111_5_2_unparseable_cache_control_never_panics_and_is_conservative() {
    for value in [
        "",
        ",,,",
        "=",
        "\"",
        "max-age=\"",
        "no-cache=\"a",
        "max-age=10,,no-store",
        "a=b=c",
        "\t",
    ] {
        let cc = response_cc(value);
        let _ = format!("{cc:?}");
        let _ = request_cc(value);
    }
    assert!(response_cc("max-age=10,,no-store").no_store);
    let decision = private().after_response(
        &get(&[]),
        &resp(200, &[("cache-control", "max-age=\"10")]),
        at(0),
        at(0),
        NONE,
    );
    if let ResponseAction::Store { freshness, .. } = decision.action {
        assert!(!freshness.is_fresh());
    }
}
