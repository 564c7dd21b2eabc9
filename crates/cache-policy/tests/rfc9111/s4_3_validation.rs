//! RFC 9111 §4.3: validation.

use cache_policy::{Lookup, NotStorable, ResponseAction, StoredResponse};

use crate::helpers::*;

fn entry_with(lines: &[(&str, &str)], request: &[(&str, &str)], s: u64) -> StoredResponse {
    store_at(&private(), &get(request), &resp(200, lines), s)
}

#[test]
fn rfc9111_4_3_1_if_none_match_lists_every_candidate_entity_tag() {
    let d0 = date(0);
    let stored = [
        entry_with(
            &[
                ("cache-control", "max-age=10"),
                ("vary", "accept-language"),
                ("etag", "\"en\""),
                ("date", &d0),
            ],
            &[("accept-language", "en")],
            0,
        ),
        entry_with(
            &[
                ("cache-control", "max-age=10"),
                ("vary", "accept-language"),
                ("etag", "W/\"fr\""),
                ("date", &d0),
            ],
            &[("accept-language", "fr")],
            0,
        ),
        entry_with(
            &[
                ("cache-control", "max-age=10"),
                ("vary", "accept-language"),
                ("date", &d0),
            ],
            &[("accept-language", "de")],
            0,
        ),
        entry_with(
            &[
                ("cache-control", "max-age=10"),
                ("vary", "accept-language"),
                ("etag", "\"en\""),
                ("date", &d0),
            ],
            &[("accept-language", "it")],
            0,
        ),
    ];
    let r = revalidate(private().lookup(&get(&[("accept-language", "fr")]), &stored, at(20)));
    assert_eq!(r.index, 1);
    assert_eq!(r.conditional_headers["if-none-match"], "\"en\", W/\"fr\"");
    assert!(!r.conditional_headers.contains_key("if-modified-since"));
    // apply_to replaces the client's own validators on the forwarded request.
    let mut outgoing = headers(&[("if-none-match", "\"client\""), ("accept-language", "fr")]);
    r.apply_to(&mut outgoing);
    assert_eq!(values(&outgoing, "if-none-match"), ["\"en\", W/\"fr\""]);
    assert_eq!(values(&outgoing, "accept-language"), ["fr"]);
}

#[test]
fn rfc9111_4_3_1_if_modified_since_from_last_modified_of_the_selected_response() {
    let lm = date(-1000);
    let stored = [entry_with(
        &[("cache-control", "max-age=10"), ("last-modified", &lm)],
        &[],
        0,
    )];
    let r = revalidate(private().lookup(&get(&[]), &stored, at(20)));
    assert_eq!(values(&r.conditional_headers, "if-modified-since"), [lm]);
    assert!(!r.conditional_headers.contains_key("if-none-match"));
    // Both validators when both exist; an invalid Last-Modified is not sent.
    let stored = [entry_with(
        &[
            ("cache-control", "max-age=10"),
            ("last-modified", "garbage"),
            ("etag", "\"x\""),
        ],
        &[],
        0,
    )];
    let r = revalidate(private().lookup(&get(&[]), &stored, at(20)));
    assert!(!r.conditional_headers.contains_key("if-modified-since"));
    assert_eq!(r.conditional_headers["if-none-match"], "\"x\"");
    // No validator at all: an unconditional request.
    let stored = [entry_with(&[("cache-control", "max-age=10")], &[], 0)];
    assert!(revalidate(private().lookup(&get(&[]), &stored, at(20)))
        .conditional_headers
        .is_empty());
}

fn fresh_entry() -> [StoredResponse; 1] {
    [entry_with(
        &[
            ("cache-control", "max-age=100"),
            ("etag", "\"v1\""),
            ("last-modified", &date(-1000)),
            ("date", &date(0)),
            ("content-type", "text/plain"),
            ("content-length", "5"),
            ("vary", "accept"),
            ("expires", &date(100)),
            ("content-location", "/r.txt"),
        ],
        &[],
        0,
    )]
}

