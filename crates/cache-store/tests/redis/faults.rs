//! Faults: malformed URLs, unreachable servers, and a server killed under a store.

use std::time::{Duration, Instant};

use cache_store::conformance::{read_verified, seeded_body, seeded_response};
use cache_store::{RedisStore, Store, StoreError, VariantId};

use crate::{free_port, fresh_prefix, put, redis_server, seeds, with_prefix, Server, HOUR, KEY};

#[tokio::test]
async fn malformed_urls_and_unreachable_servers_fail_quickly_and_clearly() {
    for (url, says) in [
        ("localhost:6379", "invalid Redis URL"),
        ("http://127.0.0.1:6379", "unknown scheme"),
        ("redis://127.0.0.1:99999", "port"),
        ("redis://a:1,b:2", "redis+cluster://"),
        ("rediss://127.0.0.1:6379", "TLS"),
        ("redis://127.0.0.1:6379/0?prefix=a{b}", "prefix"),
    ] {
        let error = RedisStore::open(url).await.expect_err(url).to_string();
        assert!(error.contains(says), "{url}: {error}");
    }
    let port = free_port();
    for url in [
        format!("redis://127.0.0.1:{port}/0"),
        format!("redis+cluster://127.0.0.1:{port}"),
    ] {
        let started = Instant::now();
        let error = RedisStore::builder(&url)
            .timeout(Duration::from_millis(500))
            .build()
            .await
            .expect_err(&url)
            .to_string();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{url} took {:?}",
            started.elapsed()
        );
        assert!(
            error.contains("cannot connect to Redis") && error.contains("check that the server"),
            "{url}: {error}"
        );
    }
}

/// Fault: the server is killed (SIGKILL) under a store. Every operation then fails quickly
/// with `Unavailable` (no hang, no panic); once a server is back on the same port, the same
/// store works again without being rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_gives_quick_errors_and_the_store_recovers_when_it_is_back() {
    let Some(binary) = redis_server() else {
        return;
    };
    let mut server = Server::start(binary).await;
    let store = RedisStore::builder(with_prefix(&server.url(), &fresh_prefix()))
        .timeout(Duration::from_secs(1))
        .build()
        .await
        .expect("connect");
    put(&store, KEY, None, 1, 200_000).await;
    assert_eq!(seeds(&read_verified(&store, KEY).await), [1]);

    server.kill();
    let variant = VariantId::of(&seeded_response(None, 1, 0));
    for attempt in 0..3 {
        let started = Instant::now();
        let get = store.get(KEY).await;
        assert!(matches!(get, Err(StoreError::Unavailable(_))), "{get:?}");
        let mut writer = store
            .begin(KEY, seeded_response(None, 2, 300_000).into(), HOUR)
            .await
            .expect("begin needs no server");
        // Chunks go to the background task; the failure shows at the latest in the commit.
        let written = writer.write(seeded_body(2, 300_000));
        let commit = writer.commit().await;
        assert!(
            written.is_err() || commit.is_err(),
            "a commit succeeded with no server"
        );
        let update = store
            .update(KEY, &variant, seeded_response(None, 1, 0).into(), HOUR.ttl)
            .await;
        assert!(update.is_err());
        assert!(store.remove(KEY, None).await.is_err());
        assert!(store.clear().await.is_err());
        let took = started.elapsed();
        println!("server down, attempt {attempt}: get, write+commit, update, remove, clear failed in {took:?}");
        assert!(
            took < Duration::from_secs(10),
            "attempt {attempt}: operations took {took:?} with the server down"
        );
    }

    server.restart().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.get(KEY).await.is_err() {
        assert!(Instant::now() < deadline, "the store did not reconnect");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The server came back empty (no persistence); the store writes and reads again.
    assert!(store.get(KEY).await.expect("get").is_empty());
    put(&store, KEY, None, 3, 200_000).await;
    assert_eq!(seeds(&read_verified(&store, KEY).await), [3]);
}
