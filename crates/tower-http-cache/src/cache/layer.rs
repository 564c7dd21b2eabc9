//! [`CacheLayer`]: configuration, and the [`Layer`] that wraps a service in a
//! [`CacheService`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cache_policy::{CacheRules, Heuristics, PolicyOptions, SharedCookies};
use cache_store::Store;
use http::uri::Scheme;
use http::{Method, StatusCode, Uri};
use tower_layer::Layer;

use super::driver::InFlight;
use super::driver::RefreshSlots;
use super::invalidation::Invalidations;
use super::service::CacheService;
use crate::clock::{Clock, SharedClock, SystemClock};

type KeyFn = Arc<dyn Fn(&Uri) -> String + Send + Sync>;

/// A [`Layer`] that caches the responses of the service it wraps, following RFC 9111.
///
/// Build it with a store and adjust it with the builder methods; every option has a default
/// suited to a client (a private cache).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower::ServiceBuilder;
/// use tower_http_cache::{CacheLayer, MemoryStore};
///
/// # let client = tower::service_fn(|_: http::Request<String>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// # });
/// let service = ServiceBuilder::new()
///     .layer(
///         CacheLayer::new(MemoryStore::builder().max_capacity_bytes(64 << 20).build())
///             .max_ttl(Duration::from_secs(3600))
///             .cache_status_header(true),
///     )
///     .service(client);
/// ```
#[derive(Clone)]
pub struct CacheLayer {
    config: Config,
}

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) options: PolicyOptions,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) key_fn: Option<KeyFn>,
    pub(crate) cache_status_header: bool,
    pub(crate) cache_name: String,
    pub(crate) coalesce: Option<Duration>,
    pub(crate) coalesce_streaming_wait: Duration,
    pub(crate) background_revalidation: bool,
    pub(crate) max_background_refreshes: usize,
    pub(crate) origin_timeout: Option<Duration>,
    pub(crate) max_body_size: Option<u64>,
}

/// Everything a [`CacheService`] shares between its clones and its requests.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    /// RFC 9111 as configured, with its variants for the cache modes and the body limit.
    pub(crate) rules: CacheRules,
    pub(crate) clock: SharedClock,
    pub(crate) key_fn: Option<KeyFn>,
    pub(crate) cache_status_header: bool,
    pub(crate) cache_name: String,
    pub(crate) coalesce: Option<Duration>,
    /// How long followers wait once the leader streams its body into the store.
    pub(crate) coalesce_streaming_wait: Duration,
    pub(crate) in_flight: Arc<InFlight>,
    /// Keeps writes begun before an invalidation from bringing back what it removed.
    pub(crate) invalidations: Arc<Invalidations>,
    pub(crate) background_revalidation: bool,
    pub(crate) background_refreshes: Arc<RefreshSlots>,
    pub(crate) origin_timeout: Option<Duration>,
}

impl Shared {
    fn new(config: Config) -> Self {
        Shared {
            store: config.store,
            rules: CacheRules::new(config.options).max_body_size(config.max_body_size),
            clock: SharedClock(config.clock),
            key_fn: config.key_fn,
            cache_status_header: config.cache_status_header,
            cache_name: config.cache_name,
            coalesce: config.coalesce,
            coalesce_streaming_wait: config.coalesce_streaming_wait,
            in_flight: Arc::default(),
            invalidations: Arc::default(),
            background_revalidation: config.background_revalidation,
            background_refreshes: RefreshSlots::new(config.max_background_refreshes),
            origin_timeout: config.origin_timeout,
        }
    }

    pub(crate) fn key_for(&self, uri: &Uri) -> Arc<str> {
        match &self.key_fn {
            Some(key_fn) => key_fn(uri).into(),
            None => crate::key::shared_default_key(uri),
        }
    }
}

impl CacheLayer {
    /// A layer storing responses in `store`, as a private cache following RFC 9111.
    pub fn new(store: impl Store) -> Self {
        CacheLayer::with_shared_store(Arc::new(store))
    }

    /// A layer over a store shared with other layers or chosen at run time.
    pub fn with_shared_store(store: Arc<dyn Store>) -> Self {
        CacheLayer {
            config: Config {
                store,
                options: PolicyOptions::default(),
                clock: Arc::new(SystemClock),
                key_fn: None,
                cache_status_header: false,
                cache_name: "tower-http-cache".to_owned(),
                coalesce: Some(Duration::from_secs(10)),
                coalesce_streaming_wait: Duration::from_secs(1),
                background_revalidation: true,
                max_background_refreshes: 64,
                origin_timeout: None,
                max_body_size: None,
            },
        }
    }

    /// Replaces all policy options at once (see [`PolicyOptions`]).
    pub fn policy(mut self, options: PolicyOptions) -> Self {
        self.config.options = options;
        self
    }

    /// A shared cache (a proxy or gateway) instead of a private one (RFC 9111 §1).
    pub fn shared(mut self, shared: bool) -> Self {
        self.config.options.shared = shared;
        self
    }

    /// What a shared cache does with responses that carry `Set-Cookie` (default: stores them
    /// only when the origin made them explicitly shareable; see [`SharedCookies`]).
    pub fn shared_cookies(mut self, cookies: SharedCookies) -> Self {
        self.config.options.shared_cookies = cookies;
        self
    }

