//! RFC 9111 §3: storing responses in caches.

use cache_policy::{NotStorable, PolicyOptions};
use http::StatusCode;

use crate::helpers::*;

type Row<'a> = (
    &'a str,
    &'a [(&'a str, &'a str)],
    u16,
    &'a [(&'a str, &'a str)],
    Option<NotStorable>,
);

/// Runs a table of (label, request headers, status, response headers, expected) against `policy`.
fn check(policy: &cache_policy::CachePolicy, method: &str, rows: &[Row<'_>]) {
    for (label, request_headers, status, response_headers, expected) in rows {
        let request = req(method, URI, request_headers);
        let response = resp(*status, response_headers);
        assert_eq!(
            storability(policy, &request, &response),
            *expected,
            "{label}"
        );
    }
}

#[test]
fn rfc9111_3_request_method_must_be_understood_and_cacheable() {
    let ok = &[("cache-control", "max-age=60")][..];
    for (method, expected) in [
        ("GET", None),
        ("HEAD", Some(NotStorable::HeadResponse)),
        ("POST", Some(NotStorable::Method)),
        ("PUT", Some(NotStorable::Method)),
        ("DELETE", Some(NotStorable::Method)),
        ("OPTIONS", Some(NotStorable::Method)),
        ("BREW", Some(NotStorable::Method)),
    ] {
        let request = req(method, URI, &[]);
        assert_eq!(
            storability(&private(), &request, &resp(200, ok)),
            expected,
            "{method}"
        );
        assert_eq!(
            storability(&shared(), &request, &resp(200, ok)),
            expected,
            "{method}"
        );
    }
}

#[test]
fn rfc9111_3_response_status_must_be_final() {
    let ok = &[("cache-control", "max-age=60")][..];
    check(
        &private(),
        "GET",
        &[
            ("100", &[], 100, ok, Some(NotStorable::Status)),
            ("103", &[], 103, ok, Some(NotStorable::Status)),
            (
                "304 with nothing stored",
                &[],
                304,
                ok,
                Some(NotStorable::Status),
            ),
            ("200", &[], 200, ok, None),
            ("500 with explicit freshness", &[], 500, ok, None),
        ],
    );
}

#[test]
fn rfc9111_3_3_and_3_4_partial_content_206_is_never_stored() {
    let ok = &[
        ("cache-control", "max-age=60, public"),
        ("content-range", "bytes 0-9/100"),
    ][..];
    check(
        &private(),
        "GET",
        &[
            (
                "206",
                &[("range", "bytes=0-9")],
                206,
                ok,
                Some(NotStorable::Range),
            ),
            (
                "206 without Range",
                &[],
                206,
                ok,
                Some(NotStorable::PartialContent),
            ),
            (
                "200 to a Range request",
                &[("range", "bytes=0-9")],
                200,
                ok,
                Some(NotStorable::Range),
            ),
        ],
    );
    // Not even when the rules are ignored or 206 is listed as cacheable.
    let forced = with(
        PolicyOptions::default()
            .ignore_rules(true)
            .cacheable_statuses([StatusCode::OK, StatusCode::PARTIAL_CONTENT]),
    );
    check(
        &forced,
        "GET",
        &[(
            "206 forced",
            &[],
            206,
            ok,
            Some(NotStorable::PartialContent),
        )],
    );
}

#[test]
fn rfc9111_3_and_5_2_no_store_in_request_or_response() {
    let rows: &[Row<'_>] = &[
        (
            "request no-store",
            &[("cache-control", "no-store")],
            200,
            &[("cache-control", "max-age=60")],
            Some(NotStorable::RequestNoStore),
        ),
        (
            "request NO-STORE among others",
            &[("cache-control", "max-age=5, NO-STORE")],
            200,
            &[("cache-control", "max-age=60")],
            Some(NotStorable::RequestNoStore),
        ),
        (
            "response no-store",
            &[],
            200,
            &[("cache-control", "max-age=60, no-store")],
            Some(NotStorable::NoStore),
        ),
        (
            "response no-store on a second line",
            &[],
            200,
            &[
                ("cache-control", "max-age=60"),
                ("cache-control", "no-store"),
            ],
            Some(NotStorable::NoStore),
        ),
        (
            "response no-store with public",
            &[],
            200,
            &[("cache-control", "public, no-store")],
            Some(NotStorable::NoStore),
        ),
        (
            "no-store inside a quoted string is not a directive",
            &[],
            200,
            &[("cache-control", "max-age=60, x-ext=\"no-store\"")],
            None,
        ),
    ];
    check(&private(), "GET", rows);
    check(&shared(), "GET", rows);
}

#[test]
fn rfc9111_3_and_5_2_2_7_private_not_stored_by_a_shared_cache() {
    let rows: &[Row<'_>] = &[(
        "private",
        &[],
        200,
        &[("cache-control", "private, max-age=60")],
        Some(NotStorable::Private),
    )];
    check(&shared(), "GET", rows);
    // A private cache stores it, even with nothing else making it reusable (302).
    check(
        &private(),
        "GET",
        &[
            (
                "private 200",
                &[],
                200,
                &[("cache-control", "private, max-age=60")],
                None,
            ),
            (
                "private 302",
                &[],
                302,
                &[("cache-control", "private"), ("location", "/x")],
                None,
            ),
        ],
    );
    // Qualified private only strips fields in a shared cache: still stored.
    check(
        &shared(),
        "GET",
        &[(
            "private=\"x\"",
            &[],
            200,
            &[("cache-control", "private=\"x-user\", max-age=60")],
            None,
        )],
    );
}

