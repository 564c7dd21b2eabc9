//! End-to-end behaviour of the cache layer over hyper-util's legacy client and a real loopback
//! origin, counting what reached the origin. Each test names the RFC section it checks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cache_workspace::answer::Answer;
use cache_workspace::clock::ManualClock;
use cache_workspace::origin::{self, empty, full, LegacyClient, Origin, Recorded};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;
use tower_http_cache::{
    default_key, CacheKey, CacheLayer, CacheMode, CacheOutcome, CacheService, CacheStatus,
    CacheStatusFwd, CacheTtl, MemoryStore, Store,
};

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

#[tokio::test]
async fn rfc9111_4_2_fresh_response_is_served_from_cache_through_the_legacy_client() {
    let n = counter();
    let h = harness(
        move |_, _| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            Response::builder()
                .header("cache-control", "max-age=60")
                .header("set-cookie", "a=1")
                .header("set-cookie", "b=2")
                .body(full(format!("response {i}")))
                .expect("response")
        },
        |layer| layer,
    )
    .await;
    let first = h.get("/fresh").await;
    assert_eq!(first.cache.outcome, CacheOutcome::Miss);
    assert!(first.cache.stored);
    assert_eq!(first.body, "response 0");
    // RFC 9211 §2: the cache's name, then why it forwarded, what the origin said, that it
    // stored the response, its freshness left and the key.
    let key = default_key(&h.origin.url("/fresh").parse().expect("uri"));
    assert_eq!(
        first.headers["cache-status"],
        format!("tower-http-cache; fwd=uri-miss; fwd-status=200; stored; ttl=60; key=\"{key}\"")
    );

    h.clock.advance(Duration::from_secs(30));
    let second = h.get("/fresh").await;
    assert_eq!(second.cache.outcome, CacheOutcome::Hit);
    assert_eq!(second.body, "response 0");
    assert_eq!(h.origin.hits(), 1, "the hit did not reach the origin");
    // §5.1: Age is the current age in delta-seconds; §4: the stored Date is not rewritten.
    assert_eq!(second.headers["age"], "30");
    assert_eq!(second.headers["date"], first.headers["date"]);
    // §3.1: repeated fields survive storage as separate lines.
    let cookies: Vec<_> = second.headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    // RFC 9211: the Cache-Status header says it was a hit.
    let cache_status = second.headers["cache-status"].to_str().expect("ascii");
    assert!(
        cache_status.starts_with("tower-http-cache; hit"),
        "{cache_status}"
    );

    h.clock.advance(Duration::from_secs(31));
    let third = h.get("/fresh").await;
    assert_eq!(third.cache.outcome, CacheOutcome::Miss, "stale after 61 s");
    assert_eq!(third.body, "response 1");
    assert_eq!(h.origin.hits(), 2);
}

#[tokio::test]
async fn rfc9111_4_1_several_vary_variants_coexist() {
    let h = harness(
        |request, _| {
            let language = request
                .headers
                .get("accept-language")
                .map(|v| v.to_str().unwrap_or("?").to_owned())
                .unwrap_or_else(|| "none".into());
            Response::builder()
                .header("cache-control", "max-age=60")
                .header("vary", "Accept-Language")
                .body(full(format!("lang={language}")))
                .expect("response")
        },
        |layer| layer,
    )
    .await;
    for language in ["en", "fr", "en", "fr", "en"] {
        let answer = h
            .send(
                h.request("GET", "/vary")
                    .header("accept-language", language),
            )
            .await;
        assert_eq!(answer.body, format!("lang={language}"));
    }
    assert_eq!(h.origin.hits(), 2, "one origin request per variant");
    let none = h.get("/vary").await;
    assert_eq!(none.body, "lang=none");
    assert_eq!(none.cache.fwd, Some(CacheStatusFwd::VaryMiss));
    assert_eq!(h.origin.hits(), 3);
}

