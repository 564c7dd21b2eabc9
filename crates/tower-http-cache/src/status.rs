//! Response metadata: the typed [`CacheStatus`] and the RFC 9211 `Cache-Status` field.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cache_policy::{CacheStatusDetail, CacheStatusFwd};
use http::{HeaderValue, StatusCode};

/// What the cache did for one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheOutcome {
    /// Served from the cache without contacting the origin, fresh.
    Hit,
    /// Served from the cache, stale (max-stale, stale-while-revalidate, stale-if-error, or a
    /// forcing cache mode).
    Stale,
    /// The origin confirmed a stored response with a 304; the stored response was served.
    Revalidated,
    /// The response came from the origin.
    Miss,
    /// The cache answered by itself with an error (504 for `only-if-cached`).
    Generated,
    /// The cache was bypassed ([`CacheMode::Disabled`](crate::CacheMode::Disabled), or no key).
    Bypass,
}

/// The cache's account of one response, in the response's extensions.
///
/// ```
/// # async fn example(response: http::Response<()>) {
/// use tower_http_cache::{CacheOutcome, CacheStatus};
///
/// if let Some(status) = response.extensions().get::<CacheStatus>() {
///     println!("{:?}, stored: {}", status.outcome, status.stored);
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStatus {
    /// What happened.
    pub outcome: CacheOutcome,
    /// The primary cache key, if the request had one.
    pub key: Option<Arc<str>>,
    /// Why the request went to the origin (an RFC 9211 `fwd` value), if it did.
    pub fwd: Option<CacheStatusFwd>,
    /// The status the origin answered with, if it was contacted.
    pub fwd_status: Option<StatusCode>,
    /// Whether the response (or a refresh of a stored one) was written to the store.
    pub stored: bool,
    /// The age of the served response, for responses served from the cache.
    pub age: Option<Duration>,
    /// The freshness left (negative freshness is reported as zero) of the response.
    pub ttl: Option<Duration>,
    /// When the served stored response was received from the origin.
    pub stored_at: Option<SystemTime>,
    /// Extra detail (RFC 9211 `detail`), such as why a response was not stored.
    pub detail: Option<CacheStatusDetail>,
}

impl CacheStatus {
    pub(crate) fn new(outcome: CacheOutcome, key: Option<Arc<str>>) -> Self {
        CacheStatus {
            outcome,
            key,
            fwd: None,
            fwd_status: None,
            stored: false,
            age: None,
            ttl: None,
            stored_at: None,
            detail: None,
        }
    }

    /// Whether the response was served from the cache (fresh, stale or revalidated).
    pub fn is_hit(&self) -> bool {
        matches!(
            self.outcome,
            CacheOutcome::Hit | CacheOutcome::Stale | CacheOutcome::Revalidated
        )
    }

    /// This status as an RFC 9211 `Cache-Status` member for a cache called `name`.
    ///
    /// ```
    /// # use tower_http_cache::{CacheOutcome, CacheStatus};
    /// # fn example(status: &CacheStatus) {
    /// let value = status.to_header_value("my-cache");
    /// # }
    /// ```
    pub fn to_header_value(&self, name: &str) -> HeaderValue {
        let mut value = String::with_capacity(64);
        value.push_str(name);
        if matches!(self.outcome, CacheOutcome::Hit | CacheOutcome::Stale) {
            value.push_str("; hit");
        }
        if let Some(fwd) = self.fwd {
            let _ = write!(value, "; fwd={fwd}");
        }
        if let Some(status) = self.fwd_status {
            let _ = write!(value, "; fwd-status={}", status.as_u16());
        }
        if self.stored {
            value.push_str("; stored");
        }
        if let Some(ttl) = self.ttl {
            let _ = write!(value, "; ttl={}", ttl.as_secs());
        }
        if let Some(key) = &self.key {
            value.push_str("; key=");
            push_sf_string(&mut value, key);
        }
        if let Some(detail) = self.detail {
            let _ = write!(value, "; detail={detail}");
        }
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("cache"))
    }
}

/// Writes an RFC 8941 sf-string: quoted, with `"` and `\` escaped; other characters outside
/// printable ASCII are replaced, since sf-strings cannot carry them.
fn push_sf_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
}
