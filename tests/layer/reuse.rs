//! RFC 9111 §4.1 and §4.2: reusing stored responses while fresh, one per Vary variant, under
//! keys taken from the target URI (or the Host header).

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use cache_workspace::origin::{self, full};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;
use tower_http_cache::{
    default_key, CacheLayer, CacheOutcome, CacheStatus, CacheStatusFwd, MemoryStore,
};

use crate::{counter, harness, ok};

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
