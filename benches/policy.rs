//! The lookup decision of `cache-policy` side by side with `http-cache-semantics` 3 on the same
//! request and response (private caches for both): a fresh hit, and a stale response that needs
//! revalidation. Inputs are built outside the timed loop; each iteration makes the decision and
//! drops it (both libraries clone the stored headers to serve).
//!
//! Both libraries read a stored response parsed once: http-cache-semantics' `CachePolicy` is
//! built from the response, ours is a `ParsedResponse` (what the memory store keeps). The
//! `unparsed` function reads a plain `StoredResponse`, parsing its header values on each
//! lookup (what a store that deserializes entries pays).
//!
//! Run: `cargo bench -p cache-benches --bench policy -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use cache_policy::{
    CachePolicy, Lookup, ParsedResponse, PolicyOptions, ResponseAction, StoredResponse,
};
use criterion::{criterion_main, Criterion};
use http::{Request, Response};

const T0: u64 = 1_700_000_000;

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + seconds)
}

/// A browser-like request.
fn request() -> Request<()> {
    Request::get("https://example.com/assets/app.js?v=3")
        .header("host", "example.com")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        )
        .header("accept", "*/*")
        .header("accept-language", "en-US,en;q=0.5")
        .header("accept-encoding", "gzip, deflate, br, zstd")
        .header("referer", "https://example.com/")
        .header("connection", "keep-alive")
        .body(())
        .unwrap()
}

/// A typical static-asset response: max-age, validators, Vary.
fn response() -> Response<()> {
    Response::builder()
        .header("date", httpdate::fmt_http_date(at(0)))
        .header("content-type", "application/javascript; charset=utf-8")
        .header("content-length", "48213")
        .header("content-encoding", "br")
        .header("cache-control", "public, max-age=60")
        .header("etag", "\"5f3a-6b2c9e1d\"")
        .header(
            "last-modified",
            httpdate::fmt_http_date(at(0) - Duration::from_secs(86_400)),
        )
        .header("vary", "Accept-Encoding")
        .header("server", "nginx")
        .header("x-request-id", "7f6d1c2a-5b8e-4e1f-9a3b-2c4d6e8f0a1b")
        .body(())
        .unwrap()
}

fn ours() -> (CachePolicy, Vec<ParsedResponse>) {
    let policy = CachePolicy::new(PolicyOptions::default().shared(false));
    let none: &[StoredResponse] = &[];
    let ResponseAction::Store { entry, .. } = policy
        .after_response(&request(), &response(), at(0), at(0), none)
        .action
    else {
        panic!("the response is storable")
    };
    (policy, vec![std::sync::Arc::unwrap_or_clone(entry)])
}

fn theirs() -> http_cache_semantics::CachePolicy {
    let options = http_cache_semantics::CacheOptions {
        shared: false,
        ..Default::default()
    };
    http_cache_semantics::CachePolicy::new_options(&request(), &response(), at(0), options)
}

fn lookup(c: &mut Criterion) {
    let request = request();
    let (policy, stored) = ours();
    let unparsed: Vec<StoredResponse> = stored.iter().map(|s| s.response().clone()).collect();
    let reference = theirs();
    let fresh = at(10);
    let stale = at(120);

    // Same answers before timing anything.
    assert!(matches!(
        policy.lookup(&request, &stored, fresh),
        Lookup::Fresh(_)
    ));
    assert!(matches!(
        policy.lookup(&request, &stored, stale),
        Lookup::Revalidate(_)
    ));
    assert!(reference
        .before_request(&request, fresh)
        .satisfies_without_revalidation());
    assert!(!reference
        .before_request(&request, stale)
        .satisfies_without_revalidation());

    let mut group = c.benchmark_group("fresh hit");
    // The decision alone: what a caller that owns the stored response pays (it then moves the
    // stored headers into the response it sends).
    group.bench_function("cache-policy", |b| {
        b.iter(|| policy.lookup(black_box(&request), black_box(&stored), black_box(fresh)))
    });
    // The decision plus a copy of the headers to send, the same work `before_request` does.
    group.bench_function("cache-policy, unparsed", |b| {
        b.iter(|| policy.lookup(black_box(&request), black_box(&unparsed), black_box(fresh)))
    });
    group.bench_function("cache-policy + cloned head", |b| {
        b.iter(
            || match policy.lookup(black_box(&request), black_box(&stored), black_box(fresh)) {
                Lookup::Fresh(serve) => Some(serve.response_head(&stored[serve.index])),
                _ => None,
            },
        )
    });
    group.bench_function("http-cache-semantics", |b| {
        b.iter(|| reference.before_request(black_box(&request), black_box(fresh)))
    });
    // The floor of any fresh hit that hands the caller its own headers: clone them, set Age.
    group.bench_function("floor: clone headers + Age", |b| {
        b.iter(|| {
            let mut headers = black_box(&stored[0].headers).clone();
            headers.insert(http::header::AGE, http::HeaderValue::from(10u64));
            headers
        })
    });
    group.finish();

    let mut group = c.benchmark_group("stale, revalidate");
    group.bench_function("cache-policy", |b| {
        b.iter(|| policy.lookup(black_box(&request), black_box(&stored), black_box(stale)))
    });
    group.bench_function("http-cache-semantics", |b| {
        b.iter(|| reference.before_request(black_box(&request), black_box(stale)))
    });
    group.finish();
}

mod group {
    // `criterion_group!` generates an undocumented public function.
    #![allow(missing_docs)]
    criterion::criterion_group!(benches, super::lookup);
}

criterion_main!(group::benches);
