//! The Fetch standard's cache modes, per request.

/// How one request uses the cache, in the spirit of the Fetch standard's cache modes: given to
/// an [`Exchange`](crate::Exchange) in its [`Overrides`](crate::Overrides) (with
/// `tower-http-cache`, inserted in the request's extensions). The default is
/// [`CacheMode::Default`].
///
/// ```
/// use cache_policy::{CacheMode, CacheRules, Exchange, Overrides, StoredResponse};
///
/// let rules = CacheRules::default();
/// let request = http::Request::get("http://example.com/").body(()).unwrap();
/// let overrides = Overrides::default().mode(CacheMode::Reload);
/// let exchange: Exchange<Vec<StoredResponse>> =
///     Exchange::new(&rules, &request, "http://example.com/".into(), overrides);
/// assert!(!exchange.reads_store(), "reload goes to the origin without a lookup");
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
    /// behaviour; combine with `CacheTtl` in `tower-http-cache`, or [`Overrides::ttl`](crate::Overrides::ttl) to choose how long).
    IgnoreRules,
    /// Bypass the cache entirely: no lookup, no storage, no invalidation, no status.
    Disabled,
}

impl CacheMode {
    /// Whether the mode uses stored responses at all.
    pub(crate) fn reads_cache(self) -> bool {
        !matches!(
            self,
            CacheMode::NoStore | CacheMode::Reload | CacheMode::Disabled
        )
    }

    /// Whether the mode reuses stored responses however stale, without the origin.
    pub(crate) fn forces_cache(self) -> bool {
        matches!(self, CacheMode::ForceCache | CacheMode::OnlyIfCached)
    }
}