#[test]
fn rfc9111_4_3_2_client_conditional_request_answered_with_304_from_a_fresh_response() {
    let stored = fresh_entry();
    let table: &[(&str, &[(&str, &str)], &str)] = &[
        (
            "If-None-Match matches",
            &[("if-none-match", "\"v1\"")],
            "304",
        ),
        (
            "If-None-Match among several",
            &[("if-none-match", "\"a\", \"v1\"")],
            "304",
        ),
        (
            "If-None-Match on a second line",
            &[("if-none-match", "\"a\""), ("if-none-match", "\"v1\"")],
            "304",
        ),
        (
            "If-None-Match weak comparison",
            &[("if-none-match", "W/\"v1\"")],
            "304",
        ),
        ("If-None-Match *", &[("if-none-match", "*")], "304"),
        (
            "If-None-Match differs",
            &[("if-none-match", "\"v0\"")],
            "fresh",
        ),
        (
            "If-Modified-Since equal to Last-Modified",
            &[("if-modified-since", &date(-1000))],
            "304",
        ),
        (
            "If-Modified-Since later",
            &[("if-modified-since", &date(-10))],
            "304",
        ),
        (
            "If-Modified-Since earlier",
            &[("if-modified-since", &date(-2000))],
            "fresh",
        ),
        (
            "If-Modified-Since invalid",
            &[("if-modified-since", "yesterday")],
            "fresh",
        ),
        (
            "If-None-Match takes precedence",
            &[
                ("if-none-match", "\"v0\""),
                ("if-modified-since", &date(-10)),
            ],
            "fresh",
        ),
    ];
    for (label, request, expected) in table {
        assert_eq!(
            kind(&private().lookup(&get(request), &stored, at(10))),
            *expected,
            "{label}"
        );
    }
    let Lookup::NotModified(serve) =
        private().lookup(&get(&[("if-none-match", "\"v1\"")]), &stored, at(10))
    else {
        panic!()
    };
    let head = serve.response_head(&stored[serve.index]);
    assert_eq!(head.status, 304);
    let h = &head.headers;
    for name in [
        "etag",
        "date",
        "cache-control",
        "vary",
        "expires",
        "content-location",
        "age",
    ] {
        assert!(h.contains_key(name), "304 carries {name}");
    }
    assert!(!h.contains_key("content-type") && !h.contains_key("content-length"));
    assert_eq!(h["age"], "10");
}

#[test]
fn rfc9111_4_3_2_only_stored_200_answers_and_only_get_or_head() {
    // A stored 404 is not "not modified" for a conditional request.
    let not_found = [store(
        &private(),
        &get(&[]),
        &resp(404, &[("cache-control", "max-age=100"), ("etag", "\"v1\"")]),
    )];
    assert_eq!(
        kind(&private().lookup(&get(&[("if-none-match", "\"v1\"")]), &not_found, at(1))),
        "fresh"
    );
    // HEAD is answered with 304 too.
    let stored = fresh_entry();
    let head = req("HEAD", URI, &[("if-none-match", "\"v1\"")]);
    assert_eq!(kind(&private().lookup(&head, &stored, at(1))), "304");
    // A cacheable POST (opt-in) is never answered with 304.
    let policy = with(
        cache_policy::PolicyOptions::default()
            .cacheable_methods([http::Method::GET, http::Method::POST]),
    );
    let post = req("POST", URI, &[]);
    let stored = [store(
        &policy,
        &post,
        &resp(
            200,
            &[
                ("cache-control", "max-age=100"),
                ("etag", "\"v1\""),
                ("last-modified", &date(-100)),
            ],
        ),
    )];
    let conditional = req("POST", URI, &[("if-modified-since", &date(0))]);
    assert_eq!(kind(&policy.lookup(&conditional, &stored, at(1))), "fresh");
}

/// Runs a 304 with these lines against `stored` and returns the indices updated.
fn updated_by(
    stored: &[StoredResponse],
    request: &[(&str, &str)],
    lines: &[(&str, &str)],
) -> Result<Vec<usize>, ResponseAction> {
    let decision =
        private().after_response(&get(request), &resp(304, lines), at(50), at(50), stored);
    match decision.action {
        ResponseAction::Refresh { updates, .. } => Ok(updates.iter().map(|u| u.index).collect()),
        other => Err(other),
    }
}

fn variants() -> Vec<StoredResponse> {
    let cc = ("cache-control", "max-age=10");
    let vary = ("vary", "accept-language");
    vec![
        entry_with(
            &[
                cc,
                vary,
                ("etag", "\"a\""),
                ("date", &date(0)),
                ("last-modified", &date(-500)),
            ],
            &[("accept-language", "en")],
            0,
        ),
        entry_with(
            &[
                cc,
                vary,
                ("etag", "\"a\""),
                ("date", &date(1)),
                ("last-modified", &date(-500)),
            ],
            &[("accept-language", "fr")],
            1,
        ),
        entry_with(
            &[
                cc,
                vary,
                ("etag", "W/\"w\""),
                ("date", &date(2)),
                ("last-modified", &date(-400)),
            ],
            &[("accept-language", "de")],
            2,
        ),
        entry_with(
            &[
                cc,
                vary,
                ("etag", "W/\"w\""),
                ("date", &date(3)),
                ("last-modified", &date(-400)),
            ],
            &[("accept-language", "it")],
            3,
        ),
    ]
}

