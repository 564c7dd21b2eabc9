//! RFC 9111 §4.1: calculating cache keys with the Vary header field.

use cache_policy::{ForwardReason, Lookup, ResponseAction, StoredResponse};

use crate::helpers::*;

/// Stores a `max-age=600` response with these `Vary` lines for a request with `request` headers,
/// received at `at(s)`.
fn variant(vary: &[&str], request: &[(&str, &str)], s: u64) -> StoredResponse {
    let mut lines = vec![
        ("cache-control", "max-age=600".to_owned()),
        ("date", date(s as i64)),
    ];
    for v in vary {
        lines.push(("vary", (*v).to_owned()));
    }
    let lines: Vec<(&str, &str)> = lines.iter().map(|(n, v)| (*n, v.as_str())).collect();
    store_at(&private(), &get(request), &resp(200, &lines), s)
}

fn chosen(stored: &[StoredResponse], request: &[(&str, &str)]) -> Result<usize, Lookup> {
    match private().lookup(&get(request), stored, at(20)) {
        Lookup::Fresh(serve) => Ok(serve.index),
        other => Err(other),
    }
}

#[test]
fn rfc9111_4_1_several_vary_lines_are_combined() {
    let stored = [variant(
        &["accept-language", "accept-encoding"],
        &[("accept-language", "en"), ("accept-encoding", "gzip")],
        0,
    )];
    let table: &[(&str, &[(&str, &str)], bool)] = &[
        (
            "both match",
            &[("accept-language", "en"), ("accept-encoding", "gzip")],
            true,
        ),
        (
            "second line differs",
            &[("accept-language", "en"), ("accept-encoding", "br")],
            false,
        ),
        (
            "first line differs",
            &[("accept-language", "fr"), ("accept-encoding", "gzip")],
            false,
        ),
        ("second absent", &[("accept-language", "en")], false),
    ];
    for (label, request, matches) in table {
        assert_eq!(chosen(&stored, request).is_ok(), *matches, "{label}");
    }
}

#[test]
fn rfc9111_4_1_field_names_compare_case_insensitively() {
    let stored = [variant(
        &["Accept-Language, ACCEPT-ENCODING"],
        &[("accept-language", "en"), ("Accept-Encoding", "gzip")],
        0,
    )];
    assert_eq!(
        values(&stored[0].vary_request_headers, "accept-language"),
        ["en"]
    );
    assert_eq!(
        chosen(
            &stored,
            &[("ACCEPT-LANGUAGE", "en"), ("accept-encoding", "gzip")]
        )
        .ok(),
        Some(0)
    );
    assert!(chosen(
        &stored,
        &[("Accept-Language", "de"), ("accept-encoding", "gzip")]
    )
    .is_err());
}

#[test]
fn rfc9111_4_1_vary_star_never_matches() {
    // Built by hand: the policy refuses to store it, but a store may still hold one.
    let mut entry = variant(&[], &[], 0);
    entry.headers.append("vary", "*".parse().unwrap());
    let stored = [entry];
    assert!(matches!(
        chosen(&stored, &[]),
        Err(Lookup::Forward(ForwardReason::VaryMiss))
    ));
    let mut entry = variant(&["accept"], &[("accept", "a")], 0);
    entry.headers.append("vary", "*".parse().unwrap());
    assert!(chosen(&[entry], &[("accept", "a")]).is_err());
}

#[test]
fn rfc9111_4_1_selecting_values_compare_whitespace_normalized_and_lines_combined() {
    let stored = [variant(
        &["accept-encoding"],
        &[("accept-encoding", "gzip,br")],
        0,
    )];
    let table: &[(&str, &[(&str, &str)], bool)] = &[
        ("identical", &[("accept-encoding", "gzip,br")], true),
        (
            "spaces after comma",
            &[("accept-encoding", "gzip, br")],
            true,
        ),
        (
            "tabs and padding",
            &[("accept-encoding", " gzip\t,  br ")],
            true,
        ),
        (
            "split over two lines",
            &[("accept-encoding", "gzip"), ("accept-encoding", "br")],
            true,
        ),
        ("other order", &[("accept-encoding", "br, gzip")], false),
        ("subset", &[("accept-encoding", "gzip")], false),
        ("absent", &[], false),
    ];
    for (label, request, matches) in table {
        assert_eq!(chosen(&stored, request).is_ok(), *matches, "{label}");
    }
}

