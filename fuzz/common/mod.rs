//! Helpers shared by the policy fuzz targets: reference implementations the targets compare
//! the crate against (written from the RFCs, independently of the crate's code), and small
//! builders. Included by each target with `#[path = "../common/mod.rs"] mod common;`.
#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Uri};

/// The instant the targets count from (the conformance suite's T0, 2023-11-14T22:13:20Z).
pub const T0: u64 = 1_700_000_000;

/// `offset` seconds from [`T0`] (negative: before; may reach before 1970).
pub fn at(offset: i64) -> SystemTime {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(T0);
    if offset >= 0 {
        t0 + Duration::from_secs(offset as u64)
    } else {
        t0 - Duration::from_secs(offset.unsigned_abs())
    }
}

/// `later - earlier`, zero when negative (RFC 9111 §4.2.3 takes max(0, ...)).
pub fn since(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or(Duration::ZERO)
}

/// RFC 9110 §5.6.7 HTTP-date, by the reference parser (`httpdate`, all three forms).
pub fn ref_date(value: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(value.to_str().ok()?).ok()
}

/// RFC 9111 §5.1 / §1.2.2: `Age` as delta-seconds; the first member of a list (a sender
/// that joins lines); values over 2^31 are 2^31; anything else is invalid (ignored).
pub fn ref_age(value: &HeaderValue) -> Option<u64> {
    let first = value.as_bytes().split(|&b| b == b',').next()?;
    let first = trim_ows(first);
    if first.is_empty() || !first.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &d in first {
        n = n.saturating_mul(10).saturating_add(u64::from(d - b'0'));
    }
    Some(n.min(1 << 31))
}

pub fn trim_ows(bytes: &[u8]) -> &[u8] {
    let mut b = bytes;
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

/// The primary key of a target URI, as the layer's `default_key` documents it: scheme and host
/// lowercased, the port unless it is the scheme's default, path and query.
pub fn primary_key(uri: &Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    };
    let host = uri.host().unwrap_or_default().to_ascii_lowercase();
    let port = uri
        .port_u16()
        .filter(|p| Some(*p) != default_port)
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    format!("{scheme}://{host}{port}{}{query}", uri.path())
}

/// RFC 6454 origin of an absolute URI: scheme and host lowercased, port with the default
/// filled in.
pub fn origin(uri: &Uri) -> Option<(String, String, Option<u16>)> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = uri.host()?.to_ascii_lowercase();
    let port = uri.port_u16().or(match scheme.as_str() {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    });
    Some((scheme, host, port))
}

/// Header names the dictionaries choose from: every field the policy reads, and a few it
/// does not.
pub const NAMES: &[&str] = &[
    "cache-control",
    "pragma",
    "expires",
    "date",
    "age",
    "vary",
    "etag",
    "last-modified",
    "if-none-match",
    "if-modified-since",
    "if-match",
    "if-unmodified-since",
    "if-range",
    "range",
    "content-range",
    "content-length",
    "content-encoding",
    "authorization",
    "set-cookie",
    "cookie",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "location",
    "content-location",
    "host",
    "accept",
    "accept-encoding",
    "accept-language",
    "user-agent",
    "cdn-cache-control",
    "x-a",
];

/// Header values, most of them from crates/cache-policy/tests/rfc9111.
pub const VALUES: &[&str] = &[
    "max-age=0",
    "max-age=10",
    "max-age=60",
    "max-age=3600",
    "max-age=60, public",
    "max-age=60, s-maxage=x",
    "max-age=1, s-maxage=100",
    "s-maxage=60",
    "max-age=60, no-store",
    "no-store",
    "no-cache",
    "no-cache=\"set-cookie\"",
    "private",
    "private=\"x-user\"",
    "public",
    "must-revalidate, max-age=60",
    "proxy-revalidate, max-age=60",
    "must-understand, no-store, max-age=60",
    "stale-while-revalidate=60, max-age=1",
    "stale-if-error=60",
    "max-stale",
    "max-stale=10",
    "min-fresh=20",
    "only-if-cached",
    "immutable",
    "x, No-Cache",
    "Sun, 06 Nov 1994 08:49:37 GMT",
    "Sunday, 06-Nov-94 08:49:37 GMT",
    "Sun Nov  6 08:49:37 1994",
    "Tue, 14 Nov 2023 22:13:20 GMT",
    "Tue, 14 Nov 2023 22:14:20 GMT",
    "Thu, 01 Jan 2099 00:00:00 GMT",
    "Mon, 01 Jan 2001 00:00:00 GMT",
    "0",
    "yesterday",
    "10",
    "10, 20",
    "99999999999999999999999999999",
    "*",
    "accept",
    "accept-encoding",
    "Accept-Language, user-agent",
    "a b, *",
    "\"v1\"",
    "W/\"v1\"",
    "\"v2\"",
    "\"v1\", \"v2\"",
    "W/\"v1\", \"a,b\"",
    "gzip",
    "br",
    "en",
    "bytes=0-10",
    "Basic dXNlcjpwYXNz",
    "a=1",
    "close, x-a",
    "/x",
    "/items/7",
    "http://EXAMPLE.com:80/other",
    "https://example.com/a",
    "//example.com/b",
    "sibling?x=1#frag",
    "../../g",
    "http://[::1",
    "example.com",
    "example.com:8080",
    "B.example:8080",
    "user@example.com",
    "",
];

/// A header line built from fuzz input: a name and a value, each from the dictionaries or
/// raw bytes.
#[derive(Debug, arbitrary::Arbitrary)]
pub enum Name {
    Dict(u8),
    Raw(Vec<u8>),
}

#[derive(Debug, arbitrary::Arbitrary)]
pub enum Value {
    Dict(u8),
    /// An IMF-fixdate this many seconds from [`T0`].
    Date(i32),
    /// Delta-seconds.
    Number(u32),
    Raw(Vec<u8>),
}

impl Name {
    pub fn build(&self) -> Option<HeaderName> {
        match self {
            Name::Dict(i) => Some(HeaderName::from_static(NAMES[*i as usize % NAMES.len()])),
            Name::Raw(bytes) => HeaderName::from_bytes(bytes).ok(),
        }
    }
}

impl Value {
    pub fn build(&self) -> Option<HeaderValue> {
        match self {
            Value::Dict(i) => Some(HeaderValue::from_static(VALUES[*i as usize % VALUES.len()])),
            Value::Date(offset) => {
                // IMF-fixdates start in 1970 (`httpdate` panics before).
                let time = at(i64::from(*offset).max(-(T0 as i64)));
                HeaderValue::from_str(&httpdate::fmt_http_date(time)).ok()
            }
            Value::Number(n) => Some(HeaderValue::from(*n)),
            Value::Raw(bytes) => HeaderValue::from_bytes(bytes).ok(),
        }
    }
}

#[derive(Debug, arbitrary::Arbitrary)]
pub struct Line(pub Name, pub Value);

/// The lines that build, in order; at most 16.
pub fn header_map(lines: &[Line]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for Line(name, value) in lines.iter().take(16) {
        if let (Some(name), Some(value)) = (name.build(), value.build()) {
            map.append(name, value);
        }
    }
    map
}