#[test]
fn rfc9111_4_3_4_strong_validator_updates_every_response_with_it() {
    let stored = variants();
    assert_eq!(
        updated_by(&stored, &[("accept-language", "en")], &[("etag", "\"a\"")]).ok(),
        Some(vec![0, 1])
    );
    // A strong tag never matches a weak stored one.
    assert!(matches!(
        updated_by(&stored, &[("accept-language", "de")], &[("etag", "\"w\"")]),
        Err(ResponseAction::Refetch)
    ));
}

#[test]
fn rfc9111_4_3_4_weak_validator_updates_the_most_recent_match() {
    let stored = variants();
    assert_eq!(
        updated_by(
            &stored,
            &[("accept-language", "de")],
            &[("etag", "W/\"w\"")]
        )
        .ok(),
        Some(vec![3])
    );
    // A weak tag compares weakly with strong stored tags.
    assert_eq!(
        updated_by(
            &stored,
            &[("accept-language", "en")],
            &[("etag", "W/\"a\"")]
        )
        .ok(),
        Some(vec![1])
    );
}

#[test]
fn rfc9111_4_3_4_last_modified_validator_updates_the_most_recent_match() {
    let stored = variants();
    let lm = date(-500);
    assert_eq!(
        updated_by(
            &stored,
            &[("accept-language", "en")],
            &[("last-modified", &lm)]
        )
        .ok(),
        Some(vec![1])
    );
    let lm = date(-400);
    assert_eq!(
        updated_by(
            &stored,
            &[("accept-language", "de")],
            &[("last-modified", &lm)]
        )
        .ok(),
        Some(vec![3])
    );
}

#[test]
fn rfc9111_4_3_4_no_validator_updates_a_single_response_without_validators() {
    let single = [entry_with(&[("cache-control", "max-age=10")], &[], 0)];
    assert_eq!(
        updated_by(&single, &[], &[("cache-control", "max-age=60")]).ok(),
        Some(vec![0])
    );
}

/// Beyond the strict §4.3.4 rule: a bare 304 (no ETag, no Last-Modified, as RFC 9110 §15.4.5
/// allows and common servers send) validates the stored response the request selects, the one
/// the conditional request was built from, instead of forcing a refetch.
#[test]
fn rfc9111_4_3_4_a_bare_304_validates_the_response_the_request_selects() {
    let with_validator = [entry_with(
        &[("cache-control", "max-age=10"), ("etag", "\"x\"")],
        &[],
        0,
    )];
    assert_eq!(updated_by(&with_validator, &[], &[]).ok(), Some(vec![0]));
    // Among Vary variants, the one matching the request (French is index 1).
    let stored = variants();
    assert_eq!(
        updated_by(&stored, &[("accept-language", "fr")], &[]).ok(),
        Some(vec![1])
    );
    // Nothing the request selects: a client that did not ask for a 304 gets a refetch.
    assert!(matches!(
        updated_by(&stored, &[("accept-language", "zh")], &[]),
        Err(ResponseAction::Refetch)
    ));
}

#[test]
fn rfc9111_4_3_3_a_304_matching_nothing_is_refetched_or_passed_to_a_conditional_client() {
    let stored = variants();
    assert!(matches!(
        updated_by(
            &stored,
            &[("accept-language", "en")],
            &[("etag", "\"zzz\"")]
        ),
        Err(ResponseAction::Refetch)
    ));
    // The client asked conditionally itself: the 304 is its answer.
    assert!(matches!(
        updated_by(
            &stored,
            &[("accept-language", "en"), ("if-none-match", "\"zzz\"")],
            &[("etag", "\"zzz\"")]
        ),
        Err(ResponseAction::PassThrough(NotStorable::Status))
    ));
    // Nothing stored at all: a 304 is passed through.
    assert!(matches!(
        updated_by(&[], &[], &[("etag", "\"a\"")]),
        Err(ResponseAction::PassThrough(_))
    ));
}

