//! The caching middleware, laid out the tower-http way: [`CacheLayer`](layer::CacheLayer)
//! builds a [`CacheService`](service::CacheService), whose [`ResponseFuture`](future::ResponseFuture)
//! yields responses with a [`CacheBody`](body::CacheBody). The [`driver`] carries out each
//! request's `cache_policy::Exchange`: the store, the origin, coalescing, background refresh.

pub(crate) mod body;
pub(crate) mod driver;
pub(crate) mod future;
mod invalidation;
pub(crate) mod layer;
mod origin;
pub(crate) mod service;
