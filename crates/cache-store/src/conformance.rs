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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use cache_policy::StoredResponse;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use http_body::Body;

use crate::{Entries, Store, StoreError, StoredBody, StoredEntry, VariantId, WriteOptions};

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
    for piece in body.chunks(chunk.max(1)) {
        writer.write(body.slice_ref(piece)).expect("write failed");
    }
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

/// When a store answers [`Store::get_now`], it answers what [`Store::get`] does: after
/// commits, a replacement, a removal and an expiry.
pub async fn get_now_agrees_with_get<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    if store.get_now(KEY).is_none() {
        return;
    }
    assert!(get(&store, KEY).await.is_empty());
    put_seeded(&store, KEY, Some("en"), 1, 100).await;
    put_seeded(&store, KEY, Some("fr"), 2, 200).await;
    put_seeded(&store, KEY, Some("fr"), 3, 300).await;
    harness.settle(&store);
    let now = read_verified(&store, KEY).await;
    assert_eq!(now.iter().map(|s| s.1).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(now, awaited_seeds(&store, KEY).await);

    let english = now[0].0.clone();
    store.remove(KEY, Some(&english)).await.expect("remove");
    harness.settle(&store);
    let now = read_verified(&store, KEY).await;
    assert_eq!(now.iter().map(|s| s.1).collect::<Vec<_>>(), [3]);
    assert_eq!(now, awaited_seeds(&store, KEY).await);

    let short = Duration::from_millis(50);
    let other = "https://example.com/short-lived";
    put(
        &store,
        other,
        seeded_response(None, 4, 10),
        &seeded_body(4, 10),
        10,
        short,
    )
    .await;
    assert_eq!(read_verified(&store, other).await.len(), 1);
    tokio::time::sleep(short * 3).await;
    harness.settle(&store);
    assert!(
        get(&store, other).await.is_empty(),
        "expired entry read at once"
    );
    assert!(awaited_seeds(&store, other).await.is_empty());
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

/// Several variants under one key are listed together; a commit replaces only the variant with
/// the same id.
pub async fn variants<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    put_seeded(&store, KEY, Some("en"), 1, 100).await;
    put_seeded(&store, KEY, Some("fr"), 2, 200).await;
    put_seeded(&store, KEY, None, 3, 0).await;
    put_seeded(&store, "https://example.com/other", Some("en"), 4, 10).await;

    let seen = read_verified(&store, KEY).await;
    let mut seeds: Vec<u64> = seen.iter().map(|(_, s)| *s).collect();
    seeds.sort();
    assert_eq!(seeds, [1, 2, 3], "expected three variants");

    // Same variant again: replaces the old one, keeps the others.
    put_seeded(&store, KEY, Some("fr"), 5, 300).await;
    let mut seeds: Vec<u64> = read_verified(&store, KEY)
        .await
        .iter()
        .map(|(_, s)| *s)
        .collect();
    seeds.sort();
    assert_eq!(
        seeds,
        [1, 3, 5],
        "commit must replace only the same variant"
    );

    assert!(get(&store, "https://example.com/missing").await.is_empty());
    assert_eq!(
        read_verified(&store, "https://example.com/other")
            .await
            .len(),
        1
    );
}

/// Everything in a [`StoredResponse`] comes back as stored, including repeated and non-UTF-8
/// header lines in order.
pub async fn metadata_round_trips<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    let mut response = seeded_response(Some("de"), 7, 3);
    response.method = Method::HEAD;
    response.status = StatusCode::NON_AUTHORITATIVE_INFORMATION;
    response.uri = Uri::from_static("https://example.com/conformance?a=1&b=%FF");
    for i in 0..20 {
        response.headers.append("set-cookie", HeaderValue::from(i));
    }
    let odd = HeaderValue::from_bytes(b"caf\xe9 \x80\xff").expect("obs-text is a valid value");
    response.headers.append("x-latin1", odd);
    response
        .vary_request_headers
        .append("accept-language", HeaderValue::from_static("en;q=0.5"));
    let body = seeded_body(7, 3);
    put(&store, KEY, response.clone(), &body, 1, HOUR).await;

    let entries = get(&store, KEY).await;
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    let lines = |map: &HeaderMap| -> Vec<(String, Vec<u8>)> {
        map.iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    };
    assert_eq!(lines(&entry.response.headers), lines(&response.headers));
    assert_eq!(
        lines(&entry.response.vary_request_headers),
        lines(&response.vary_request_headers)
    );
    assert_eq!(*entry.response.response(), response);
    assert_eq!(entry.variant, VariantId::of(&response));
    assert_eq!(read_body(body_of(entry)).await.expect("body"), body);
}