#[tokio::test]
async fn rfc9111_4_3_stale_response_is_revalidated_and_freshened_by_304() {
    let h = harness(
        |request, _| {
            if request
                .headers
                .get("if-none-match")
                .is_some_and(|v| v == "\"v1\"")
            {
                return Response::builder()
                    .status(StatusCode::NOT_MODIFIED)
                    .header("cache-control", "max-age=60")
                    .header("etag", "\"v1\"")
                    .header("x-refreshed", "yes")
                    .body(empty())
                    .expect("response");
            }
            Response::builder()
                .header("cache-control", "max-age=0")
                .header("etag", "\"v1\"")
                .body(full("the body"))
                .expect("response")
        },
        |layer| layer,
    )
    .await;
    assert_eq!(h.get("/reval").await.cache.outcome, CacheOutcome::Miss);
    h.clock.advance(Duration::from_secs(5));
    let revalidated = h.get("/reval").await;
    assert_eq!(revalidated.cache.outcome, CacheOutcome::Revalidated);
    assert_eq!(revalidated.status, StatusCode::OK);
    assert_eq!(revalidated.body, "the body");
    assert_eq!(
        revalidated.headers["x-refreshed"], "yes",
        "§3.2 headers updated"
    );
    let requests = h.origin.requests();
    assert_eq!(requests[1].headers["if-none-match"], "\"v1\"");
    // The 304 carried max-age=60: the refreshed entry is fresh now.
    h.clock.advance(Duration::from_secs(30));
    let hit = h.get("/reval").await;
    assert_eq!(hit.cache.outcome, CacheOutcome::Hit);
    assert_eq!(hit.body, "the body");
    assert_eq!(h.origin.hits(), 2);
}

#[tokio::test]
async fn rfc9111_4_3_5_head_is_answered_from_a_stored_get_without_a_body() {
    let h = harness(|_, _| ok("max-age=60", "full body"), |layer| layer).await;
    h.get("/head").await;
    let head = h.send(h.request("HEAD", "/head")).await;
    assert_eq!(head.cache.outcome, CacheOutcome::Hit);
    assert!(head.body.is_empty());
    // And a HEAD response is never stored in place of the GET.
    let get = h.get("/head").await;
    assert_eq!(get.body, "full body");
    assert_eq!(h.origin.hits(), 1);
}

#[tokio::test]
async fn rfc9111_4_4_unsafe_methods_invalidate_target_and_same_origin_location() {
    let h = harness(
        |request, _| {
            if request.method == http::Method::POST {
                return Response::builder()
                    .status(StatusCode::CREATED)
                    .header("location", "/items/2")
                    .body(empty())
                    .expect("response");
            }
            ok("max-age=600", "item")
        },
        |layer| layer,
    )
    .await;
    h.get("/items").await;
    h.get("/items/2").await;
    h.get("/other").await;
    assert_eq!(h.get("/items").await.cache.outcome, CacheOutcome::Hit);
    let post = h.send(h.request("POST", "/items")).await;
    assert_eq!(post.status, StatusCode::CREATED);
    assert_eq!(post.cache.fwd, Some(CacheStatusFwd::Method));
    assert_eq!(h.get("/items").await.cache.outcome, CacheOutcome::Miss);
    assert_eq!(h.get("/items/2").await.cache.outcome, CacheOutcome::Miss);
    assert_eq!(h.get("/other").await.cache.outcome, CacheOutcome::Hit);
}

