//! RFC 9111 §4.3: validating stale responses (304s to If-None-Match and If-Modified-Since),
//! and HEAD requests answered from, refreshing or invalidating a stored GET (§4.3.5).

use std::sync::Arc;
use std::time::Duration;

use cache_workspace::origin::{empty, full};
use http::{Response, StatusCode};
use tower_http_cache::CacheOutcome;

use crate::{harness, ok};

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