/// A multi-MiB body written in many uneven chunks reads back intact.
pub async fn streams_large_body<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    let len = 5 * 1024 * 1024 + 123;
    let body = seeded_body(42, len);
    let mut writer = store
        .begin(KEY, seeded_response(None, 42, len).into(), options(HOUR))
        .await
        .expect("begin");
    let mut at = 0;
    let mut step = 1;
    while at < len {
        let end = (at + step).min(len);
        writer.write(body.slice(at..end)).expect("write");
        at = end;
        step = (step * 7 + 13) % 200_000 + 1;
    }
    writer.commit().await.expect("commit");

    let entries = get(&store, KEY).await;
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    let stored = body_of(entry);
    assert_eq!(stored.size_hint().exact(), Some(len as u64));
    let read = read_body(stored).await.expect("body");
    assert_eq!(read.len(), len);
    assert!(read == body, "large body differs");
}

/// A writer that waits for [`EntryWriter::poll_ready`](crate::EntryWriter::poll_ready) before
/// each write is never refused for being ahead of its backend, however large one write is:
/// hyper hands the cache's tee frames as large as its read buffer, which grows past 800 KiB
/// under load (a 1 GiB body was once refused by SQLite that way).
pub async fn large_writes_after_readiness<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    let write = 4 << 20;
    let len = 3 * write;
    let body = seeded_body(7, len);
    let mut writer = store
        .begin(KEY, seeded_response(None, 7, len).into(), options(HOUR))
        .await
        .expect("begin");
    for at in (0..len).step_by(write) {
        std::future::poll_fn(|cx| writer.poll_ready(cx))
            .await
            .expect("ready");
        writer
            .write(body.slice(at..at + write))
            .expect("a write after readiness is not refused");
    }
    writer.commit().await.expect("commit");

    let entries = get(&store, KEY).await;
    assert_eq!(entries.len(), 1);
    let read = read_body(body_of(&entries[0])).await.expect("body");
    assert!(read == body, "body differs");
}

/// A variant is invisible while its body is being written; until then readers see the previous
/// version.
pub async fn invisible_until_commit<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    let mut writer = store
        .begin(KEY, seeded_response(None, 1, 10).into(), options(HOUR))
        .await
        .expect("begin");
    writer.write(seeded_body(1, 10).slice(..5)).expect("write");
    assert!(get(&store, KEY).await.is_empty(), "visible before commit");
    writer.write(seeded_body(1, 10).slice(5..)).expect("write");
    assert!(get(&store, KEY).await.is_empty(), "visible before commit");
    writer.commit().await.expect("commit");
    assert_eq!(read_verified(&store, KEY).await.len(), 1);

    // Replacing: the old version stays visible until the new one commits.
    let mut writer = store
        .begin(KEY, seeded_response(None, 2, 20).into(), options(HOUR))
        .await
        .expect("begin");
    writer.write(seeded_body(2, 20)).expect("write");
    let seen = read_verified(&store, KEY).await;
    assert_eq!(seen.iter().map(|s| s.1).collect::<Vec<_>>(), [1]);
    writer.commit().await.expect("commit");
    let seen = read_verified(&store, KEY).await;
    assert_eq!(seen.iter().map(|s| s.1).collect::<Vec<_>>(), [2]);
}

