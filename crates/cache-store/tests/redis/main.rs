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

use cache_store::conformance::{seeded_body, seeded_response, write_when_ready, Harness, Limits};
use cache_store::{RedisStore, Store, VariantId, WriteOptions};
use redis::aio::ConnectionLike;

mod faults;
mod on_both;
mod writes;

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
    write_when_ready(writer.as_mut(), &body, 10_000).await;
    writer.commit().await.expect("commit");
}

fn seeds(seen: &[(VariantId, u64)]) -> Vec<u64> {
    seen.iter().map(|(_, seed)| *seed).collect()
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
