//! Configuration of a [`CachePolicy`](crate::CachePolicy).

use std::time::Duration;

use http::uri::Scheme;
use http::{Method, StatusCode};

/// How a cache may assign a heuristic freshness lifetime to a response without explicit
/// freshness (RFC 9111 §4.2.2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heuristics {
    /// The fraction of the time since `Last-Modified` used as freshness lifetime. RFC 9111
    /// §4.2.2 suggests "no more than some fraction", typically 10 %.
    pub fraction: f64,
    /// The longest heuristic lifetime assigned.
    pub max: Duration,
}

impl Default for Heuristics {
    /// 10 % of the time since `Last-Modified`, at most one day.
    fn default() -> Self {
        Heuristics {
            fraction: 0.1,
            max: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// When stale responses may be served beyond what a request's `max-stale` allows (RFC 9111
/// §4.2.4, RFC 5861).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeStale {
    /// Honour the `stale-while-revalidate` and `stale-if-error` directives of responses and
    /// requests (RFC 5861). On by default.
    pub use_directives: bool,
    /// A `stale-while-revalidate` window for responses that carry none, by configuration
    /// ("an out-of-band contract", §4.2.4). Zero by default.
    pub default_stale_while_revalidate: Duration,
    /// A `stale-if-error` window for responses that carry none. Zero by default.
    pub default_stale_if_error: Duration,
}

impl Default for ServeStale {
    fn default() -> Self {
        ServeStale {
            use_directives: true,
            default_stale_while_revalidate: Duration::ZERO,
            default_stale_if_error: Duration::ZERO,
        }
    }
}

impl ServeStale {
    /// Never serve stale responses unless a request asks for it with `max-stale`.
    pub fn never() -> Self {
        ServeStale {
            use_directives: false,
            ..ServeStale::default()
        }
    }
}

/// What a shared cache does with a response that carries `Set-Cookie`.
///
/// RFC 9111 does not forbid storing such a response, but a cookie is usually meant for the
/// one client it was sent to (RFC 9111 §7.3, caching of sensitive information). In every mode
/// a shared cache replays a stored `Set-Cookie` only when the origin clearly meant the
/// response to be shared: explicit freshness (`max-age`, `s-maxage` or `Expires`) or
/// `public`. A private cache keeps cookies as they are: it serves one client.
///
/// ```
/// use cache_policy::{PolicyOptions, SharedCookies};
///
/// let options = PolicyOptions::default().shared(true).shared_cookies(SharedCookies::Refuse);
/// assert_eq!(options.shared_cookies, SharedCookies::Refuse);
/// assert_eq!(PolicyOptions::default().shared_cookies, SharedCookies::RequireExplicit);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SharedCookies {
    /// Never store a response that carries `Set-Cookie` (the strictest choice, as Varnish and
    /// nginx behave by default).
    Refuse,
    /// Store a response with its `Set-Cookie` lines only when it is explicitly shareable;
    /// one made cacheable by heuristics alone is not stored. The default.
    #[default]
    RequireExplicit,
    /// Store every storable response, but without its `Set-Cookie` lines unless it is
    /// explicitly shareable (the loosest choice that still keeps one client's cookie from
    /// another). The client whose request fetched the response still gets its cookie.
    StripUnlessExplicit,
}

/// Options of a [`CachePolicy`](crate::CachePolicy). Start from [`PolicyOptions::default`]
/// (a private cache that follows RFC 9111) and change what you need with the builder methods.
///
/// ```
/// use std::time::Duration;
/// use cache_policy::PolicyOptions;
///
/// let options = PolicyOptions::default()
///     .shared(true)
///     .max_ttl(Duration::from_secs(3600));
/// assert!(options.shared);
/// assert_eq!(options.max_ttl, Some(Duration::from_secs(3600)));
/// assert!(options.heuristics.is_some());
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PolicyOptions {
    /// A shared cache (a proxy or CDN) rather than a private one (a client's own cache).
    /// Shared caches honour `s-maxage`, `proxy-revalidate` and `private`, and do not store
    /// responses to requests with `Authorization` unless allowed (RFC 9111 §3.5). Default:
    /// private.
    pub shared: bool,
    /// Request methods whose responses may be stored and reused. Default: `GET` and `HEAD`.
    /// Adding `POST` makes POST responses storable; the caller must then key them by body.
    pub cacheable_methods: Vec<Method>,
    /// When set, only responses with one of these statuses are stored, overriding the RFC's
    /// list of understood statuses (206 and 304 are still never stored as full responses).
    pub cacheable_statuses: Option<Vec<StatusCode>>,
    /// Heuristic freshness (RFC 9111 §4.2.2); `None` disables it.
    pub heuristics: Option<Heuristics>,
    /// Serving stale responses (RFC 9111 §4.2.4, RFC 5861).
    pub serve_stale: ServeStale,
    /// Revalidate every stored response before reuse, as if each carried `no-cache`.
    pub always_revalidate: bool,
    /// Store and reuse responses regardless of `Cache-Control`, `Expires`, `Pragma` and
    /// `Authorization`, for `default_ttl` (or the response's own freshness when
    /// `default_ttl` is unset). Not RFC 9111 behaviour: for caching APIs that send no
    /// caching headers.
    pub ignore_rules: bool,
    /// A freshness lifetime for storable responses without explicit freshness, used before
    /// heuristics. Opt-in; `None` by default.
    pub default_ttl: Option<Duration>,
    /// An upper bound on every freshness lifetime.
    pub max_ttl: Option<Duration>,
    /// Honour the `CDN-Cache-Control` targeted field (RFC 9213) in place of `Cache-Control`
    /// and `Expires`. Only meaningful for shared caches; off by default.
    pub cdn_cache_control: bool,
    /// What a shared cache does with responses that carry `Set-Cookie`; see
    /// [`SharedCookies`]. Applies under [`ignore_rules`](PolicyOptions::ignore_rules) too.
    pub shared_cookies: SharedCookies,
    /// The scheme of the target URI of a request in origin form (`GET /path` with `Host`),
    /// for a cache on the server side: the scheme the server serves (RFC 9112 §3.3). `http`
    /// by default; a server behind TLS sets `https`, so that `http` and `https` requests never
    /// share an entry. Requests in absolute form carry their own scheme.
    pub origin_form_scheme: Scheme,
    /// The most variants (RFC 9111 §4.1) kept for one primary key. Storing one more makes the
    /// least recently stored (or freshened) ones go, so that a `Vary` on a field clients
    /// choose freely (`User-Agent`, a cookie) cannot grow a key, or the lookups over it,
    /// without limit. Default 16; at least 1.
    pub max_variants: usize,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        PolicyOptions {
            shared: false,
            cacheable_methods: vec![Method::GET, Method::HEAD],
            cacheable_statuses: None,
            heuristics: Some(Heuristics::default()),
            serve_stale: ServeStale::default(),
            always_revalidate: false,
            ignore_rules: false,
            default_ttl: None,
            max_ttl: None,
            cdn_cache_control: false,
            shared_cookies: SharedCookies::default(),
            origin_form_scheme: Scheme::HTTP,
            max_variants: 16,
        }
    }
}

