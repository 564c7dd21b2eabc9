//! Request coalescing: concurrent misses share one origin request, unless nothing is stored.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cache_workspace::origin;
use http::{Response, StatusCode};
use tower_http_cache::CacheOutcome;

use crate::{counter, harness};

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
