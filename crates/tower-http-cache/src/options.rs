//! Per-request control, through request extensions.

use std::time::Duration;

pub use cache_policy::CacheMode;

/// Overrides the freshness lifetime of the response to this request: it is stored (when
/// storable, or always under [`CacheMode::IgnoreRules`]) as fresh for this long. Its stored
/// `Cache-Control` gets `max-age=<ttl>` in place of `max-age`, `s-maxage` and `no-store`, so
/// that later lookups agree; its other directives (`private`, `no-cache`, `must-revalidate`,
/// the stale windows) stay (see `cache_policy::override_freshness_lifetime`).
///
/// ```
/// use std::time::Duration;
/// use tower_http_cache::CacheTtl;
///
/// let mut request = http::Request::get("http://example.com/").body(()).unwrap();
/// request.extensions_mut().insert(CacheTtl(Duration::from_secs(300)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheTtl(pub Duration);

/// Overrides the primary cache key of this request. Requests with the same key share stored
/// responses (subject to method and `Vary`), so make it as specific as the target URI.
///
/// Invalidation (RFC 9111 §4.4) follows keys: an unsafe request (PUT, POST, DELETE, …) that
/// succeeds removes what is stored under its target URI's key and, when it carries a
/// `CacheKey`, under that key too. Responses stored under a custom key are therefore
/// invalidated by unsafe requests that carry the same `CacheKey`, not by those that do not.
///
/// ```
/// use tower_http_cache::CacheKey;
///
/// let mut request = http::Request::get("http://example.com/?session=42").body(()).unwrap();
/// request.extensions_mut().insert(CacheKey("http://example.com/".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(pub String);
