//! Malformed input never panics: garbage in every header the policy reads (Cache-Control, Age,
//! Expires, Date, Vary, ETag, Last-Modified, Pragma, If-None-Match, If-Modified-Since,
//! Location, Content-Location, Connection), fed through the whole state machine.
//!
//! A small deterministic generator (xorshift) keeps the test reproducible and dependency-free.

use std::time::{Duration, SystemTime};

use cache_policy::{
    CachePolicy, Lookup, ParsedResponse, PolicyOptions, RequestDirectives, ResponseAction,
    ResponseDirectives, ServeStale, StoredResponse,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Pieces that exercise the parsers' edges: directive names, quotes, escapes, separators,
/// numbers that overflow, dates that almost parse, entity tags, field names.
const PIECES: &[&str] = &[
    "max-age",
    "s-maxage",
    "no-cache",
    "no-store",
    "private",
    "public",
    "must-revalidate",
    "proxy-revalidate",
    "must-understand",
    "immutable",
    "stale-while-revalidate",
    "stale-if-error",
    "max-stale",
    "min-fresh",
    "only-if-cached",
    "no-transform",
    "=",
    "==",
    ",",
    ", ",
    ",,",
    " ",
    "\t",
    "\"",
    "\\",
    "\\\"",
    "\"a,b\"",
    "0",
    "1",
    "-1",
    "60",
    "1.5",
    "99999999999999999999999999999",
    "18446744073709551616",
    "2147483648",
    "4294967296",
    "Sun, 06 Nov 1994 08:49:37 GMT",
    "Sunday, 06-Nov-94 08:49:37 GMT",
    "Sun Nov  6 08:49:37 1994",
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "Thu, 01 Jan 1970 00:00:00 GMT",
    "Mon, 32 Foo 1994",
    "W/",
    "\"etag\"",
    "W/\"etag\"",
    "*",
    "accept",
    "Accept-Language",
    "accept-encoding",
    "x-\u{e9}",
    "/",
    "//evil",
    "http://example.com/x",
    "http://[::1",
    "?q",
    "#f",
    "..",
    ";",
    "",
    "é",
    "\u{1F600}",
];

fn garbage(rng: &mut Rng) -> HeaderValue {
    let mut bytes = Vec::new();
    for _ in 0..rng.below(8) {
        if rng.below(4) == 0 {
            // Raw bytes, including non-UTF-8 (obs-text).
            for _ in 0..rng.below(6) {
                let b = rng.next() as u8;
                bytes.push(if b < 0x20 || b == 0x7f { b'\t' } else { b });
            }
        } else {
            bytes.extend_from_slice(rng.pick(PIECES).as_bytes());
        }
    }
    HeaderValue::from_bytes(&bytes).unwrap_or_else(|_| HeaderValue::from_static(""))
}

const RESPONSE_FIELDS: &[&str] = &[
    "cache-control",
    "cdn-cache-control",
    "age",
    "expires",
    "date",
    "vary",
    "etag",
    "last-modified",
    "pragma",
    "location",
    "content-location",
    "connection",
    "content-length",
];
const REQUEST_FIELDS: &[&str] = &[
    "cache-control",
    "pragma",
    "if-none-match",
    "if-modified-since",
    "accept",
    "accept-language",
    "accept-encoding",
    "authorization",
    "host",
];

fn garbage_headers(rng: &mut Rng, fields: &[&str]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for _ in 0..rng.below(12) {
        let name = HeaderName::from_bytes(rng.pick(fields).as_bytes()).unwrap();
        map.append(name, garbage(rng));
    }
    map
}

fn time(rng: &mut Rng) -> SystemTime {
    match rng.below(8) {
        0 => SystemTime::UNIX_EPOCH,
        1 => SystemTime::UNIX_EPOCH - Duration::from_secs(rng.next() % 1_000_000_000),
        2 => SystemTime::UNIX_EPOCH + Duration::from_secs(rng.next() % 400_000_000_000),
        _ => SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + rng.next() % 100_000),
    }
}

fn policies() -> Vec<CachePolicy> {
    vec![
        CachePolicy::default(),
        CachePolicy::new(
            PolicyOptions::default()
                .shared(true)
                .cdn_cache_control(true),
        ),
        CachePolicy::new(
            PolicyOptions::default()
                .ignore_rules(true)
                .default_ttl(Duration::MAX)
                .max_ttl(Duration::from_secs(u64::MAX)),
        ),
        CachePolicy::new(PolicyOptions::default().serve_stale(ServeStale {
            use_directives: true,
            default_stale_while_revalidate: Duration::MAX,
            default_stale_if_error: Duration::MAX,
        })),
        CachePolicy::new(
            PolicyOptions::default().heuristics(Some(cache_policy::Heuristics {
                fraction: f64::NAN,
                max: Duration::MAX,
            })),
        ),
    ]
}

