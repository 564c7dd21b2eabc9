//! The Cache-Control parsers (RFC 9111 §5.2) on arbitrary bytes: no panic, and values within
//! the delta-seconds cap. Input is split on `\n` into field lines.
#![no_main]

use cache_policy::{RequestDirectives, ResponseDirectives};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let lines: Vec<HeaderValue> = data
        .split(|&b| b == b'\n')
        .filter_map(|line| HeaderValue::from_bytes(line).ok())
        .collect();
    let response = ResponseDirectives::parse(&lines);
    let request = RequestDirectives::parse(&lines);
    for seconds in [
        response.max_age,
        response.s_maxage,
        response.stale_while_revalidate,
        response.stale_if_error,
        request.max_age,
        request.min_fresh,
        request.stale_if_error,
    ]
    .into_iter()
    .flatten()
    {
        assert!(seconds <= 1 << 31);
    }
    let mut headers = HeaderMap::new();
    for line in &lines {
        headers.append(http::header::PRAGMA, line.clone());
    }
    let _ = RequestDirectives::from_headers(&headers);
});
