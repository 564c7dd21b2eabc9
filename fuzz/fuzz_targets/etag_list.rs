//! Entity tags (RFC 9110 §8.8.3) and the lists of them in `If-None-Match`, as validation
//! (RFC 9111 §4.3) uses them, against a reference parser written from the grammar
//! (`entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE`, lists per RFC 9110 §5.6.1):
//!
//! 1. A fresh stored 200 answers a GET with `If-None-Match` with 304 exactly when a listed tag
//!    weakly matches its `ETag` (or the field is `*`), whenever the field is well formed.
//! 2. A 304 from the origin refreshes (RFC 9111 §4.3.4): with a strong validator, exactly the
//!    stored responses with a strongly equal one; with a weak one, at most one, which weakly
//!    matches; the response served is one of those refreshed.
//! 3. Revalidating stale responses sends an `If-None-Match` that is a well-formed list of
//!    exactly the distinct valid tags stored, or none when no tag is valid.
//!
//! No panic.
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use cache_policy::{CachePolicy, Lookup, ResponseAction, StoredResponse};
use common::{at, trim_ows, Value};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use libfuzzer_sys::{arbitrary, fuzz_target};

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    if_none_match: Vec<Value>,
    stored: Vec<(Value, u16)>,
    not_modified_etag: Option<Value>,
}

/// `(weak, opaque-tag with its quotes)`, or `None` if not an entity-tag.
fn ref_tag(bytes: &[u8]) -> Option<(bool, &[u8])> {
    let (weak, opaque) = match bytes {
        [b'W', b'/', rest @ ..] => (true, rest),
        _ => (false, bytes),
    };
    match opaque {
        [b'"', inner @ .., b'"']
            if inner
                .iter()
                .all(|&c| c == 0x21 || (0x23..=0x7e).contains(&c) || c >= 0x80) =>
        {
            Some((weak, opaque))
        }
        _ => None,
    }
}

/// `#entity-tag`: empty elements allowed, OWS around commas; `None` if any element is not an
/// entity-tag.
fn ref_list(bytes: &[u8]) -> Option<Vec<(bool, &[u8])>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    loop {
        // Skip OWS and empty elements.
        while let [b' ' | b'\t' | b',', tail @ ..] = rest {
            rest = tail;
        }
        if rest.is_empty() {
            return Some(out);
        }
        let weak = rest.starts_with(b"W/");
        let start = if weak { 2 } else { 0 };
        if rest.get(start) != Some(&b'"') {
            return None;
        }
        let close = rest[start + 1..].iter().position(|&b| b == b'"')? + start + 1;
        out.push(ref_tag(&rest[..=close])?);
        rest = &rest[close + 1..];
        while let [b' ' | b'\t', tail @ ..] = rest {
            rest = tail;
        }
        match rest {
            [] => return Some(out),
            [b',', ..] => {}
            _ => return None,
        }
    }
}

fn stored(etag: Option<HeaderValue>, age: u16) -> StoredResponse {
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, "max-age=600".parse().unwrap());
    if let Some(etag) = etag {
        headers.insert(header::ETAG, etag);
    }
    let time = at(-i64::from(age));
    StoredResponse {
        method: Method::GET,
        uri: Uri::from_static("http://example.com/"),
        status: StatusCode::OK,
        headers,
        vary_request_headers: HeaderMap::new(),
        request_time: time,
        response_time: time,
    }
}

/// The stored tag as the policy must read it: the `ETag` line, without surrounding OWS.
fn stored_tag(response: &StoredResponse) -> Option<(bool, &[u8])> {
    ref_tag(trim_ows(response.headers.get(header::ETAG)?.as_bytes()))
}