/// One request and one origin response through every entry point of `policy`, with `stored`
/// as the candidates. With `compare_parsed`, every decision is also taken with the candidates
/// as [`ParsedResponse`]s and must be the same.
fn exercise(
    policy: &CachePolicy,
    rng: &mut Rng,
    stored: &mut Vec<StoredResponse>,
    compare_parsed: bool,
) {
    let methods = [Method::GET, Method::HEAD, Method::POST, Method::DELETE];
    let statuses = [200, 203, 206, 304, 404, 500, 503, 299, 100];
    let uris = [
        "http://example.com/a",
        "/a",
        "*",
        "https://example.com:99999/a",
    ];
    let mut request = Request::builder()
        .method(methods[rng.below(methods.len())].clone())
        .uri(uris[rng.below(uris.len())])
        .body(())
        .unwrap();
    *request.headers_mut() = garbage_headers(rng, REQUEST_FIELDS);
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::from_u16(statuses[rng.below(statuses.len())]).unwrap();
    *response.headers_mut() = garbage_headers(rng, RESPONSE_FIELDS);
    let (sent, received, now) = (time(rng), time(rng), time(rng));

    let lookup = policy.lookup(&request, stored, now);
    let _ = format!("{lookup:?}");
    if compare_parsed {
        let parsed: Vec<ParsedResponse> = stored.iter().cloned().map(ParsedResponse::new).collect();
        let same = |what: &str, plain: String, from_parsed: String| {
            assert_eq!(plain, from_parsed, "{what} differs for parsed candidates");
        };
        same(
            "lookup",
            format!("{lookup:?}"),
            format!("{:?}", policy.lookup(&request, &parsed, now)),
        );
        same(
            "on_error",
            format!("{:?}", policy.on_error(&request, stored, now)),
            format!("{:?}", policy.on_error(&request, &parsed, now)),
        );
        same(
            "after_response",
            format!(
                "{:?}",
                policy.after_response(&request, &response, sent, received, stored)
            ),
            format!(
                "{:?}",
                policy.after_response(&request, &response, sent, received, &parsed)
            ),
        );
    }
    if let Lookup::Revalidate(r) = &lookup {
        r.apply_to(&mut request.headers_mut().clone());
    }
    let _ = policy.on_error(&request, stored, now);
    let decision = policy.after_response(&request, &response, sent, received, stored);
    match decision.action {
        ResponseAction::Store { entry, .. } => {
            if compare_parsed {
                // The entry comes parsed from the response it was made of; parsing what is
                // stored gives the same decisions.
                let reparsed = ParsedResponse::new(entry.response().clone());
                assert_eq!(
                    format!("{:?}", policy.lookup(&request, &[&entry], now)),
                    format!("{:?}", policy.lookup(&request, &[reparsed], now)),
                    "stored entry parsed from the response differs from its own parse"
                );
            }
            let _ = entry.variant_key();
            let _ = policy.freshness(&entry, now);
            stored.push(std::sync::Arc::unwrap_or_clone(entry).into_response());
        }
        ResponseAction::Refresh { updates, .. }
        | ResponseAction::UpdateFromHead { updates, .. } => {
            for update in updates {
                stored[update.index] =
                    std::sync::Arc::unwrap_or_clone(update.entry).into_response();
            }
        }
        _ => {}
    }
    // Entries a store handed back corrupted: garbage headers on a stored response.
    if rng.below(4) == 0 && !stored.is_empty() {
        let i = rng.below(stored.len());
        stored[i].headers = garbage_headers(rng, RESPONSE_FIELDS);
        stored[i].vary_request_headers = garbage_headers(rng, REQUEST_FIELDS);
        stored[i].response_time = time(rng);
        stored[i].request_time = time(rng);
    }
    if stored.len() > 8 {
        stored.remove(0);
    }
}

#[test]
fn rfc9111_malformed_headers_never_panic_anywhere_in_the_state_machine() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for policy in policies() {
        let mut stored = Vec::new();
        for _ in 0..4_000 {
            exercise(&policy, &mut rng, &mut stored, false);
        }
    }
}

/// A [`ParsedResponse`] is only a faster way to read a stored response: with random, often
/// malformed, header lines under every policy configuration, each decision is the same as
/// with the plain [`StoredResponse`].
#[test]
fn rfc9111_4_parsed_candidates_decide_exactly_like_stored_responses() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for policy in policies() {
        let mut stored = Vec::new();
        for _ in 0..3_000 {
            exercise(&policy, &mut rng, &mut stored, true);
        }
    }
}

#[test]
fn rfc9111_5_2_cache_control_parsers_never_panic_on_random_bytes() {
    let mut rng = Rng(42);
    for _ in 0..50_000 {
        let value = garbage(&mut rng);
        let response = ResponseDirectives::parse([&value, &value]);
        let request = RequestDirectives::parse([&value]);
        // Parsed values stay within the delta-seconds cap (RFC 9111 §1.2.2).
        for seconds in [
            response.max_age,
            response.s_maxage,
            request.max_age,
            request.min_fresh,
        ]
        .into_iter()
        .flatten()
        {
            assert!(seconds <= 1 << 31);
        }
    }
}
