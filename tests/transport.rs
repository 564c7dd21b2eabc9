//! The layer over other transports and stores: a non-`Clone` inner service behind a
//! concurrency limit, a store that is down, a store whose commits wait, and the filesystem
//! store.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use cache_workspace::answer::Answer;
use cache_workspace::origin::{self, full, Origin};
use http::{Request, Response};
use http_body_util::Full;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_http_cache::store::{
    BoxFuture, Entries, EntryWriter, ParsedResponse, StoreError, VariantId, WriteOptions,
};
use tower_http_cache::{CacheLayer, CacheOutcome, FsStore, Store};

/// A service that is deliberately not `Clone`, counting its calls.
struct Counting {
    calls: Arc<AtomicUsize>,
}

impl Service<Request<Full<Bytes>>> for Counting {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<Full<Bytes>>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(Response::builder()
                .header("cache-control", "max-age=60")
                .body(Full::new(Bytes::from_static(b"counted")))
                .expect("response"))
        })
    }
}

/// Sends GET requests for `paths` at once, each in its own task, through the cache over a
/// [`Counting`] service behind `concurrency_limit(limit)`, and returns the bodies and the
/// number of origin calls.
///
/// `ConcurrencyLimit` panics if `call` comes without a reserved permit, so this also checks
/// that every origin call is preceded by the inner service's own `poll_ready`.
async fn through_a_concurrency_limit(limit: usize, paths: Vec<String>) -> (Vec<Bytes>, usize) {
    let calls = Arc::new(AtomicUsize::new(0));
    let service = ServiceBuilder::new()
        .layer(CacheLayer::new(tower_http_cache::MemoryStore::default()).coalesce(None))
        .concurrency_limit(limit)
        .service(Counting {
            calls: calls.clone(),
        });
    let tasks: Vec<_> = paths
        .into_iter()
        .map(|path| {
            let service = service.clone();
            tokio::spawn(async move {
                let request = Request::get(format!("http://example.test{path}"))
                    .body(Full::default())
                    .expect("request");
                let response = service.oneshot(request).await.expect("infallible");
                Answer::read(response).await.body
            })
        })
        .collect();
    let mut bodies = Vec::new();
    for task in tasks {
        bodies.push(task.await.expect("task"));
    }
    (bodies, calls.load(Ordering::SeqCst))
}

#[tokio::test]
async fn a_non_clone_inner_service_behind_a_concurrency_limit_keeps_its_readiness_contract() {
    let paths = (0..8).map(|i| format!("/{}", i % 4)).collect();
    let (bodies, calls) = through_a_concurrency_limit(1, paths).await;
    assert!(bodies.iter().all(|body| body == "counted"));
    assert!(calls >= 4);
}

/// An inner service whose readiness is a permit, as tower's `ConcurrencyLimit` hands out: it is
/// granted while the gate is open, kept until a call uses it, and `call` without it is a
/// contract breach.
struct Gate {
    state: Arc<GateState>,
    reserved: bool,
}

#[derive(Default)]
struct GateState {
    open: std::sync::atomic::AtomicBool,
    failing: std::sync::atomic::AtomicBool,
    grants: AtomicUsize,
    calls: AtomicUsize,
    waker: std::sync::Mutex<Option<std::task::Waker>>,
}

#[derive(Debug, PartialEq)]
struct GateClosedForGood;

impl Service<Request<Full<Bytes>>> for Gate {
    type Response = Response<Full<Bytes>>;
    type Error = GateClosedForGood;
    type Future = std::future::Ready<Result<Self::Response, GateClosedForGood>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GateClosedForGood>> {
        if self.state.failing.load(Ordering::SeqCst) {
            return Poll::Ready(Err(GateClosedForGood));
        }
        if !self.reserved {
            if !self.state.open.load(Ordering::SeqCst) {
                *self.state.waker.lock().expect("waker") = Some(cx.waker().clone());
                return Poll::Pending;
            }
            self.reserved = true;
            self.state.grants.fetch_add(1, Ordering::SeqCst);
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<Full<Bytes>>) -> Self::Future {
        assert!(self.reserved, "call without a reserved permit");
        self.reserved = false;
        self.state.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Response::builder()
            .header("cache-control", "max-age=60")
            .body(Full::new(Bytes::from_static(b"through the gate")))
            .expect("response")))
    }
}

fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(std::task::Waker::noop()))
}

fn gate_request(path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("http://example.test{path}"))
        .body(Full::default())
        .expect("request")
}