#[test]
fn rfc9111_3_5_authorization_only_with_explicit_permission_in_a_shared_cache() {
    let auth = &[("authorization", "Bearer t")][..];
    check(
        &shared(),
        "GET",
        &[
            (
                "max-age",
                auth,
                200,
                &[("cache-control", "max-age=60")],
                Some(NotStorable::Authorization),
            ),
            (
                "no directives",
                auth,
                200,
                &[],
                Some(NotStorable::Authorization),
            ),
            (
                "public",
                auth,
                200,
                &[("cache-control", "public, max-age=60")],
                None,
            ),
            (
                "must-revalidate",
                auth,
                200,
                &[("cache-control", "must-revalidate, max-age=60")],
                None,
            ),
            (
                "s-maxage",
                auth,
                200,
                &[("cache-control", "s-maxage=60")],
                None,
            ),
            (
                "proxy-revalidate is not enough",
                auth,
                200,
                &[("cache-control", "proxy-revalidate, max-age=60")],
                Some(NotStorable::Authorization),
            ),
        ],
    );
    // A private cache is the user's own: Authorization does not matter.
    check(
        &private(),
        "GET",
        &[(
            "private cache",
            auth,
            200,
            &[("cache-control", "max-age=60")],
            None,
        )],
    );
}

#[test]
fn rfc9111_3_and_5_2_2_3_must_understand() {
    let rows: &[Row<'_>] = &[
        // The cache understands 200: must-understand overrides no-store.
        (
            "200 must-understand, no-store",
            &[],
            200,
            &[("cache-control", "must-understand, no-store, max-age=60")],
            None,
        ),
        (
            "200 must-understand",
            &[],
            200,
            &[("cache-control", "must-understand, max-age=60")],
            None,
        ),
        // 299 has no defined semantics: not understood, not stored.
        (
            "299 must-understand, no-store",
            &[],
            299,
            &[("cache-control", "must-understand, no-store, max-age=60")],
            Some(NotStorable::MustUnderstand),
        ),
        (
            "299 must-understand",
            &[],
            299,
            &[("cache-control", "must-understand, max-age=60")],
            Some(NotStorable::MustUnderstand),
        ),
        // Without must-understand an unknown status with explicit freshness is storable.
        (
            "299 max-age",
            &[],
            299,
            &[("cache-control", "max-age=60")],
            None,
        ),
    ];
    check(&private(), "GET", rows);
    check(&shared(), "GET", rows);
}

