//! RFC 9111 §4.2: freshness lifetime (§4.2.1, §4.2.2) and age (§4.2.3).

use std::time::{Duration, SystemTime};

use http::header::{CACHE_CONTROL, DATE, EXPIRES, LAST_MODIFIED};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::directives::{Argument, Directives, ResponseDirectives, DELTA_SECONDS_MAX};
use crate::parsed::Facts;
use crate::parsed::CDN_CACHE_CONTROL;
use crate::syntax::{delta_seconds, is_token, trim_ows};
use crate::{PolicyOptions, StoredResponse};

/// Where a response's freshness lifetime came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FreshnessSource {
    /// `s-maxage`, in a shared cache (§5.2.2.10).
    SMaxAge,
    /// `max-age` (§5.2.2.1).
    MaxAge,
    /// `Expires` minus `Date` (§5.3); an invalid `Expires` gives a zero lifetime.
    Expires,
    /// The configured default TTL for responses without explicit freshness.
    DefaultTtl,
    /// A heuristic from `Last-Modified` (§4.2.2).
    Heuristic,
    /// No freshness information: the response is stale as soon as it is received.
    None,
}

/// How fresh a stored response is at a given time (RFC 9111 §4.2).
///
/// ```
/// use std::time::Duration;
/// # use cache_policy::Freshness;
/// # use cache_policy::FreshnessSource;
/// let f = Freshness { lifetime: Duration::from_secs(60), age: Duration::from_secs(45), source: FreshnessSource::MaxAge };
/// assert!(f.is_fresh());
/// assert_eq!(f.time_to_live(), Duration::from_secs(15));
/// assert_eq!(f.staleness(), Duration::ZERO);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// The freshness lifetime (§4.2.1).
    pub lifetime: Duration,
    /// The current age (§4.2.3).
    pub age: Duration,
    /// Where the lifetime came from.
    pub source: FreshnessSource,
}

impl Freshness {
    /// `freshness_lifetime > current_age` (§4.2).
    pub fn is_fresh(&self) -> bool {
        self.lifetime > self.age
    }

    /// How much longer the response stays fresh (zero once stale).
    pub fn time_to_live(&self) -> Duration {
        self.lifetime.saturating_sub(self.age)
    }

    /// How long the response has been stale (zero while fresh).
    pub fn staleness(&self) -> Duration {
        self.age.saturating_sub(self.lifetime)
    }
}

/// The statuses RFC 9110 §15.1 defines as heuristically cacheable.
pub(crate) fn is_heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// An HTTP-date (RFC 9110 §5.6.7). The IMF-fixdate form, which senders must generate, takes a
/// fast path (the hot path of every lookup reads `Date`); the obsolete forms go to `httpdate`.
pub(crate) fn parse_date(value: &HeaderValue) -> Option<SystemTime> {
    if let Some(time) = parse_imf_fixdate(value.as_bytes()) {
        return Some(time);
    }
    httpdate::parse_http_date(value.to_str().ok()?).ok()
}