/// A writer dropped before commit leaves nothing, and does not disturb the version already
/// stored.
pub async fn aborted_write_leaves_nothing<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    let mut writer = store
        .begin(KEY, seeded_response(None, 1, 100_000).into(), options(HOUR))
        .await
        .expect("begin");
    writer
        .write(seeded_body(1, 100_000).slice(..50_000))
        .expect("write");
    drop(writer);
    assert!(get(&store, KEY).await.is_empty(), "aborted write visible");

    put_seeded(&store, KEY, None, 2, 1000).await;
    let mut writer = store
        .begin(KEY, seeded_response(None, 3, 1000).into(), options(HOUR))
        .await
        .expect("begin");
    writer.write(seeded_body(3, 1000)).expect("write");
    drop(writer);
    // Give a background writer time to clean up, then check again.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let seen = read_verified(&store, KEY).await;
    assert_eq!(seen.iter().map(|s| s.1).collect::<Vec<_>>(), [2]);
}

/// A header-only update (after a 304) replaces the metadata and keeps the body; updating a
/// missing variant creates nothing.
pub async fn update_keeps_body<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    // A body large enough to be streamed by backends that stream.
    let len = 700 * 1024 + 3;
    let body = put_seeded(&store, KEY, Some("en"), 9, len).await;
    put_seeded(&store, KEY, Some("fr"), 10, 10).await;
    let en = VariantId::of(&seeded_response(Some("en"), 9, len));

    let mut updated = seeded_response(Some("en"), 9, len);
    updated
        .headers
        .append("etag", HeaderValue::from_static("\"v2\""));
    updated.response_time += Duration::from_secs(100);
    store
        .update(KEY, &en, updated.clone().into(), HOUR)
        .await
        .expect("update");

    let entries = get(&store, KEY).await;
    assert_eq!(entries.len(), 2, "update must keep the other variants");
    let mut found = false;
    for entry in &entries {
        if entry.variant == en {
            found = true;
            assert_eq!(*entry.response.response(), updated, "metadata not updated");
            assert_eq!(read_body(body_of(entry)).await.expect("body"), body);
        } else {
            assert_eq!(header_u64(&entry.response, "x-seed"), 10);
        }
    }
    assert!(found, "updated variant missing");

    let missing = VariantId::of(&seeded_response(Some("it"), 0, 0));
    store
        .update(
            KEY,
            &missing,
            seeded_response(Some("it"), 0, 0).into(),
            HOUR,
        )
        .await
        .expect("update of a missing variant is not an error");
    store
        .update(
            "https://example.com/none",
            &missing,
            seeded_response(None, 0, 0).into(),
            HOUR,
        )
        .await
        .expect("update of a missing key is not an error");
    assert_eq!(get(&store, KEY).await.len(), 2);
    assert!(get(&store, "https://example.com/none").await.is_empty());
}

/// An update computed for a version that has since been replaced (another `ETag`), or whose
/// `Content-Length` does not match the stored body, is ignored: it would pair one response's
/// header lines with another's body.
pub async fn update_ignores_a_replaced_representation<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    let tagged = |seed: u64, len: usize, etag: &'static str| {
        let mut response = seeded_response(None, seed, len);
        response
            .headers
            .append("etag", HeaderValue::from_static(etag));
        response
    };
    put(
        &store,
        KEY,
        tagged(1, 100, "\"one\""),
        &seeded_body(1, 100),
        50,
        HOUR,
    )
    .await;
    let variant = VariantId::of(&tagged(1, 100, "\"one\""));
    // Replaced by a new representation before the 304 for the first one arrives.
    put(
        &store,
        KEY,
        tagged(2, 200, "\"two\""),
        &seeded_body(2, 200),
        50,
        HOUR,
    )
    .await;
    let mut stale = tagged(1, 100, "\"one\"");
    stale.response_time += Duration::from_secs(60);
    store
        .update(KEY, &variant, stale.into(), HOUR)
        .await
        .expect("update");
    let seen = read_verified(&store, KEY).await;
    assert_eq!(
        seen.iter().map(|s| s.1).collect::<Vec<_>>(),
        [2],
        "mixed entry"
    );

    // A Content-Length that does not match the stored body.
    let mut wrong_length = tagged(2, 200, "\"two\"");
    wrong_length
        .headers
        .insert("content-length", HeaderValue::from_static("999"));
    store
        .update(KEY, &variant, wrong_length.into(), HOUR)
        .await
        .expect("update");
    let entries = get(&store, KEY).await;
    assert_eq!(entries.len(), 1);
    assert!(entries[0].response.headers.get("content-length").is_none());

    // The matching update applies.
    let mut fresh = tagged(2, 200, "\"two\"");
    fresh
        .headers
        .insert("content-length", HeaderValue::from_static("200"));
    store
        .update(KEY, &variant, fresh.clone().into(), HOUR)
        .await
        .expect("update");
    let entries = get(&store, KEY).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(*entries[0].response.response(), fresh);
    assert_eq!(read_verified(&store, KEY).await.len(), 1);
}

