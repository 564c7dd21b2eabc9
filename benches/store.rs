//! Store hit and write costs, next to baselines measured in the same run.
//!
//! - `baseline/bytes`: a `HashMap<String, Bytes>` lookup and a `Bytes` clone: the least a hit
//!   can do.
//! - `baseline/meta+bytes`: the same plus a clone of the stored metadata (`StoredResponse`),
//!   which every [`Store::get`] returns by value.
//! - `memory/hit`, `fs/hit`: `Store::get` and reading the whole body, frame by frame.
//! - `memory/hit_now`: the same read through `Store::get_now`, which a memory store answers
//!   without a future, and the body polled without a future either: the path the cache layer
//!   takes.
//! - `memory/write`, `fs/write`: `begin`, one `write`, `commit` (replacing the same variant).
//!
//! - `fs-inline/*`: the filesystem store with `inline_reads(true)`.
//!
//! Baselines and the memory store (whose futures are ready at once) are polled directly with a
//! no-op waker; the filesystem store runs in a current-thread tokio runtime's `block_on`, as its
//! disk work goes to tokio's blocking pool.

use std::collections::HashMap;
use std::future::poll_fn;
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cache_store::{FsStore, MemoryStore, Store, StoredBody, StoredResponse, WriteOptions};
use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use http_body::Body;

const SIZES: [(usize, &str); 2] = [(1024, "1KiB"), (1024 * 1024, "1MiB")];
const KEY: &str = "https://example.com/assets/app.js?v=3";

fn response() -> StoredResponse {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("content-type", "application/javascript"),
        ("cache-control", "public, max-age=3600"),
        ("date", "Tue, 14 Nov 2023 22:13:20 GMT"),
        ("etag", "\"5f2b-1a2b3c\""),
        ("last-modified", "Mon, 13 Nov 2023 10:00:00 GMT"),
        ("vary", "accept-encoding"),
        ("server", "origin"),
    ] {
        headers.append(name, HeaderValue::from_static(value));
    }
    let mut vary = HeaderMap::new();
    vary.append("accept-encoding", HeaderValue::from_static("gzip, br"));
    StoredResponse {
        method: Method::GET,
        uri: Uri::from_static(KEY),
        status: StatusCode::OK,
        headers,
        vary_request_headers: vary,
        request_time: now,
        response_time: now,
    }
}

const OPTIONS: WriteOptions = WriteOptions {
    ttl: Duration::from_secs(3600),
    content_length: None,
};

/// Polls a future that is ready at once (the baselines' and the memory store's).
fn ready<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("future was not ready"),
    }
}

async fn body_len(mut body: StoredBody) -> usize {
    let mut len = 0;
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(data) = frame.expect("body frame").into_data() {
            len += data.len();
        }
    }
    len
}

async fn hit<S: Store>(store: &S) -> usize {
    let mut total = 0;
    for entry in &store.get(KEY).await.expect("get") {
        total += body_len(entry.body().expect("read once")).await;
    }
    total
}

/// A hit read with [`Store::get_now`], as the cache layer reads a memory store: no future, and
/// the body's frames polled as they are (ready at once for a body held in memory).
fn hit_now<S: Store>(store: &S) -> usize {
    let mut cx = Context::from_waker(Waker::noop());
    let mut total = 0;
    let entries = store
        .get_now(KEY)
        .expect("answers at once")
        .expect("get_now");
    for entry in &entries {
        let mut body = entry.body().expect("read once");
        while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
            if let Ok(data) = frame.expect("body frame").into_data() {
                total += data.len();
            }
        }
    }
    total
}

async fn put<S: Store>(store: &S, body: &Bytes) {
    let mut writer = store
        .begin(KEY, response().into(), OPTIONS)
        .await
        .expect("begin");
    writer.write(body.clone()).expect("write");
    writer.commit().await.expect("commit");
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");

    let mut group = c.benchmark_group("store");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    for (size, label) in SIZES {
        let body = Bytes::from(vec![b'x'; size]);
        group.throughput(Throughput::Bytes(size as u64));

        let mut map = HashMap::new();
        map.insert(KEY.to_owned(), (response(), body.clone()));
        for i in 0..1000 {
            map.insert(
                format!("https://example.com/{i}"),
                (response(), body.clone()),
            );
        }
        group.bench_function(BenchmarkId::new("baseline/bytes", label), |b| {
            b.iter(|| {
                ready(async {
                    let (_, bytes) = map.get(black_box(KEY)).expect("present");
                    black_box(bytes.clone()).len()
                })
            })
        });
        group.bench_function(BenchmarkId::new("baseline/meta+bytes", label), |b| {
            b.iter(|| {
                ready(async {
                    let (meta, bytes) = map.get(black_box(KEY)).expect("present");
                    let meta = black_box(meta.clone());
                    black_box(bytes.clone()).len() + meta.headers.len()
                })
            })
        });

        let memory = MemoryStore::builder()
            .max_capacity_bytes(256 << 20)
            .max_body_size(8 << 20)
            .build();
        let fs = FsStore::builder(dir.path().join(label))
            .max_size_bytes(1 << 30)
            .build()
            .expect("fs store");
        let fs_inline = FsStore::builder(dir.path().join(label))
            .max_size_bytes(1 << 30)
            .inline_reads(true)
            .build()
            .expect("fs store");
        rt.block_on(async {
            put(&memory, &body).await;
            put(&fs, &body).await;
            assert_eq!(hit(&memory).await, size);
            assert_eq!(hit(&fs).await, size);
            assert_eq!(hit(&fs_inline).await, size);
        });

        group.bench_function(BenchmarkId::new("memory/hit", label), |b| {
            b.iter(|| ready(hit(&memory)))
        });
        group.bench_function(BenchmarkId::new("memory/hit_now", label), |b| {
            b.iter(|| hit_now(&memory))
        });
        group.bench_function(BenchmarkId::new("fs/hit", label), |b| {
            b.iter(|| rt.block_on(hit(&fs)))
        });
        group.bench_function(BenchmarkId::new("fs-inline/hit", label), |b| {
            b.iter(|| rt.block_on(hit(&fs_inline)))
        });
        group.bench_function(BenchmarkId::new("memory/write", label), |b| {
            b.iter(|| ready(put(&memory, &body)))
        });
        group.bench_function(BenchmarkId::new("fs/write", label), |b| {
            b.iter(|| rt.block_on(put(&fs, &body)))
        });
    }
    group.finish();
}

mod group {
    // `criterion_group!` generates an undocumented public function.
    #![allow(missing_docs)]
    criterion::criterion_group!(store, super::benches);
}
criterion_main!(group::store);
