//! Attacks on the cache layer itself, each test named after the attack it stops: cache
//! poisoning through the request's host or scheme (RFC 9111 §7.1), and one client's cookies or
//! credentials-bound answers reaching another in a shared cache (RFC 9111 §7.3, §3.5). Real
//! loopback origins and hyper-util's legacy client; times from a manual clock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cache_workspace::answer::Answer;
use cache_workspace::clock::ManualClock;
use cache_workspace::origin::{self, full, Origin, Recorded};
use http::uri::Scheme;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};
use tower_http_cache::{CacheLayer, CacheOutcome, MemoryStore, SharedCookies, Store};

fn host_of(request: &Recorded) -> String {
    request
        .headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned()
}

async fn send<S>(service: &mut S, request: Request<Full<Bytes>>) -> Answer
where
    S: Service<
        Request<Full<Bytes>>,
        Response = Response<tower_http_cache::CacheBody<hyper::body::Incoming>>,
    >,
    S::Error: std::fmt::Debug,
{
    let response = service
        .ready()
        .await
        .expect("ready")
        .call(request)
        .await
        .expect("response");
    Answer::read(response).await
}

/// RFC 9112 §3.2.2 and RFC 9111 §7.1: `GET http://a/page` with `Host: b` must not store b's
/// answer under a's URL. The target's authority wins: the origin is asked for a.
#[tokio::test]
async fn absolute_form_target_with_another_host_cannot_plant_that_hosts_answer() {
    let origin = Origin::start(|request| async move {
        Response::builder()
            .header("cache-control", "max-age=60")
            .body(full(format!("page for {}", host_of(&request))))
            .expect("response")
    })
    .await;
    let mut service = tower::ServiceBuilder::new()
        .layer(CacheLayer::new(MemoryStore::default()).shared(true))
        .service(origin::client());
    let url = origin.url("/page");
    let real = origin.addr().to_string();

    let planted = Request::get(&url)
        .header("host", "evil.example")
        .body(Full::default())
        .expect("request");
    let first = send(&mut service, planted).await;
    assert_eq!(origin.requests()[0].headers["host"], real.as_str());
    assert_eq!(first.body, format!("page for {real}"));

    // Everyone who asks for a's page gets a's answer from the cache.
    let honest = Request::get(&url).body(Full::default()).expect("request");
    let second = send(&mut service, honest).await;
    assert_eq!(second.cache.outcome, CacheOutcome::Hit);
    assert_eq!(second.body, format!("page for {real}"));
    // Two Host lines are rewritten to the one the target names, too.
    let doubled = Request::get(origin.url("/other"))
        .header("host", "evil.example")
        .header("host", "evil2.example")
        .body(Full::default())
        .expect("request");
    send(&mut service, doubled).await;
    let seen = origin.requests();
    let hosts: Vec<_> = seen[1].headers.get_all("host").iter().collect();
    assert_eq!(hosts, [real.as_str()]);
}

/// A server-side layer (requests in origin form) behind TLS says so: then `http` and `https`
/// requests for one host and path never share an entry.
#[tokio::test]
async fn origin_form_requests_on_http_and_https_listeners_never_share_an_entry() {
    let calls = Arc::new(AtomicUsize::new(0));
    let origin = {
        let calls = calls.clone();
        tower::service_fn(move |request: Request<Full<Bytes>>| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                let body = format!("{} #{n}", request.uri());
                Ok::<_, std::convert::Infallible>(
                    Response::builder()
                        .header("cache-control", "max-age=60")
                        .body(Full::new(Bytes::from(body)))
                        .expect("response"),
                )
            }
        })
    };
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let mut https = CacheLayer::with_shared_store(store.clone())
        .shared(true)
        .origin_form_scheme(Scheme::HTTPS)
        .layer(origin.clone());
    let mut http = CacheLayer::with_shared_store(store.clone())
        .shared(true)
        .layer(origin);
    let request = || {
        Request::get("/account")
            .header("host", "example.com")
            .body(Full::default())
            .expect("request")
    };
    let read = |response: Response<_>| Answer::read(response);
    let a = read(https.ready().await.unwrap().call(request()).await.unwrap()).await;
    let b = read(http.ready().await.unwrap().call(request()).await.unwrap()).await;
    let c = read(https.ready().await.unwrap().call(request()).await.unwrap()).await;
    assert_eq!(a.cache.key.as_deref(), Some("https://example.com/account"));
    assert_eq!(b.cache.key.as_deref(), Some("http://example.com/account"));
    assert_eq!(
        (a.cache.outcome, b.cache.outcome),
        (CacheOutcome::Miss, CacheOutcome::Miss)
    );
    assert_eq!(c.cache.outcome, CacheOutcome::Hit);
    assert_eq!(c.body, a.body);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// RFC 9112 §3.2: a request in origin form with two `Host` lines names no target; it is not