/// Removing one variant keeps the others; removing a key removes all its variants; clear
/// removes everything.
pub async fn remove_and_clear<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    let other = "https://example.com/other";
    put_seeded(&store, KEY, Some("en"), 1, 10).await;
    put_seeded(&store, KEY, Some("fr"), 2, 10).await;
    put_seeded(&store, KEY, Some("de"), 3, 10).await;
    put_seeded(&store, other, None, 4, 10).await;

    let fr = VariantId::of(&seeded_response(Some("fr"), 0, 0));
    store.remove(KEY, Some(&fr)).await.expect("remove variant");
    let seeds: Vec<u64> = read_verified(&store, KEY)
        .await
        .iter()
        .map(|s| s.1)
        .collect();
    let mut seeds = seeds;
    seeds.sort();
    assert_eq!(seeds, [1, 3]);

    store.remove(KEY, None).await.expect("remove key");
    assert!(get(&store, KEY).await.is_empty());
    assert_eq!(
        get(&store, other).await.len(),
        1,
        "remove touched another key"
    );
    store
        .remove(KEY, None)
        .await
        .expect("removing a missing key is fine");

    put_seeded(&store, KEY, None, 5, 10).await;
    store.clear().await.expect("clear");
    assert!(get(&store, KEY).await.is_empty());
    assert!(get(&store, other).await.is_empty());
    // The store still works after clear.
    put_seeded(&store, KEY, None, 6, 10).await;
    assert_eq!(read_verified(&store, KEY).await.len(), 1);
}

/// A variant is not returned after its TTL; one with a longer TTL stays; an update resets the
/// TTL.
pub async fn ttl_expiry<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    let short = Duration::from_millis(800);
    let body = seeded_body(1, 10);
    put(
        &store,
        KEY,
        seeded_response(Some("en"), 1, 10),
        &body,
        4,
        short,
    )
    .await;
    put(
        &store,
        KEY,
        seeded_response(Some("fr"), 2, 10),
        &seeded_body(2, 10),
        4,
        HOUR,
    )
    .await;
    put(
        &store,
        KEY,
        seeded_response(Some("de"), 3, 10),
        &seeded_body(3, 10),
        4,
        short,
    )
    .await;
    assert_eq!(get(&store, KEY).await.len(), 3);
    // Extend "de" to an hour.
    let de = VariantId::of(&seeded_response(Some("de"), 3, 10));
    store
        .update(KEY, &de, seeded_response(Some("de"), 3, 10).into(), HOUR)
        .await
        .expect("update");

    tokio::time::sleep(short + Duration::from_millis(400)).await;
    harness.settle(&store);
    let seeds: Vec<u64> = read_verified(&store, KEY)
        .await
        .iter()
        .map(|s| s.1)
        .collect();
    let mut seeds = seeds;
    seeds.sort();
    assert_eq!(
        seeds,
        [2, 3],
        "expired variant returned, or a live one lost"
    );
}