#[test]
fn rfc9111_4_3_3_the_refreshed_response_answers_the_request() {
    let stored = variants();
    let decision = private().after_response(
        &get(&[("accept-language", "fr")]),
        &resp(304, &[("etag", "\"a\""), ("cache-control", "max-age=60")]),
        at(50),
        at(50),
        &stored,
    );
    let ResponseAction::Refresh { updates, serve, .. } = decision.action else {
        panic!()
    };
    assert_eq!(updates.len(), 2);
    assert_eq!(serve.index, 1, "the variant matching the request");
    let served = updates
        .iter()
        .find(|u| u.index == serve.index)
        .expect("the served response is one of the updates");
    let head = serve.response_head(&served.entry);
    assert_eq!(head.status, 200);
    assert_eq!(head.headers["cache-control"], "max-age=60");
    assert!(serve.freshness.is_fresh());
    // The client's own condition is evaluated against the refreshed response.
    let decision = private().after_response(
        &get(&[("accept-language", "fr"), ("if-none-match", "\"a\"")]),
        &resp(304, &[("etag", "\"a\"")]),
        at(50),
        at(50),
        &stored,
    );
    let ResponseAction::Refresh { serve, .. } = decision.action else {
        panic!()
    };
    assert!(serve.not_modified);
    // The origin may select a stored variant the request's Vary values do not match (§4.1):
    // the response it validated answers the request.
    let decision = private().after_response(
        &get(&[("accept-language", "es")]),
        &resp(304, &[("etag", "W/\"w\"")]),
        at(50),
        at(50),
        &stored,
    );
    let ResponseAction::Refresh { serve, .. } = decision.action else {
        panic!("{:?}", decision.action)
    };
    assert_eq!(serve.index, 3);
}

fn head_update(stored: &[StoredResponse], lines: &[(&str, &str)]) -> ResponseAction {
    private()
        .after_response(
            &req("HEAD", URI, &[]),
            &resp(200, lines),
            at(50),
            at(50),
            stored,
        )
        .action
}

#[test]
fn rfc9111_4_3_5_head_response_freshens_matching_stored_get() {
    let stored = [entry_with(
        &[
            ("cache-control", "max-age=10"),
            ("etag", "\"v1\""),
            ("content-length", "5"),
            ("x-old", "1"),
        ],
        &[],
        0,
    )];
    let ResponseAction::UpdateFromHead { updates, remove } = head_update(
        &stored,
        &[
            ("cache-control", "max-age=100"),
            ("etag", "\"v1\""),
            ("content-length", "5"),
            ("x-new", "2"),
        ],
    ) else {
        panic!()
    };
    assert!(remove.is_empty());
    assert_eq!(updates.len(), 1);
    let e = &updates[0].entry;
    assert_eq!(e.headers["cache-control"], "max-age=100");
    assert_eq!(e.headers["x-new"], "2");
    assert_eq!(e.headers["x-old"], "1");
    assert_eq!(e.response_time, at(50));
    assert!(private().freshness(e, at(60)).is_fresh());
}

#[test]
fn rfc9111_4_3_5_head_response_with_other_validators_or_length_invalidates() {
    let stored = [entry_with(
        &[
            ("cache-control", "max-age=10"),
            ("etag", "\"v1\""),
            ("content-length", "5"),
            ("last-modified", &date(-50)),
        ],
        &[],
        0,
    )];
    for lines in [
        &[("etag", "\"v2\"")][..],
        &[("etag", "\"v1\""), ("content-length", "6")][..],
        &[("last-modified", &*date(-10))][..],
    ] {
        let ResponseAction::UpdateFromHead { updates, remove } = head_update(&stored, lines) else {
            panic!()
        };
        assert!(updates.is_empty(), "{lines:?}");
        assert_eq!(remove, [0], "{lines:?}");
    }
    // Other statuses only pass through; HEAD responses are never stored themselves.
    assert!(matches!(
        head_update(&[], &[("cache-control", "max-age=60")]),
        ResponseAction::PassThrough(NotStorable::HeadResponse)
    ));
}

#[test]
fn rfc9111_4_3_5_head_is_served_from_a_stored_get() {
    let stored = fresh_entry();
    let head = req("HEAD", URI, &[]);
    let serve = fresh(private().lookup(&head, &stored, at(1)));
    assert_eq!(serve.index, 0);
    let head = serve.response_head(&stored[serve.index]);
    assert_eq!(head.status, 200);
    assert_eq!(head.headers["content-length"], "5");
    // But a GET is never served from a stored HEAD (HEAD responses are not stored) nor a POST.
    let post_entry = {
        let policy = with(
            cache_policy::PolicyOptions::default()
                .cacheable_methods([http::Method::GET, http::Method::POST]),
        );
        store(
            &policy,
            &req("POST", URI, &[]),
            &resp(200, &[("cache-control", "max-age=100")]),
        )
    };
    assert_eq!(
        kind(&private().lookup(&get(&[]), &[post_entry], at(1))),
        "forward"
    );
}