#[test]
fn rfc9111_4_1_absent_field_only_matches_absent_field() {
    let stored = [variant(&["accept-language"], &[], 0)];
    assert_eq!(chosen(&stored, &[]).ok(), Some(0));
    assert!(chosen(&stored, &[("accept-language", "en")]).is_err());
    let stored = [variant(
        &["accept-language"],
        &[("accept-language", "en")],
        0,
    )];
    assert!(chosen(&stored, &[]).is_err());
}

#[test]
fn rfc9111_4_1_several_variants_coexist_and_the_matching_one_is_chosen() {
    let stored = [
        variant(&["accept-language"], &[("accept-language", "en")], 0),
        variant(&["accept-language"], &[("accept-language", "fr")], 1),
        variant(&["accept-language"], &[("accept-language", "de")], 2),
    ];
    assert_eq!(chosen(&stored, &[("accept-language", "en")]).ok(), Some(0));
    assert_eq!(chosen(&stored, &[("accept-language", "fr")]).ok(), Some(1));
    assert_eq!(chosen(&stored, &[("accept-language", "de")]).ok(), Some(2));
    assert!(matches!(
        chosen(&stored, &[("accept-language", "it")]),
        Err(Lookup::Forward(ForwardReason::VaryMiss))
    ));
    // Nothing stored at all is a URI miss, not a Vary miss.
    assert!(matches!(
        chosen(&[], &[]),
        Err(Lookup::Forward(ForwardReason::UriMiss))
    ));
}

#[test]
fn rfc9111_4_1_the_most_recent_matching_response_is_chosen() {
    // A response without Vary matches every request; the newer Date wins.
    let stored = [
        variant(&[], &[], 5),
        variant(&["accept-language"], &[("accept-language", "en")], 3),
        variant(&["accept-language"], &[("accept-language", "fr")], 9),
    ];
    assert_eq!(chosen(&stored, &[("accept-language", "en")]).ok(), Some(0));
    assert_eq!(chosen(&stored, &[("accept-language", "fr")]).ok(), Some(2));
    // The order of the candidates does not matter.
    let reversed = [stored[2].clone(), stored[1].clone(), stored[0].clone()];
    assert_eq!(
        chosen(&reversed, &[("accept-language", "en")]).ok(),
        Some(2)
    );
}

#[test]
fn rfc9111_4_1_variant_key_identifies_what_a_response_answers() {
    let a = variant(
        &["Accept-Language", "accept-encoding"],
        &[("accept-language", "en"), ("accept-encoding", "gzip, br")],
        0,
    );
    let b = variant(
        &["accept-encoding, accept-language"],
        &[("accept-language", "en"), ("accept-encoding", "gzip,br")],
        1,
    );
    let c = variant(
        &["accept-encoding, accept-language"],
        &[("accept-language", "fr"), ("accept-encoding", "gzip,br")],
        1,
    );
    let d = variant(
        &["accept-encoding, accept-language"],
        &[("accept-encoding", "gzip,br")],
        1,
    );
    assert_eq!(a.variant_key(), b.variant_key());
    assert_ne!(a.variant_key(), c.variant_key());
    assert_ne!(a.variant_key(), d.variant_key());
    assert_ne!(c.variant_key(), d.variant_key());
    assert!(variant(&[], &[], 0).variant_key().is_empty());
}

