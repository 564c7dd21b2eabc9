//! Issue 10: two cache instances (as two processes of a fleet would: each its own layer and
//! its own store handle) pointed at one shared store by its URL: one SQLite file, one Redis
//! server, one Redis Cluster, one S3 bucket. A response stored through one is a hit through the
//! other, and an unsafe request through one invalidates for the other.
//!
//! The Redis and S3 tests read `REDIS_URL`, `REDIS_CLUSTER_URL` and the `S3_*` variables (set
//! by `scripts/test.sh`); without them they say so and skip, except under `CI=true`, where a
//! missing server is a failure.

#[path = "support/s3_server.rs"]
#[allow(dead_code)] // the relay is for the fault tests
mod s3_server;

#[path = "support/shared_servers.rs"]
mod shared_servers;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use cache_workspace::answer::Answer;
use cache_workspace::origin::{self, full, LegacyClient, Origin};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use shared_servers::{fresh_prefix, server, with_fresh_prefix};
use tower::{Service, ServiceExt};
use tower_http_cache::{CacheLayer, CacheOutcome, CacheService};

/// An origin whose page names its version, bumped by every PUT.
async fn versioned_origin() -> Origin {
    let version = Arc::new(AtomicUsize::new(1));
    Origin::start(move |request| {
        let version = version.clone();
        async move {
            if request.method == http::Method::PUT {
                version.fetch_add(1, Ordering::SeqCst);
                return Response::builder()
                    .status(StatusCode::NO_CONTENT)
                    .body(origin::empty())
                    .expect("204");
            }
            Response::builder()
                .header("cache-control", "max-age=600")
                .body(full(format!("version {}", version.load(Ordering::SeqCst))))
                .expect("200")
        }
    })
    .await
}

/// One instance of the fleet: its own store handle opened from `url`, its own layer.
async fn instance(url: &str) -> CacheService<LegacyClient> {
    let store = tower_http_cache::store::open(url)
        .await
        .expect("store opens");
    tower::ServiceBuilder::new()
        .layer(CacheLayer::with_shared_store(store).shared(true))
        .service(origin::client())
}

async fn send(service: &mut CacheService<LegacyClient>, request: Request<Full<Bytes>>) -> Answer {
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    Answer::read(response).await
}

async fn two_instances_share_one_cache(url: &str) {
    let origin = versioned_origin().await;
    let (mut a, mut b) = (instance(url).await, instance(url).await);
    let page = origin.url(&format!("/page/{}", std::process::id()));
    let get = || Request::get(&page).body(Full::default()).unwrap();

    let first = send(&mut a, get()).await;
    assert_eq!(first.cache.outcome, CacheOutcome::Miss);
    let through_b = send(&mut b, get()).await;
    assert_eq!(through_b.cache.outcome, CacheOutcome::Hit, "{url}");
    assert_eq!(through_b.body, "version 1");

    // An unsafe request through one instance invalidates for the other (RFC 9111 §4.4).
    send(&mut a, Request::put(&page).body(Full::default()).unwrap()).await;
    let after = send(&mut b, get()).await;
    assert_eq!(after.cache.outcome, CacheOutcome::Miss, "{url}");
    assert_eq!(after.body, "version 2");
    assert_eq!(origin.hits(), 3);
}

#[tokio::test]
async fn two_instances_on_one_sqlite_file_share_one_cache() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite:{}", dir.path().join("cache.db").display());
    two_instances_share_one_cache(&url).await;
}

#[tokio::test]
async fn two_instances_on_one_redis_server_share_one_cache() {
    if let Some(url) = server("REDIS_URL") {
        two_instances_share_one_cache(&with_fresh_prefix(&url, "fleet")).await;
    }
}

#[tokio::test]
async fn two_instances_on_one_redis_cluster_share_one_cache() {
    if let Some(url) = server("REDIS_CLUSTER_URL") {
        two_instances_share_one_cache(&with_fresh_prefix(&url, "fleet")).await;
    }
}

#[tokio::test]
async fn two_instances_on_one_s3_bucket_share_one_cache() {
    if let Some(s3) = s3_server::S3::from_env() {
        two_instances_share_one_cache(&s3.url(&fresh_prefix("fleet"))).await;
    }
}