/// When the total size bound is reached, least recently used entries are evicted; the store
/// keeps working and never exceeds its bound by more than one entry.
pub async fn size_bound_eviction<H: Harness>(harness: &H) {
    let limits = Limits {
        max_body_size: 256 * 1024,
        max_total_bytes: 1024 * 1024,
    };
    let store = harness.new_store(limits);
    let len = 100 * 1024;
    let key = |i: usize| format!("https://example.com/evict/{i}");
    put_seeded(&store, &key(0), None, 0, len).await;
    for i in 1..30 {
        put_seeded(&store, &key(i), None, i as u64, len).await;
        harness.settle(&store);
        // Keep key 0 recently used.
        assert_eq!(
            read_verified(&store, &key(0)).await.len(),
            1,
            "the most recently read entry was evicted after write {i}"
        );
        harness.settle(&store);
    }

    let mut present = Vec::new();
    for i in 0..30 {
        if !read_verified(&store, &key(i)).await.is_empty() {
            present.push(i);
        }
    }
    let stored_bytes = present.len() as u64 * len as u64;
    assert!(
        stored_bytes <= limits.max_total_bytes,
        "{} entries of {len} bytes kept, over the bound of {}",
        present.len(),
        limits.max_total_bytes
    );
    assert!(present.len() >= 3, "eviction removed too much: {present:?}");
    assert!(present.contains(&29), "the newest entry was evicted");
    assert!(present.contains(&0), "the recently read entry was evicted");
    assert!(
        !present.contains(&1),
        "the least recently used entry was kept"
    );
}

/// Bodies over the size limit are refused with [`StoreError::TooLarge`] and never stored;
/// a body exactly at the limit is stored.
pub async fn body_size_limit<H: Harness>(harness: &H) {
    let limit = 64 * 1024;
    let store = harness.new_store(Limits {
        max_body_size: limit,
        max_total_bytes: 64 << 20,
    });
    let n = limit as usize;

    // Announced too large: refused at begin, or at the first write past the limit.
    let announced = WriteOptions {
        ttl: HOUR,
        content_length: Some(limit + 1),
    };
    match store
        .begin(KEY, seeded_response(None, 1, n + 1).into(), announced)
        .await
    {
        Err(StoreError::TooLarge { .. }) => {}
        Err(other) => panic!("unexpected error {other:?}"),
        Ok(mut writer) => {
            let result = writer.write(seeded_body(1, n + 1));
            assert!(
                matches!(result, Err(StoreError::TooLarge { .. })),
                "{result:?}"
            );
            assert!(writer.commit().await.is_err());
        }
    }
    assert!(get(&store, KEY).await.is_empty());

    // Unannounced: the write that crosses the limit fails, and so does the commit.
    let mut writer = store
        .begin(KEY, seeded_response(None, 2, n + 1).into(), options(HOUR))
        .await
        .expect("begin");
    let body = seeded_body(2, n + 1);
    writer.write(body.slice(..n / 2)).expect("first half fits");
    let result = writer.write(body.slice(n / 2..));
    assert!(
        matches!(result, Err(StoreError::TooLarge { .. })),
        "{result:?}"
    );
    assert!(writer.commit().await.is_err(), "commit after TooLarge");
    assert!(get(&store, KEY).await.is_empty());

    // Exactly the limit is fine.
    put_seeded(&store, KEY, None, 3, n).await;
    assert_eq!(read_verified(&store, KEY).await.len(), 1);
}

/// A body obtained from [`Store::get`] keeps yielding its own version's bytes (or an error)
/// after the variant is replaced or removed.
pub async fn body_survives_replace<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    let len = 300 * 1024;
    let old = put_seeded(&store, KEY, None, 1, len).await;
    let entries = get(&store, KEY).await;
    assert_eq!(entries.len(), 1);
    put_seeded(&store, KEY, None, 2, len).await;
    store.remove(KEY, None).await.expect("remove");
    for entry in &entries {
        if let Ok(body) = read_body(body_of(entry)).await {
            assert!(body == old, "an old handle yielded another version's bytes");
        }
    }
}