    /// The scheme this layer serves, for a cache on the server side whose requests arrive in
    /// origin form (`GET /path` with `Host`): `https` behind TLS, so that `http` and `https`
    /// requests never share an entry (default `http`). Requests in absolute form carry their
    /// own scheme.
    ///
    /// ```
    /// use http::uri::Scheme;
    /// use tower_http_cache::{CacheLayer, MemoryStore};
    ///
    /// let layer = CacheLayer::new(MemoryStore::default())
    ///     .shared(true)
    ///     .origin_form_scheme(Scheme::HTTPS);
    /// ```
    pub fn origin_form_scheme(mut self, scheme: Scheme) -> Self {
        self.config.options.origin_form_scheme = scheme;
        self
    }

    /// The request methods whose responses are cached (default `GET` and `HEAD`).
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.config.options.cacheable_methods = methods.into_iter().collect();
        self
    }

    /// Stores only responses with these statuses.
    pub fn statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.config.options.cacheable_statuses = Some(statuses.into_iter().collect());
        self
    }

    /// Heuristic freshness (RFC 9111 §4.2.2); `None` disables it.
    pub fn heuristics(mut self, heuristics: Option<Heuristics>) -> Self {
        self.config.options.heuristics = heuristics;
        self
    }

    /// A freshness lifetime for responses without one (opt-in).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.config.options.default_ttl = Some(ttl);
        self
    }

    /// An upper bound on every freshness lifetime.
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.config.options.max_ttl = Some(ttl);
        self
    }

    /// The clock the cache reads (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.config.clock = Arc::new(clock);
        self
    }

    /// The primary key function, applied to the target URI (default: [`default_key`]).
    ///
    /// Invalidation after unsafe methods (RFC 9111 §4.4) applies it to the invalidated URIs,
    /// so keep keys a function of the URI.
    ///
    /// [`default_key`]: crate::default_key
    pub fn key_fn(mut self, key_fn: impl Fn(&Uri) -> String + Send + Sync + 'static) -> Self {
        self.config.key_fn = Some(Arc::new(key_fn));
        self
    }

    /// Adds an RFC 9211 `Cache-Status` header to every response (off by default; the typed
    /// [`CacheStatus`](crate::CacheStatus) is always in the response extensions).
    pub fn cache_status_header(mut self, enabled: bool) -> Self {
        self.config.cache_status_header = enabled;
        self
    }

    /// The cache's name in `Cache-Status` (default `tower-http-cache`).
    pub fn cache_name(mut self, name: impl Into<String>) -> Self {
        self.config.cache_name = name.into();
        self
    }

    /// Request coalescing: concurrent requests that would go to the origin for the same key
    /// wait for the first one, at most `timeout`, then use what it stored (or go to the origin
    /// themselves). On by default with a 10 s timeout; `None` disables it.
    ///
    /// The wait uses tokio's timer: run the service in a runtime with time enabled (as
    /// `#[tokio::main]` does), or disable coalescing.
    pub fn coalesce(mut self, timeout: Option<Duration>) -> Self {
        self.config.coalesce = timeout;
        self
    }

    /// How long coalesced requests still wait once the leader's response head has arrived and
    /// its body is being stored as the leader's client reads it (default 1 s). A leader whose
    /// client reads slowly then holds its followers that long at most; after it, they go to
    /// the origin themselves.
    pub fn coalesce_streaming_wait(mut self, wait: Duration) -> Self {
        self.config.coalesce_streaming_wait = wait;
        self
    }

    /// Whether `stale-while-revalidate` refreshes run in the background (a spawned tokio
    /// task; on by default). Without it, such requests revalidate before answering.
    pub fn background_revalidation(mut self, enabled: bool) -> Self {
        self.config.background_revalidation = enabled;
        self
    }

    /// The most `stale-while-revalidate` refreshes running in the background at once (default
    /// 64). A stale response whose refresh finds no free slot is still served; a later
    /// request refreshes it.
    pub fn max_background_refreshes(mut self, max: usize) -> Self {
        self.config.max_background_refreshes = max;
        self
    }

    /// How long the origin may take to send its response head (default: no limit). After
    /// that the request gets a stale response where `stale-if-error` allows one (RFC 5861
    /// §4), and otherwise a generated `504 Gateway Timeout`. Uses tokio's timer.
    pub fn origin_timeout(mut self, timeout: Duration) -> Self {
        self.config.origin_timeout = Some(timeout);
        self
    }

    /// The most variants kept for one URL (default 16): storing one more removes the least
    /// recently stored, so that `Vary` on a field clients choose freely cannot grow a key
    /// without limit (see [`PolicyOptions::max_variants`]).
    pub fn max_variants(mut self, max: usize) -> Self {
        self.config.options = self.config.options.max_variants(max);
        self
    }

    /// Responses with larger bodies pass through uncached.
    pub fn max_body_size(mut self, bytes: u64) -> Self {
        self.config.max_body_size = Some(bytes);
        self
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = CacheService<S>;

    fn layer(&self, inner: S) -> CacheService<S> {
        CacheService::from_shared(inner, Arc::new(Shared::new(self.config.clone())))
    }
}

impl fmt::Debug for CacheLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheLayer")
            .field("options", &self.config.options)
            .field("cache_status_header", &self.config.cache_status_header)
            .field("coalesce", &self.config.coalesce)
            .finish_non_exhaustive()
    }
}
