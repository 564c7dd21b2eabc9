//! Per-request control, through request extensions.

use std::time::Duration;

/// How one request uses the cache, in the spirit of the Fetch standard's cache modes. Insert it
/// in the request's extensions; the default is [`CacheMode::Default`].
///
/// ```
/// use tower_http_cache::CacheMode;
///
/// let mut request = http::Request::get("http://example.com/").body(()).unwrap();
/// request.extensions_mut().insert(CacheMode::NoCache);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CacheMode {
    /// RFC 9111 rules: reuse what is fresh, revalidate what is stale, store what is storable.
    #[default]
    Default,
    /// Neither look up nor store: the request goes to the origin as if there were no cache,
    /// even with `Cache-Control: only-if-cached` (the mode wins over the header).
    /// Invalidation after unsafe methods still happens.
    NoStore,
    /// Do not look up, go to the origin (even with `only-if-cached`), and store the response if
    /// storable ("reload").
    Reload,
    /// Look up, but always revalidate with the origin before reuse (like `Cache-Control:
    /// no-cache` on the request).
    NoCache,
    /// Reuse any matching stored response, fresh or stale, without contacting the origin;
    /// go to the origin (and store) only when nothing is stored.
    ForceCache,
    /// Reuse any matching stored response, fresh or stale; answer 504 when nothing is stored.
    /// The origin is never contacted.
    OnlyIfCached,
    /// Store and reuse regardless of `Cache-Control`, `Expires` and `Pragma` (not RFC 9111
    /// behaviour; combine with [`CacheTtl`] to choose how long).
    IgnoreRules,
    /// Bypass the cache entirely: no lookup, no storage, no invalidation, no status.
    Disabled,
}

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