#[tokio::test]
async fn rfc9111_5_2_1_7_only_if_cached_answers_504_without_the_origin() {
    let h = harness(|_, _| ok("max-age=60", "x"), |layer| layer).await;
    let answer = h
        .send(
            h.request("GET", "/nothing")
                .header("cache-control", "only-if-cached"),
        )
        .await;
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(h.origin.hits(), 0);
    h.get("/nothing").await;
    let answer = h
        .send(
            h.request("GET", "/nothing")
                .header("cache-control", "only-if-cached"),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(h.origin.hits(), 1);

    // Requests the cache never answers from storage (a range, a POST) get the 504 too: the
    // client said not to contact the origin.
    let ranged = h
        .send(
            h.request("GET", "/nothing")
                .header("cache-control", "only-if-cached")
                .header("range", "bytes=0-0"),
        )
        .await;
    assert_eq!(ranged.status, StatusCode::GATEWAY_TIMEOUT);
    let post = h
        .send(
            h.request("POST", "/nothing")
                .header("cache-control", "only-if-cached"),
        )
        .await;
    assert_eq!(post.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(h.origin.hits(), 1);

    // An explicit mode that skips the stored responses wins over the header.
    let reload = h
        .send(
            h.request("GET", "/nothing")
                .header("cache-control", "only-if-cached")
                .extension(CacheMode::Reload),
        )
        .await;
    assert_eq!(reload.status, StatusCode::OK);
    assert_eq!(h.origin.hits(), 2);
}

/// An origin that answers `max-age=1, stale-if-error=600` (with `must-revalidate` too on
/// `/mr`) until the flag returned is set, and 500 after.
async fn stale_if_error_harness() -> (Harness, Arc<std::sync::atomic::AtomicBool>) {
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fail = failing.clone();
    let h = harness(
        move |request, _| {
            if fail.load(Ordering::SeqCst) {
                return Response::builder()
                    .status(StatusCode::INTERNAL_SERVER_ERROR)
                    .body(full("boom"))
                    .expect("response");
            }
            let cc = if request.uri.path() == "/mr" {
                "max-age=1, must-revalidate, stale-if-error=600"
            } else {
                "max-age=1, stale-if-error=600"
            };
            ok(cc, "good")
        },
        |layer| layer,
    )
    .await;
    (h, failing)
}

#[tokio::test]
async fn rfc5861_4_stale_if_error_serves_stale_on_5xx_but_not_with_must_revalidate() {
    let (h, failing) = stale_if_error_harness().await;
    h.get("/sie").await;
    h.get("/mr").await;
    failing.store(true, Ordering::SeqCst);
    h.clock.advance(Duration::from_secs(100));
    let sie = h.get("/sie").await;
    assert_eq!(sie.status, StatusCode::OK);
    assert_eq!(sie.body, "good");
    assert_eq!(sie.cache.outcome, CacheOutcome::Stale);
    assert_eq!(
        sie.cache.fwd_status,
        Some(StatusCode::INTERNAL_SERVER_ERROR)
    );
    let mr = h.get("/mr").await;
    assert_eq!(
        mr.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "§4.2.4 must-revalidate"
    );
    // Beyond the window the error passes through.
    h.clock.advance(Duration::from_secs(600));
    assert_eq!(
        h.get("/sie").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

/// A per-request TTL override changes the freshness lifetime and nothing else: the stored
/// response keeps `must-revalidate` (§5.2.2.2) and `stale-if-error` (RFC 5861 §4). It used to
/// become a bare `max-age`, so that a must-revalidate response was served stale on error.
#[tokio::test]
async fn rfc9111_4_2_1_a_ttl_override_keeps_must_revalidate_and_stale_if_error() {
    let (h, failing) = stale_if_error_harness().await;
    let with_ttl = |path: &str| {
        let mut request = h
            .request("GET", path)
            .body(Full::default())
            .expect("request");
        request
            .extensions_mut()
            .insert(CacheTtl(Duration::from_secs(60)));
        request
    };
    for path in ["/sie", "/mr"] {
        assert!(h.send_request(with_ttl(path)).await.cache.stored);
    }
    h.clock.advance(Duration::from_secs(30));
    let hit = h.get("/mr").await;
    assert_eq!(hit.cache.outcome, CacheOutcome::Hit, "fresh for the TTL");
    assert_eq!(
        hit.headers["cache-control"],
        "must-revalidate, stale-if-error=600, max-age=60"
    );
    failing.store(true, Ordering::SeqCst);
    h.clock.advance(Duration::from_secs(100));
    let sie = h.get("/sie").await;
    assert_eq!(
        (sie.status, sie.cache.outcome),
        (StatusCode::OK, CacheOutcome::Stale),
        "RFC 5861 §4: the window survived the override"
    );
    assert_eq!(
        h.get("/mr").await.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "§4.2.4 must-revalidate survived the override"
    );
}

#[tokio::test]
async fn rfc5861_4_stale_if_error_serves_stale_when_the_origin_is_unreachable() {
    let h = harness(
        |_, _| ok("max-age=1, stale-if-error=60", "kept"),
        |layer| layer,
    )
    .await;
    h.get("/down").await;
    let url = h.origin.url("/down");
    drop(h.origin);
    tokio::time::sleep(Duration::from_millis(50)).await;
    h.clock.advance(Duration::from_secs(10));
    let response = h
        .service
        .clone()
        .oneshot(Request::get(&url).body(Full::default()).expect("request"))
        .await
        .expect("served stale instead of the connection error");
    let answer = Answer::read(response).await;
    assert_eq!(answer.cache.outcome, CacheOutcome::Stale);
    assert_eq!(answer.body, "kept");

    // Without stale-if-error, the inner service's own error comes back, typed.
    h.clock.advance(Duration::from_secs(100));
    let error = h
        .service
        .clone()
        .oneshot(Request::get(&url).body(Full::default()).expect("request"))
        .await
        .expect_err("nothing to fall back on");
    let _: &hyper_util::client::legacy::Error = &error;
    assert!(error.is_connect());
}

#[tokio::test]
async fn rfc5861_3_stale_while_revalidate_serves_stale_and_refreshes_once_in_background() {
    let n = counter();
    let h = harness(
        move |_, _| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            ok(
                "max-age=10, stale-while-revalidate=60",
                if i == 0 { "old" } else { "new" },
            )
        },
        |layer| layer,
    )
    .await;
    h.get("/swr").await;
    h.clock.advance(Duration::from_secs(20));
    let stale = h.get("/swr").await;
    assert_eq!(stale.cache.outcome, CacheOutcome::Stale);
    assert_eq!(stale.body, "old");
    // The refresh runs in the background; wait for it to reach the origin and be stored.
    for _ in 0..100 {
        if h.origin.hits() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut refreshed = h.get("/swr").await;
    for _ in 0..100 {
        if refreshed.body == "new" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        refreshed = h.get("/swr").await;
    }
    assert_eq!(refreshed.body, "new");
    assert_eq!(refreshed.cache.outcome, CacheOutcome::Hit);
    assert_eq!(h.origin.hits(), 2, "exactly one background refresh");
}

#[tokio::test]
async fn coalescing_fifty_concurrent_misses_make_one_origin_request() {
    let h = harness(
        |_, _| {
            Response::builder()
                .header("cache-control", "max-age=60")
                .body(origin::slow_chunks(
                    vec![Bytes::from_static(b"slow "), Bytes::from_static(b"body")],
                    Duration::from_millis(50),
                ))
                .expect("response")
        },
        |layer| layer,
    )
    .await;
    let h = Arc::new(h);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move { h.get("/coalesce").await }));
    }
    let mut hits = 0;
    for task in tasks {
        let answer = task.await.expect("task");
        assert_eq!(answer.body, "slow body");
        if answer.cache.is_hit() {
            hits += 1;
        }
    }
    assert_eq!(h.origin.hits(), 1);
    assert_eq!(hits, 49);
}

#[tokio::test]
async fn streaming_miss_delivers_the_first_byte_before_the_origin_finishes() {
    let h = harness(
        |_, _| {
            Response::builder()
                .header("cache-control", "max-age=60")
                .body(origin::slow_chunks(
                    vec![
                        Bytes::from_static(b"first "),
                        Bytes::from_static(b"second "),
                        Bytes::from_static(b"third"),
                    ],
                    Duration::from_millis(300),
                ))
                .expect("response")
        },
        |layer| layer,
    )
    .await;
    let started = std::time::Instant::now();
    let response = h
        .service
        .clone()
        .oneshot(
            h.request("GET", "/slow")
                .body(Full::default())
                .expect("request"),
        )
        .await
        .expect("response");
    let mut body = response.into_body();
    let first = body.frame().await.expect("a frame").expect("data");
    let first_at = started.elapsed();
    assert_eq!(first.into_data().expect("data"), "first ");
    let mut rest = Vec::new();
    while let Some(frame) = body.frame().await {
        rest.extend_from_slice(&frame.expect("frame").into_data().unwrap_or_default());
    }
    let done_at = started.elapsed();
    assert_eq!(rest, b"second third");
    assert!(
        first_at + Duration::from_millis(400) < done_at,
        "first byte at {first_at:?}, body done at {done_at:?}"
    );
    let hit = h.get("/slow").await;
    assert_eq!(hit.cache.outcome, CacheOutcome::Hit);
    assert_eq!(hit.body, "first second third");
}

#[tokio::test]
async fn an_origin_body_error_or_an_early_drop_leaves_no_entry() {
    let h = harness(
        |request, _| {
            let body = if request.uri.path() == "/broken" {
                origin::failing_after(Bytes::from_static(b"partial"))
            } else {
                origin::slow_chunks(
                    vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
                    Duration::from_millis(20),
                )
            };
            Response::builder()
                .header("cache-control", "max-age=60")
                .body(body)
                .expect("response")
        },
        |layer| layer,
    )
    .await;
    let response = h
        .service
        .clone()
        .oneshot(
            h.request("GET", "/broken")
                .body(Full::default())
                .expect("request"),
        )
        .await
        .expect("head arrives");
    assert!(response.into_body().collect().await.is_err());
    assert_eq!(
        h.stored("/broken").await,
        0,
        "a failed body is never stored"
    );

    let response = h
        .service
        .clone()
        .oneshot(
            h.request("GET", "/dropped")
                .body(Full::default())
                .expect("request"),
        )
        .await
        .expect("head arrives");
    drop(response);
    assert_eq!(
        h.stored("/dropped").await,
        0,
        "an abandoned body is never stored"
    );
    let again = h.get("/dropped").await;
    assert_eq!(again.cache.outcome, CacheOutcome::Miss);
    assert_eq!(again.body, "ab");
}

#[tokio::test]
async fn cache_modes_per_request() {
    let n = counter();
    let h = harness(
        move |request, _| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            let cc = if request.uri.path() == "/nostore" {
                "no-store"
            } else {
                "max-age=10"
            };
            Response::builder()
                .header("cache-control", cc)
                .header("etag", "\"e\"")
                .body(full(format!("v{i}")))
                .expect("response")
        },
        |layer| layer,
    )
    .await;
    let with_mode = |mode: CacheMode, path: &str| {
        let mut request = h
            .request("GET", path)
            .body(Full::default())
            .expect("request");
        request.extensions_mut().insert(mode);
        request
    };
    h.get("/m").await; // v0 stored, fresh for 10 s

    // NoStore: straight to the origin, nothing stored or read.
    let answer = h.send_request(with_mode(CacheMode::NoStore, "/m")).await;
    assert_eq!(
        (answer.body.as_ref(), answer.cache.stored),
        (&b"v1"[..], false)
    );
    // Still the old entry for a default request.
    assert_eq!(h.get("/m").await.body, "v0");
    // Reload: to the origin, and the answer replaces the stored one.
    let answer = h.send_request(with_mode(CacheMode::Reload, "/m")).await;
    assert_eq!(answer.body, "v2");
    assert_eq!(h.get("/m").await.body, "v2");
    // NoCache: revalidate although fresh (the origin answers 200 here).
    let answer = h.send_request(with_mode(CacheMode::NoCache, "/m")).await;
    assert_eq!(answer.body, "v3");
    assert_eq!(
        h.origin.requests().last().expect("request").headers["if-none-match"],
        "\"e\""
    );
    // ForceCache and OnlyIfCached: stale is fine, the origin is not asked.
    h.clock.advance(Duration::from_secs(3600));
    let hits = h.origin.hits();
    let answer = h.send_request(with_mode(CacheMode::ForceCache, "/m")).await;
    assert_eq!(
        (answer.body.as_ref(), answer.cache.outcome),
        (&b"v3"[..], CacheOutcome::Stale)
    );
    let answer = h
        .send_request(with_mode(CacheMode::OnlyIfCached, "/m"))
        .await;
    assert_eq!(answer.body, "v3");
    let answer = h
        .send_request(with_mode(CacheMode::OnlyIfCached, "/absent"))
        .await;
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(h.origin.hits(), hits);
    // ForceCache with nothing stored goes to the origin and stores.
    let answer = h
        .send_request(with_mode(CacheMode::ForceCache, "/fc"))
        .await;
    assert!(answer.cache.stored);
    // IgnoreRules with a TTL stores a no-store response, and later requests reuse it.
    let mut request = with_mode(CacheMode::IgnoreRules, "/nostore");
    request
        .extensions_mut()
        .insert(CacheTtl(Duration::from_secs(60)));
    let stored = h.send_request(request).await;
    assert!(stored.cache.stored);
    h.clock.advance(Duration::from_secs(30));
    let reused = h.get("/nostore").await;
    assert_eq!(reused.cache.outcome, CacheOutcome::Hit);
    assert_eq!(reused.body, stored.body);
    assert_eq!(reused.headers["cache-control"], "max-age=60");
    // Disabled: no status at all, straight through.
    let response = h
        .service
        .clone()
        .oneshot(with_mode(CacheMode::Disabled, "/m"))
        .await
        .expect("response");
    assert!(response.extensions().get::<CacheStatus>().is_none());
}

