//! The layer end to end, next to references measured in the same run on the same workload.
//!
//! Every iteration builds a request, calls the service (`ready().await?.call(request)`) and
//! collects the whole response body. The origin is an in-process `tower::service_fn` answering
//! `Cache-Control: max-age=3600` with a prebuilt body of 1 KiB or 1 MiB (a `Bytes` clone), so
//! the figures measure the cache, not sockets.
//!
//! - `baseline/*`: the origin called directly, uncached.
//! - `limit/*`: the least a cache hit can do: a `HashMap<Uri, (StatusCode, HeaderMap, Bytes)>`
//!   lookup, a fresh `http::Response` with cloned headers and a `Full<Bytes>` body.
//! - `ours/*`: `CacheLayer` over a `MemoryStore`, default options.
//! - `http_cache_tower/*`: http-cache-tower's `HttpCacheLayer` with http-cache's `MokaManager`,
//!   default options.
//!
//! Functions in each group:
//!
//! - `1KiB`, `1MiB`: a hit (for baseline, a plain call) on one URL.
//! - `miss_1KiB`: a new URL every iteration (`?n=<counter>`), so every request is a true miss
//!   that goes to the origin and stores the response. The store is small (1 MiB for ours, the
//!   manager's default 42 entries for http-cache-tower), so eviction runs as it would in a
//!   steady state. `baseline/miss_1KiB` builds the same unique URLs, so that `ours/miss_1KiB`
//!   minus it is the miss overhead.
//! - `64_tasks_1KiB`: 64 tasks spawned on a multi-thread runtime, each doing one 1 KiB hit;
//!   the time is for the whole batch (spawn to last join).
//!
//! The single-request functions run in a current-thread tokio runtime, one `block_on` around
//! the whole timed loop (as criterion's `to_async` does).

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::ready;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use cache_benches::{
    bench_sequential, exchange, exchange_head, hit_request, miss_request, new_group, origin,
    origin_headers, Reply, ReqBody, SIZES, URL,
};
use criterion::{criterion_main, BenchmarkGroup, Criterion};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tokio::runtime::Runtime;
use tower::util::ServiceFn;
use tower::{Layer, Service, ServiceExt};
use tower_http_cache::{CacheLayer, CacheOutcome, CacheStatus, MemoryStore};

const TASKS: usize = 64;

type Stored = (StatusCode, HeaderMap, Bytes);

/// The "limit" service: a `HashMap` lookup and a fresh response, nothing else.
fn limit(
    map: Arc<HashMap<Uri, Stored>>,
) -> ServiceFn<impl FnMut(Request<ReqBody>) -> Reply + Clone + Send + 'static> {
    tower::service_fn(move |request: Request<ReqBody>| {
        let (status, headers, body) = map.get(request.uri()).expect("stored");
        let mut response = Response::new(Full::new(body.clone()));
        *response.status_mut() = *status;
        *response.headers_mut() = headers.clone();
        ready(Ok(response))
    })
}

