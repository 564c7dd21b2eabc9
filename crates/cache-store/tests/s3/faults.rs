//! Faults: a TCP relay of the test's own between the store and the server, taken down,
//! stalled and brought back.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_store::conformance::{read_body, read_verified, seeded_body, seeded_response};
use cache_store::{S3Store, Store};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::{fresh_prefix, put, seeds, Server, HOUR, KEY, MIB};

/// A TCP relay to the server on a fixed loopback port, which the test takes down (the port
/// refuses connections and open ones are cut), stalls (connections are accepted but nothing
/// is relayed), and brings back.
struct Relay {
    port: u16,
    upstream: String,
    stalled: Arc<AtomicBool>,
    /// Reads from clients held while stalled, now: requests in flight at once.
    held: Arc<AtomicUsize>,
    task: Option<JoinHandle<()>>,
}

impl Relay {
    async fn start(endpoint: &str) -> Relay {
        let upstream = endpoint.trim_start_matches("http://").trim_end_matches('/');
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mut relay = Relay {
            port,
            upstream: upstream.to_owned(),
            stalled: Arc::default(),
            held: Arc::default(),
            task: None,
        };
        relay.serve(listener);
        relay
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn serve(&mut self, listener: TcpListener) {
        let (upstream, stalled) = (self.upstream.clone(), self.stalled.clone());
        let held = self.held.clone();
        self.task = Some(tokio::spawn(async move {
            // Dropping the set (when the task is aborted) cuts every relayed connection.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, stalled) = (upstream.clone(), stalled.clone());
                let held = held.clone();
                connections.spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (from_client, to_client) = client.into_split();
                    let (from_server, to_server) = server.into_split();
                    tokio::join!(
                        pump(from_client, to_server, stalled.clone(), Some(held)),
                        pump(from_server, to_client, stalled, None),
                    );
                });
            }
        }));
    }

    fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    async fn up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("rebinding port {}: {e}", self.port),
            }
        };
        self.serve(listener);
    }
}

