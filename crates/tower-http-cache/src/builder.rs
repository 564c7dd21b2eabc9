//! [`ServiceBuilderExt`]: `ServiceBuilder::new().http_cache(store)`.

use tower::layer::util::Stack;
use tower::ServiceBuilder;

use crate::{CacheLayer, Store};

/// Adds the cache to a [`ServiceBuilder`] in one call.
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_http_cache::{MemoryStore, ServiceBuilderExt};
///
/// # let client = tower::service_fn(|_: http::Request<String>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// # });
/// let service = ServiceBuilder::new()
///     .http_cache(MemoryStore::default())
///     .service(client);
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed {
    /// Adds a [`CacheLayer`] with default options over `store`.
    fn http_cache(self, store: impl Store) -> ServiceBuilder<Stack<CacheLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn http_cache(self, store: impl Store) -> ServiceBuilder<Stack<CacheLayer, L>> {
        self.layer(CacheLayer::new(store))
    }
}

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}