#[tokio::test]
async fn per_request_key_and_ttl_override() {
    let n = counter();
    let h = harness(
        move |_, _| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            ok("max-age=5", if i == 0 { "first" } else { "second" })
        },
        |layer| layer,
    )
    .await;
    let keyed = |path: &str| {
        let mut request = h
            .request("GET", path)
            .body(Full::default())
            .expect("request");
        request
            .extensions_mut()
            .insert(CacheKey("shared-key".into()));
        request
    };
    let mut first = keyed("/a?session=1");
    first
        .extensions_mut()
        .insert(CacheTtl(Duration::from_secs(120)));
    assert_eq!(h.send_request(first).await.body, "first");
    h.clock.advance(Duration::from_secs(60));
    let second = h.send_request(keyed("/a?session=2")).await;
    assert_eq!(
        second.cache.outcome,
        CacheOutcome::Hit,
        "same key, and 120 s of freshness"
    );
    assert_eq!(second.body, "first");
    assert_eq!(second.cache.key.as_deref(), Some("shared-key"));
}

/// §4.4 by key: an unsafe request carrying a `CacheKey` invalidates what is stored under that
/// key; one without it invalidates only its target URI's key.
#[tokio::test]
async fn rfc9111_4_4_an_unsafe_request_with_a_cache_key_invalidates_that_key() {
    let n = counter();
    let h = harness(
        move |request, _| {
            if request.method != http::Method::GET {
                return ok("no-store", "updated");
            }
            let i = n.fetch_add(1, Ordering::SeqCst);
            ok("max-age=600", if i == 0 { "v0" } else { "v1" })
        },
        |layer| layer,
    )
    .await;
    let send = |method: &str, path: &str, key: Option<&str>| {
        let mut request = h
            .request(method, path)
            .body(Full::default())
            .expect("request");
        if let Some(key) = key {
            request.extensions_mut().insert(CacheKey(key.into()));
        }
        h.send_request(request)
    };
    assert_eq!(
        send("GET", "/profile?s=1", Some("profile-42")).await.body,
        "v0"
    );
    let hit = send("GET", "/profile?s=2", Some("profile-42")).await;
    assert_eq!(hit.cache.outcome, CacheOutcome::Hit);

    // Without the key, a PUT to the resource reaches only its URI's key.
    send("PUT", "/profile", None).await;
    let still = send("GET", "/profile?s=3", Some("profile-42")).await;
    assert_eq!(still.cache.outcome, CacheOutcome::Hit);
    assert_eq!(still.body, "v0");

    // With it, the stored response is gone.
    send("PUT", "/profile", Some("profile-42")).await;
    let fresh = send("GET", "/profile?s=4", Some("profile-42")).await;
    assert_eq!(fresh.cache.outcome, CacheOutcome::Miss);
    assert_eq!(fresh.body, "v1");
}

