//! End-to-end behaviour of the cache layer over hyper-util's legacy client and a real loopback
//! origin, counting what reached the origin. Each test names the RFC section it checks.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use bytes::Bytes;
use cache_workspace::answer::Answer;
use cache_workspace::clock::ManualClock;
use cache_workspace::origin::{self, full, LegacyClient, Origin, Recorded};
use http::{Request, Response};
use http_body_util::Full;
use tower::ServiceExt;
use tower_http_cache::{default_key, CacheLayer, CacheService, MemoryStore, Store};

mod bodies;
mod coalescing;
mod invalidation;
mod modes;
mod reuse;
mod stale;
mod validation;

struct Harness {
    origin: Origin,
    clock: ManualClock,
    store: Arc<MemoryStore>,
    service: CacheService<LegacyClient>,
}

/// An origin answering with `respond(request, clock)`, behind the layer with a memory store
/// and a manual clock.
async fn harness<F>(respond: F, configure: impl FnOnce(CacheLayer) -> CacheLayer) -> Harness
where
    F: Fn(&Recorded, &ManualClock) -> Response<origin::OriginBody> + Send + Sync + 'static,
{
    let clock = ManualClock::new();
    let origin_clock = clock.clone();
    let respond = Arc::new(respond);
    let origin = Origin::start(move |request| {
        let mut response = respond(&request, &origin_clock);
        if !response.headers().contains_key("date") {
            let date = origin_clock.http_date().parse().expect("date");
            response.headers_mut().insert("date", date);
        }
        async move { response }
    })
    .await;
    let store = Arc::new(MemoryStore::builder().max_capacity_bytes(64 << 20).build());
    let layer = configure(
        CacheLayer::with_shared_store(store.clone())
            .clock(clock.clone())
            .cache_status_header(true),
    );
    let service = tower::ServiceBuilder::new()
        .layer(layer)
        .service(origin::client());
    Harness {
        origin,
        clock,
        store,
        service,
    }
}

impl Harness {
    fn request(&self, method: &str, path: &str) -> http::request::Builder {
        Request::builder().method(method).uri(self.origin.url(path))
    }

    async fn send(&self, request: http::request::Builder) -> Answer {
        self.send_request(request.body(Full::default()).expect("request"))
            .await
    }

    async fn send_request(&self, request: Request<Full<Bytes>>) -> Answer {
        let response = self.service.clone().oneshot(request).await;
        Answer::read(response.expect("the origin answers")).await
    }

    /// How many variants the store holds for `path` on the origin.
    async fn stored(&self, path: &str) -> usize {
        let key = default_key(&self.origin.url(path).parse().expect("uri"));
        self.store.get(&key).await.expect("memory store").len()
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(self.request("GET", path)).await
    }
}

fn ok(cache_control: &str, body: &'static str) -> Response<origin::OriginBody> {
    Response::builder()
        .header("cache-control", cache_control)
        .body(full(body))
        .expect("response")
}

/// A counter of origin responses, so bodies differ from one origin answer to the next.
fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}