/// Many writers committing variants of one key while readers read them. Each of six writers
/// owns one variant and replaces it round after round; two more writers replace one shared
/// variant. Every entry read is whole and consistent with its own metadata; in the end every
/// writer's last commit is there (no commit to one variant loses a concurrent commit to
/// another) and nothing else.
pub async fn concurrent_writers_and_readers<H: Harness>(harness: &H) {
    const OWNERS: u64 = 6;
    const ROUNDS: u64 = 8;
    let store = Arc::new(harness.new_store(Limits::default()));
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for _ in 0..2 {
        let (store, done, reads) = (store.clone(), done.clone(), reads.clone());
        readers.push(tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let seen = read_verified(&*store, KEY).await;
                let most = OWNERS as usize + 1;
                assert!(
                    seen.len() <= most,
                    "more variants than written: {}",
                    seen.len()
                );
                reads.fetch_add(seen.len(), Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        }));
    }
    // All writers commit each round at the same moment, to make races likely.
    let barrier = Arc::new(tokio::sync::Barrier::new(OWNERS as usize + 2));
    let mut writers = Vec::new();
    for w in 0..OWNERS + 2 {
        let (store, barrier) = (store.clone(), barrier.clone());
        writers.push(tokio::spawn(async move {
            let language = if w < OWNERS {
                format!("owner-{w}")
            } else {
                "shared".to_owned()
            };
            for round in 0..ROUNDS {
                let seed = w * 1000 + round;
                let len = 1000 + (seed as usize * 7919) % 60_000;
                let body = seeded_body(seed, len);
                let response = seeded_response(Some(&language), seed, len);
                let mut writer = store
                    .begin(KEY, response.into(), options(HOUR))
                    .await
                    .expect("begin");
                for piece in body.chunks(7000) {
                    writer.write(body.slice_ref(piece)).expect("write");
                    tokio::task::yield_now().await;
                }
                barrier.wait().await;
                writer.commit().await.expect("commit");
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer task panicked");
    }
    done.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.expect("reader task panicked");
    }
    let mut seeds: Vec<u64> = read_verified(&*store, KEY)
        .await
        .into_iter()
        .map(|(_, seed)| seed)
        .collect();
    seeds.sort();
    let last = ROUNDS - 1;
    let shared = seeds.pop().unwrap_or_default();
    assert!(
        shared == OWNERS * 1000 + last || shared == (OWNERS + 1) * 1000 + last,
        "the shared variant is not one of its writers' last commits: {shared}"
    );
    let owners: Vec<u64> = (0..OWNERS).map(|w| w * 1000 + last).collect();
    assert_eq!(seeds, owners, "a commit was lost, or an older version won");
}

/// Several OS threads committing their own variant of one key as fast as they can for a
/// moment: afterwards, every thread's last commit is there. Catches read-modify-write races
/// between commits to different variants of one key (which task-based tests rarely hit).
pub async fn parallel_commits_keep_every_variant<H: Harness>(harness: &H) {
    const THREADS: u64 = 4;
    let store = Arc::new(harness.new_store(Limits::default()));
    let handle = tokio::runtime::Handle::current();
    let stop = std::time::Instant::now() + Duration::from_millis(300);
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, handle) = (store.clone(), handle.clone());
            std::thread::spawn(move || {
                let language = format!("thread-{t}");
                let mut round = 0;
                loop {
                    let seed = t * 1_000_000 + round;
                    handle.block_on(put_seeded(&*store, KEY, Some(&language), seed, 64));
                    round += 1;
                    if std::time::Instant::now() >= stop {
                        return seed;
                    }
                }
            })
        })
        .collect();
    let mut lasts = tokio::task::spawn_blocking(move || {
        threads
            .into_iter()
            .map(|t| t.join().expect("committing thread panicked"))
            .collect::<Vec<u64>>()
    })
    .await
    .expect("join");
    lasts.sort();
    let seeds: Vec<u64> = read_verified(&*store, KEY)
        .await
        .into_iter()
        .map(|(_, seed)| seed)
        .collect::<Vec<_>>();
    let mut seeds = seeds;
    seeds.sort();
    assert_eq!(seeds, lasts, "a commit was lost, or an older version won");
}