/// keyed by a guess, so it can neither read nor plant an entry.
#[tokio::test]
async fn origin_form_request_with_two_host_lines_bypasses_the_cache() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let origin = tower::service_fn(move |_request: Request<Full<Bytes>>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            Ok::<_, std::convert::Infallible>(
                Response::builder()
                    .header("cache-control", "max-age=60")
                    .body(Full::new(Bytes::from_static(b"x")))
                    .expect("response"),
            )
        }
    });
    let mut service = CacheLayer::new(MemoryStore::default())
        .shared(true)
        .layer(origin);
    for _ in 0..2 {
        let request = Request::get("/page")
            .header("host", "a.example")
            .header("host", "b.example")
            .body(Full::default())
            .expect("request");
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        let answer = Answer::read(response).await;
        assert_eq!(answer.cache.outcome, CacheOutcome::Bypass);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// An origin that hands every client its own session cookie on a page that only heuristics
/// make cacheable (a `Last-Modified`, no explicit freshness).
async fn cookie_origin(extra: Option<(&'static str, &'static str)>) -> Origin {
    let sessions = Arc::new(AtomicUsize::new(0));
    Origin::start(move |_request| {
        let n = sessions.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut response = Response::builder()
                .header("last-modified", "Mon, 01 Jan 2001 00:00:00 GMT")
                .header("set-cookie", format!("session=client-{n}"));
            if let Some((name, value)) = extra {
                response = response.header(name, value);
            }
            response.body(full("welcome")).expect("response")
        }
    })
    .await
}

async fn sessions_seen(layer: CacheLayer, origin: &Origin) -> Vec<String> {
    let mut service = tower::ServiceBuilder::new()
        .layer(layer)
        .service(origin::client());
    let mut cookies = Vec::new();
    for _ in 0..3 {
        let request = Request::get(origin.url("/welcome"))
            .body(Full::default())
            .expect("request");
        let answer = send(&mut service, request).await;
        assert_eq!(answer.body, "welcome");
        cookies.push(
            answer
                .headers
                .get("set-cookie")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned(),
        );
    }
    cookies
}

/// RFC 9111 §7.3: in a shared cache, no client's `Set-Cookie` reaches another client unless
/// the origin clearly meant the response to be shared.
#[tokio::test]
async fn shared_cache_never_replays_one_clients_session_cookie_to_another() {
    // The default: the response is not stored; every client gets its own cookie.
    let origin = cookie_origin(None).await;
    let layer = CacheLayer::new(MemoryStore::default()).shared(true);
    assert_eq!(
        sessions_seen(layer, &origin).await,
        ["session=client-0", "session=client-1", "session=client-2"]
    );
    assert_eq!(origin.hits(), 3);

    // The loose option stores the page without the cookie: the first client gets its cookie,
    // the others a cached page without one.
    let origin = cookie_origin(None).await;
    let layer = CacheLayer::new(MemoryStore::default())
        .shared(true)
        .shared_cookies(SharedCookies::StripUnlessExplicit);
    assert_eq!(
        sessions_seen(layer, &origin).await,
        ["session=client-0", "-", "-"]
    );
    assert_eq!(origin.hits(), 1);

    // The strict option does not store it even when the origin says it is public.
    let origin = cookie_origin(Some(("cache-control", "public, max-age=60"))).await;
    let layer = CacheLayer::new(MemoryStore::default())
        .shared(true)
        .shared_cookies(SharedCookies::Refuse);
    assert_eq!(
        sessions_seen(layer, &origin).await,
        ["session=client-0", "session=client-1", "session=client-2"]
    );

    // A private cache serves one client, whose own cookie it may replay.
    let origin = cookie_origin(None).await;
    let layer = CacheLayer::new(MemoryStore::default());
    assert_eq!(
        sessions_seen(layer, &origin).await,
        ["session=client-0", "session=client-0", "session=client-0"]
    );
}

