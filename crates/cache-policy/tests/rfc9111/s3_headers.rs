//! RFC 9111 §3.1 (storing header fields) and §3.2 (updating stored header fields).

use cache_policy::{Lookup, ResponseAction};

use crate::helpers::*;

#[test]
fn rfc9111_3_1_hop_by_hop_and_connection_listed_fields_are_not_stored() {
    let response = resp(
        200,
        &[
            ("cache-control", "max-age=60"),
            ("connection", "X-Session, close"),
            ("connection", "x-other"),
            ("x-session", "abc"),
            ("x-other", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authentication-info", "x"),
            ("content-type", "text/plain"),
            ("x-end-to-end", "kept"),
        ],
    );
    let entry = store(&private(), &get(&[]), &response);
    let mut names: Vec<_> = entry.headers.keys().map(|n| n.as_str()).collect();
    names.sort_unstable();
    // An absent Age is stored as `Age: 0` (the same age_value, §4.2.3).
    assert_eq!(
        names,
        [
            "age",
            "cache-control",
            "content-type",
            "date",
            "x-end-to-end"
        ]
    );
    // What is served is what is stored, plus Age.
    let serve = fresh(private().lookup(&get(&[]), std::slice::from_ref(&entry), at(1)));
    let head = serve.response_head(&entry);
    assert!(!head.headers.contains_key("x-session"));
    assert!(!head.headers.contains_key("transfer-encoding"));
}

#[test]
fn rfc9111_3_1_a_removed_age_or_date_is_stored_anew() {
    // `Age` named by `Connection`, `Date` by a qualified no-cache: both are removed, then the
    // cache stores what it stores for a response without them (§4.2.3: `Age: 0`; RFC 9110
    // §6.6.1: a `Date` of the response time), never the origin's removed values.
    let response = resp(
        200,
        &[
            ("cache-control", r#"max-age=60, no-cache="date""#),
            ("connection", "age"),
            ("age", "50"),
            ("date", &date(-3600)),
        ],
    );
    let entry = store(&private(), &get(&[]), &response);
    assert_eq!(values(&entry.headers, "age"), ["0"]);
    assert_eq!(values(&entry.headers, "date"), [date(0)]);
}

#[test]
fn rfc9111_3_1_repeated_fields_are_kept_as_separate_lines_when_stored_and_served() {
    let response = resp(
        200,
        &[
            ("cache-control", "max-age=60"),
            ("set-cookie", "a=1; Path=/"),
            (
                "set-cookie",
                "b=2, c=3; Expires=Wed, 21 Oct 2099 07:28:00 GMT",
            ),
            ("link", "</a.css>; rel=preload"),
            ("link", "</b.js>; rel=preload"),
            ("vary", "accept-encoding"),
            ("vary", "accept-language"),
        ],
    );
    let entry = store(&private(), &get(&[]), &response);
    assert_eq!(
        values(&entry.headers, "set-cookie"),
        [
            "a=1; Path=/",
            "b=2, c=3; Expires=Wed, 21 Oct 2099 07:28:00 GMT"
        ]
    );
    assert_eq!(
        values(&entry.headers, "link"),
        ["</a.css>; rel=preload", "</b.js>; rel=preload"]
    );
    assert_eq!(
        values(&entry.headers, "vary"),
        ["accept-encoding", "accept-language"]
    );
    let serve = fresh(private().lookup(&get(&[]), std::slice::from_ref(&entry), at(1)));
    let head = serve.into_response_head(entry);
    assert_eq!(values(&head.headers, "set-cookie").len(), 2);
    assert_eq!(values(&head.headers, "link").len(), 2);
    assert_eq!(values(&head.headers, "vary").len(), 2);
}

fn refresh_with(
    stored_lines: &[(&str, &str)],
    not_modified_lines: &[(&str, &str)],
) -> cache_policy::StoredResponse {
    let policy = private();
    let entry = store(&policy, &get(&[]), &resp(200, stored_lines));
    let decision = policy.after_response(
        &get(&[]),
        &resp(304, not_modified_lines),
        at(100),
        at(101),
        &[entry],
    );
    match decision.action {
        ResponseAction::Refresh { mut updates, .. } => {
            assert_eq!(updates.len(), 1);
            std::sync::Arc::unwrap_or_clone(updates.remove(0).entry).into_response()
        }
        other => panic!("expected Refresh, got {other:?}"),
    }
}

#[test]
fn rfc9111_3_2_304_replaces_stored_fields_it_carries_and_keeps_the_others() {
    let updated = refresh_with(
        &[
            ("cache-control", "max-age=10"),
            ("etag", "\"v1\""),
            ("date", &date(0)),
            ("content-type", "text/html"),
            ("content-length", "1234"),
            ("content-encoding", "gzip"),
            ("link", "</old>; rel=preload"),
            ("x-kept", "yes"),
            ("age", "5"),
        ],
        &[
            ("cache-control", "max-age=60"),
            ("etag", "\"v1\""),
            ("date", &date(101)),
            ("content-length", "0"),
            ("content-encoding", "br"),
            ("link", "</a>; rel=preload"),
            ("link", "</b>; rel=preload"),
            ("x-new", "1"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
        ],
    );
    let h = &updated.headers;
    assert_eq!(values(h, "cache-control"), ["max-age=60"]);
    assert_eq!(values(h, "date"), [date(101)]);
    // The stored body depends on these: a 304 does not change them.
    assert_eq!(values(h, "content-length"), ["1234"]);
    assert_eq!(values(h, "content-encoding"), ["gzip"]);
    assert_eq!(values(h, "content-type"), ["text/html"]);
    // Repeated fields from the 304 replace all stored lines and stay separate.
    assert_eq!(
        values(h, "link"),
        ["</a>; rel=preload", "</b>; rel=preload"]
    );
    assert_eq!(values(h, "x-kept"), ["yes"]);
    assert_eq!(values(h, "x-new"), ["1"]);
    // Hop-by-hop fields of the 304 are not stored; the old Age no longer applies (the 304
    // carried none: age_value 0).
    for name in ["connection", "x-hop", "keep-alive"] {
        assert!(!h.contains_key(name), "{name}");
    }
    assert_eq!(values(h, "age"), ["0"]);
    assert_eq!(updated.request_time, at(100));
    assert_eq!(updated.response_time, at(101));
}

#[test]
fn rfc9111_3_2_304_without_date_gets_the_response_time_as_date() {
    let updated = refresh_with(
        &[
            ("cache-control", "max-age=10"),
            ("etag", "\"v1\""),
            ("date", &date(0)),
        ],
        &[("etag", "\"v1\"")],
    );
    assert_eq!(values(&updated.headers, "date"), [date(101)]);
    // And its Age is taken from the 304.
    let updated = refresh_with(
        &[
            ("cache-control", "max-age=10"),
            ("etag", "\"v1\""),
            ("age", "3"),
        ],
        &[("etag", "\"v1\""), ("age", "7")],
    );
    assert_eq!(values(&updated.headers, "age"), ["7"]);
}

#[test]
fn rfc9111_3_2_refreshed_entry_is_fresh_again_and_reused() {
    let policy = private();
    let entry = store(
        &policy,
        &get(&[]),
        &resp(
            200,
            &[
                ("cache-control", "max-age=10"),
                ("etag", "\"v1\""),
                ("date", &date(0)),
            ],
        ),
    );
    let stored = [entry];
    assert_eq!(
        kind(&policy.lookup(&get(&[]), &stored, at(100))),
        "revalidate"
    );
    let ResponseAction::Refresh { updates, serve, .. } = policy
        .after_response(
            &get(&[]),
            &resp(304, &[("cache-control", "max-age=60"), ("etag", "\"v1\"")]),
            at(100),
            at(100),
            &stored,
        )
        .action
    else {
        panic!("expected Refresh")
    };
    assert!(serve.freshness.is_fresh());
    assert!(!serve.not_modified);
    let refreshed = [updates.into_iter().next().unwrap().entry];
    let Lookup::Fresh(serve) = policy.lookup(&get(&[]), &refreshed, at(130)) else {
        panic!("the refreshed response is fresh")
    };
    assert_eq!(
        serve.response_head(&refreshed[serve.index]).headers["age"],
        "30"
    );
}
