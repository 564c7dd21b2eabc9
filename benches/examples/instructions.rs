//! Runs one layer workload `N` times, for counting its instructions with callgrind, which the
//! machine's noise does not move (criterion's wall-clock figures move by ±30 % on a shared VM):
//!
//! ```text
//! cargo build --release -p cache-benches --example instructions
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/instructions ours-hit 10000
//! ```
//!
//! Run it twice, with two counts (1 000 and 11 000, say): the difference of the totals over
//! 10 000 is the cost of one iteration, without the setup. `scripts/instructions.sh` does
//! that for every workload. Workloads, as in `benches/layer.rs`: `limit-hit` (a `HashMap`
//! lookup and a fresh response), `ours-hit` (a 1 KiB hit through `CacheLayer` over a
//! `MemoryStore`), `ours-hit-1mib` (the same with a 1 MiB body), `baseline-miss` (the origin called directly with a new URL each time),
//! `ours-miss` (a miss through the layer, stored, with evictions in a 1 MiB store).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bytes::Bytes;
use cache_benches::{exchange, hit_request, miss_request, origin, origin_headers, ReqBody};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::Layer;
use tower_http_cache::{CacheLayer, MemoryStore};

const BODY: usize = 1024;

fn main() {
    let mut args = std::env::args().skip(1);
    let workload = args.next().unwrap_or_default();
    let count: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let counter = AtomicU64::new(0);
    rt.block_on(async {
        match workload.as_str() {
            "limit-hit" => {
                let mut map = HashMap::new();
                let uri = hit_request().uri().clone();
                let stored = (
                    StatusCode::OK,
                    origin_headers(BODY),
                    Bytes::from(vec![b'x'; BODY]),
                );
                map.insert(uri, stored);
                let map = Arc::new(map);
                let mut limit = tower::service_fn(move |request: Request<ReqBody>| {
                    let (status, headers, body) = map.get(request.uri()).expect("stored");
                    let mut response = Response::new(Full::new(body.clone()));
                    *response.status_mut() = *status;
                    *response.headers_mut() = headers.clone();
                    std::future::ready(Ok::<_, std::convert::Infallible>(response))
                });
                for _ in 0..count {
                    exchange(&mut limit, hit_request()).await;
                }
            }
            "ours-hit" | "ours-hit-1mib" => {
                let size = if workload == "ours-hit" { BODY } else { 1 << 20 };
                let store = MemoryStore::builder().max_capacity_bytes(64 << 20).build();
                let mut service = CacheLayer::new(store).layer(origin(size));
                exchange(&mut service, hit_request()).await;
                for _ in 0..count {
                    exchange(&mut service, hit_request()).await;
                }
            }
            "baseline-miss" => {
                let mut service = origin(BODY);
                for _ in 0..count {
                    exchange(&mut service, miss_request(&counter)).await;
                }
            }
            "ours-miss" => {
                let store = MemoryStore::builder().max_capacity_bytes(1 << 20).build();
                let mut service = CacheLayer::new(store).layer(origin(BODY));
                for _ in 0..count {
                    exchange(&mut service, miss_request(&counter)).await;
                }
            }
            other => {
                eprintln!(
                    "unknown workload {other:?}: limit-hit, ours-hit, ours-hit-1mib, baseline-miss, ours-miss"
                );
                std::process::exit(2);
            }
        }
    });
}
