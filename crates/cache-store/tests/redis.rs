//! The conformance suite and Redis-specific checks for [`RedisStore`], against a standalone
//! server (`REDIS_URL`) and a cluster (`REDIS_CLUSTER_URL`); `scripts/redis.sh start DIR`
//! starts both and prints the variables. Without them each test says it is skipped, except
//! under CI (`CI=true`), where a missing server is a failure. The fault and backpressure tests
//! start throwaway `redis-server`s of their own (found on PATH, same rules).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use cache_store::conformance::{
    read_body, read_verified, seeded_body, seeded_response, Harness, Limits,
};
use cache_store::{RedisStore, Store, StoreError, VariantId, WriteOptions};
use redis::aio::ConnectionLike;

const STANDALONE: &str = "REDIS_URL";
const CLUSTER: &str = "REDIS_CLUSTER_URL";

const HOUR: WriteOptions = WriteOptions {
    ttl: Duration::from_secs(3600),
    content_length: None,
};

const KEY: &str = "https://example.com/redis";

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The URL in `var`; `None` (the test is skipped) when it is unset, except under CI.
fn url_from_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if under_ci() => panic!("{var} is not set under CI: the Redis tests need a server"),
        _ => {
            println!("skipped: {var} not set (scripts/test.sh starts a server)");
            None
        }
    }
}

/// A prefix no other test (or run) uses.
fn fresh_prefix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("t{}-{nanos:x}-{n}:", std::process::id())
}

/// `url` with its prefix parameter.
fn with_prefix(url: &str, prefix: &str) -> String {
    format!("{url}?prefix={}", prefix.replace(':', "%3A"))
}

/// Runs a future from synchronous harness code, on the test's own runtime.
fn block<F: std::future::Future>(fut: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(fut))
}

/// A raw connection (as another process, or an operator, would have), for damaging entries.
#[derive(Clone)]
enum Raw {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Raw {
    async fn connect(url: &str) -> Raw {
        if let Some(hosts) = url.strip_prefix("redis+cluster://") {
            let nodes: Vec<String> = hosts.split(',').map(|h| format!("redis://{h}")).collect();
            let client = redis::cluster::ClusterClient::new(nodes).expect("cluster client");
            Raw::Cluster(
                client
                    .get_async_connection()
                    .await
                    .expect("cluster connection"),
            )
        } else {
            let client = redis::Client::open(url).expect("client");
            Raw::Single(
                client
                    .get_multiplexed_async_connection()
                    .await
                    .expect("connection"),
            )
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        let value = match self.clone() {
            Raw::Single(mut c) => c.req_packed_command(cmd).await,
            Raw::Cluster(mut c) => c.req_packed_command(cmd).await,
        };
        redis::from_redis_value(value.expect("raw command")).expect("raw answer")
    }

    async fn records(&self, store: &RedisStore, key: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.query(redis::cmd("HGETALL").arg(store.index_key(key)))
            .await
    }
}

/// Makes each store with a fresh prefix on the server (or cluster) of `url`.
struct Redis {
    url: String,
    /// Keep the default write queue (8 chunks) instead of one as deep as the largest body.
    default_queue: bool,
}

impl Redis {
    fn from_env(var: &str) -> Option<Redis> {
        url_from_env(var).map(|url| Redis {
            url,
            default_queue: false,
        })
    }
}

impl Harness for Redis {
    type Store = RedisStore;

    fn new_store(&self, limits: Limits) -> RedisStore {
        let builder = RedisStore::builder(with_prefix(&self.url, &fresh_prefix()))
            .max_size_bytes(limits.max_total_bytes)
            .max_body_size(limits.max_body_size);
        if self.default_queue {
            return block(builder.build()).expect("connect");
        }
        let builder = builder
            // The suite's writers write whole bodies (up to 5 MiB) without ever yielding to the
            // executor, which no network store keeps up with: with a queue of a few chunks
            // their writes would fail by design (see `a_stalled_server_makes_a_large_write_
            // fail_at_the_default_bound`). A queue as deep as the largest body lets the suite
            // check everything else.
            .write_queue_chunks((limits.max_body_size as usize).div_ceil(64 * 1024) + 1);
        block(builder.build()).expect("connect")
    }