const WEEKDAYS: [&[u8; 3]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// `Sun, 06 Nov 1994 08:49:37 GMT`, validated as strictly as `httpdate` does (ranges, day of
/// month, weekday, years 1970 to 9999). `None` means "not a valid IMF-fixdate", and the caller
/// tries the other forms.
fn parse_imf_fixdate(s: &[u8]) -> Option<SystemTime> {
    if s.len() != 29
        || &s[3..5] != b", "
        || s[7] != b' '
        || s[11] != b' '
        || s[16] != b' '
        || s[19] != b':'
        || s[22] != b':'
        || &s[25..] != b" GMT"
    {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<u64> {
        s[from..to].iter().try_fold(0u64, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
        })
    };
    let weekday = WEEKDAYS.iter().position(|d| **d == [s[0], s[1], s[2]])? as u64;
    let day = number(5, 7)?;
    let month = MONTHS.iter().position(|m| **m == [s[8], s[9], s[10]])? as u64 + 1;
    let year = number(12, 16)?;
    let (hour, minute, second) = (number(17, 19)?, number(20, 22)?, number(23, 25)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1970..=9999).contains(&year)
        || day == 0
        || day > month_days
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    // Days since 1970-01-01 (H. Hinnant's days_from_civil), which was a Thursday.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let (era, year_of_era) = (y / 400, y % 400);
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    if (days + 3) % 7 != weekday {
        return None;
    }
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
}

/// The `Date` of a stored response; its `response_time` when `Date` is missing or invalid
/// (the cache adds a `Date` on storage, RFC 9110 §6.6.1, so this is rare).
pub(crate) fn date_value(stored: &StoredResponse) -> SystemTime {
    stored
        .headers
        .get(DATE)
        .and_then(parse_date)
        .unwrap_or(stored.response_time)
}

/// RFC 9111 §5.1: the `Age` field, first member of a list, ignored when invalid.
pub(crate) fn age_value(line: &HeaderValue) -> Option<Duration> {
    let line = line.as_bytes();
    let first = trim_ows(line.split(|&b| b == b',').next()?);
    delta_seconds(first).map(Duration::from_secs)
}

pub(crate) fn since(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or(Duration::ZERO)
}

/// RFC 9111 §5.3: the lifetime given by the `Expires` value `expires`. An invalid date (such
/// as `0`) means "already expired" (§4.2.1, §5.3), as several differing lines do.
pub(crate) fn expires_lifetime(expires: &HeaderValue, date: SystemTime) -> Duration {
    parse_date(expires).map_or(Duration::ZERO, |expires| since(expires, date))
}

/// RFC 9111 §4.2.1: explicit freshness, in order of precedence. `use_expires` is false when an
/// RFC 9213 targeted field replaced `Cache-Control` and `Expires`.
fn explicit_lifetime(
    facts: &Facts,
    cc: &ResponseDirectives,
    use_expires: bool,
    shared: bool,
) -> Option<(Duration, FreshnessSource)> {
    if shared {
        if let Some(s) = cc.s_maxage {
            return Some((Duration::from_secs(s), FreshnessSource::SMaxAge));
        }
    }
    if let Some(s) = cc.max_age {
        return Some((Duration::from_secs(s), FreshnessSource::MaxAge));
    }
    match facts.expires {
        Some(lifetime) if use_expires => Some((lifetime, FreshnessSource::Expires)),
        _ => None,
    }
}

/// RFC 9111 §4.2.2: a heuristic lifetime, for heuristically cacheable statuses or responses
/// marked `public`, from `Last-Modified`.
fn heuristic_lifetime(
    stored: &StoredResponse,
    facts: &Facts,
    cc: &ResponseDirectives,
    options: &PolicyOptions,
) -> Option<Duration> {
    let heuristics = options.heuristics?;
    if !(is_heuristically_cacheable(stored.status) || cc.public) {
        return None;
    }
    let last_modified = parse_date(stored.headers.get(LAST_MODIFIED)?)?;
    let modified_age = since(facts.date, last_modified);
    let fraction = heuristics.fraction.clamp(0.0, 1.0);
    let lifetime = Duration::try_from_secs_f64(modified_age.as_secs_f64() * fraction)
        .unwrap_or(Duration::ZERO);
    Some(lifetime.min(heuristics.max))
}

/// The freshness lifetime of a stored response under `options` (§4.2.1, §4.2.2), capped by
/// `max_ttl`. `cc` and `use_expires` are what [`Facts::directives`] says govern it.
pub(crate) fn lifetime(
    stored: &StoredResponse,
    facts: &Facts,
    cc: &ResponseDirectives,
    use_expires: bool,
    options: &PolicyOptions,
) -> (Duration, FreshnessSource) {
    let (lifetime, source) = if let (true, Some(ttl)) = (options.ignore_rules, options.default_ttl)
    {
        (ttl, FreshnessSource::DefaultTtl)
    } else if let Some(explicit) = explicit_lifetime(facts, cc, use_expires, options.shared) {
        explicit
    } else if let Some(ttl) = options.default_ttl {
        (ttl, FreshnessSource::DefaultTtl)
    } else if let Some(heuristic) = heuristic_lifetime(stored, facts, cc, options) {
        (heuristic, FreshnessSource::Heuristic)
    } else {
        (Duration::ZERO, FreshnessSource::None)
    };
    match options.max_ttl {
        Some(max) if lifetime > max => (max, source),
        _ => (lifetime, source),
    }
}

/// Gives a response to be stored the freshness lifetime a cache was told to use (a per-request
/// TTL override), so that later lookups read the same lifetime from the stored headers.
///
/// `max-age`, `s-maxage` and `no-store` leave `Cache-Control` (and `CDN-Cache-Control`, which
/// may take its place, RFC 9213) and `max-age=<lifetime>` is added; `Expires` goes (§5.3: it
/// would lose to `max-age` anyway). Every other directive stays as it came: `private`,
/// `no-cache` (the response is still revalidated before each reuse), `must-revalidate`,
/// `proxy-revalidate` and the stale windows of RFC 5861 keep their meaning. An argument that did
/// not parse is kept as the bare directive, its most restrictive reading.
///
/// ```
/// use std::time::Duration;
/// use http::HeaderMap;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("cache-control", "private, max-age=5, stale-if-error=60".parse().unwrap());
/// headers.insert("expires", "Thu, 01 Jan 2026 00:00:00 GMT".parse().unwrap());
/// cache_policy::override_freshness_lifetime(&mut headers, Duration::from_secs(300));
/// assert_eq!(headers["cache-control"], "private, stale-if-error=60, max-age=300");
/// assert!(headers.get("expires").is_none());
/// ```
pub fn override_freshness_lifetime(headers: &mut HeaderMap, lifetime: Duration) {
    headers.remove(EXPIRES);
    let max_age = format!("max-age={}", lifetime.as_secs().min(DELTA_SECONDS_MAX));
    for (name, always) in [(CDN_CACHE_CONTROL, false), (CACHE_CONTROL, true)] {
        let lines = headers.get_all(&name);
        if !always && lines.iter().next().is_none() {
            continue;
        }
        let mut value = kept_directives(lines);
        value.extend_from_slice(max_age.as_bytes());
        // Every byte kept came out of a valid header value, and the rest is ASCII.
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            headers.insert(name, value);
        }
    }
}

