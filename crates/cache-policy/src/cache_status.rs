//! RFC 9211: the `Cache-Status` field, typed: what the cache did ([`CacheStatus`]), why a
//! request went forward to the origin (`fwd`, §2.2) and the cache's own `detail` (§2.8).

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, StatusCode};

use crate::NotStorable;

/// RFC 9211 §2.2: why the cache forwarded the request to the origin.
///
/// ```
/// use cache_policy::{CacheStatusFwd, ForwardReason};
///
/// assert_eq!(ForwardReason::VaryMiss.cache_status_fwd(), CacheStatusFwd::VaryMiss);
/// assert_eq!(CacheStatusFwd::VaryMiss.to_string(), "vary-miss");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CacheStatusFwd {
    /// The cache was configured not to handle this request.
    Bypass,
    /// The request method's semantics require the request to be forwarded.
    Method,
    /// The cache did not contain any responses that matched the request URI.
    UriMiss,
    /// Responses for the URI were stored, but none matched the request's `Vary` fields.
    VaryMiss,
    /// The cache did not contain any responses that could be used (the cause is not
    /// known more precisely, or mixed).
    Miss,
    /// The cache was able to select a response, but the request's semantics (`no-cache`,
    /// `max-age`, a precondition) made it forward the request.
    Request,
    /// The cache was able to select a response, but it was stale.
    Stale,
    /// The cache was able to select a partial response, but it did not cover the request.
    Partial,
}

impl CacheStatusFwd {
    /// The token RFC 9211 defines for it.
    pub fn as_str(&self) -> &'static str {
        match self {
            CacheStatusFwd::Bypass => "bypass",
            CacheStatusFwd::Method => "method",
            CacheStatusFwd::UriMiss => "uri-miss",
            CacheStatusFwd::VaryMiss => "vary-miss",
            CacheStatusFwd::Miss => "miss",
            CacheStatusFwd::Request => "request",
            CacheStatusFwd::Stale => "stale",
            CacheStatusFwd::Partial => "partial",
        }
    }
}

impl fmt::Display for CacheStatusFwd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 9211 §2.8 `detail`: what else the cache has to say about a response, mostly why it was
/// not stored or why a stored one was served in place of the origin's.
///
/// ```
/// use cache_policy::{CacheStatusDetail, NotStorable};
///
/// assert_eq!(CacheStatusDetail::NotStorable(NotStorable::NoStore).to_string(), "no-store");
/// assert_eq!(CacheStatusDetail::OriginTimeout.as_str(), "origin-timeout");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheStatusDetail {
    /// RFC 9111 §3: the response was not storable, for this reason.
    NotStorable(NotStorable),
    /// Storable, but with no freshness and no stale window left: storing it would serve no
    /// later request.
    NotReusable,
    /// Larger than the cache's body size limit.
    TooLarge,
    /// RFC 5861 §4: the origin failed and a stale response was served instead.
    StaleIfError,
    /// The origin did not answer within the cache's timeout.
    OriginTimeout,
    /// RFC 9111 §5.2.1.7: nothing stored could answer an `only-if-cached` request (a 504).
    OnlyIfCached,
    /// A stored body that streams is handed out once, and it already was (a background
    /// refresh came back for a stale response served with it): 502.
    StoredBodyTaken,
    /// RFC 9111 §4.3.3: a 304 matched no stored response, and the request could not be sent
    /// again unconditionally (its body was gone): 502.
    Unmatched304,
}

impl CacheStatusDetail {
    /// A short token, for the `detail` parameter and for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            CacheStatusDetail::NotStorable(reason) => reason.as_str(),
            CacheStatusDetail::NotReusable => "not-reusable",
            CacheStatusDetail::TooLarge => "too-large",
            CacheStatusDetail::StaleIfError => "stale-if-error",
            CacheStatusDetail::OriginTimeout => "origin-timeout",
            CacheStatusDetail::OnlyIfCached => "only-if-cached",
            CacheStatusDetail::StoredBodyTaken => "stored-body-taken",
            CacheStatusDetail::Unmatched304 => "unmatched-304",
        }
    }
}

impl fmt::Display for CacheStatusDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
/// use cache_policy::{CacheOutcome, CacheStatus};
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
    /// A status with `outcome` for the request keyed by `key`, and nothing else known yet.
    ///
    /// ```
    /// use cache_policy::{CacheOutcome, CacheStatus};
    ///
    /// let status = CacheStatus::new(CacheOutcome::Bypass, None);
    /// assert!(!status.is_hit());
    /// ```
    pub fn new(outcome: CacheOutcome, key: Option<Arc<str>>) -> Self {
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
    /// # use cache_policy::{CacheOutcome, CacheStatus};
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

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9211 §2 writes `fwd` and `detail` as RFC 8941 tokens, unquoted: every value must
    /// be one (a letter, then token characters).
    #[test]
    fn rfc9211_2_every_value_is_a_bare_token() {
        let fwd = [
            CacheStatusFwd::Bypass,
            CacheStatusFwd::Method,
            CacheStatusFwd::UriMiss,
            CacheStatusFwd::VaryMiss,
            CacheStatusFwd::Miss,
            CacheStatusFwd::Request,
            CacheStatusFwd::Stale,
            CacheStatusFwd::Partial,
        ];
        let not_storable = [
            NotStorable::Method,
            NotStorable::HeadResponse,
            NotStorable::Status,
            NotStorable::PartialContent,
            NotStorable::RequestNoStore,
            NotStorable::NoStore,
            NotStorable::MustUnderstand,
            NotStorable::Private,
            NotStorable::Authorization,
            NotStorable::VaryStar,
            NotStorable::InvalidVary,
            NotStorable::NoFreshnessInformation,
            NotStorable::Range,
            NotStorable::SetCookie,
        ];
        let details = [
            CacheStatusDetail::NotReusable,
            CacheStatusDetail::TooLarge,
            CacheStatusDetail::StaleIfError,
            CacheStatusDetail::OriginTimeout,
            CacheStatusDetail::OnlyIfCached,
            CacheStatusDetail::StoredBodyTaken,
            CacheStatusDetail::Unmatched304,
        ]
        .into_iter()
        .chain(not_storable.map(CacheStatusDetail::NotStorable));
        let tokens = fwd
            .iter()
            .map(CacheStatusFwd::as_str)
            .chain(details.map(|d| d.as_str()));
        for token in tokens {
            let bytes = token.as_bytes();
            assert!(
                bytes[0].is_ascii_lowercase()
                    && bytes
                        .iter()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-'),
                "{token}"
            );
        }
    }
}
