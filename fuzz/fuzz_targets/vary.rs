//! Vary (RFC 9111 §4.1): a stored response with fuzzed `Vary` lines and fuzzed selecting request
//! headers, looked up with another fuzzed request. No panic; `variant_key` is a function of the
//! stored data; a response always matches the request it was stored for.
//!
//! Input layout: sections separated by `\0`: Vary lines, the stored request's header lines, the
//! presented request's header lines. Lines are separated by `\n`; a header line is
//! `name:value`.
#![no_main]

use std::time::{Duration, SystemTime};

use cache_policy::{CachePolicy, ForwardReason, Lookup, ResponseAction, StoredResponse};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use libfuzzer_sys::fuzz_target;

fn header_lines(section: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in section.split(|&b| b == b'\n') {
        let mut parts = line.splitn(2, |&b| b == b':');
        let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            map.append(name, value);
        }
    }
    map
}

fuzz_target!(|data: &[u8]| {
    let mut sections = data.split(|&b| b == 0);
    let vary = sections.next().unwrap_or_default();
    let stored_request = header_lines(sections.next().unwrap_or_default());
    let presented = header_lines(sections.next().unwrap_or_default());

    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut response = Response::builder().header("cache-control", "max-age=60");
    for line in vary.split(|&b| b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            response = response.header(http::header::VARY, value);
        }
    }
    let response = response.body(()).unwrap();
    let mut request = Request::get("http://example.com/").body(()).unwrap();
    *request.headers_mut() = stored_request;

    for policy in [
        CachePolicy::default(),
        CachePolicy::new(cache_policy::PolicyOptions::default().shared(true)),
    ] {
        let decision = policy.after_response(&request, &response, t0, t0, &[] as &[StoredResponse]);
        let ResponseAction::Store { entry, .. } = decision.action else {
            continue;
        };
        let key = entry.variant_key();
        assert_eq!(key, entry.clone().variant_key());
        let stored = [entry];
        // The request that produced a response is always matched by it (whatever else its
        // headers ask for)...
        let own = policy.lookup(&request, &stored, t0);
        assert!(
            !matches!(
                own,
                Lookup::Forward(ForwardReason::VaryMiss | ForwardReason::UriMiss)
            ),
            "{own:?}"
        );
        // ...and any other request is looked up without panicking.
        let mut other = Request::get("http://example.com/").body(()).unwrap();
        *other.headers_mut() = presented.clone();
        let _ = policy.lookup(&other, &stored, t0);
    }
});