/// tower's readiness contract: `poll_ready` forwards the inner service's backpressure and
/// errors, and the readiness it reserves is the one the next origin call uses; a hit leaves it
/// in place instead of wasting it.
#[tokio::test]
async fn poll_ready_forwards_the_inner_readiness_and_a_hit_keeps_the_reservation() {
    let state = Arc::new(GateState::default());
    let mut service = CacheLayer::new(tower_http_cache::MemoryStore::default()).layer(Gate {
        state: state.clone(),
        reserved: false,
    });
    let mut ready = std::future::poll_fn(|cx| service.poll_ready(cx));
    assert!(
        poll_once(&mut ready).is_pending(),
        "the origin is not ready"
    );
    state.open.store(true, Ordering::SeqCst);
    if let Some(waker) = state.waker.lock().expect("waker").take() {
        waker.wake();
    }
    assert_eq!(poll_once(&mut ready), Poll::Ready(Ok(())));
    assert_eq!(state.grants.load(Ordering::SeqCst), 1);

    // A miss: the origin call uses the permit reserved above.
    let answer = Answer::read(service.call(gate_request("/a")).await.expect("miss")).await;
    assert_eq!(answer.cache.outcome, CacheOutcome::Miss);
    assert_eq!(state.calls.load(Ordering::SeqCst), 1);

    // Ready again (a new permit), then a hit: the permit is kept, not used.
    service.ready().await.expect("ready");
    assert_eq!(state.grants.load(Ordering::SeqCst), 2);
    let answer = Answer::read(service.call(gate_request("/a")).await.expect("hit")).await;
    assert_eq!(answer.cache.outcome, CacheOutcome::Hit);
    assert_eq!(state.calls.load(Ordering::SeqCst), 1);

    // The next miss goes out on that same permit: no new grant.
    service.ready().await.expect("ready");
    let answer = Answer::read(service.call(gate_request("/b")).await.expect("miss")).await;
    assert_eq!(answer.cache.outcome, CacheOutcome::Miss);
    assert_eq!(state.calls.load(Ordering::SeqCst), 2);
    assert_eq!(state.grants.load(Ordering::SeqCst), 2);

    // The inner service's readiness error comes back as its own type.
    state.failing.store(true, Ordering::SeqCst);
    assert_eq!(service.ready().await.err(), Some(GateClosedForGood));
}

/// `CacheService` can be shared across threads and held by frameworks that require `Sync`
/// services, even over an inner service that is `Send` but not `Sync`.
#[test]
fn the_service_is_send_sync_and_clone() {
    fn assert_traits<T: Send + Sync + Clone + 'static>() {}
    assert_traits::<tower_http_cache::CacheService<origin::LegacyClient>>();

    struct NotSync(std::cell::Cell<u8>);
    impl Service<Request<Full<Bytes>>> for NotSync {
        type Response = Response<Full<Bytes>>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Request<Full<Bytes>>) -> Self::Future {
            self.0.set(self.0.get().wrapping_add(1));
            std::future::ready(Ok(Response::new(Full::default())))
        }
    }
    assert_traits::<tower_http_cache::CacheService<NotSync>>();
}

/// A handle that polled `poll_ready` and then stopped (its caller timed out, or lost a
/// `select!`) holds nobody up, and a waiter whose wake-up the inner service dropped (it keeps
/// only the last waker) is still woken when the inner service becomes ready.
#[tokio::test]
async fn a_handle_that_stops_polling_holds_nobody_up_and_no_waiter_loses_its_wake_up() {
    let state = Arc::new(GateState::default());
    let service = CacheLayer::new(tower_http_cache::MemoryStore::default()).layer(Gate {
        state: state.clone(),
        reserved: false,
    });

    // A waits for the closed gate in its own task.
    let first = service.clone();
    let waiting = tokio::spawn(async move {
        let response = first.oneshot(gate_request("/first")).await.expect("ready");
        Answer::read(response).await.body
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    // B polls after A (so the gate keeps B's wake-up, not A's), gives up, and stays alive.
    let mut quitter = service.clone();
    let gave_up = tokio::time::timeout(Duration::from_millis(20), quitter.ready()).await;
    assert!(gave_up.is_err(), "the gate is closed");

    state.open.store(true, Ordering::SeqCst);
    if let Some(waker) = state.waker.lock().expect("waker").take() {
        waker.wake();
    }
    let body = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the first waiter was woken")
        .expect("task");
    assert_eq!(body, "through the gate");

    // Other clones go on, for a hit and a miss, while B is still alive and idle.
    for path in ["/first", "/second"] {
        let response = tokio::time::timeout(
            Duration::from_secs(5),
            service.clone().oneshot(gate_request(path)),
        )
        .await
        .expect("not held up by the idle handle")
        .expect("ready");
        assert_eq!(Answer::read(response).await.body, "through the gate");
    }
    assert_eq!(state.calls.load(Ordering::SeqCst), 2);
    drop(quitter);
}

/// Many tasks on several threads waiting for a concurrency-limited inner service: every one is
/// woken in turn (none loses its wake-up to another waiter), and every call has its permit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_waiters_on_a_concurrency_limit_across_threads_all_get_through() {
    let paths = (0..64).map(|i| format!("/many/{i}")).collect();
    let (bodies, calls) = tokio::time::timeout(
        Duration::from_secs(30),
        through_a_concurrency_limit(2, paths),
    )
    .await
    .expect("every waiter got through");
    assert_eq!(bodies.len(), 64);
    assert!(bodies.iter().all(|body| body == "counted"));
    assert_eq!(calls, 64);
}

/// A store that is down: every operation fails.
struct DownStore;

fn down<T>() -> Result<T, StoreError> {
    Err(StoreError::unavailable("connection refused"))
}

impl Store for DownStore {
    fn get<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Entries, StoreError>> {
        Box::pin(async { down() })
    }
    fn begin<'a>(
        &'a self,
        _: &'a str,
        _: Arc<ParsedResponse>,
        _: WriteOptions,
    ) -> BoxFuture<'a, Result<Box<dyn EntryWriter>, StoreError>> {
        Box::pin(async { down() })
    }
    fn update<'a>(
        &'a self,
        _: &'a str,
        _: &'a VariantId,
        _: Arc<ParsedResponse>,
        _: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async { down() })
    }
    fn remove<'a>(
        &'a self,
        _: &'a str,
        _: Option<&'a VariantId>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async { down() })
    }
    fn clear(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { down() })
    }
}

