//! RFC 9111 §7 (security considerations): §7.1 cache poisoning (the target URI a response is
//! stored under names the host that answered), §7.3 sensitive information (in a shared cache,
//! one client's cookies and credentials-bound answers do not reach another client, neither
//! by storing nor by freshening).

use cache_policy::{CachePolicy, NotStorable, PolicyOptions, ResponseAction, SharedCookies};
use http::uri::Scheme;

use crate::helpers::*;

/// Cacheable by heuristics alone (§4.2.2): a `Last-Modified` and nothing explicit.
const HEURISTIC: (&str, &str) = ("last-modified", "Mon, 01 Jan 2001 00:00:00 GMT");

fn shared_with(cookies: SharedCookies) -> CachePolicy {
    with(
        PolicyOptions::default()
            .shared(true)
            .shared_cookies(cookies),
    )
}

#[test]
fn rfc9111_7_3_set_cookie_made_cacheable_by_heuristics_is_not_stored_by_a_shared_cache() {
    let response = resp(200, &[HEURISTIC, ("set-cookie", "session=alice")]);
    assert_eq!(
        storability(&shared(), &get(&[]), &response),
        Some(NotStorable::SetCookie)
    );
    // A private cache serves the one client the cookie was for.
    let stored = store(&private(), &get(&[]), &response);
    assert_eq!(values(&stored.headers, "set-cookie"), ["session=alice"]);
}

#[test]
fn rfc9111_7_3_set_cookie_is_shared_when_the_origin_made_the_response_explicitly_shareable() {
    for explicit in [
        ("cache-control", "max-age=60"),
        ("cache-control", "s-maxage=60"),
        ("cache-control", "public"),
        ("expires", "Thu, 01 Jan 2099 00:00:00 GMT"),
    ] {
        let response = resp(200, &[HEURISTIC, explicit, ("set-cookie", "lang=fr")]);
        let stored = store(&shared(), &get(&[]), &response);
        assert_eq!(
            values(&stored.headers, "set-cookie"),
            ["lang=fr"],
            "{explicit:?}"
        );
    }
}

#[test]
fn rfc9111_7_3_the_strict_option_never_stores_set_cookie() {
    let response = resp(
        200,
        &[
            ("cache-control", "public, max-age=60"),
            ("set-cookie", "a=1"),
        ],
    );
    assert_eq!(
        storability(&shared_with(SharedCookies::Refuse), &get(&[]), &response),
        Some(NotStorable::SetCookie)
    );
    // Without a cookie the strict option stores as usual.
    let plain = resp(200, &[("cache-control", "max-age=60")]);
    assert_eq!(
        storability(&shared_with(SharedCookies::Refuse), &get(&[]), &plain),
        None
    );
}

#[test]
fn rfc9111_7_3_the_loose_option_stores_heuristic_responses_without_their_cookies() {
    let policy = shared_with(SharedCookies::StripUnlessExplicit);
    let response = resp(200, &[HEURISTIC, ("set-cookie", "session=alice")]);
    let stored = store(&policy, &get(&[]), &response);
    assert!(!stored.headers.contains_key("set-cookie"));
    assert!(stored.headers.contains_key("last-modified"));
    let explicit = resp(
        200,
        &[("cache-control", "max-age=60"), ("set-cookie", "lang=fr")],
    );
    let stored = store(&policy, &get(&[]), &explicit);
    assert_eq!(values(&stored.headers, "set-cookie"), ["lang=fr"]);
}

#[test]
fn rfc9111_5_2_2_4_a_cookie_named_by_no_cache_leaves_the_response_storable_without_it() {
    let response = resp(
        200,
        &[
            HEURISTIC,
            ("cache-control", "no-cache=\"set-cookie\""),
            ("set-cookie", "session=alice"),
        ],
    );
    let stored = store(&shared(), &get(&[]), &response);
    assert!(!stored.headers.contains_key("set-cookie"));
}

#[test]
fn rfc9111_7_3_the_cookie_rule_holds_when_caching_rules_are_ignored() {
    let policy = with(PolicyOptions::default().shared(true).ignore_rules(true));
    let response = resp(200, &[("set-cookie", "session=alice")]);
    assert_eq!(
        storability(&policy, &get(&[]), &response),
        Some(NotStorable::SetCookie)
    );
}

