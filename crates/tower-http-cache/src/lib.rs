//! An RFC 9111 HTTP cache as a tower [`Layer`](tower_layer::Layer).
//!
//! Wrap any `Service<http::Request<B>>` that returns `http::Response<_>`, such as
//! hyper-util's legacy `Client`, and its responses are cached by the rules of RFC 9111:
//! freshness and age, `Vary` with several variants per URL, conditional revalidation and 304
//! freshening, HEAD served from a stored GET, invalidation after unsafe methods,
//! `only-if-cached`, `stale-while-revalidate` with a background refresh, `stale-if-error`, and
//! request coalescing. Bodies stream: a miss reaches the caller chunk by chunk while it is
//! stored.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod body;
mod clock;
mod coalesce;
mod future;
mod key;
mod layer;
mod log;
mod options;
mod service;
mod status;

pub use body::{BodyError, CacheBody};
pub use clock::{Clock, SystemClock};
pub use future::ResponseFuture;
pub use key::default_key;
pub use layer::CacheLayer;
pub use options::{CacheKey, CacheMode, CacheTtl};
pub use service::CacheService;
pub use status::{CacheOutcome, CacheStatus};

pub use cache_policy::{self as policy, Heuristics, PolicyOptions, ServeStale};
#[cfg(feature = "fs")]
#[cfg_attr(docsrs, doc(cfg(feature = "fs")))]
pub use cache_store::FsStore;
#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub use cache_store::MemoryStore;
pub use cache_store::{self as store, Store};
