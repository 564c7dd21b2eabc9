//! Response bodies: streamed to the caller as they arrive, never stored when they fail, are
//! dropped or are over the size limit.

use std::time::Duration;

use bytes::Bytes;
use cache_workspace::origin::{self, full};
use http::Response;
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;
use tower_http_cache::CacheOutcome;

use crate::harness;

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
