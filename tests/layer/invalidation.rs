//! RFC 9111 §4.4: unsafe methods invalidate the target URI, a same-origin Location, and the
//! key a request names.

use std::sync::atomic::Ordering;

use cache_workspace::origin::empty;
use http::{Response, StatusCode};
use http_body_util::Full;
use tower_http_cache::{CacheKey, CacheOutcome, CacheStatusFwd};

use crate::{counter, harness, ok};

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
