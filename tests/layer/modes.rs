//! Per-request control: only-if-cached (RFC 9111 §5.2.1.7), cache modes, and key and TTL
//! overrides.

use std::sync::atomic::Ordering;
use std::time::Duration;

use cache_workspace::origin::full;
use http::{Response, StatusCode};
use http_body_util::Full;
use tower::ServiceExt;
use tower_http_cache::{CacheKey, CacheMode, CacheOutcome, CacheStatus, CacheTtl};

use crate::{counter, harness, ok};

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
