//! Unit tests of the `Cache-Control` parser (RFC 9111 §5.2).

use super::*;

fn raw(line: &str) -> Vec<(String, Option<String>)> {
    Directives::new(line.as_bytes())
        .map(|d| {
            (
                String::from_utf8_lossy(d.name).into_owned(),
                d.argument
                    .map(|a| String::from_utf8_lossy(&a.unescaped()).into_owned()),
            )
        })
        .collect()
}

fn response(line: &str) -> ResponseDirectives {
    ResponseDirectives::parse([&HeaderValue::from_str(line).unwrap()])
}

#[test]
fn rfc9111_5_2_grammar_tokens_and_quoted_strings() {
    assert_eq!(
        raw(r#"max-age=5, no-cache="a, b", private"#),
        vec![
            ("max-age".into(), Some("5".into())),
            ("no-cache".into(), Some("a, b".into())),
            ("private".into(), None),
        ]
    );
    assert_eq!(
        raw(r#"x="a \"quoted\" \\ value", y"#),
        vec![
            ("x".into(), Some(r#"a "quoted" \ value"#.into())),
            ("y".into(), None)
        ]
    );
    assert_eq!(raw(" , ,,public ,"), vec![("public".into(), None)]);
}

#[test]
fn rfc9111_5_2_broken_directives_are_skipped_not_fatal() {
    let invalid = || Some(String::new());
    assert_eq!(
        raw(r#"max-age 5, =x, public, no-cache="unterminated"#),
        vec![
            ("max-age".into(), invalid()),
            ("public".into(), None),
            ("no-cache".into(), invalid())
        ]
    );
    assert_eq!(
        raw(r#"a="x,y" junk, b"#),
        vec![("a".into(), invalid()), ("b".into(), None)]
    );
    assert_eq!(
        raw("max-age=, b"),
        vec![("max-age".into(), invalid()), ("b".into(), None)]
    );
    // A broken argument is read in the most restrictive way.
    assert_eq!(response("max-age=\"12, public").max_age, Some(0));
    assert!(response(r#"no-cache="a"#).no_cache.is_whole());
}

#[test]
fn rfc9111_5_2_directive_names_are_case_insensitive() {
    let cc = response("MAX-AGE=10, No-Store, PUBLIC");
    assert_eq!(cc.max_age, Some(10));
    assert!(cc.no_store && cc.public);
}

#[test]
fn rfc9111_1_2_2_delta_seconds_strict_and_capped() {
    assert_eq!(response("max-age=60").max_age, Some(60));
    assert_eq!(response(r#"max-age="60""#).max_age, Some(60));
    assert_eq!(response("max-age=60s").max_age, Some(0));
    assert_eq!(response("max-age=-1").max_age, Some(0));
    assert_eq!(response("max-age").max_age, Some(0));
    assert_eq!(
        response("max-age=99999999999999999999999999").max_age,
        Some(DELTA_SECONDS_MAX)
    );
}

#[test]
fn rfc9111_4_2_1_duplicate_directives() {
    assert_eq!(response("max-age=60, max-age=60").max_age, Some(60));
    assert_eq!(response("max-age=60, max-age=120").max_age, Some(0));
    let two_lines = [
        HeaderValue::from_static("max-age=60"),
        HeaderValue::from_static("max-age=30"),
    ];
    assert_eq!(ResponseDirectives::parse(&two_lines).max_age, Some(0));
}

#[test]
fn rfc9111_5_2_2_4_qualified_no_cache_and_private() {
    let cc = response(r#"no-cache="Set-Cookie, X-Foo", private="authorization""#);
    assert_eq!(
        cc.no_cache,
        FieldScope::Fields(vec![
            HeaderName::from_static("set-cookie"),
            HeaderName::from_static("x-foo")
        ])
    );
    assert_eq!(cc.private.fields(), [http::header::AUTHORIZATION]);
    // An unqualified occurrence makes the directive apply to the whole response.
    assert!(response(r#"no-cache="a", no-cache"#).no_cache.is_whole());
    // The token form of a single field name is accepted.
    assert_eq!(response("no-cache=set-cookie").no_cache.fields().len(), 1);
}

#[test]
fn rfc9111_5_2_1_request_directives() {
    let cc = RequestDirectives::parse([&HeaderValue::from_static(
        "max-age=0, max-stale, min-fresh=5, no-cache, no-store, only-if-cached, stale-if-error=9",
    )]);
    assert_eq!(cc.max_age, Some(0));
    assert_eq!(cc.max_stale, Some(MaxStale::Any));
    assert_eq!(cc.min_fresh, Some(5));
    assert!(cc.no_cache && cc.no_store && cc.only_if_cached);
    assert_eq!(cc.stale_if_error, Some(9));
    let limited = RequestDirectives::parse([&HeaderValue::from_static("max-stale=30")]);
    assert_eq!(limited.max_stale, Some(MaxStale::Seconds(30)));
    let invalid = RequestDirectives::parse([&HeaderValue::from_static("max-stale=x")]);
    assert_eq!(invalid.max_stale, None);
}

#[test]
fn non_utf8_and_control_bytes_never_panic() {
    let value = HeaderValue::from_bytes(b"max-age=\xff\xfe, \"\x80\x81, no-store").unwrap();
    let cc = ResponseDirectives::parse([&value]);
    assert_eq!(cc.max_age, Some(0));
    let value = HeaderValue::from_bytes(b"a=\"\\").unwrap();
    assert!(ResponseDirectives::parse([&value]).is_empty());
}