/// RFC 9111 §3.5: a revalidation made for a request with `Authorization` in a shared cache
/// gives that client the origin's answer but leaves the shared entry as it was.
#[tokio::test]
async fn revalidation_with_credentials_does_not_change_what_anonymous_clients_get() {
    let clock = ManualClock::new();
    let origin_clock = clock.clone();
    let origin = Origin::start(move |request| {
        let date = origin_clock.http_date();
        async move {
            let builder = Response::builder()
                .header("date", date)
                .header("etag", "\"v1\"");
            if request.headers.contains_key("if-none-match") {
                let account = if request.headers.contains_key("authorization") {
                    "alice"
                } else {
                    "anonymous"
                };
                return builder
                    .status(StatusCode::NOT_MODIFIED)
                    .header("cache-control", "max-age=3600")
                    .header("x-account", account)
                    .body(origin::empty())
                    .expect("304");
            }
            builder
                .header("cache-control", "max-age=1")
                .body(full("public page"))
                .expect("200")
        }
    })
    .await;
    let mut service = tower::ServiceBuilder::new()
        .layer(
            CacheLayer::new(MemoryStore::default())
                .shared(true)
                .clock(clock.clone()),
        )
        .service(origin::client());
    let url = origin.url("/page");
    let anonymous = || Request::get(&url).body(Full::default()).expect("request");

    send(&mut service, anonymous()).await;
    clock.advance(Duration::from_secs(5));
    let alice = Request::get(&url)
        .header("authorization", "Bearer alice")
        .body(Full::default())
        .expect("request");
    let answer = send(&mut service, alice).await;
    assert_eq!(answer.cache.outcome, CacheOutcome::Revalidated);
    assert_eq!(answer.headers["x-account"], "alice");
    assert_eq!(answer.body, "public page");

    // The shared entry is still the stale anonymous one: the next anonymous request
    // revalidates for itself and never sees alice's fields.
    let answer = send(&mut service, anonymous()).await;
    assert_eq!(answer.cache.outcome, CacheOutcome::Revalidated);
    assert_eq!(answer.headers["x-account"], "anonymous");
    assert_eq!(origin.hits(), 3);
    // That revalidation had no credentials: it freshened the entry for everyone.
    let answer = send(&mut service, anonymous()).await;
    assert_eq!(answer.cache.outcome, CacheOutcome::Hit);
    assert_eq!(answer.headers["x-account"], "anonymous");
}

/// RFC 9111 §4.4: a miss whose body was still streaming when an unsafe request invalidated
/// its key must not store its older body afterwards.
#[tokio::test]
async fn a_miss_that_began_before_an_invalidating_post_does_not_store_its_older_body() {
    let version = Arc::new(AtomicUsize::new(1));
    let origin = {
        let version = version.clone();
        Origin::start(move |request| {
            let version = version.clone();
            async move {
                if request.method == http::Method::POST {
                    version.fetch_add(1, Ordering::SeqCst);
                    return Response::builder()
                        .status(StatusCode::NO_CONTENT)
                        .body(origin::empty())
                        .expect("204");
                }
                let v = version.load(Ordering::SeqCst);
                Response::builder()
                    .header("cache-control", "max-age=600")
                    .body(origin::slow_chunks(
                        vec![Bytes::from(format!("v{v} ")), Bytes::from_static(b"end")],
                        Duration::from_millis(50),
                    ))
                    .expect("200")
            }
        })
        .await
    };
    let store = Arc::new(MemoryStore::default());
    let mut service = tower::ServiceBuilder::new()
        .layer(CacheLayer::with_shared_store(store.clone()).shared(true))
        .service(origin::client());
    let url = origin.url("/doc");

    // The GET's head arrives; its body is still on its way when the POST goes through.
    let get = Request::get(&url).body(Full::default()).expect("request");
    let slow = service
        .ready()
        .await
        .unwrap()
        .call(get)
        .await
        .expect("head");
    let post = Request::post(&url).body(Full::default()).expect("request");
    send(&mut service, post).await;
    let old = Answer::read(slow).await;
    assert_eq!(old.body, "v1 end");

    let again = send(
        &mut service,
        Request::get(&url).body(Full::default()).expect("request"),
    )
    .await;
    assert_eq!(
        again.cache.outcome,
        CacheOutcome::Miss,
        "the old body was stored"
    );
    assert_eq!(again.body, "v2 end");
}