/// A stored response with a validator, fresh for 60 s from `at(0)`.
fn stored_etag(policy: &CachePolicy, lines: &[(&str, &str)]) -> Vec<cache_policy::StoredResponse> {
    let mut all = vec![("etag", "\"v1\"")];
    all.extend_from_slice(lines);
    vec![store(policy, &get(&[]), &resp(200, &all))]
}

/// The 304 decision for `request` at `at(100)`.
fn after_304(
    policy: &CachePolicy,
    stored: &[cache_policy::StoredResponse],
    request: &http::Request<()>,
    lines: &[(&str, &str)],
) -> ResponseAction {
    let mut all = vec![("etag", "\"v1\"")];
    all.extend_from_slice(lines);
    policy
        .after_response(request, &resp(304, &all), at(100), at(100), stored)
        .action
}

#[test]
fn rfc9111_3_2_freshening_never_brings_in_a_field_storing_would_leave_out() {
    let policy = shared();
    let stored = stored_etag(&policy, &[("cache-control", "max-age=60")]);
    for (cc, field) in [
        ("max-age=60, no-cache=\"x-user\"", "x-user"),
        ("max-age=60, private=\"x-user\"", "x-user"),
    ] {
        let action = after_304(
            &policy,
            &stored,
            &get(&[]),
            &[("cache-control", cc), ("x-user", "alice")],
        );
        let ResponseAction::Refresh { updates, head, .. } = action else {
            panic!("{action:?}")
        };
        assert_eq!(updates.len(), 1, "{cc}");
        assert!(!updates[0].entry.headers.contains_key(field), "{cc}");
        // The client whose request brought the field still gets it.
        assert_eq!(head.headers[field], "alice", "{cc}");
    }
}

#[test]
fn rfc9111_7_3_freshening_never_brings_a_cookie_into_a_shared_entry_that_storing_would_not() {
    // Stored by heuristics (the loose option keeps it, without cookies); the 304 sets a
    // cookie for the client that revalidated.
    let policy = shared_with(SharedCookies::StripUnlessExplicit);
    let stored = stored_etag(&policy, &[HEURISTIC]);
    let action = after_304(
        &policy,
        &stored,
        &get(&[]),
        &[("set-cookie", "session=bob")],
    );
    let ResponseAction::Refresh { updates, head, .. } = action else {
        panic!("{action:?}")
    };
    assert!(!updates[0].entry.headers.contains_key("set-cookie"));
    assert_eq!(head.headers["set-cookie"], "session=bob");
    // The default option, with an explicitly fresh stored response: a 200 with these header
    // lines would be stored with its cookie, so the update keeps it too.
    let policy = shared();
    let stored = stored_etag(&policy, &[("cache-control", "max-age=60")]);
    let action = after_304(&policy, &stored, &get(&[]), &[("set-cookie", "lang=fr")]);
    let ResponseAction::Refresh { updates, .. } = action else {
        panic!("{action:?}")
    };
    assert_eq!(updates[0].entry.headers["set-cookie"], "lang=fr");
    // The strict option: never.
    let policy = shared_with(SharedCookies::Refuse);
    let stored = stored_etag(&policy, &[("cache-control", "max-age=60")]);
    let action = after_304(&policy, &stored, &get(&[]), &[("set-cookie", "lang=fr")]);
    let ResponseAction::Refresh { updates, .. } = action else {
        panic!("{action:?}")
    };
    assert!(!updates[0].entry.headers.contains_key("set-cookie"));
}

#[test]
fn rfc9111_3_5_a_revalidation_with_authorization_never_changes_what_anonymous_clients_get() {
    let policy = shared();
    let stored = stored_etag(&policy, &[("cache-control", "max-age=60")]);
    let alice = get(&[
        ("authorization", "Bearer alice"),
        ("cache-control", "no-cache"),
    ]);
    let action = after_304(
        &policy,
        &stored,
        &alice,
        &[("cache-control", "max-age=3600"), ("x-account", "alice")],
    );
    let ResponseAction::Refresh { updates, head, .. } = action else {
        panic!("{action:?}")
    };
    assert!(updates.is_empty(), "the shared entry is left as it was");
    assert_eq!(head.headers["x-account"], "alice", "alice gets her answer");
    // Unless the response allows a shared cache to reuse it (§3.5).
    let action = after_304(
        &policy,
        &stored,
        &alice,
        &[("cache-control", "public, max-age=3600")],
    );
    let ResponseAction::Refresh { updates, .. } = action else {
        panic!("{action:?}")
    };
    assert_eq!(updates.len(), 1);
    // A private cache serves alice alone: it freshens.
    let stored = stored_etag(&private(), &[("cache-control", "max-age=60")]);
    let action = after_304(
        &private(),
        &stored,
        &alice,
        &[("cache-control", "max-age=3600")],
    );
    let ResponseAction::Refresh { updates, .. } = action else {
        panic!("{action:?}")
    };
    assert_eq!(updates.len(), 1);
}

