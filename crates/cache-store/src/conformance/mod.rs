//! A conformance suite for [`Store`] backends.
//!
//! Every backend of this crate runs it, and so should any other backend: implement
//! [`Harness`] (how to make a fresh store with given limits, plus optional hooks), then either
//! expand one test per check with [`conformance_tests!`](crate::conformance_tests) or call
//! [`run_all`] from one test.
//!
//! ```
//! use cache_store::conformance::{Harness, Limits};
//! use cache_store::MemoryStore;
//!
//! struct Memory;
//!
//! impl Harness for Memory {
//!     type Store = MemoryStore;
//!
//!     fn new_store(&self, limits: Limits) -> MemoryStore {
//!         MemoryStore::builder()
//!             .max_capacity_bytes(limits.max_total_bytes)
//!             .max_body_size(limits.max_body_size)
//!             .build()
//!     }
//!
//!     fn settle(&self, store: &MemoryStore) {
//!         store.run_pending_tasks();
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! cache_store::conformance::update_keeps_body(&Memory).await;
//! # }
//! // In a test file, one `#[tokio::test]` per check:
//! // cache_store::conformance_tests!(Memory);
//! ```
//!
//! The checks panic (they are assertions) with a message naming what went wrong.

use std::future::poll_fn;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use cache_policy::StoredResponse;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use http_body::Body;

use crate::{
    Entries, EntryWriter, Store, StoreError, StoredBody, StoredEntry, VariantId, WriteOptions,
};

mod bounds;
mod concurrency;
mod corruption;
mod reads;
mod updates;
mod writing;

pub use bounds::{body_size_limit, size_bound_eviction, ttl_expiry};
pub use concurrency::{
    concurrent_writers_and_readers, matches_a_model, parallel_commits_keep_every_variant,
};
pub use corruption::corrupt_entry_is_a_miss;
pub use reads::{get_now_agrees_with_get, metadata_round_trips, variants};
pub use updates::{
    body_survives_replace, remove_and_clear, update_ignores_a_replaced_representation,
    update_keeps_body,
};
pub use writing::{
    aborted_write_leaves_nothing, invisible_until_commit, large_writes_after_readiness,
    streams_large_body,
};

/// The limits a [`Harness`] configures its store with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest body the store accepts.
    pub max_body_size: u64,
    /// The total size the store keeps before evicting.
    pub max_total_bytes: u64,
}

impl Default for Limits {
    /// Roomy limits: 16 MiB bodies, 256 MiB in total.
    fn default() -> Self {
        Limits {
            max_body_size: 16 << 20,
            max_total_bytes: 256 << 20,
        }
    }
}

/// How the suite makes and inspects stores of one backend.
pub trait Harness: Send + Sync + 'static {
    /// The backend under test.
    type Store: Store;

    /// A new, empty store with these limits. Each check calls it once or more; stores must not
    /// share entries.
    fn new_store(&self, limits: Limits) -> Self::Store;

    /// Brings lazy housekeeping (evictions, expirations) up to date before the suite asserts
    /// on sizes. The default does nothing.
    fn settle(&self, store: &Self::Store) {
        let _ = store;
    }

    /// Damages the stored bytes of every variant of `key` (e.g. flips bytes in their header) so
    /// that they no longer decode. Returns `false` if the backend keeps no encoded form (as the
    /// memory backend), in which case the corrupt-entry check is skipped. The default returns
    /// `false`.
    fn corrupt(&self, store: &Self::Store, key: &str) -> bool {
        let _ = (store, key);
        false
    }
}

/// Runs every check in turn.
pub async fn run_all<H: Harness>(harness: &H) {
    variants(harness).await;
    metadata_round_trips(harness).await;
    streams_large_body(harness).await;
    large_writes_after_readiness(harness).await;
    invisible_until_commit(harness).await;
    aborted_write_leaves_nothing(harness).await;
    update_keeps_body(harness).await;
    update_ignores_a_replaced_representation(harness).await;
    remove_and_clear(harness).await;
    ttl_expiry(harness).await;
    size_bound_eviction(harness).await;
    body_size_limit(harness).await;
    body_survives_replace(harness).await;
    concurrent_writers_and_readers(harness).await;
    parallel_commits_keep_every_variant(harness).await;
    matches_a_model(harness).await;
    corrupt_entry_is_a_miss(harness).await;
    get_now_agrees_with_get(harness).await;
}

/// Expands to one `#[tokio::test]` per conformance check, for the harness expression given.
///
/// The calling crate needs `tokio` with the `macros` and `rt-multi-thread` features. Wrap the
/// call in a module per backend so test names do not collide.
///
/// ```ignore
/// mod memory {
///     cache_store::conformance_tests!(crate::Memory);
/// }
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@each $harness;
            variants,
            metadata_round_trips,
            streams_large_body,
            large_writes_after_readiness,
            invisible_until_commit,
            aborted_write_leaves_nothing,
            update_keeps_body,
            update_ignores_a_replaced_representation,
            remove_and_clear,
            ttl_expiry,
            size_bound_eviction,
            body_size_limit,
            body_survives_replace,
            concurrent_writers_and_readers,
            parallel_commits_keep_every_variant,
            matches_a_model,
            corrupt_entry_is_a_miss,
            get_now_agrees_with_get,
        );
    };
    (@each $harness:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                $crate::conformance::$check(&$harness).await;
            }
        )*
    };
}

const KEY: &str = "https://example.com/conformance";