/// 64 concurrent hits on a multi-thread runtime, timed as one batch.
fn bench_tasks<S, B>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    service: &S,
) where
    S: Service<Request<ReqBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Debug + Send,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Debug,
{
    group.bench_function("64_tasks_1KiB", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let tasks: Vec<_> = (0..TASKS)
                        .map(|_| {
                            let mut service = service.clone();
                            tokio::spawn(async move { exchange(&mut service, hit_request()).await })
                        })
                        .collect();
                    let mut total = 0;
                    for task in tasks {
                        total += task.await.expect("task");
                    }
                    assert_eq!(total, TASKS * 1024);
                }
                start.elapsed()
            })
        })
    });
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("multi-thread runtime");
    let misses = AtomicU64::new(0);

    // Baseline: the origin itself.
    {
        let mut group = new_group(c, "baseline");
        for (size, label) in SIZES {
            let mut service = origin(size);
            assert_eq!(rt.block_on(exchange(&mut service, hit_request())), size);
            bench_sequential(&mut group, &rt, label, &mut service, hit_request);
        }
        let mut service = origin(1024);
        bench_sequential(&mut group, &rt, "miss_1KiB", &mut service, || {
            miss_request(&misses)
        });
        group.finish();
    }

    // Limit: a HashMap lookup and a fresh response.
    {
        let mut group = new_group(c, "limit");
        for (size, label) in SIZES {
            let mut map = HashMap::new();
            let (parts, body) = rt
                .block_on(origin(size).oneshot(hit_request()))
                .expect("origin")
                .into_parts();
            map.insert(
                Uri::from_static(URL),
                (
                    parts.status,
                    parts.headers,
                    rt.block_on(body.collect()).expect("body").to_bytes(),
                ),
            );
            // Some other entries, so the lookup is not in a one-element map.
            for i in 0..1000 {
                let uri = Uri::try_from(format!("http://example.com/other/{i}")).expect("uri");
                map.insert(uri, (StatusCode::OK, origin_headers(size), Bytes::new()));
            }
            let mut service = limit(Arc::new(map));
            assert_eq!(rt.block_on(exchange(&mut service, hit_request())), size);
            bench_sequential(&mut group, &rt, label, &mut service, hit_request);
            if size == 1024 {
                bench_tasks(&mut group, &mt, &service);
            }
        }
        group.finish();
    }

    // Ours: CacheLayer over a MemoryStore.
    {
        let mut group = new_group(c, "ours");
        for (size, label) in SIZES {
            let store = MemoryStore::builder()
                .max_capacity_bytes(256 << 20)
                .max_body_size(8 << 20)
                .build();
            let mut service = CacheLayer::new(store).layer(origin(size));
            rt.block_on(async {
                let (parts, len) = exchange_head(&mut service, hit_request()).await;
                assert_eq!(len, size);
                let status = parts.extensions.get::<CacheStatus>().expect("status");
                assert!(status.stored, "first response stored: {status:?}");
                let (parts, len) = exchange_head(&mut service, hit_request()).await;
                assert_eq!(len, size);
                let status = parts.extensions.get::<CacheStatus>().expect("status");
                assert_eq!(status.outcome, CacheOutcome::Hit, "{status:?}");
            });
            bench_sequential(&mut group, &rt, label, &mut service, hit_request);
            if size == 1024 {
                bench_tasks(&mut group, &mt, &service);
            }
        }
        // A small store, so that the unique URLs make it evict.
        let store = MemoryStore::builder().max_capacity_bytes(1 << 20).build();
        let mut service = CacheLayer::new(store.clone()).layer(origin(1024));
        rt.block_on(async {
            for _ in 0..2 {
                let (parts, len) = exchange_head(&mut service, miss_request(&misses)).await;
                assert_eq!(len, 1024);
                let status = parts.extensions.get::<CacheStatus>().expect("status");
                assert_eq!(status.outcome, CacheOutcome::Miss, "{status:?}");
                assert!(status.stored, "miss stored: {status:?}");
            }
        });
        bench_sequential(&mut group, &rt, "miss_1KiB", &mut service, || {
            miss_request(&misses)
        });
        store.run_pending_tasks();
        assert!(store.weighted_size() <= 1 << 20, "{store:?}");
        group.finish();
    }

    // http-cache-tower: HttpCacheLayer with http-cache's MokaManager.
    {
        use http_cache::MokaManager;
        use http_cache_tower::HttpCacheLayer;

        let mut group = new_group(c, "http_cache_tower");
        for (size, label) in SIZES {
            let mut service = HttpCacheLayer::new(MokaManager::default()).layer(origin(size));
            rt.block_on(async {
                let (_, len) = exchange_head(&mut service, hit_request()).await;
                assert_eq!(len, size);
                let (parts, len) = exchange_head(&mut service, hit_request()).await;
                assert_eq!(len, size);
                assert_eq!(
                    parts.headers.get("x-cache").map(HeaderValue::as_bytes),
                    Some(&b"HIT"[..]),
                    "{parts:?}"
                );
            });
            bench_sequential(&mut group, &rt, label, &mut service, hit_request);
            if size == 1024 {
                bench_tasks(&mut group, &mt, &service);
            }
        }
        let mut service = HttpCacheLayer::new(MokaManager::default()).layer(origin(1024));
        rt.block_on(async {
            let (parts, len) = exchange_head(&mut service, miss_request(&misses)).await;
            assert_eq!(len, 1024);
            assert_eq!(
                parts.headers.get("x-cache").map(HeaderValue::as_bytes),
                Some(&b"MISS"[..]),
                "{parts:?}"
            );
        });
        bench_sequential(&mut group, &rt, "miss_1KiB", &mut service, || {
            miss_request(&misses)
        });
        group.finish();
    }
}

mod group {
    // `criterion_group!` generates an undocumented public function.
    #![allow(missing_docs)]
    criterion::criterion_group!(layer, super::benches);
}
criterion_main!(group::layer);