    /// Flips a byte inside the header records of every variant of `key`, through a
    /// connection of its own.
    fn corrupt(&self, store: &RedisStore, key: &str) -> bool {
        block(async {
            let raw = Raw::connect(&self.url).await;
            let records = raw.records(store, key).await;
            assert!(!records.is_empty(), "nothing to corrupt");
            for (field, mut record) in records {
                // After the 44-byte record prelude and the 16-byte codec prelude.
                record[44 + 16 + 10] ^= 0x55;
                let _: i64 = raw
                    .query(
                        redis::cmd("HSET")
                            .arg(store.index_key(key))
                            .arg(field)
                            .arg(record),
                    )
                    .await;
            }
        });
        true
    }
}

mod conformance_standalone {
    cache_store::conformance_tests!(match super::Redis::from_env(super::STANDALONE) {
        Some(harness) => harness,
        None => return,
    });
}

mod conformance_cluster {
    cache_store::conformance_tests!(match super::Redis::from_env(super::CLUSTER) {
        Some(harness) => harness,
        None => return,
    });
}

async fn open(url: &str, prefix: &str) -> RedisStore {
    RedisStore::open(&with_prefix(url, prefix))
        .await
        .expect("connect")
}

async fn put(store: &RedisStore, key: &str, language: Option<&str>, seed: u64, len: usize) {
    let body = seeded_body(seed, len);
    let response = seeded_response(language, seed, len);
    let mut writer = store
        .begin(key, response.into(), HOUR)
        .await
        .expect("begin");
    for piece in body.chunks(10_000) {
        writer.write(body.slice_ref(piece)).expect("write");
    }
    writer.commit().await.expect("commit");
}

fn seeds(seen: &[(VariantId, u64)]) -> Vec<u64> {
    seen.iter().map(|(_, seed)| *seed).collect()
}

/// Runs `check` against the standalone server and the cluster (each when configured).
macro_rules! on_both {
    ($name:ident, $check:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn standalone() {
                if let Some(url) = super::url_from_env(super::STANDALONE) {
                    super::$check(&url).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cluster() {
                if let Some(url) = super::url_from_env(super::CLUSTER) {
                    super::$check(&url).await;
                }
            }
        }
    };
}

on_both!(two_stores_see_each_others_changes, two_stores);
on_both!(racing_writers_never_mix, racing_writers);
on_both!(damaged_chunk_ends_the_body_in_an_error, damaged_chunk);
on_both!(garbled_record_is_a_miss_and_removed, garbled_record);
on_both!(aborted_writer_leaves_nothing, aborted_writer);
on_both!(clear_removes_only_its_prefix, clear_only_prefix);

/// Two stores on one server (as two processes would have) see each other's commits, updates,
/// removals and clears.
async fn two_stores(url: &str) {
    let prefix = fresh_prefix();
    let (one, two) = (open(url, &prefix).await, open(url, &prefix).await);
    put(&one, KEY, Some("en"), 1, 100).await;
    put(&one, KEY, Some("fr"), 2, 300_000).await;
    assert_eq!(seeds(&read_verified(&two, KEY).await), [1, 2]);

    let mut updated = seeded_response(Some("en"), 1, 100);
    updated
        .headers
        .insert("x-updated", "yes".parse().expect("value"));
    let en = VariantId::of(&updated);
    one.update(KEY, &en, updated.into(), Duration::from_secs(60))
        .await
        .expect("update");
    let entries = two.get(KEY).await.expect("get");
    assert!(entries
        .iter()
        .any(|e| e.variant == en && e.response.headers.contains_key("x-updated")));

    two.remove(KEY, Some(&en)).await.expect("remove");
    assert_eq!(seeds(&read_verified(&one, KEY).await), [2]);
    put(&two, "https://example.com/other", None, 3, 10).await;
    one.clear().await.expect("clear");
    assert!(two.get(KEY).await.expect("get").is_empty());
    assert!(two
        .get("https://example.com/other")
        .await
        .expect("get")
        .is_empty());
}

/// Two writers on one key and variant, their chunks interleaved and their commits at once,
/// round after round: every read is one writer's whole entry, and the last commit wins.
async fn racing_writers(url: &str) {
    let prefix = fresh_prefix();
    let (a, b) = (open(url, &prefix).await, open(url, &prefix).await);
    let len = 200_000;
    for round in 0..6u64 {
        let (sa, sb) = (round * 2, round * 2 + 1);
        let (body_a, body_b) = (seeded_body(sa, len), seeded_body(sb, len));
        let mut wa = a
            .begin(KEY, seeded_response(Some("x"), sa, len).into(), HOUR)
            .await
            .expect("begin");
        let mut wb = b
            .begin(KEY, seeded_response(Some("x"), sb, len).into(), HOUR)
            .await
            .expect("begin");
        for (pa, pb) in body_a.chunks(30_000).zip(body_b.chunks(30_000)) {
            wa.write(body_a.slice_ref(pa)).expect("write");
            wb.write(body_b.slice_ref(pb)).expect("write");
            tokio::task::yield_now().await;
        }
        let (ra, rb) = tokio::join!(wa.commit(), wb.commit());
        ra.expect("commit a");
        rb.expect("commit b");
        let seen = seeds(&read_verified(&a, KEY).await);
        assert!(seen == [sa] || seen == [sb], "round {round}: {seen:?}");
        assert_eq!(seeds(&read_verified(&b, KEY).await), seen);
    }
}

/// A chunk overwritten (or deleted) behind the store's back ends the streamed body in an
/// error, and removes that variant only.
async fn damaged_chunk(url: &str) {
    let store = open(url, &fresh_prefix()).await;
    let raw = Raw::connect(url).await;
    let len = 300_000;
    put(&store, KEY, Some("en"), 1, len).await;
    put(&store, KEY, Some("de"), 2, len).await;
    put(&store, KEY, Some("fr"), 3, 100).await;
    let records = raw.records(&store, KEY).await;
    let write_id = |lang: &str| -> String {
        let variant = VariantId::of(&seeded_response(Some(lang), 0, 0));
        let (_, record) = records
            .iter()
            .find(|(field, _)| field.as_slice() == variant.as_bytes())
            .expect("variant stored");
        String::from_utf8(record[..16].to_vec()).expect("hex write id")
    };
    // en: one byte of chunk 2 changed (same length); de: its last chunk deleted.
    let chunk = store.chunk_key(KEY, &write_id("en"), 2);
    let mut data: Vec<u8> = raw.query(redis::cmd("GET").arg(&chunk)).await;
    data[7] ^= 1;
    let _: () = raw
        .query(redis::cmd("SET").arg(&chunk).arg(data).arg("KEEPTTL"))
        .await;
    let last = store.chunk_key(KEY, &write_id("de"), (len as u32).div_ceil(65_536) - 1);
    let _: i64 = raw.query(redis::cmd("DEL").arg(&last)).await;

    let entries = store.get(KEY).await.expect("get");
    assert_eq!(entries.len(), 3, "the damage is found while streaming");
    for entry in &entries {
        let seed: u64 = entry.response.headers["x-seed"]
            .to_str()
            .expect("seed")
            .parse()
            .expect("seed");
        let result = read_body(entry.body().expect("body")).await;
        match seed {
            1 | 2 => assert!(
                matches!(result, Err(StoreError::Corrupt(_))),
                "a damaged body was read without error: {:?}",
                result.map(|b| b.len())
            ),
            _ => assert!(result.is_ok()),
        }
    }
    assert_eq!(seeds(&read_verified(&store, KEY).await), [3]);
    assert_eq!(raw.records(&store, KEY).await.len(), 1);
}

/// A truncated record and a record with a garbled header are misses, and are removed.
async fn garbled_record(url: &str) {
    let store = open(url, &fresh_prefix()).await;
    let raw = Raw::connect(url).await;
    put(&store, KEY, Some("en"), 1, 100).await;
    put(&store, KEY, Some("fr"), 2, 300_000).await;
    put(&store, KEY, Some("de"), 3, 100).await;
    let index = store.index_key(KEY);
    let en = VariantId::of(&seeded_response(Some("en"), 0, 0));
    let fr = VariantId::of(&seeded_response(Some("fr"), 0, 0));
    for (field, record) in raw.records(&store, KEY).await {
        let damaged = if field == en.as_bytes() {
            record[..50].to_vec()
        } else if field == fr.as_bytes() {
            let mut record = record;
            record[44 + 20] ^= 0x10;
            record
        } else {
            continue;
        };
        let _: i64 = raw
            .query(redis::cmd("HSET").arg(&index).arg(field).arg(damaged))
            .await;
    }
    assert_eq!(seeds(&read_verified(&store, KEY).await), [3]);
    assert_eq!(
        raw.records(&store, KEY).await.len(),
        1,
        "damaged records kept"
    );
}

/// The keys under `prefix`, on the server or on every master of the cluster.
async fn keys_under(url: &str, prefix: &str) -> Vec<String> {
    let pattern = format!("{prefix}*");
    if let Some(hosts) = url.strip_prefix("redis+cluster://") {
        let mut all = Vec::new();
        for host in hosts.split(',') {
            let raw = Raw::connect(&format!("redis://{host}")).await;
            let found: Vec<String> = raw.query(redis::cmd("KEYS").arg(&pattern)).await;
            all.extend(found);
        }
        all
    } else {
        let raw = Raw::connect(url).await;
        raw.query(redis::cmd("KEYS").arg(&pattern)).await
    }
}

/// A writer dropped before its commit leaves no visible entry, and its staged chunks go.
async fn aborted_writer(url: &str) {
    let prefix = fresh_prefix();
    let store = open(url, &prefix).await;
    let body = seeded_body(1, 500_000);
    let mut writer = store
        .begin(KEY, seeded_response(None, 1, 500_000).into(), HOUR)
        .await
        .expect("begin");
    writer.write(body.slice(..400_000)).expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(writer);
    assert!(store.get(KEY).await.expect("get").is_empty());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = keys_under(url, &prefix).await;
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "staged chunks left: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `clear` removes the keys of its prefix, not those of a prefix that merely starts with it.
async fn clear_only_prefix(url: &str) {
    let prefix = fresh_prefix();
    let (mine, longer) = (
        open(url, &prefix).await,
        open(url, &format!("{prefix}x:")).await,
    );
    for i in 0..20 {
        put(&mine, &format!("{KEY}/{i}"), None, i, 1000).await;
    }
    put(&longer, KEY, None, 99, 100_000).await;
    mine.clear().await.expect("clear");
    assert!(keys_under(url, &prefix)
        .await
        .iter()
        .all(|k| k.starts_with(&format!("{prefix}x:"))));
    assert_eq!(seeds(&read_verified(&longer, KEY).await), [99]);
}

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

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// `redis-server` on PATH; `None` (skipped) when there is none, except under CI.
fn redis_server() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("redis-server"))
            .find(|p| p.is_file())
    });
    match found {
        Some(path) => Some(path),
        None if under_ci() => panic!("redis-server is not on PATH under CI"),
        None => {
            println!("skipped: redis-server not on PATH (scripts/redis.sh installs it)");
            None
        }
    }
}

/// A throwaway server of this test's own, killed when dropped.
struct Server {
    binary: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Server {
    async fn start(binary: PathBuf) -> Server {
        let mut server = Server {
            binary,
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        server.restart().await;
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn restart(&mut self) {
        let child = Command::new(&self.binary)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
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