#[tokio::test]
async fn origin_form_requests_with_a_host_header_are_cached() {
    let h = harness(|_, _| ok("max-age=60", "hello"), |layer| layer).await;
    let host = h.origin.addr().to_string();
    // Origin form: no scheme or authority in the target; the key comes from Host. The
    // legacy client needs an absolute URI, so route through a service that restores it.
    let inner = origin::client();
    let absolute = tower::service_fn(move |mut request: Request<Full<Bytes>>| {
        let inner = inner.clone();
        async move {
            let host = request.headers()["host"]
                .to_str()
                .unwrap_or_default()
                .to_owned();
            let target = format!("http://{host}{}", request.uri());
            *request.uri_mut() = target.parse().expect("uri");
            inner.oneshot(request).await
        }
    });
    let service = tower::ServiceBuilder::new()
        .layer(CacheLayer::new(MemoryStore::default()).clock(h.clock.clone()))
        .service(absolute);
    for expected in [CacheOutcome::Miss, CacheOutcome::Hit] {
        let request = Request::get("/page?x=1")
            .header("host", &host)
            .body(Full::default())
            .expect("request");
        let response = service.clone().oneshot(request).await.expect("response");
        let status = response
            .extensions()
            .get::<CacheStatus>()
            .cloned()
            .expect("status");
        assert_eq!(status.outcome, expected);
        assert_eq!(
            status.key.as_deref(),
            Some(format!("http://{host}/page?x=1").as_str())
        );
        let _ = response.into_body().collect().await;
    }
}

