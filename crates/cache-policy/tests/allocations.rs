//! The fresh-hit path allocates nothing beyond the headers the caller must own (issue 2): a
//! lookup that serves a fresh response costs at most what cloning the stored headers and
//! setting `Age` costs.
//!
//! A counting global allocator, per thread so the test harness's threads do not interfere.

// A GlobalAlloc is an unsafe trait; this test file is the only place that needs one.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, SystemTime};

use cache_policy::{CachePolicy, Lookup, ResponseAction, StoredResponse};
use http::{HeaderValue, Request, Response};

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

fn allocations<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = ALLOCATIONS.with(Cell::get);
    let value = f();
    (ALLOCATIONS.with(Cell::get) - before, value)
}

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
}

fn stored(policy: &CachePolicy, request: &Request<()>) -> Vec<StoredResponse> {
    let response = Response::builder()
        .header("date", httpdate::fmt_http_date(at(0)))
        .header("content-type", "text/html")
        .header("content-length", "1234")
        .header(
            "cache-control",
            "public, max-age=60, stale-while-revalidate=30",
        )
        .header("cdn-cache-control", "max-age=600")
        .header("etag", "\"abc\"")
        .header(
            "last-modified",
            httpdate::fmt_http_date(at(0) - Duration::from_secs(1000)),
        )
        .header("vary", "accept-encoding, accept-language")
        .header("set-cookie", "a=1")
        .header("set-cookie", "b=2")
        .body(())
        .unwrap();
    let none: &[StoredResponse] = &[];
    let ResponseAction::Store { entry, .. } = policy
        .after_response(request, &response, at(0), at(0), none)
        .action
    else {
        panic!("storable")
    };
    let entry = std::sync::Arc::unwrap_or_clone(entry).into_response();
    // A second variant, so that Vary selection runs over more than one candidate.
    let mut other = entry.clone();
    other
        .vary_request_headers
        .insert("accept-language", HeaderValue::from_static("fr"));
    vec![other, entry]
}

#[test]
fn issue_2_fresh_hit_decision_allocates_nothing_and_the_head_only_the_headers() {
    for policy in [
        CachePolicy::default(),
        CachePolicy::new(
            cache_policy::PolicyOptions::default()
                .shared(true)
                .cdn_cache_control(true),
        ),
    ] {
        let request = Request::get("https://example.com/")
            .header("accept-encoding", "gzip, br")
            .header("accept-language", "en")
            .header("cache-control", "max-stale=10, min-fresh=1")
            .body(())
            .unwrap();
        let stored = stored(&policy, &request);
        // Warm up anything lazily initialised.
        let _ = policy.lookup(&request, &stored, at(10));

        let (used, lookup) = allocations(|| policy.lookup(&request, &stored, at(10)));
        let Lookup::Fresh(serve) = lookup else {
            panic!("{lookup:?}")
        };
        assert_eq!(serve.index, 1);
        assert_eq!(used, 0, "the fresh-hit decision allocates nothing");
        let parsed: Vec<cache_policy::ParsedResponse> = stored
            .iter()
            .cloned()
            .map(cache_policy::ParsedResponse::new)
            .collect();
        let (used, lookup) = allocations(|| policy.lookup(&request, &parsed, at(10)));
        assert!(matches!(lookup, Lookup::Fresh(_)), "{lookup:?}");
        assert_eq!(used, 0, "nor does it from parsed responses");

        // Building the head to send costs at most what cloning the headers costs (Age has a
        // slot in the stored headers, so setting it does not grow them), and nothing when the
        // caller owns the stored response.
        let (baseline, headers) = allocations(|| {
            let mut headers = stored[1].headers.clone();
            headers.insert(http::header::AGE, HeaderValue::from(10u64));
            headers
        });
        drop(headers);
        let (cloning, head) = allocations(|| serve.response_head(&stored[1]));
        assert_eq!(head.headers["age"], "10");
        assert!(
            cloning <= baseline,
            "{cloning} allocations; a clone makes {baseline}"
        );
        let owned = stored[1].clone();
        let (moving, head) = allocations(|| serve.into_response_head(owned));
        assert_eq!(head.headers["age"], "10");
        // The Age digits come from a static table: moving allocates nothing at all.
        assert_eq!(moving, 0, "moving the stored headers allocates nothing");
    }
}
