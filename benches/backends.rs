//! The persistent and shared backends through the whole layer, next to the raw client read of
//! the same bytes and to http-cache-tower with http-cache's redb manager on the same workload.
//!
//! Same workload as `layer`: every iteration sends a request through the service and collects
//! the whole body; the origin is the in-process `tower::service_fn` of [`cache_benches::origin`]
//! (`max-age=3600`, a 1 KiB or 1 MiB body), so the figures measure the cache and its backend.
//! Every store runs with its default settings, in a temporary directory where it has files.
//!
//! - `fs/*`, `sqlite/*` (feature `sqlite`), `redis/*` (feature `redis` and `REDIS_URL`):
//!   `CacheLayer` over that store. `hit_1KiB`, `hit_1MiB`: a hit on one URL; `miss_1KiB`: a
//!   new URL every iteration (a true miss, stored).
//! - `sqlite/raw_*`: rusqlite's `SELECT` of a blob of that size by primary key, with a prepared
//!   statement, on the benchmark's thread: the least a SQLite hit can cost.
//! - `redis/raw_*`: redis-rs `GET` of a string of that size through a `ConnectionManager`.
//! - `s3/*` (feature `s3` and the `S3_*` variables of `scripts/s3.sh start DIR`): hits only
//!   (`hit_1KiB`, `hit_1MiB`); `s3/raw_*`: object_store's `get` of an object of that size,
//!   bytes collected, through the same client the store uses ([`S3Store::object_store`]).
//!
//! [`S3Store::object_store`]: tower_http_cache::store::S3Store::object_store
//! - `redb/*`: http-cache-tower's `HttpCacheLayer` with http-cache's `RedbManager` (a redb file),
//!   default options.
//! - `baseline/miss_1KiB`: the origin alone, with the same unique URLs, to subtract.
//!
//! Run: `cargo bench -p cache-benches --features sqlite,redis,s3 --bench backends` (with
//! `REDIS_URL` from `scripts/redis.sh start DIR` for the Redis group, the `S3_*` variables
//! from `scripts/s3.sh start DIR` for the S3 group).

use std::fmt::Debug;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use cache_benches::{
    bench_sequential, exchange_head, hit_request, miss_request, new_group, origin, ReqBody, SIZES,
};
use criterion::{criterion_main, BenchmarkGroup, Criterion};
use http::{HeaderValue, Request, Response};
use http_body::Body;
use tokio::runtime::Runtime;
use tower::{Layer, Service};
use tower_http_cache::{CacheLayer, CacheOutcome, CacheStatus, Store};

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// Asserts that `service` answers `make_request()` from the origin (stored) and then, for
/// the same request, from the store, before anything is timed.
fn check_stores_and_hits<S, B>(rt: &Runtime, service: &mut S, request: fn() -> Request<ReqBody>)
where
    S: Service<Request<ReqBody>, Response = Response<B>>,
    S::Error: Debug,
    B: Body,
    B::Error: Debug,
{
    rt.block_on(async {
        let (parts, _) = exchange_head(service, request()).await;
        let status = parts.extensions.get::<CacheStatus>().expect("status");
        assert!(status.stored, "first response stored: {status:?}");
        let (parts, _) = exchange_head(service, request()).await;
        let status = parts.extensions.get::<CacheStatus>().expect("status");
        assert_eq!(status.outcome, CacheOutcome::Hit, "{status:?}");
    });
}

/// `hit_1KiB`, `hit_1MiB` and `miss_1KiB` of `CacheLayer` over the store `make_store` opens.
fn bench_ours(
    group: &mut Group<'_>,
    rt: &Runtime,
    misses: &AtomicU64,
    make_store: &dyn Fn() -> Arc<dyn Store>,
) {
    for (size, label) in SIZES {
        let mut service = CacheLayer::with_shared_store(make_store()).layer(origin(size));
        check_stores_and_hits(rt, &mut service, hit_request);
        bench_sequential(
            group,
            rt,
            &format!("hit_{label}"),
            &mut service,
            hit_request,
        );
    }
    let mut service = CacheLayer::with_shared_store(make_store()).layer(origin(1024));
    rt.block_on(async {
        let (parts, _) = exchange_head(&mut service, miss_request(misses)).await;
        let status = parts.extensions.get::<CacheStatus>().expect("status");
        assert_eq!(status.outcome, CacheOutcome::Miss, "{status:?}");
        assert!(status.stored, "miss stored: {status:?}");
    });
    bench_sequential(group, rt, "miss_1KiB", &mut service, || {
        miss_request(misses)
    });
}