/// A store that logs the writes it receives, around a memory store.
struct Logged {
    inner: MemoryStore,
    log: std::sync::Mutex<Vec<&'static str>>,
}

impl Logged {
    fn note(&self, what: &'static str) {
        self.log.lock().expect("log").push(what);
    }
}

impl Store for Logged {
    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> cache_store::BoxFuture<'a, Result<cache_store::Entries, cache_store::StoreError>> {
        self.inner.get(key)
    }
    fn begin<'a>(
        &'a self,
        key: &'a str,
        response: Arc<cache_store::ParsedResponse>,
        options: cache_store::WriteOptions,
    ) -> cache_store::BoxFuture<
        'a,
        Result<Box<dyn cache_store::EntryWriter>, cache_store::StoreError>,
    > {
        self.inner.begin(key, response, options)
    }
    fn update<'a>(
        &'a self,
        key: &'a str,
        variant: &'a cache_store::VariantId,
        response: Arc<cache_store::ParsedResponse>,
        ttl: Duration,
    ) -> cache_store::BoxFuture<'a, Result<(), cache_store::StoreError>> {
        self.note("update");
        self.inner.update(key, variant, response, ttl)
    }
    fn remove<'a>(
        &'a self,
        key: &'a str,
        variant: Option<&'a cache_store::VariantId>,
    ) -> cache_store::BoxFuture<'a, Result<(), cache_store::StoreError>> {
        self.note("remove");
        self.inner.remove(key, variant)
    }
    fn clear(&self) -> cache_store::BoxFuture<'_, Result<(), cache_store::StoreError>> {
        self.inner.clear()
    }
}

/// RFC 9111 §4.4 and §4.3.4: a 304 that arrives after an unsafe request invalidated the key
/// does not freshen (and so cannot bring back) what the invalidation removed.
#[tokio::test]
async fn a_304_that_races_an_invalidation_does_not_bring_the_entry_back() {
    let clock = ManualClock::new();
    let origin_clock = clock.clone();
    let origin = Origin::start(move |request| {
        let date = origin_clock.http_date();
        async move {
            let builder = Response::builder().header("date", date);
            if request.method == http::Method::POST {
                return builder
                    .status(StatusCode::NO_CONTENT)
                    .body(origin::empty())
                    .expect("204");
            }
            let builder = builder
                .header("etag", "\"v1\"")
                .header("cache-control", "max-age=1");
            if request.headers.contains_key("if-none-match") {
                // Slow enough for the POST to overtake it.
                tokio::time::sleep(Duration::from_millis(300)).await;
                return builder
                    .status(StatusCode::NOT_MODIFIED)
                    .body(origin::empty())
                    .expect("304");
            }
            builder.body(full("v1")).expect("200")
        }
    })
    .await;
    let store = Arc::new(Logged {
        inner: MemoryStore::default(),
        log: Default::default(),
    });
    let service = tower::ServiceBuilder::new()
        .layer(
            CacheLayer::with_shared_store(store.clone())
                .shared(true)
                .clock(clock.clone()),
        )
        .service(origin::client());
    let url = origin.url("/doc");
    send(
        &mut service.clone(),
        Request::get(&url).body(Full::default()).expect("request"),
    )
    .await;
    clock.advance(Duration::from_secs(5));

    let revalidating = {
        let mut service = service.clone();
        let request = Request::get(&url).body(Full::default()).expect("request");
        tokio::spawn(async move { send(&mut service, request).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    send(
        &mut service.clone(),
        Request::post(&url).body(Full::default()).expect("request"),
    )
    .await;
    let answer = revalidating.await.expect("joined");
    assert_eq!(answer.body, "v1");
    assert_eq!(
        *store.log.lock().expect("log"),
        ["remove"],
        "a freshening was written after the invalidation"
    );
}
