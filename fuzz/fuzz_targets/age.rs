//! Age (RFC 9111 §4.2.3, §5.1): arbitrary `Age` and `Date` lines and arbitrary request,
//! response and current times. The current age the policy computes must be exactly the one
//! §4.2.3 defines, computed here from the reference parsers:
//!
//! ```text
//! apparent_age = max(0, response_time - date_value)
//! corrected_age_value = age_value + (response_time - request_time)
//! corrected_initial_age = max(apparent_age, corrected_age_value)
//! current_age = corrected_initial_age + (now - response_time)
//! ```
//!
//! with `age_value` the first `Age` line's first member as delta-seconds (invalid: 0, capped at
//! 2^31) and `date_value` the first `Date` line (invalid or missing: the response time). The
//! `Age` a fresh hit is served with is that age in seconds, capped at 2^31, on one line.
//! A `ParsedResponse` and a `StoredResponse` decide the same. No panic.
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use std::time::Duration;

use cache_policy::{CachePolicy, Lookup, ParsedResponse, PolicyOptions, StoredResponse};
use common::{at, ref_age, ref_date, since, Value};
use http::{header, HeaderMap, Method, Request, StatusCode, Uri};
use libfuzzer_sys::{arbitrary, fuzz_target};

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    age: Vec<Value>,
    date: Vec<Value>,
    request_time: i32,
    response_time: i32,
    now: i32,
    max_age: u32,
    shared: bool,
}

fuzz_target!(|input: Input| {
    let mut headers = HeaderMap::new();
    let max_age = format!("max-age={}", input.max_age);
    headers.insert(header::CACHE_CONTROL, max_age.parse().unwrap());
    for value in input.age.iter().take(4).filter_map(Value::build) {
        headers.append(header::AGE, value);
    }
    for value in input.date.iter().take(4).filter_map(Value::build) {
        headers.append(header::DATE, value);
    }
    let (request_time, response_time, now) = (
        at(input.request_time.into()),
        at(input.response_time.into()),
        at(input.now.into()),
    );

    let age_value = headers
        .get(header::AGE)
        .and_then(ref_age)
        .map_or(Duration::ZERO, Duration::from_secs);
    let date_value = headers
        .get(header::DATE)
        .and_then(ref_date)
        .unwrap_or(response_time);
    let apparent_age = since(response_time, date_value);
    let corrected_age_value = age_value + since(response_time, request_time);
    let corrected_initial_age = apparent_age.max(corrected_age_value);
    let current_age = corrected_initial_age + since(now, response_time);

    let stored = StoredResponse {
        method: Method::GET,
        uri: Uri::from_static("http://example.com/"),
        status: StatusCode::OK,
        headers,
        vary_request_headers: HeaderMap::new(),
        request_time,
        response_time,
    };
    let policy = CachePolicy::new(PolicyOptions::default().shared(input.shared));
    let freshness = policy.freshness(&stored, now);
    assert_eq!(freshness.age, current_age, "current_age");
    assert_eq!(
        freshness.lifetime,
        Duration::from_secs(u64::from(input.max_age).min(1 << 31)),
        "max-age lifetime"
    );

    let request = Request::get("http://example.com/").body(()).unwrap();
    let plain = policy.lookup(&request, std::slice::from_ref(&stored), now);
    let parsed = ParsedResponse::new(stored.clone());
    let from_parsed = policy.lookup(&request, std::slice::from_ref(&parsed), now);
    assert_eq!(format!("{plain:?}"), format!("{from_parsed:?}"));
    match plain {
        Lookup::Fresh(serve) => {
            assert!(freshness.is_fresh());
            assert_eq!(serve.index, 0);
            let head = serve.response_head(&stored);
            let ages: Vec<_> = head.headers.get_all(header::AGE).iter().collect();
            let expected = current_age.as_secs().min(1 << 31).to_string();
            assert_eq!(ages, [expected.as_str()], "served Age");
        }
        Lookup::Revalidate(revalidation) => {
            assert!(!freshness.is_fresh());
            assert_eq!(revalidation.index, 0);
        }
        other => panic!("a GET with one stored 200 and max-age: {other:?}"),
    }
});