#[tokio::test]
async fn responses_over_the_body_size_limit_pass_through_uncached() {
    let h = harness(
        |request, _| {
            let size = if request.uri.path() == "/big" {
                4096
            } else {
                16
            };
            Response::builder()
                .header("cache-control", "max-age=60")
                .body(full(vec![b'x'; size]))
                .expect("response")
        },
        |layer| layer.max_body_size(1024),
    )
    .await;
    let big = h.get("/big").await;
    assert_eq!(big.body.len(), 4096, "the caller gets the whole body");
    assert_eq!(h.get("/big").await.cache.outcome, CacheOutcome::Miss);
    h.get("/small").await;
    assert_eq!(h.get("/small").await.cache.outcome, CacheOutcome::Hit);
}

#[tokio::test]
async fn rfc9111_4_3_4_a_bare_304_to_if_modified_since_revalidates_the_stored_response() {
    // Like python's http.server: Last-Modified on the 200, nothing but Date on the 304.
    let h = harness(
        |request, clock| {
            let last_modified = httpdate::fmt_http_date(
                tower_http_cache::Clock::now(clock) - Duration::from_secs(3600),
            );
            if request.headers.contains_key("if-modified-since") {
                return Response::builder()
                    .status(StatusCode::NOT_MODIFIED)
                    .body(empty())
                    .expect("response");
            }
            Response::builder()
                .header("last-modified", last_modified)
                .body(full("file contents"))
                .expect("response")
        },
        |layer| layer,
    )
    .await;
    assert_eq!(h.get("/file").await.cache.outcome, CacheOutcome::Miss);
    // Heuristic freshness: 10 % of an hour.
    h.clock.advance(Duration::from_secs(400));
    let revalidated = h.get("/file").await;
    assert_eq!(revalidated.cache.outcome, CacheOutcome::Revalidated);
    assert_eq!(revalidated.status, StatusCode::OK);
    assert_eq!(revalidated.body, "file contents");
    assert!(h.origin.requests()[1]
        .headers
        .contains_key("if-modified-since"));
}

