//! HTTP-dates (RFC 9110 §5.6.7) as the policy reads them in `Expires`, `Date`,
//! `Last-Modified` and `If-Modified-Since`, against the reference parser (`httpdate`, which
//! accepts the IMF-fixdate, RFC 850 and asctime forms; the crate has its own IMF-fixdate fast
//! path):
//!
//! - the `Expires` lifetime (RFC 9111 §5.3, §4.2.1) is `Expires - date_value` (zero when
//!   negative, or when `Expires` is invalid), `date_value` being `Date` or the response time;
//! - a fresh stored 200 answers `If-Modified-Since` (RFC 9110 §13.1.3) with 304 exactly when
//!   its `Last-Modified` (else its `date_value`) is not after the valid date, and is served
//!   plainly when the date is invalid;
//! - no panic.
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use std::time::Duration;

use cache_policy::{CachePolicy, FreshnessSource, Lookup, StoredResponse};
use common::{at, ref_date, since, Value};
use http::{header, HeaderMap, Method, Request, StatusCode, Uri};
use libfuzzer_sys::{arbitrary, fuzz_target};

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    expires: Value,
    date: Option<Value>,
    last_modified: Option<Value>,
    if_modified_since: Value,
    response_time: i32,
}

fn stored(headers: HeaderMap, time: std::time::SystemTime) -> StoredResponse {
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

fuzz_target!(|input: Input| {
    let response_time = at(input.response_time.into());
    let policy = CachePolicy::default();
    let date = input.date.as_ref().and_then(Value::build);
    let date_value = date.as_ref().and_then(ref_date).unwrap_or(response_time);

    // Expires - Date.
    if let Some(expires) = input.expires.build() {
        let mut headers = HeaderMap::new();
        headers.insert(header::EXPIRES, expires.clone());
        if let Some(date) = &date {
            headers.insert(header::DATE, date.clone());
        }
        let response = stored(headers, response_time);
        let freshness = policy.freshness(&response, response_time);
        let expected = ref_date(&expires).map_or(Duration::ZERO, |e| since(e, date_value));
        assert_eq!(freshness.source, FreshnessSource::Expires);
        assert_eq!(
            freshness.lifetime, expected,
            "Expires {expires:?} Date {date:?}"
        );
    }

    // If-Modified-Since against Last-Modified (or Date).
    let Some(if_modified_since) = input.if_modified_since.build() else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, "max-age=600".parse().unwrap());
    if let Some(date) = &date {
        headers.insert(header::DATE, date.clone());
    }
    let last_modified = input.last_modified.as_ref().and_then(Value::build);
    if let Some(last_modified) = &last_modified {
        headers.insert(header::LAST_MODIFIED, last_modified.clone());
    }
    let response = stored(headers, response_time);
    let request = Request::get("http://example.com/")
        .header(header::IF_MODIFIED_SINCE, if_modified_since.clone())
        .body(())
        .unwrap();
    // Judged only while fresh: a `Date` far in the past gives an apparent age over max-age.
    let freshness = policy.freshness(&response, response_time);
    let lookup = policy.lookup(&request, std::slice::from_ref(&response), response_time);
    if !freshness.is_fresh() {
        assert!(!matches!(lookup, Lookup::Fresh(_) | Lookup::NotModified(_)));
        return;
    }
    let expected_304 = ref_date(&if_modified_since).map(|since| {
        let modified = last_modified
            .as_ref()
            .and_then(ref_date)
            .unwrap_or(date_value);
        modified <= since
    });
    match lookup {
        Lookup::NotModified(serve) => {
            assert_eq!(expected_304, Some(true), "{if_modified_since:?} {last_modified:?}");
            let head = serve.response_head(&response);
            assert_eq!(head.status, StatusCode::NOT_MODIFIED);
        }
        Lookup::Fresh(_) => {
            assert_ne!(expected_304, Some(true), "{if_modified_since:?} {last_modified:?}")
        }
        other => panic!("a fresh stored 200: {other:?}"),
    }
});