/// Times `read` (returning the bytes read), one call after another, as `name`.
fn bench_raw(group: &mut Group<'_>, name: &str, size: usize, mut read: impl FnMut() -> usize) {
    assert_eq!(read(), size, "{name}: the raw read reads the body");
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(read());
            }
            start.elapsed()
        })
    });
}

fn fs(c: &mut Criterion, rt: &Runtime, misses: &AtomicU64) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut group = new_group(c, "fs");
    let n = AtomicU64::new(0);
    bench_ours(&mut group, rt, misses, &|| {
        let path = dir
            .path()
            .join(format!("{}", n.fetch_add(1, Ordering::Relaxed)));
        Arc::new(
            tower_http_cache::FsStore::builder(path)
                .build()
                .expect("fs store"),
        )
    });
    group.finish();
}

#[cfg(feature = "sqlite")]
fn sqlite(c: &mut Criterion, rt: &Runtime, misses: &AtomicU64) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut group = new_group(c, "sqlite");
    let n = AtomicU64::new(0);
    bench_ours(&mut group, rt, misses, &|| {
        let path = dir
            .path()
            .join(format!("{}.db", n.fetch_add(1, Ordering::Relaxed)));
        Arc::new(
            tower_http_cache::store::SqliteStore::builder(path)
                .build()
                .expect("sqlite store"),
        )
    });

    let conn = rusqlite::Connection::open(dir.path().join("raw.db")).expect("raw database");
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB);",
    )
    .expect("schema");
    for (size, label) in SIZES {
        conn.execute(
            "INSERT INTO blobs (id, data) VALUES (?1, ?2)",
            (size as i64, vec![b'x'; size]),
        )
        .expect("insert");
        let mut select = conn
            .prepare("SELECT data FROM blobs WHERE id = ?1")
            .expect("prepare");
        bench_raw(&mut group, &format!("raw_{label}"), size, || {
            let data: Vec<u8> = select
                .query_row([size as i64], |row| row.get(0))
                .expect("select");
            data.len()
        });
    }
    group.finish();
}

#[cfg(feature = "redis")]
fn redis(c: &mut Criterion, rt: &Runtime, misses: &AtomicU64) {
    let Ok(url) = std::env::var("REDIS_URL") else {
        println!("redis: skipped, REDIS_URL is not set (scripts/redis.sh start DIR sets it)");
        return;
    };
    let prefix = format!("bench-{}:", std::process::id());
    let mut group = new_group(c, "redis");
    let opened: std::sync::Mutex<Vec<Arc<dyn Store>>> = Default::default();
    bench_ours(&mut group, rt, misses, &|| {
        let mut opened = opened.lock().expect("lock");
        // A prefix per store: each is a cache of its own, as a directory is for `fs`.
        let prefix = format!("{prefix}{}:", opened.len());
        let store: Arc<dyn Store> = Arc::new(
            rt.block_on(
                tower_http_cache::store::RedisStore::builder(url.clone())
                    .prefix(prefix)
                    .build(),
            )
            .expect("redis store"),
        );
        opened.push(store.clone());
        store
    });

    let client = redis::Client::open(url.as_str()).expect("redis url");
    let mut conn = rt
        .block_on(redis::aio::ConnectionManager::new(client))
        .expect("connect");
    for (size, label) in SIZES {
        let key = format!("{prefix}raw-{size}");
        rt.block_on(
            redis::cmd("SET")
                .arg(&key)
                .arg(vec![b'x'; size])
                .query_async::<()>(&mut conn),
        )
        .expect("set");
        bench_raw(&mut group, &format!("raw_{label}"), size, || {
            let data: Vec<u8> = rt
                .block_on(redis::cmd("GET").arg(&key).query_async(&mut conn))
                .expect("get");
            data.len()
        });
        let _: Result<(), _> = rt.block_on(redis::cmd("DEL").arg(&key).query_async(&mut conn));
    }
    group.finish();
    for store in opened.lock().expect("lock").iter() {
        let _ = rt.block_on(store.clear());
    }
}