/// The directives of `lines` but those the override replaces, each followed by `", "`.
fn kept_directives(lines: http::header::GetAll<'_, HeaderValue>) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        for directive in Directives::new(line.as_bytes()) {
            let replaced = [&b"max-age"[..], b"s-maxage", b"no-store"]
                .iter()
                .any(|r| directive.name.eq_ignore_ascii_case(r));
            if replaced {
                continue;
            }
            out.extend_from_slice(directive.name);
            match directive.argument {
                None | Some(Argument::Invalid) => {}
                Some(Argument::Plain(text)) if is_token(text) => {
                    out.push(b'=');
                    out.extend_from_slice(text);
                }
                // Quoted on the wire: quoted again, escapes as they came.
                Some(Argument::Plain(text) | Argument::Escaped(text)) => {
                    out.extend_from_slice(b"=\"");
                    out.extend_from_slice(text);
                    out.push(b'"');
                }
            }
            out.extend_from_slice(b", ");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9110_5_6_7_fast_imf_fixdate_agrees_with_httpdate() {
        // Every ~1.1 days from 1970 to 9999, at varying times of day.
        let mut seconds: u64 = 0;
        while seconds < 253_402_300_799 {
            let time = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds);
            let formatted = httpdate::fmt_http_date(time);
            assert_eq!(
                parse_imf_fixdate(formatted.as_bytes()),
                Some(time),
                "{formatted}"
            );
            seconds += 97_213;
        }
        for invalid in [
            "Mon, 06 Nov 1994 08:49:37 GMT", // wrong weekday
            "Sun, 29 Feb 2023 08:49:37 GMT", // not a leap year
            "Thu, 29 Feb 2024 08:49:37 GMT", // 2024-02-29 was a Thursday: valid, checked below
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:60:00 GMT",
            "Sun, 06 Nov 1994 08:49:60 GMT",
            "Wed, 31 Dec 1969 23:59:59 GMT",
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, +6 Nov 1994 08:49:37 GMT",
        ] {
            let fast = parse_imf_fixdate(invalid.as_bytes());
            let reference = httpdate::parse_http_date(invalid).ok();
            assert_eq!(fast, reference, "{invalid}");
        }
        assert!(parse_imf_fixdate(b"Thu, 29 Feb 2024 08:49:37 GMT").is_some());
    }

    fn overridden(lines: &[(&str, &str)], secs: u64) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in lines {
            headers.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        super::override_freshness_lifetime(&mut headers, Duration::from_secs(secs));
        headers
    }

    /// A TTL override changes the lifetime only: the directives that say who may reuse the
    /// response and how (§5.2.2.2 must-revalidate, §5.2.2.7 private, RFC 5861 windows) stay.
    #[test]
    fn rfc9111_4_2_1_a_ttl_override_keeps_the_other_directives() {
        let headers = overridden(
            &[
                ("cache-control", "max-age=5, s-maxage=7, must-revalidate"),
                (
                    "cache-control",
                    "private=\"set-cookie, x-user\", stale-while-revalidate=30",
                ),
                ("cache-control", "no-cache=\"a\\\"b\", no-store"),
                ("expires", "Thu, 01 Jan 2026 00:00:00 GMT"),
            ],
            120,
        );
        assert_eq!(
            headers["cache-control"],
            "must-revalidate, private=\"set-cookie, x-user\", stale-while-revalidate=30, \
             no-cache=\"a\\\"b\", max-age=120"
        );
        assert_eq!(headers.get_all("cache-control").iter().count(), 1);
        assert!(headers.get("expires").is_none());
        let directives = ResponseDirectives::parse(headers.get_all("cache-control"));
        assert_eq!(directives.max_age, Some(120));
        assert_eq!(directives.s_maxage, None);
        assert!(directives.must_revalidate && !directives.no_store);
        assert_eq!(directives.stale_while_revalidate, Some(30));
        assert_eq!(directives.private.fields().len(), 2);
    }

    #[test]
    fn rfc9111_4_2_1_a_ttl_override_without_cache_control_adds_max_age() {
        let headers = overridden(&[("expires", "0")], 60);
        assert_eq!(headers["cache-control"], "max-age=60");
        assert!(headers.get("cdn-cache-control").is_none(), "not invented");
    }

    /// RFC 9213: `CDN-Cache-Control` takes the place of `Cache-Control` when a cache honours
    /// it, so the override must reach it too.
    #[test]
    fn rfc9213_a_ttl_override_rewrites_cdn_cache_control_too() {
        let headers = overridden(&[("cdn-cache-control", "max-age=10, stale-if-error=5")], 90);
        assert_eq!(headers["cdn-cache-control"], "stale-if-error=5, max-age=90");
        assert_eq!(headers["cache-control"], "max-age=90");
    }

    /// A directive whose argument did not parse keeps its most restrictive reading, bare.
    #[test]
    fn rfc9111_5_2_a_ttl_override_keeps_a_broken_directive_bare() {
        let headers = overridden(&[("cache-control", "private=\"unterminated")], 60);
        assert_eq!(headers["cache-control"], "private, max-age=60");
    }
}
