//! The allocations of a hit and a miss through the layer over a memory store, counted: the
//! guard of the hot path's allocation-saving code (the key built in a per-thread buffer, the
//! `Age` digits from a static table, the hit answered without a boxed future, the miss's
//! entry begun and committed without one). One allocation more on a hit is about 100-200
//! instructions of its 8 200 (`scripts/instructions.sh`); this test fails on it.
//!
//! A counting global allocator, per thread, on a current-thread runtime.

// A GlobalAlloc is an unsafe trait; this test file is the only place in the crate that needs one.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use tower::{Layer, Service, ServiceExt};
use tower_http_cache::{CacheLayer, CacheOutcome, CacheStatus, MemoryStore};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: delegates to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

/// A 1 KiB response, fresh for an hour.
async fn origin(_: Request<Empty<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::builder()
        .header("cache-control", "max-age=3600")
        .header("content-type", "application/javascript")
        .body(Full::new(Bytes::from_static(&[b'x'; 1024])))
        .expect("response"))
}

fn request(uri: &str) -> Request<Empty<Bytes>> {
    Request::get(uri)
        .header("accept", "*/*")
        .body(Empty::new())
        .expect("request")
}

/// Sends `uri` and collects the body; returns the outcome and the allocations it took,
/// counted from before the request is built to after its body is dropped.
async fn exchange<S>(service: &mut S, uri: &str) -> (CacheOutcome, usize)
where
    S: Service<
        Request<Empty<Bytes>>,
        Response = Response<tower_http_cache::CacheBody<Full<Bytes>>>,
    >,
    S::Error: std::fmt::Debug,
{
    let before = allocations();
    let response = service
        .ready()
        .await
        .expect("ready")
        .call(request(uri))
        .await
        .expect("response");
    let outcome = response
        .extensions()
        .get::<CacheStatus>()
        .expect("status")
        .outcome;
    let body = response.into_body().collect().await.expect("body");
    assert_eq!(body.to_bytes().len(), 1024);
    (outcome, allocations() - before)
}

/// What the request, the response and the collected body cost without a cache, so that the
/// counts below are the cache's own.
async fn uncached() -> usize {
    let mut service = tower::service_fn(origin);
    let before = allocations();
    let response = service
        .ready()
        .await
        .expect("ready")
        .call(request("http://example.com/app.js"))
        .await
        .expect("response");
    drop(response.into_body().collect().await.expect("body"));
    allocations() - before
}

#[tokio::test(flavor = "current_thread")]
async fn a_memory_hit_and_miss_allocate_no_more_than_counted() {
    let store = MemoryStore::builder().max_capacity_bytes(1 << 20).build();
    let mut service = CacheLayer::new(store).layer(tower::service_fn(origin));
    let base = uncached().await;

    let (outcome, _) = exchange(&mut service, "http://example.com/app.js").await;
    assert_eq!(outcome, CacheOutcome::Miss);
    let (outcome, hit) = exchange(&mut service, "http://example.com/app.js").await;
    assert_eq!(outcome, CacheOutcome::Hit);
    // Warm: a second miss on another key, so that lazy one-time allocations are done.
    exchange(&mut service, "http://example.com/other.js").await;
    let (outcome, miss) = exchange(&mut service, "http://example.com/third.js").await;
    assert_eq!(outcome, CacheOutcome::Miss);

    println!("uncached {base}, hit {hit}, miss {miss} allocations");
    // The cache's own allocations on a hit: the key (one, built in a per-thread buffer), the
    // stored headers cloned into the response head, the `CacheStatus` in the extensions.
    assert!(
        hit <= base + HIT,
        "a hit allocated {hit} times, uncached {base}"
    );
    assert!(
        miss <= base + MISS,
        "a miss allocated {miss} times, uncached {base}"
    );
}

/// The allocations a hit adds to the uncached exchange's, as counted on 2026-12-02: the key,
/// the stored headers cloned into the head, the `CacheStatus` in the extensions (three, in
/// `http::Extensions`). Lower it when the hit gets cheaper; never raise it without a reason
/// in the commit.
const HIT: usize = 5;
/// The allocations a miss adds, as counted on 2026-12-02 after the `StoreResponse` was no
/// longer boxed and a generated `Date` was formatted into its value's bytes: the key, the
/// trip and its future, the request head kept while at the origin, the entry built for the
/// store and its headers (with a `Date`: this origin sends none), the tee and its writer, the
/// store's list entry, the status.
const MISS: usize = 20;