#[cfg(feature = "s3")]
fn s3(c: &mut Criterion, rt: &Runtime) {
    use object_store::ObjectStoreExt;
    use tower_http_cache::store::S3Store;

    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let Some(endpoint) = var("S3_ENDPOINT") else {
        println!("s3: skipped, S3_ENDPOINT is not set (scripts/s3.sh start DIR sets it)");
        return;
    };
    let encode = |value: &str| -> String {
        value
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let url = |prefix: &str| {
        format!(
            "s3://{}/{prefix}?endpoint={}&region={}&access_key_id={}&secret_access_key={}",
            var("S3_BUCKET").unwrap_or_else(|| "http-cache-tests".into()),
            encode(&endpoint),
            var("S3_REGION").unwrap_or_else(|| "us-east-1".into()),
            encode(&var("S3_ACCESS_KEY_ID").unwrap_or_default()),
            encode(&var("S3_SECRET_ACCESS_KEY").unwrap_or_default()),
        )
    };
    let run = format!("bench-{}", std::process::id());
    let mut group = new_group(c, "s3");
    let mut opened = Vec::new();
    for (size, label) in SIZES {
        let store = rt
            .block_on(S3Store::open(&url(&format!("{run}/{label}"))))
            .expect("s3 store");
        let store = Arc::new(store);
        opened.push(store.clone());
        let mut service = CacheLayer::with_shared_store(store.clone()).layer(origin(size));
        check_stores_and_hits(rt, &mut service, hit_request);
        bench_sequential(
            &mut group,
            rt,
            &format!("hit_{label}"),
            &mut service,
            hit_request,
        );

        let objects = store.object_store();
        let path = object_store::path::Path::from(format!("{run}/raw/{label}"));
        rt.block_on(objects.put(&path, bytes::Bytes::from(vec![b'x'; size]).into()))
            .expect("put");
        bench_raw(&mut group, &format!("raw_{label}"), size, || {
            rt.block_on(async {
                let got = objects.get(&path).await.expect("get");
                got.bytes().await.expect("bytes").len()
            })
        });
        let _ = rt.block_on(objects.delete(&path));
    }
    group.finish();
    for store in opened {
        let _ = rt.block_on(store.clear());
    }
}

/// http-cache-tower's `HttpCacheLayer` over http-cache's `RedbManager`.
fn redb(c: &mut Criterion, rt: &Runtime, misses: &AtomicU64) {
    use http_cache::RedbManager;
    use http_cache_tower::HttpCacheLayer;

    let dir = tempfile::tempdir().expect("temporary directory");
    let mut group = new_group(c, "redb");
    let x_cache = |parts: &http::response::Parts| parts.headers.get("x-cache").cloned();
    for (size, label) in SIZES {
        let manager = RedbManager::new(dir.path().join(format!("{label}.redb"))).expect("redb");
        let mut service = HttpCacheLayer::new(manager).layer(origin(size));
        rt.block_on(async {
            exchange_head(&mut service, hit_request()).await;
            let (parts, len) = exchange_head(&mut service, hit_request()).await;
            assert_eq!(len, size);
            assert_eq!(x_cache(&parts), Some(HeaderValue::from_static("HIT")));
        });
        bench_sequential(
            &mut group,
            rt,
            &format!("hit_{label}"),
            &mut service,
            hit_request,
        );
    }
    let manager = RedbManager::new(dir.path().join("miss.redb")).expect("redb");
    let mut service = HttpCacheLayer::new(manager).layer(origin(1024));
    rt.block_on(async {
        let (parts, _) = exchange_head(&mut service, miss_request(misses)).await;
        assert_eq!(x_cache(&parts), Some(HeaderValue::from_static("MISS")));
    });
    bench_sequential(&mut group, rt, "miss_1KiB", &mut service, || {
        miss_request(misses)
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let misses = AtomicU64::new(0);
    {
        let mut group = new_group(c, "baseline");
        let mut service = origin(1024);
        bench_sequential(&mut group, &rt, "miss_1KiB", &mut service, || {
            miss_request(&misses)
        });
        group.finish();
    }
    fs(c, &rt, &misses);
    #[cfg(feature = "sqlite")]
    sqlite(c, &rt, &misses);
    #[cfg(feature = "redis")]
    redis(c, &rt, &misses);
    #[cfg(feature = "s3")]
    s3(c, &rt);
    redb(c, &rt, &misses);
}

mod group {
    // `criterion_group!` generates an undocumented public function.
    #![allow(missing_docs)]
    criterion::criterion_group!(backends, super::benches);
}
criterion_main!(group::backends);
