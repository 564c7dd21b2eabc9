//! An RFC 9111 HTTP cache as a tower [`Layer`](tower_layer::Layer).
//!
//! Wrap any `Service<http::Request<B>>` that returns `http::Response<_>`, such as
//! hyper-util's legacy `Client`, and its responses are cached by the rules of RFC 9111:
//! freshness and age, `Vary` with several variants per URL, conditional revalidation and 304
//! freshening, HEAD served from a stored GET, invalidation after unsafe methods,
//! `only-if-cached`, `stale-while-revalidate` with a background refresh, `stale-if-error`, and
//! request coalescing. Bodies stream: a miss reaches the caller chunk by chunk while it is
//! stored.
//!
//! # Example
//!
//! Any service works as the origin; here a closure that counts its calls:
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//!
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_http_cache::{CacheLayer, CacheOutcome, CacheStatus, MemoryStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let calls = Arc::new(AtomicUsize::new(0));
//! let counter = calls.clone();
//! let origin = tower::service_fn(move |_request: Request<Full<Bytes>>| {
//!     counter.fetch_add(1, Ordering::SeqCst);
//!     async {
//!         let response = Response::builder()
//!             .header("cache-control", "max-age=60")
//!             .body(Full::new(Bytes::from_static(b"hello")))
//!             .unwrap();
//!         Ok::<_, std::convert::Infallible>(response)
//!     }
//! });
//! let client = ServiceBuilder::new()
//!     .layer(CacheLayer::new(MemoryStore::default()))
//!     .service(origin);
//!
//! for expected in [CacheOutcome::Miss, CacheOutcome::Hit] {
//!     let request = Request::get("http://example.com/").body(Full::default()).unwrap();
//!     let response = client.clone().oneshot(request).await.unwrap();
//!     assert_eq!(response.extensions().get::<CacheStatus>().unwrap().outcome, expected);
//!     // A response is stored once its body has been read to the end.
//!     assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "hello");
//! }
//! assert_eq!(calls.load(Ordering::SeqCst), 1);
//! # }
//! ```
//!
//! With hyper-util's legacy client, the layer goes in front of the client:
//!
//! ```no_run
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tower::ServiceBuilder;
//! use tower_http_cache::{CacheLayer, MemoryStore};
//!
//! let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
//! let client = ServiceBuilder::new()
//!     .layer(CacheLayer::new(MemoryStore::builder().max_capacity_bytes(256 << 20).build()))
//!     .service(client);
//! ```
//!
//! # What the cache does for one request
//!
//! 1. It computes the primary key ([`default_key`] of the target URI, or a [`CacheKey`]) and
//!    reads the stored variants for it. A store that holds its entries in memory answers at
//!    once ([`Store::get_now`]), so a hit is decided inside `call` and its future is ready.
//! 2. It feeds them to the request's [`policy::Exchange`], the sans-IO flow of one request
//!    in `cache-policy`, and does what it says: serve a stored response, answer 304 to a
//!    conditional request, answer 504 to `only-if-cached`, or go to the origin (with
//!    validators when revalidating). The origin call uses the readiness that `poll_ready`
//!    reserved on the inner service (see [`CacheService`]).
//! 3. It feeds the origin's answer to the exchange and carries out the effects it returns:
//!    invalidate what an unsafe method changed, store the response (the body is teed into the
//!    store while the caller reads it, and committed at its end), freshen stored responses
//!    after a 304 or a HEAD; and sends the reply it names (the origin's response, a stored one
//!    or a stale one instead of an error).
//! 4. It records what happened in a [`CacheStatus`] in the response extensions, and with
//!    [`CacheLayer::cache_status_header`] in an RFC 9211 `Cache-Status` header.
//!
//! A store that fails never fails a request: the cache logs it (feature `tracing`) and acts
//! as if it had no entry. The inner service's error type is returned unchanged.
//!
//! # Feature flags
//!
//! - `memory` (default): [`MemoryStore`], re-exported from `cache-store`.
//! - `fs`: [`FsStore`], the filesystem store.
//! - `tracing`: logs storage failures with `tracing`.
//! - `body-key`: [`BodyKeyLayer`], caching POST requests keyed by a hash of their body.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

#[cfg(feature = "body-key")]
mod body_key;
mod builder;
mod cache;
mod clock;
mod key;
mod log;
mod options;

#[cfg(feature = "body-key")]
#[cfg_attr(docsrs, doc(cfg(feature = "body-key")))]
pub use body_key::{BodyKey, BodyKeyError, BodyKeyLayer, ReplayBody};
pub use builder::ServiceBuilderExt;
pub use cache::body::{BodyError, CacheBody};
pub use cache::future::ResponseFuture;
pub use cache::layer::CacheLayer;
pub use cache::service::CacheService;
pub use clock::{Clock, SystemClock};
pub use key::default_key;
pub use options::{CacheKey, CacheMode, CacheTtl};

pub use cache_policy::{
    self as policy, CacheOutcome, CacheStatus, CacheStatusDetail, CacheStatusFwd, Heuristics,
    PolicyOptions, ServeStale, SharedCookies,
};
#[cfg(feature = "fs")]
#[cfg_attr(docsrs, doc(cfg(feature = "fs")))]
pub use cache_store::FsStore;
#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub use cache_store::MemoryStore;
pub use cache_store::{self as store, Store};