#[test]
fn rfc9111_4_1_a_new_response_replaces_the_variants_it_supersedes() {
    let stored = [
        variant(&["accept-language"], &[("accept-language", "en")], 0),
        variant(&["accept-language"], &[("accept-language", "fr")], 1),
    ];
    let response = resp(
        200,
        &[("cache-control", "max-age=60"), ("vary", "accept-language")],
    );
    let decision = private().after_response(
        &get(&[("accept-language", "fr")]),
        &response,
        at(30),
        at(30),
        &stored,
    );
    let ResponseAction::Store {
        replaces, entry, ..
    } = decision.action
    else {
        panic!("expected Store")
    };
    assert_eq!(replaces, [1]);
    assert_eq!(entry.variant_key(), stored[1].variant_key());
}

#[test]
fn rfc9111_4_1_vary_member_that_is_not_a_field_name_is_treated_like_star() {
    for vary in ["accept language", "accept, \"quoted\"", "accept;q=1"] {
        let response = resp(200, &[("cache-control", "max-age=60"), ("vary", vary)]);
        assert_eq!(
            storability(&private(), &get(&[]), &response),
            Some(cache_policy::NotStorable::InvalidVary),
            "{vary}"
        );
    }
    // `*` anywhere says more than an invalid member.
    let response = resp(200, &[("cache-control", "max-age=60"), ("vary", "a b, *")]);
    assert_eq!(
        storability(&private(), &get(&[]), &response),
        Some(cache_policy::NotStorable::VaryStar)
    );
}

#[test]
fn rfc9111_4_1_parsed_responses_are_selected_by_vary_too() {
    // A ParsedResponse knows whether it has Vary; one that has it is still matched against
    // the request, and one without it matches any request.
    use cache_policy::ParsedResponse;
    let parse = |v: StoredResponse| ParsedResponse::new(v);
    let varied = [parse(variant(
        &["accept-encoding"],
        &[("accept-encoding", "gzip")],
        0,
    ))];
    let plain = [parse(variant(&[], &[("accept-encoding", "gzip")], 0))];
    for (stored, request, fresh) in [
        (&varied, "gzip", true),
        (&varied, "br", false),
        (&plain, "br", true),
    ] {
        let lookup = private().lookup(&get(&[("accept-encoding", request)]), stored, at(20));
        assert_eq!(matches!(lookup, Lookup::Fresh(_)), fresh, "{request}");
    }
}

/// Hardening: `Vary: User-Agent` with values clients choose must not grow a key without
/// limit. Storing a variant beyond `max_variants` removes the least recently stored ones.
#[test]
fn rfc9111_4_1_variants_per_key_are_capped_and_the_least_recently_stored_go() {
    let policy = with(
        cache_policy::PolicyOptions::default()
            .shared(true)
            .max_variants(3),
    );
    let stored: Vec<StoredResponse> = (0..3)
        .map(|i| {
            variant(
                &["user-agent"],
                &[("user-agent", &format!("agent-{i}"))],
                10 - i,
            )
        })
        .collect();
    let request = get(&[("user-agent", "agent-new")]);
    let response = resp(
        200,
        &[("cache-control", "max-age=60"), ("vary", "user-agent")],
    );
    let decision = policy.after_response(&request, &response, at(20), at(20), &stored);
    let ResponseAction::Store { replaces, .. } = decision.action else {
        panic!("{:?}", decision.action)
    };
    // agent-2 was stored at 8 s, the oldest of the three.
    assert_eq!(replaces, [2]);
    // Storing the same variant again replaces it and evicts nothing else.
    let again = get(&[("user-agent", "agent-0")]);
    let decision = policy.after_response(&again, &response, at(20), at(20), &stored);
    let ResponseAction::Store { replaces, .. } = decision.action else {
        panic!()
    };
    assert_eq!(replaces, [0]);
    // Under the cap, nothing else goes.
    let decision = with(cache_policy::PolicyOptions::default()).after_response(
        &request,
        &response,
        at(20),
        at(20),
        &stored,
    );
    let ResponseAction::Store { replaces, .. } = decision.action else {
        panic!()
    };
    assert!(replaces.is_empty());
}