#[tokio::test]
async fn a_store_that_is_down_never_fails_a_request() {
    let origin = Origin::start(|_| async {
        Response::builder()
            .header("cache-control", "max-age=60")
            .body(full("from the origin"))
            .expect("response")
    })
    .await;
    let service = ServiceBuilder::new()
        .layer(CacheLayer::new(DownStore))
        .service(origin::client());
    for _ in 0..3 {
        let request = Request::get(origin.url("/x"))
            .body(Full::default())
            .expect("request");
        let answer = Answer::read(service.clone().oneshot(request).await.expect("response")).await;
        assert_eq!(answer.cache.outcome, CacheOutcome::Miss);
        assert!(!answer.cache.stored);
        assert_eq!(answer.body, "from the origin");
    }
    assert_eq!(origin.hits(), 3);
    // A POST's invalidation fails in the store too, and still succeeds for the client.
    let request = Request::post(origin.url("/x"))
        .body(Full::default())
        .expect("request");
    assert!(service.clone().oneshot(request).await.is_ok());
}

#[tokio::test]
async fn the_filesystem_store_serves_hits_across_layer_instances() {
    let origin = Origin::start(|_| async {
        Response::builder()
            .header("cache-control", "max-age=600")
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
            .body(full(vec![7u8; 300_000]))
            .expect("response")
    })
    .await;
    let dir = std::env::temp_dir().join(format!("thc-transport-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for expected in [CacheOutcome::Miss, CacheOutcome::Hit] {
        // A new store and layer each time: the second one finds the first one's entry on disk.
        let store = FsStore::builder(&dir).build().expect("fs store");
        let service = ServiceBuilder::new()
            .layer(CacheLayer::new(store))
            .service(origin::client());
        let request = Request::get(origin.url("/big"))
            .body(Full::default())
            .expect("request");
        let answer = Answer::read(service.oneshot(request).await.expect("response")).await;
        assert_eq!(answer.cache.outcome, expected);
        let cookies: Vec<_> = answer.headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(answer.body.len(), 300_000);
        assert!(answer.body.iter().all(|&b| b == 7));
    }
    assert_eq!(origin.hits(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn post_requests_are_cached_by_a_hash_of_their_body_when_opted_in() {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use tower_http_cache::{BodyKeyLayer, ReplayBody};

    let origin = Origin::start(|request| async move {
        Response::builder()
            .header("cache-control", "max-age=60")
            .body(full(format!(
                "answer to {}",
                String::from_utf8_lossy(&request.body)
            )))
            .expect("response")
    })
    .await;
    let client = Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Full<Bytes>>>();
    let service = ServiceBuilder::new()
        .layer(BodyKeyLayer::new().max_body_size(1024))
        .layer(
            CacheLayer::new(tower_http_cache::MemoryStore::default()).methods([
                http::Method::GET,
                http::Method::HEAD,
                http::Method::POST,
            ]),
        )
        .service(client);
    let post = |body: &'static str| {
        let request = Request::post(origin.url("/graphql"))
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("request");
        let service = service.clone();
        async move {
            let answer = Answer::read(service.oneshot(request).await.expect("response")).await;
            (answer.cache.outcome, answer.body)
        }
    };
    assert_eq!(
        post("{a}").await,
        (CacheOutcome::Miss, Bytes::from("answer to {a}"))
    );
    assert_eq!(
        post("{a}").await,
        (CacheOutcome::Hit, Bytes::from("answer to {a}"))
    );
    assert_eq!(
        post("{b}").await,
        (CacheOutcome::Miss, Bytes::from("answer to {b}"))
    );
    assert_eq!(origin.hits(), 2);
    // A body over the limit streams to the origin unchanged and is not cached.
    let big: &'static str = Box::leak("x".repeat(4096).into_boxed_str());
    let (outcome, body) = post(big).await;
    assert_eq!(outcome, CacheOutcome::Miss);
    assert_eq!(body.len(), "answer to ".len() + 4096);
    assert_eq!(post(big).await.0, CacheOutcome::Miss);
}

/// A memory store whose commits wait for a gate, as a slow backend's would.
struct GatedStore {
    inner: tower_http_cache::MemoryStore,
    gate: Arc<tokio::sync::Semaphore>,
}

struct GatedWriter {
    inner: Box<dyn EntryWriter>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl EntryWriter for GatedWriter {
    fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.inner.write(chunk)
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move {
            let _permit = self.gate.acquire().await.expect("gate");
            self.inner.commit().await
        })
    }
}

impl Store for GatedStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Entries, StoreError>> {
        self.inner.get(key)
    }
    fn begin<'a>(
        &'a self,
        key: &'a str,
        response: Arc<ParsedResponse>,
        options: WriteOptions,
    ) -> BoxFuture<'a, Result<Box<dyn EntryWriter>, StoreError>> {
        Box::pin(async move {
            let inner = self.inner.begin(key, response, options).await?;
            let gate = self.gate.clone();
            Ok(Box::new(GatedWriter { inner, gate }) as Box<dyn EntryWriter>)
        })
    }
    fn update<'a>(
        &'a self,
        key: &'a str,
        variant: &'a VariantId,
        response: Arc<ParsedResponse>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.update(key, variant, response, ttl)
    }
    fn remove<'a>(
        &'a self,
        key: &'a str,
        variant: Option<&'a VariantId>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.remove(key, variant)
    }
    fn clear(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.clear()
    }
}

