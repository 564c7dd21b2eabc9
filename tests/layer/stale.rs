//! RFC 5861: stale-if-error (§4) and stale-while-revalidate (§3), and what a TTL override
//! keeps of them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cache_workspace::answer::Answer;
use cache_workspace::origin::full;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::ServiceExt;
use tower_http_cache::{CacheOutcome, CacheTtl};

use crate::{counter, harness, ok, Harness};

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