#[test]
fn rfc9111_3_at_least_one_of_explicit_freshness_or_permission() {
    let none = Some(NotStorable::NoFreshnessInformation);
    check(
        &private(),
        "GET",
        &[
            ("302 bare", &[], 302, &[("location", "/x")], none),
            (
                "302 max-age",
                &[],
                302,
                &[("cache-control", "max-age=60")],
                None,
            ),
            (
                "302 Expires",
                &[],
                302,
                &[("expires", "Thu, 01 Jan 2099 00:00:00 GMT")],
                None,
            ),
            (
                "302 invalid Expires still counts",
                &[],
                302,
                &[("expires", "0")],
                None,
            ),
            ("302 public", &[], 302, &[("cache-control", "public")], None),
            (
                "302 private (private cache)",
                &[],
                302,
                &[("cache-control", "private")],
                None,
            ),
            (
                "302 s-maxage (private cache ignores it)",
                &[],
                302,
                &[("cache-control", "s-maxage=60")],
                none,
            ),
            (
                "302 unknown extension",
                &[],
                302,
                &[("cache-control", "x-foo=1")],
                none,
            ),
            (
                "307 no-cache only",
                &[],
                307,
                &[("cache-control", "no-cache")],
                none,
            ),
            ("200 bare (heuristically cacheable)", &[], 200, &[], None),
        ],
    );
    check(
        &shared(),
        "GET",
        &[(
            "302 s-maxage (shared)",
            &[],
            302,
            &[("cache-control", "s-maxage=60")],
            None,
        )],
    );
}

#[test]
fn rfc9110_15_1_heuristically_cacheable_statuses_are_storable_without_freshness() {
    for status in [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501] {
        let response = resp(status, &[]);
        assert_eq!(
            storability(&private(), &get(&[]), &response),
            None,
            "{status}"
        );
        assert_eq!(
            storability(&shared(), &get(&[]), &response),
            None,
            "{status}"
        );
    }
    for status in [
        201, 202, 302, 303, 307, 400, 401, 403, 409, 429, 500, 502, 503, 504,
    ] {
        let response = resp(status, &[]);
        assert_eq!(
            storability(&private(), &get(&[]), &response),
            Some(NotStorable::NoFreshnessInformation),
            "{status}"
        );
    }
}

#[test]
fn rfc9111_4_1_vary_star_is_not_stored() {
    check(
        &private(),
        "GET",
        &[
            (
                "Vary: *",
                &[],
                200,
                &[("cache-control", "max-age=60"), ("vary", "*")],
                Some(NotStorable::VaryStar),
            ),
            (
                "Vary: accept, *",
                &[],
                200,
                &[("cache-control", "max-age=60"), ("vary", "accept, *")],
                Some(NotStorable::VaryStar),
            ),
            (
                "* on a second Vary line",
                &[],
                200,
                &[
                    ("cache-control", "max-age=60"),
                    ("vary", "accept"),
                    ("vary", "*"),
                ],
                Some(NotStorable::VaryStar),
            ),
        ],
    );
}

#[test]
fn rfc9111_3_stored_entry_records_request_and_response() {
    let request = req(
        "GET",
        "/a?b=1",
        &[("host", "example.com"), ("accept-language", "en")],
    );
    let response = resp(
        200,
        &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
    );
    let entry = store_times(&private(), &request, &response, at(1), at(3));
    assert_eq!(entry.method, http::Method::GET);
    assert_eq!(entry.uri, "http://example.com/a?b=1");
    assert_eq!(entry.status, StatusCode::OK);
    assert_eq!(entry.request_time, at(1));
    assert_eq!(entry.response_time, at(3));
    assert_eq!(
        values(&entry.vary_request_headers, "accept-language"),
        ["en"]
    );
}
