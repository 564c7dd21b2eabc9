//! Writes and reads of bodies: backpressure at the default write queue, a stalled or paused
//! server, and a small entry read back whole.

use std::time::{Duration, Instant};

use cache_store::conformance::{read_body, read_verified, seeded_body, seeded_response};
use cache_store::{RedisStore, Store, StoreError};

use crate::{
    fresh_prefix, open, put, redis_server, seeds, url_from_env, with_prefix, Raw, Redis, Server,
    HOUR, KEY, STANDALONE,
};

/// The other side of the bound: a writer that waits for readiness before each write (as the
/// cache's tee does) is slowed, never refused, even when one write brings 64 chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_waits_is_never_refused_at_the_default_queue() {
    let Some(mut harness) = Redis::from_env(STANDALONE) else {
        return;
    };
    harness.default_queue = true;
    cache_store::conformance::large_writes_after_readiness(&harness).await;
}

/// Backpressure: with the default queue (8 chunks and an overflow of 8) a large body written
/// without waiting for readiness while the server is stalled (`CLIENT PAUSE`) fails with
/// `Unavailable` once about 1.1 MiB are buffered, instead of buffering the whole body; nothing becomes visible, and the store works afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_makes_a_large_write_fail_at_the_default_bound() {
    let Some(binary) = redis_server() else {
        return;
    };
    let server = Server::start(binary).await;
    let store = RedisStore::open(&with_prefix(&server.url(), &fresh_prefix()))
        .await
        .expect("connect");
    let raw = Raw::connect(&server.url()).await;
    let _: () = raw
        .query(redis::cmd("CLIENT").arg("PAUSE").arg(1500).arg("WRITE"))
        .await;
    let len = 4 << 20;
    let body = seeded_body(1, len);
    let mut writer = store
        .begin(KEY, seeded_response(None, 1, len).into(), HOUR)
        .await
        .expect("begin");
    let mut failed_at = None;
    for (i, piece) in body.chunks(16 * 1024).enumerate() {
        match writer.write(body.slice_ref(piece)) {
            Ok(()) => {}
            Err(StoreError::Unavailable(why)) => {
                assert!(why.to_string().contains("fell behind"), "{why}");
                failed_at = Some(i * 16 * 1024);
                break;
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    let failed_at = failed_at.expect("a stalled server let a 4 MiB body be buffered");
    assert!(
        failed_at <= 19 * 64 * 1024,
        "the writer buffered {failed_at} bytes"
    );
    assert!(writer.commit().await.is_err());
    let _: () = raw.query(redis::cmd("CLIENT").arg("UNPAUSE")).await;
    assert!(store.get(KEY).await.expect("get").is_empty());
    put(&store, KEY, None, 2, 100_000).await;
    assert_eq!(seeds(&read_verified(&store, KEY).await), [2]);
}

#[tokio::test]
async fn a_small_entry_round_trips_as_one_bytes() {
    let Some(url) = url_from_env(STANDALONE) else {
        return;
    };
    let store = open(&url, &fresh_prefix()).await;
    put(&store, KEY, None, 5, 65_536).await;
    let entries = store.get(KEY).await.expect("get");
    let body = entries[0].body().expect("body");
    // A body of one chunk is inline in its record: read with the index, handed out whole.
    assert!(entries[0].body().is_some(), "an inline body is shared");
    assert_eq!(read_body(body).await.expect("body"), seeded_body(5, 65_536));
}

/// Backpressure through `poll_ready`: a writer that waits for it before each write, as the
/// cache's tee does, is held back while the server is paused (shorter than the timeout), and
/// then stores the whole body with the default queue, never failing with `Unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_polled_for_readiness_waits_for_a_paused_server_instead_of_failing() {
    let Some(binary) = redis_server() else {
        return;
    };
    let server = Server::start(binary).await;
    let store = RedisStore::open(&with_prefix(&server.url(), &fresh_prefix()))
        .await
        .expect("connect");
    let raw = Raw::connect(&server.url()).await;
    let len = 4 << 20;
    let body = seeded_body(7, len);
    let mut writer = store
        .begin(KEY, seeded_response(None, 7, len).into(), HOUR)
        .await
        .expect("begin");
    let _: () = raw
        .query(redis::cmd("CLIENT").arg("PAUSE").arg(700).arg("WRITE"))
        .await;
    let started = Instant::now();
    let mut waited = Duration::ZERO;
    for piece in body.chunks(64 * 1024) {
        let before = Instant::now();
        std::future::poll_fn(|cx| writer.poll_ready(cx))
            .await
            .expect("ready");
        waited += before.elapsed();
        writer.write(body.slice_ref(piece)).expect("write");
    }
    writer.commit().await.expect("commit");
    assert!(
        waited >= Duration::from_millis(300),
        "the writer never waited for the paused server ({waited:?} of {:?})",
        started.elapsed()
    );
    assert_eq!(seeds(&read_verified(&store, KEY).await), [7]);
}