#[test]
fn rfc9111_3_5_a_head_with_authorization_neither_freshens_nor_removes_shared_entries() {
    let policy = shared();
    let stored = stored_etag(&policy, &[("cache-control", "max-age=60")]);
    let head = req("HEAD", URI, &[("authorization", "Bearer alice")]);
    for etag in ["\"v1\"", "\"other\""] {
        let response = resp(200, &[("etag", etag), ("cache-control", "max-age=3600")]);
        let action = policy
            .after_response(&head, &response, at(100), at(100), &stored)
            .action;
        let ResponseAction::UpdateFromHead { updates, remove } = action else {
            panic!("{action:?}")
        };
        assert!(updates.is_empty() && remove.is_empty(), "etag {etag}");
    }
}

#[test]
fn rfc9111_3_freshening_to_a_private_response_leaves_the_shared_entry_alone() {
    let policy = shared();
    let stored = stored_etag(&policy, &[("cache-control", "max-age=60")]);
    let action = after_304(&policy, &stored, &get(&[]), &[("cache-control", "private")]);
    let ResponseAction::Refresh { updates, head, .. } = action else {
        panic!("{action:?}")
    };
    assert!(updates.is_empty());
    assert_eq!(head.headers["cache-control"], "private");
}

#[test]
fn rfc9112_3_2_a_request_with_two_host_lines_has_no_target_uri() {
    let request = req(
        "GET",
        "/page",
        &[("host", "a.example"), ("host", "b.example")],
    );
    assert_eq!(shared().target_uri(&request), None);
    assert_eq!(
        cache_policy::effective_uri(request.uri(), request.headers()),
        None
    );
}

#[test]
fn rfc9110_7_2_a_host_with_user_information_names_no_target() {
    for host in ["a.example@b.example", "@b.example", ""] {
        let request = req("GET", "/page", &[("host", host)]);
        assert_eq!(shared().target_uri(&request), None, "{host:?}");
    }
    let request = req("GET", "/page", &[("host", "B.example:8080")]);
    assert_eq!(
        shared().target_uri(&request).expect("target"),
        "http://B.example:8080/page"
    );
}

#[test]
fn rfc9112_3_3_a_server_behind_tls_keys_origin_form_requests_as_https() {
    let policy = with(
        PolicyOptions::default()
            .shared(true)
            .origin_form_scheme(Scheme::HTTPS),
    );
    let request = req("GET", "/page", &[("host", "example.com")]);
    assert_eq!(
        policy.target_uri(&request).expect("target"),
        "https://example.com/page"
    );
    // An absolute-form target keeps its own scheme.
    let absolute = req("GET", "http://example.com/page", &[]);
    assert_eq!(
        policy.target_uri(&absolute).expect("target"),
        "http://example.com/page"
    );
    // Invalidation (§4.4) resolves against the same target.
    let post = req("POST", "/page", &[("host", "example.com")]);
    let decision = policy.after_response(&post, &resp(204, &[]), at(0), at(0), NONE);
    assert_eq!(decision.invalidate, ["https://example.com/page"]);
}

#[test]
fn rfc9111_3_4_a_stored_206_or_304_is_never_served_as_a_full_response() {
    for status in [206, 304, 103] {
        let mut stored = store(
            &private(),
            &get(&[]),
            &resp(200, &[("cache-control", "max-age=60")]),
        );
        stored.status = http::StatusCode::from_u16(status).unwrap();
        let lookup = private().lookup(&get(&[]), &[stored], at(1));
        assert!(
            matches!(lookup, cache_policy::Lookup::Forward(_)),
            "{status}: {lookup:?}"
        );
    }
}