fuzz_target!(|input: Input| {
    let policy = CachePolicy::default();
    let candidates: Vec<StoredResponse> = input
        .stored
        .iter()
        .take(4)
        .map(|(etag, age)| stored(etag.build(), *age % 600))
        .collect();
    if candidates.is_empty() {
        return;
    }

    // 1. If-None-Match against the first stored response, fresh.
    let lines: Vec<HeaderValue> = input
        .if_none_match
        .iter()
        .take(4)
        .filter_map(Value::build)
        .collect();
    if !lines.is_empty() {
        let mut request = Request::get("http://example.com/");
        for line in &lines {
            request = request.header(header::IF_NONE_MATCH, line.clone());
        }
        let request = request.body(()).unwrap();
        let first = &candidates[..1];
        let lookup = policy.lookup(&request, first, at(0));
        let star = |line: &HeaderValue| trim_ows(line.as_bytes()) == b"*";
        let expected = if lines.len() == 1 && star(&lines[0]) {
            Some(true)
        } else if lines.iter().any(star) {
            None
        } else {
            let lists: Option<Vec<_>> = lines.iter().map(|l| ref_list(l.as_bytes())).collect();
            lists.map(|lists| {
                let stored = stored_tag(&first[0]);
                lists
                    .iter()
                    .flatten()
                    .any(|(_, opaque)| stored.is_some_and(|(_, s)| s == *opaque))
            })
        };
        match (&lookup, expected) {
            (Lookup::NotModified(_), Some(false)) | (Lookup::Fresh(_), Some(true)) => {
                panic!("If-None-Match {lines:?} against {:?}: {lookup:?}", first[0].headers)
            }
            (Lookup::NotModified(_) | Lookup::Fresh(_), _) => {}
            _ => panic!("a fresh stored 200: {lookup:?}"),
        }
    }

    // 2. A 304 from the origin.
    let request = Request::get("http://example.com/").body(()).unwrap();
    let mut not_modified = Response::builder()
        .status(StatusCode::NOT_MODIFIED)
        .header(header::CACHE_CONTROL, "max-age=60");
    let new_etag = input.not_modified_etag.as_ref().and_then(Value::build);
    if let Some(etag) = &new_etag {
        not_modified = not_modified.header(header::ETAG, etag.clone());
    }
    let not_modified = not_modified.body(()).unwrap();
    let decision = policy.after_response(&request, &not_modified, at(1), at(1), &candidates);
    assert!(decision.invalidate.is_empty());
    let new_tag = new_etag.as_ref().and_then(|v| ref_tag(trim_ows(v.as_bytes())));
    let strong_matches: Vec<usize> = match new_tag {
        Some((false, new)) => (0..candidates.len())
            .filter(|&i| stored_tag(&candidates[i]) == Some((false, new)))
            .collect(),
        _ => Vec::new(),
    };
    let weak_match = |i: usize| match (new_tag, stored_tag(&candidates[i])) {
        (Some((_, new)), Some((_, old))) => new == old,
        _ => false,
    };
    match decision.action {
        ResponseAction::Refresh {
            updates,
            serve,
            head,
        } => {
            let mut updated: Vec<usize> = updates.iter().map(|u| u.index).collect();
            updated.sort_unstable();
            match new_tag {
                Some((false, _)) => assert_eq!(updated, strong_matches, "strong 304"),
                Some((true, _)) => {
                    assert!(updated.len() <= 1 && updated.iter().all(|&i| weak_match(i)))
                }
                None => assert!(updated.len() <= 1),
            }
            assert!(updated.contains(&serve.index), "served {} of {updated:?}", serve.index);
            assert!(!serve.not_modified);
            assert_eq!(head.status, StatusCode::OK);
        }
        ResponseAction::Refetch => match new_tag {
            Some((false, _)) => assert!(strong_matches.is_empty()),
            Some((true, _)) => assert!(!(0..candidates.len()).any(weak_match)),
            None => {}
        },
        other => panic!("a 304 for stored GETs: {other:?}"),
    }

    // 3. Revalidation of stale responses.
    let Lookup::Revalidate(revalidation) = policy.lookup(&request, &candidates, at(100_000))
    else {
        panic!("stale without stale-while-revalidate");
    };
    assert!(revalidation.index < candidates.len());
    let mut expected: Vec<&[u8]> = Vec::new();
    for candidate in &candidates {
        if let Some(etag) = candidate.headers.get(header::ETAG) {
            let tag = trim_ows(etag.as_bytes());
            if ref_tag(tag).is_some() && !expected.contains(&tag) {
                expected.push(tag);
            }
        }
    }
    match revalidation.conditional_headers.get(header::IF_NONE_MATCH) {
        None => assert!(expected.is_empty(), "no If-None-Match for {expected:?}"),
        Some(sent) => {
            let list = ref_list(sent.as_bytes())
                .unwrap_or_else(|| panic!("malformed If-None-Match sent: {sent:?}"));
            let mut sent_tags: Vec<Vec<u8>> = list
                .iter()
                .map(|(weak, opaque)| [if *weak { &b"W/"[..] } else { b"" }, opaque].concat())
                .collect();
            let mut expected: Vec<Vec<u8>> = expected.iter().map(|t| t.to_vec()).collect();
            sent_tags.sort();
            expected.sort();
            assert_eq!(sent_tags, expected, "If-None-Match sent");
        }
    }
});