/// A pseudo-random sequence of commits, updates, removals and clears over a few keys and
/// variants, checked after every step against a model (a map of what must be stored).
pub async fn matches_a_model<H: Harness>(harness: &H) {
    use std::collections::BTreeMap;

    let store = harness.new_store(Limits::default());
    let keys = [
        "https://example.com/m/0",
        "https://example.com/m/1",
        "https://example.com/m/2",
    ];
    let languages = ["en", "fr", "de"];
    // (key, language) -> (seed, update marker)
    let mut model: BTreeMap<(usize, usize), (u64, Option<u64>)> = BTreeMap::new();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    for step in 0..150u64 {
        let (k, l) = (next(3) as usize, next(3) as usize);
        let (key, language) = (keys[k], languages[l]);
        let variant = VariantId::of(&seeded_response(Some(language), 0, 0));
        match next(20) {
            0..=8 => {
                let len = next(5000) as usize;
                put_seeded(&store, key, Some(language), step, len).await;
                model.insert((k, l), (step, None));
            }
            9..=12 => {
                if let Some((seed, marker)) = model.get_mut(&(k, l)) {
                    let len = seeded_len(&store, key, &variant).await;
                    let mut response = seeded_response(Some(language), *seed, len);
                    response
                        .headers
                        .insert("x-updated", HeaderValue::from(step));
                    store
                        .update(key, &variant, response.into(), HOUR)
                        .await
                        .expect("update");
                    *marker = Some(step);
                } else {
                    let response = seeded_response(Some(language), step, 1);
                    store
                        .update(key, &variant, response.into(), HOUR)
                        .await
                        .expect("update of a missing variant");
                }
            }
            13..=15 => {
                store.remove(key, Some(&variant)).await.expect("remove");
                model.remove(&(k, l));
            }
            16..=17 => {
                store.remove(key, None).await.expect("remove key");
                model.retain(|(mk, _), _| *mk != k);
            }
            18 if next(4) == 0 => {
                store.clear().await.expect("clear");
                model.clear();
            }
            _ => {}
        }
        harness.settle(&store);
        for (k, key) in keys.iter().enumerate() {
            let mut found: Vec<(u64, Option<u64>)> = Vec::new();
            for entry in &get(&store, key).await {
                let marker = entry
                    .response
                    .headers
                    .get("x-updated")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                let seed = header_u64(&entry.response, "x-seed");
                let len = header_u64(&entry.response, "x-len") as usize;
                let body = read_body(body_of(entry)).await.expect("body");
                assert!(body == seeded_body(seed, len), "step {step}: body mismatch");
                found.push((seed, marker));
            }
            found.sort();
            let mut expected: Vec<(u64, Option<u64>)> = model
                .iter()
                .filter(|((mk, _), _)| *mk == k)
                .map(|(_, v)| *v)
                .collect();
            expected.sort();
            assert_eq!(found, expected, "step {step}: {key} differs from the model");
        }
    }
}

/// The body length of the stored variant, from its `x-len` header.
async fn seeded_len<S: Store + ?Sized>(store: &S, key: &str, variant: &VariantId) -> usize {
    get(store, key)
        .await
        .into_iter()
        .find(|e| e.variant == *variant)
        .map(|e| header_u64(&e.response, "x-len") as usize)
        .expect("variant in the model is missing from the store")
}

/// An entry whose stored bytes are damaged is a miss (or, for a body damaged after the header
/// was read, a body error), never wrong data. Skipped when [`Harness::corrupt`] returns
/// `false`.
pub async fn corrupt_entry_is_a_miss<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    put_seeded(&store, KEY, Some("en"), 1, 2000).await;
    put_seeded(&store, KEY, Some("fr"), 2, 2000).await;
    let other = "https://example.com/other";
    put_seeded(&store, other, None, 3, 2000).await;
    if !harness.corrupt(&store, KEY) {
        return;
    }
    for entry in &get(&store, KEY).await {
        let seed = header_u64(&entry.response, "x-seed");
        let len = header_u64(&entry.response, "x-len") as usize;
        if let Ok(body) = read_body(body_of(entry)).await {
            let verdict = if body == seeded_body(seed, len) {
                "intact"
            } else {
                "wrong"
            };
            panic!("a damaged entry was returned and read without error ({verdict} bytes)");
        }
    }
    assert_eq!(
        read_verified(&store, other).await.len(),
        1,
        "other key damaged"
    );
    // The key can be stored again.
    put_seeded(&store, KEY, None, 4, 10).await;
    assert_eq!(read_verified(&store, KEY).await.len(), 1);
}
