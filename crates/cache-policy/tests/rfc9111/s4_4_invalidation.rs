//! RFC 9111 §4.4: invalidating stored responses.

use http::Uri;

use crate::helpers::*;

fn invalidated(
    method: &str,
    uri: &str,
    request: &[(&str, &str)],
    status: u16,
    lines: &[(&str, &str)],
) -> Vec<String> {
    let decision = private().after_response(
        &req(method, uri, request),
        &resp(status, lines),
        at(0),
        at(0),
        NONE,
    );
    decision.invalidate.iter().map(Uri::to_string).collect()
}

#[test]
fn rfc9111_4_4_unsafe_method_with_non_error_status_invalidates_the_target_uri() {
    let target = "http://example.com/resource";
    for method in ["POST", "PUT", "DELETE", "PATCH", "PURGE"] {
        for status in [200, 201, 204, 301, 303, 307] {
            assert_eq!(
                invalidated(method, URI, &[], status, &[]),
                [target],
                "{method} {status}"
            );
        }
    }
    // Origin-form request target: the target URI comes from Host.
    assert_eq!(
        invalidated("POST", "/a?b=c", &[("host", "example.com:8080")], 200, &[]),
        ["http://example.com:8080/a?b=c"]
    );
}

#[test]
fn rfc9111_4_4_not_on_error_statuses_or_safe_methods() {
    for status in [100, 400, 404, 409, 500, 503] {
        assert!(
            invalidated("POST", URI, &[], status, &[("location", "/x")]).is_empty(),
            "{status}"
        );
    }
    for method in ["GET", "HEAD", "OPTIONS", "TRACE"] {
        assert!(
            invalidated(method, URI, &[], 200, &[("location", "/x")]).is_empty(),
            "{method}"
        );
    }
}

#[test]
fn rfc9111_4_4_same_origin_location_and_content_location_are_invalidated() {
    let got = invalidated(
        "POST",
        "http://example.com/dir/resource",
        &[],
        201,
        &[
            ("location", "/items/7"),
            ("content-location", "sibling?x=1#frag"),
        ],
    );
    assert_eq!(
        got,
        [
            "http://example.com/dir/resource",
            "http://example.com/items/7",
            "http://example.com/dir/sibling?x=1"
        ]
    );
    // Absolute same-origin references, explicit default port, case-insensitive host.
    let got = invalidated(
        "PUT",
        URI,
        &[],
        200,
        &[("location", "http://EXAMPLE.com:80/other")],
    );
    assert_eq!(got.len(), 2, "{got:?}");
    // The same URI is listed once.
    assert_eq!(
        invalidated("PUT", URI, &[], 200, &[("content-location", "/resource")]),
        [URI]
    );
}

#[test]
fn rfc9111_4_4_cross_origin_location_is_not_invalidated() {
    for other in [
        "http://evil.example/resource",
        "https://example.com/resource",
        "http://example.com:8080/resource",
        "//evil.example/x",
    ] {
        let got = invalidated(
            "POST",
            URI,
            &[],
            200,
            &[("location", other), ("content-location", other)],
        );
        assert_eq!(got, [URI], "{other}");
    }
    // Garbage references are ignored.
    let got = invalidated(
        "POST",
        URI,
        &[],
        200,
        &[
            ("location", "http://[::1"),
            ("content-location", "%%:::/ \"x"),
        ],
    );
    assert_eq!(got, [URI]);
}
