//! RFC 9111 §4.2: freshness lifetime (§4.2.1, §4.2.2) and age (§4.2.3).

use std::time::{Duration, SystemTime};

use http::header::{AGE, DATE, EXPIRES, LAST_MODIFIED};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::directives::{ResponseDirectives, DELTA_SECONDS_MAX};
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

pub(crate) fn parse_date(value: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(value.to_str().ok()?).ok()
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
pub(crate) fn age_value(headers: &HeaderMap) -> Option<Duration> {
    let line = headers.get(AGE)?.as_bytes();
    let first = crate::vary::trim_ows(line.split(|&b| b == b',').next()?);
    if first.is_empty() || !first.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut value: u64 = 0;
    for &d in first {
        value = value.saturating_mul(10).saturating_add(u64::from(d - b'0'));
    }
    Some(Duration::from_secs(value.min(DELTA_SECONDS_MAX)))
}

fn since(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or(Duration::ZERO)
}

/// RFC 9111 §4.2.3: `current_age` of a stored response at `now`.
///
/// ```text
/// apparent_age = max(0, response_time - date_value)
/// response_delay = response_time - request_time
/// corrected_age_value = age_value + response_delay
/// corrected_initial_age = max(apparent_age, corrected_age_value)
/// resident_time = now - response_time
/// current_age = corrected_initial_age + resident_time
/// ```
pub(crate) fn current_age(stored: &StoredResponse, now: SystemTime) -> Duration {
    let apparent_age = since(stored.response_time, date_value(stored));
    let response_delay = since(stored.response_time, stored.request_time);
    let corrected_age_value = age_value(&stored.headers)
        .unwrap_or(Duration::ZERO)
        .saturating_add(response_delay);
    let corrected_initial_age = apparent_age.max(corrected_age_value);
    let resident_time = since(now, stored.response_time);
    corrected_initial_age.saturating_add(resident_time)
}

/// RFC 9111 §5.3: the lifetime given by `Expires`, if present. Several differing `Expires`
/// lines or an invalid date (such as `0`) mean "already expired" (§4.2.1, §5.3).
fn expires_lifetime(headers: &HeaderMap, date: SystemTime) -> Option<Duration> {
    let mut lines = headers.get_all(EXPIRES).iter();
    let first = lines.next()?;
    if lines.any(|other| other != first) {
        return Some(Duration::ZERO);
    }
    Some(parse_date(first).map_or(Duration::ZERO, |expires| since(expires, date)))
}

/// RFC 9111 §4.2.1: explicit freshness, in order of precedence. `use_expires` is false when an
/// RFC 9213 targeted field replaced `Cache-Control` and `Expires`.
pub(crate) fn explicit_lifetime(
    stored: &StoredResponse,
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
    if use_expires {
        if let Some(lifetime) = expires_lifetime(&stored.headers, date_value(stored)) {
            return Some((lifetime, FreshnessSource::Expires));
        }
    }
    None
}

/// RFC 9111 §4.2.2: a heuristic lifetime, for heuristically cacheable statuses or responses
/// marked `public`, from `Last-Modified`.
fn heuristic_lifetime(
    stored: &StoredResponse,
    cc: &ResponseDirectives,
    options: &PolicyOptions,
) -> Option<Duration> {
    let heuristics = options.heuristics?;
    if !(is_heuristically_cacheable(stored.status) || cc.public) {
        return None;
    }
    let last_modified = parse_date(stored.headers.get(LAST_MODIFIED)?)?;
    let modified_age = since(date_value(stored), last_modified);
    let fraction = heuristics.fraction.clamp(0.0, 1.0);
    let lifetime = Duration::try_from_secs_f64(modified_age.as_secs_f64() * fraction)
        .unwrap_or(Duration::ZERO);
    Some(lifetime.min(heuristics.max))
}

/// The freshness lifetime of a stored response under `options` (§4.2.1, §4.2.2), capped by
/// `max_ttl`.
pub(crate) fn lifetime(
    stored: &StoredResponse,
    cc: &ResponseDirectives,
    use_expires: bool,
    options: &PolicyOptions,
) -> (Duration, FreshnessSource) {
    let (lifetime, source) = if let (true, Some(ttl)) = (options.ignore_rules, options.default_ttl)
    {
        (ttl, FreshnessSource::DefaultTtl)
    } else if let Some(explicit) = explicit_lifetime(stored, cc, use_expires, options.shared) {
        explicit
    } else if let Some(ttl) = options.default_ttl {
        (ttl, FreshnessSource::DefaultTtl)
    } else if let Some(heuristic) = heuristic_lifetime(stored, cc, options) {
        (heuristic, FreshnessSource::Heuristic)
    } else {
        (Duration::ZERO, FreshnessSource::None)
    };
    match options.max_ttl {
        Some(max) if lifetime > max => (max, source),
        _ => (lifetime, source),
    }
}