/// A response varying on `accept-language` when `language` is given, with `x-seed` and `x-len`
/// headers from which its body is derived (see [`seeded_body`]); [`read_verified`] checks a
/// stored body against them.
pub fn seeded_response(language: Option<&str>, seed: u64, len: usize) -> StoredResponse {
    let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 250);
    let mut headers = HeaderMap::new();
    let mut vary_request_headers = HeaderMap::new();
    if let Some(language) = language {
        headers.append("vary", HeaderValue::from_static("accept-language"));
        if let Ok(value) = HeaderValue::from_str(language) {
            vary_request_headers.append("accept-language", value);
        }
    }
    headers.append("x-seed", HeaderValue::from(seed));
    headers.append("x-len", HeaderValue::from(len));
    StoredResponse {
        method: Method::GET,
        uri: Uri::from_static("https://example.com/conformance"),
        status: StatusCode::OK,
        headers,
        vary_request_headers,
        request_time: t,
        response_time: t + Duration::from_millis(3),
    }
}

/// Deterministic pseudo-random bytes: a body that can be checked against its metadata.
pub fn seeded_body(seed: u64, len: usize) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = BytesMut::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&state.to_le_bytes()[..take]);
    }
    out.freeze()
}

fn header_u64(response: &StoredResponse, name: &str) -> u64 {
    response
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("stored response lost its {name} header"))
}

fn options(ttl: Duration) -> WriteOptions {
    WriteOptions {
        ttl,
        content_length: None,
    }
}

const HOUR: Duration = Duration::from_secs(3600);

/// Reads a whole body, frame by frame.
pub async fn read_body(mut body: StoredBody) -> Result<Bytes, StoreError> {
    let mut out = BytesMut::new();
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(data) = frame?.into_data() {
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// Writes `body` in pieces of `chunk` bytes, waiting for [`EntryWriter::poll_ready`] before
/// each one, as the layer's tee does: a body larger than the writer's queue then waits for the
/// backend instead of being refused. Panics if the writer refuses a piece.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::time::Duration;
///
/// use cache_store::conformance::{seeded_body, seeded_response, write_when_ready};
/// use cache_store::{MemoryStore, Store, WriteOptions};
///
/// let store = MemoryStore::builder().build();
/// let body = seeded_body(1, 100_000);
/// let options = WriteOptions { ttl: Duration::from_secs(60), content_length: None };
/// let response = seeded_response(None, 1, body.len());
/// let mut writer = store.begin("https://example.com/", response.into(), options).await?;
/// write_when_ready(writer.as_mut(), &body, 10_000).await;
/// writer.commit().await?;
/// assert_eq!(store.get("https://example.com/").await?.len(), 1);
/// # Ok::<(), cache_store::StoreError>(())
/// # }).unwrap();
/// ```
pub async fn write_when_ready(writer: &mut dyn EntryWriter, body: &Bytes, chunk: usize) {
    for piece in body.chunks(chunk.max(1)) {
        poll_fn(|cx| writer.poll_ready(cx))
            .await
            .expect("writer ready");
        writer.write(body.slice_ref(piece)).expect("write failed");
    }
}

/// Writes a complete variant in chunks of `chunk` bytes and commits it.
async fn put<S: Store + ?Sized>(
    store: &S,
    key: &str,
    response: StoredResponse,
    body: &Bytes,
    chunk: usize,
    ttl: Duration,
) {
    let mut writer = store
        .begin(key, response.into(), options(ttl))
        .await
        .expect("begin failed");
    write_when_ready(writer.as_mut(), body, chunk).await;
    writer.commit().await.expect("commit failed");
}

async fn put_seeded<S: Store + ?Sized>(
    store: &S,
    key: &str,
    language: Option<&str>,
    seed: u64,
    len: usize,
) -> Bytes {
    let body = seeded_body(seed, len);
    put(
        store,
        key,
        seeded_response(language, seed, len),
        &body,
        4096,
        HOUR,
    )
    .await;
    body
}

/// Reads `key` the way a cache does: [`Store::get_now`] when the store answers at once, so
/// that every check covers that path too, else [`Store::get`].
async fn get<S: Store + ?Sized>(store: &S, key: &str) -> Entries {
    match store.get_now(key) {
        Some(result) => result.expect("get_now failed"),
        None => store.get(key).await.expect("get failed"),
    }
}

/// The body of an entry read once.
fn body_of(entry: &StoredEntry) -> StoredBody {
    entry
        .body()
        .expect("the body of an entry read once is there")
}

/// The (variant, seed) pairs of what `get` returns, sorted.
async fn awaited_seeds<S: Store + ?Sized>(store: &S, key: &str) -> Vec<(VariantId, u64)> {
    let mut seen: Vec<_> = store
        .get(key)
        .await
        .expect("get failed")
        .iter()
        .map(|entry| (entry.variant.clone(), header_u64(&entry.response, "x-seed")))
        .collect();
    seen.sort();
    seen
}

/// Reads every entry of `key`, checks each body against its `x-seed` / `x-len` metadata (see
/// [`seeded_response`]), and returns the (variant, seed) pairs, sorted. Panics on a body read
/// error or a body that does not match.
pub async fn read_verified<S: Store + ?Sized>(store: &S, key: &str) -> Vec<(VariantId, u64)> {
    let mut seen = Vec::new();
    for entry in &get(store, key).await {
        let seed = header_u64(&entry.response, "x-seed");
        let len = header_u64(&entry.response, "x-len") as usize;
        let body = read_body(body_of(entry)).await.expect("body read failed");
        assert!(
            body == seeded_body(seed, len),
            "body of {key} does not match its metadata (seed {seed}, len {len}, got {} bytes)",
            body.len()
        );
        assert_eq!(entry.variant, VariantId::of(&entry.response));
        seen.push((entry.variant.clone(), seed));
    }
    seen.sort();
    seen
}