impl PolicyOptions {
    /// Sets [`shared`](PolicyOptions::shared).
    pub fn shared(mut self, shared: bool) -> Self {
        self.shared = shared;
        self
    }

    /// Sets [`cacheable_methods`](PolicyOptions::cacheable_methods).
    pub fn cacheable_methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.cacheable_methods = methods.into_iter().collect();
        self
    }

    /// Sets [`cacheable_statuses`](PolicyOptions::cacheable_statuses).
    pub fn cacheable_statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.cacheable_statuses = Some(statuses.into_iter().collect());
        self
    }

    /// Sets [`heuristics`](PolicyOptions::heuristics); `None` disables them.
    pub fn heuristics(mut self, heuristics: Option<Heuristics>) -> Self {
        self.heuristics = heuristics;
        self
    }

    /// Sets [`serve_stale`](PolicyOptions::serve_stale).
    pub fn serve_stale(mut self, serve_stale: ServeStale) -> Self {
        self.serve_stale = serve_stale;
        self
    }

    /// Sets [`always_revalidate`](PolicyOptions::always_revalidate).
    pub fn always_revalidate(mut self, always: bool) -> Self {
        self.always_revalidate = always;
        self
    }

    /// Sets [`ignore_rules`](PolicyOptions::ignore_rules).
    pub fn ignore_rules(mut self, ignore: bool) -> Self {
        self.ignore_rules = ignore;
        self
    }

    /// Sets [`default_ttl`](PolicyOptions::default_ttl).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// Sets [`max_ttl`](PolicyOptions::max_ttl).
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = Some(ttl);
        self
    }

    /// Sets [`cdn_cache_control`](PolicyOptions::cdn_cache_control).
    pub fn cdn_cache_control(mut self, enabled: bool) -> Self {
        self.cdn_cache_control = enabled;
        self
    }

    /// Sets [`shared_cookies`](PolicyOptions::shared_cookies).
    pub fn shared_cookies(mut self, cookies: SharedCookies) -> Self {
        self.shared_cookies = cookies;
        self
    }

    /// Sets [`max_variants`](PolicyOptions::max_variants) (at least 1).
    pub fn max_variants(mut self, max: usize) -> Self {
        self.max_variants = max.max(1);
        self
    }

    /// Sets [`origin_form_scheme`](PolicyOptions::origin_form_scheme).
    pub fn origin_form_scheme(mut self, scheme: Scheme) -> Self {
        self.origin_form_scheme = scheme;
        self
    }
}