#[tokio::test]
async fn coalesced_requests_fall_back_to_the_origin_when_the_leader_stores_nothing() {
    let n = counter();
    let h = harness(
        move |_, _| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            Response::builder()
                .header("cache-control", "no-store")
                .body(origin::slow_chunks(
                    vec![Bytes::from(format!("answer {i}"))],
                    Duration::from_millis(30),
                ))
                .expect("response")
        },
        |layer| layer,
    )
    .await;
    let h = Arc::new(h);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move { h.get("/private").await }));
    }
    let mut bodies = Vec::new();
    for task in tasks {
        let answer = task.await.expect("task");
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.cache.outcome, CacheOutcome::Miss);
        bodies.push(answer.body);
    }
    // Nothing was shared: every request got its own origin answer.
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 10);
    assert_eq!(h.origin.hits(), 10);
}

#[tokio::test]
async fn rfc9111_4_3_5_a_head_response_refreshes_or_invalidates_the_stored_get() {
    let etag = Arc::new(std::sync::Mutex::new("\"v1\""));
    let current = etag.clone();
    let h = harness(
        move |request, _| {
            let etag = *current.lock().expect("lock");
            let builder = Response::builder().header("etag", etag);
            if request.method == http::Method::HEAD {
                // A HEAD answer with a longer lifetime, ignoring the validators it was sent.
                return builder
                    .header("cache-control", "max-age=60")
                    .body(empty())
                    .expect("response");
            }
            builder
                .header("cache-control", "max-age=1")
                .body(full("the body"))
                .expect("response")
        },
        |layer| layer,
    )
    .await;
    h.get("/doc").await;
    h.clock.advance(Duration::from_secs(10));
    // The stale GET is revalidated by a HEAD whose ETag matches: the stored GET is refreshed.
    let head = h.send(h.request("HEAD", "/doc")).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    assert_eq!(h.origin.hits(), 2);
    let get = h.get("/doc").await;
    assert_eq!(
        get.cache.outcome,
        CacheOutcome::Hit,
        "refreshed by the HEAD"
    );
    assert_eq!(get.body, "the body");
    assert_eq!(get.headers["cache-control"], "max-age=60");

    // A HEAD whose ETag differs says the stored GET is no longer current: it is removed.
    *etag.lock().expect("lock") = "\"v2\"";
    h.clock.advance(Duration::from_secs(120));
    h.send(h.request("HEAD", "/doc")).await;
    assert_eq!(h.stored("/doc").await, 0);
    assert_eq!(h.get("/doc").await.cache.outcome, CacheOutcome::Miss);
}