/// Copies one direction of a relayed connection, holding every read while the relay is
/// stalled (so that pooled connections stall too).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
    held: Option<Arc<AtomicUsize>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if stalled.load(Ordering::Relaxed) {
            let held = held.as_deref();
            held.map(|held| held.fetch_add(1, Ordering::Relaxed));
            while stalled.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            held.map(|held| held.fetch_sub(1, Ordering::Relaxed));
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.down();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_away_gives_quick_errors_and_the_store_recovers_when_it_is_back() {
    let server = server!();
    let mut relay = Relay::start(&server.endpoint).await;
    let store = S3Store::builder(server.url_via(&relay.endpoint(), &fresh_prefix()))
        .timeout(Duration::from_millis(500))
        .build()
        .await
        .expect("open");
    put(&store, KEY, None, 1, 1000, HOUR).await;
    assert_eq!(seeds(&read_verified(&store, KEY).await), [1]);

    relay.down();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let error = store.get(KEY).await.expect_err("down").to_string();
    assert!(error.contains("cannot be reached"), "{error}");
    let mut writer = store
        .begin(KEY, seeded_response(None, 2, 10).into(), HOUR)
        .await
        .expect("begin does no IO");
    writer.write(seeded_body(2, 10)).expect("write");
    assert!(
        writer.commit().await.is_err(),
        "a commit to a server that is down"
    );
    // The circuit breaker: right after a request failed to reach the server, the next ones
    // fail at once, without a connection attempt and object_store's retries.
    let mut refused_by_the_breaker = 0;
    for _ in 0..50 {
        let error = store.get(KEY).await.expect_err("down").to_string();
        assert!(error.contains("cannot be reached"), "{error}");
        refused_by_the_breaker += usize::from(error.contains("not trying again yet"));
    }
    assert!(
        refused_by_the_breaker >= 25,
        "{refused_by_the_breaker} of 50 lookups were refused at once"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    relay.up().await;
    // The breaker lets a probe through once its pause (250 ms) is over.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The same store, not rebuilt: it reconnects.
    assert_eq!(seeds(&read_verified(&store, KEY).await), [1]);
    put(&store, KEY, None, 3, 1000, HOUR).await;
    assert_eq!(seeds(&read_verified(&store, KEY).await), [3]);
}

/// A response without `Vary` is stored under an object name known in advance, so a read of
/// its key sends that object's GET together with the key's LIST: one round trip, not two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_without_vary_is_read_with_its_list_and_its_get_in_flight_together() {
    let server = server!();
    let relay = Relay::start(&server.endpoint).await;
    let store = S3Store::builder(server.url_via(&relay.endpoint(), &fresh_prefix()))
        .build()
        .await
        .expect("open");
    put(&store, KEY, None, 1, 1000, HOUR).await;
    relay.stalled.store(true, Ordering::Relaxed);
    let store = Arc::new(store);
    let reader = store.clone();
    let read = tokio::spawn(async move { seeds(&read_verified(&*reader, KEY).await) });
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut most = 0;
    while most < 2 && Instant::now() < deadline {
        most = most.max(relay.held.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    relay.stalled.store(false, Ordering::Relaxed);
    assert_eq!(
        most, 2,
        "requests in flight at once while the server stalled"
    );
    assert_eq!(read.await.expect("read"), [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_makes_poll_ready_wait_and_an_unpolled_writer_fail_at_its_bound() {
    let server = server!();
    let relay = Relay::start(&server.endpoint).await;
    let store = S3Store::builder(server.url_via(&relay.endpoint(), &fresh_prefix()))
        .timeout(Duration::from_secs(10))
        .build()
        .await
        .expect("open");
    let len = 16 * MIB;
    let body = seeded_body(7, len);
    relay.stalled.store(true, Ordering::Relaxed);

    // A writer that never waits: the part being filled, one queued, one being sent, then
    // the write that needs a fourth part fails instead of holding more.
    let mut writer = store
        .begin(KEY, seeded_response(None, 7, len).into(), HOUR)
        .await
        .expect("begin");
    let mut failed_at = None;
    for (i, piece) in body.chunks(MIB).enumerate() {
        if let Err(error) = writer.write(body.slice_ref(piece)) {
            assert!(error.to_string().contains("fell behind"), "{error}");
            failed_at = Some(i);
            break;
        }
        // Let the background upload take what it can.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failed_at = failed_at.expect("the bound was never reached");
    assert!(
        (10..=16).contains(&failed_at),
        "failed after {failed_at} MiB"
    );
    drop(writer);

    // A writer that polls readiness waits while the server is stalled, holding two parts (the
    // one being uploaded and a full one), and goes on once the server answers.
    let mut writer = store
        .begin(KEY, seeded_response(None, 8, len).into(), HOUR)
        .await
        .expect("begin");
    let body = seeded_body(8, len);
    let mut pieces = body.chunks(MIB).peekable();
    let mut written = 0;
    while let Some(piece) = pieces.peek() {
        let ready = std::future::poll_fn(|cx| writer.poll_ready(cx));
        match tokio::time::timeout(Duration::from_millis(300), ready).await {
            Err(_pending) => break,
            Ok(ready) => ready.expect("ready"),
        }
        writer.write(body.slice_ref(piece)).expect("write");
        written += piece.len();
        pieces.next();
    }
    assert_eq!(
        written,
        10 * MIB,
        "poll_ready was pending after {written} bytes"
    );
    relay.stalled.store(false, Ordering::Relaxed);
    for piece in pieces {
        std::future::poll_fn(|cx| writer.poll_ready(cx))
            .await
            .expect("ready");
        writer.write(body.slice_ref(piece)).expect("write");
    }
    writer.commit().await.expect("commit");
    assert_eq!(seeds(&read_verified(&store, KEY).await), [8]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stalling_mid_body_ends_the_body_in_an_error_instead_of_a_hang() {
    let server = server!();
    let relay = Relay::start(&server.endpoint).await;
    let store = S3Store::builder(server.url_via(&relay.endpoint(), &fresh_prefix()))
        .timeout(Duration::from_millis(300))
        .build()
        .await
        .expect("open");
    let len = 12 * MIB;
    put(&store, KEY, None, 1, len, HOUR).await;
    let entries = store.get(KEY).await.expect("get");
    let body = entries[0].body().expect("body");
    relay.stalled.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(20), read_body(body))
        .await
        .expect("the read hung");
    let error = read.expect_err("a body read through a stalled server");
    // Our plain client's words, or reqwest's (with s3-tls).
    let error = error.to_string();
    assert!(
        error.contains("sent nothing") || error.contains("timed out"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    relay.stalled.store(false, Ordering::Relaxed);
    // The entry itself is fine: read again once the server answers.
    assert_eq!(seeds(&read_verified(&store, KEY).await), [1]);
}