/// A caller that stops reading once it has the last chunk (as hyper's server does after
/// Content-Length bytes) and drops the body while the store's commit is still waiting: the
/// entry is still committed, in the background, and the next request is a hit whose body is
/// whole. Until then, the key's coalescing leader is held, so a concurrent request waits
/// instead of going to the origin.
#[tokio::test]
async fn a_body_dropped_while_its_commit_waits_is_still_stored() {
    use http_body::Body as _;

    let origin = Origin::start(|_| async {
        Response::builder()
            .header("cache-control", "max-age=60")
            .body(full("the whole body"))
            .expect("response")
    })
    .await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let store = GatedStore {
        inner: tower_http_cache::MemoryStore::default(),
        gate: gate.clone(),
    };
    let service = ServiceBuilder::new()
        .layer(CacheLayer::new(store))
        .service(origin::client());
    let request = || {
        Request::get(origin.url("/gated"))
            .body(Full::default())
            .expect("request")
    };

    let response = service.clone().oneshot(request()).await.expect("response");
    // Boxed, so that dropping it drops the body.
    let mut body = Box::pin(response.into_body());
    let mut read = Vec::new();
    while !body.is_end_stream() {
        let frame = std::future::poll_fn(|cx| match body.as_mut().poll_frame(cx) {
            // The end is reported only once the entry is committed: stop at the last chunk.
            Poll::Pending if !read.is_empty() => Poll::Ready(None),
            other => other,
        })
        .await;
        match frame {
            Some(frame) => {
                read.extend_from_slice(&frame.expect("frame").into_data().expect("data"))
            }
            None => break,
        }
    }
    assert_eq!(read, b"the whole body");
    drop(body);

    // The commit waits, in the background, holding the key's coalescing leader.
    let waiting = tokio::spawn({
        let service = service.clone();
        let request = request();
        async move { Answer::read(service.oneshot(request).await.expect("response")).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiting.is_finished(),
        "a follower went on before the commit"
    );
    assert_eq!(origin.hits(), 1);

    gate.add_permits(1);
    let answer = waiting.await.expect("follower");
    assert_eq!(answer.cache.outcome, CacheOutcome::Hit);
    assert_eq!(answer.body, "the whole body");
    assert_eq!(origin.hits(), 1);
}
