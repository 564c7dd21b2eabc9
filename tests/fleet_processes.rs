//! Issue 10 across real processes: two `proxy` example binaries, each its own OS process,
//! started with the same `--store URL` (one SQLite file, one Redis server, one Redis Cluster,
//! one S3 bucket; a fresh file or key prefix per test) in front of one loopback origin of the
//! test's own. A response stored through one process is a hit through the other, and an
//! unsafe request through one invalidates for the other (RFC 9111 §4.4).
//!
//! `tests/shared_stores.rs` checks the same with two cache instances in one process; here
//! nothing is shared but the store itself.
//!
//! The proxy binary is `target/<profile>/examples/proxy`, built by `cargo build
//! --all-features --examples` (or by a plain `cargo test --all-features`; `cargo test
//! --all-targets` builds the examples only as test harnesses). Without it, when it is older
//! than one of its sources, or when it was built without the store's feature (its `--store`
//! parsing takes every URL, but opening one needs the feature), a test says so and skips;
//! under `CI=true` that is a failure, as is a missing server (`REDIS_URL`,
//! `REDIS_CLUSTER_URL`, `S3_*`, set by `scripts/test.sh`).
//! Every wait has a deadline, and the child processes are killed (and reaped) when a test
//! ends, also when it fails.

#[path = "support/example_binaries.rs"]
mod example_binaries;

#[allow(dead_code)] // the relay is for the fault tests
#[path = "support/s3_server.rs"]
mod s3_server;

#[path = "support/shared_servers.rs"]
mod shared_servers;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cache_workspace::origin::{self, full, Origin};
use example_binaries::{example_binary, under_ci};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use shared_servers::{fresh_prefix, server, with_fresh_prefix};
use tokio::sync::mpsc;

/// The longest any one wait may take (a child starting, a request, a child exiting).
const DEADLINE: Duration = Duration::from_secs(30);

/// The `Host` every request carries, through either proxy: the public name a load balancer
/// in front of a fleet would pass on. The proxy keys entries by the URL the client asked for
/// (`http://<Host><path>`), so both processes must see the same one.
const PUBLIC_HOST: &str = "fleet.example";

/// An origin whose page names its version, bumped by every PUT; GETs are fresh for 600 s.
async fn versioned_origin() -> Origin {
    let version = Arc::new(AtomicUsize::new(1));
    Origin::start(move |request| {
        let version = version.clone();
        async move {
            if request.method == Method::PUT {
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

/// One `proxy` child process; killed and reaped when dropped.
struct ProxyProcess {
    name: &'static str,
    child: Child,
    /// What the child wrote to stderr so far (drained by a thread, so it never blocks).
    stderr: Arc<Mutex<String>>,
    /// Its listening address, from the line it prints on stdout.
    addr: Option<SocketAddr>,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        // SIGKILL, then reap: no child outlives its test, passed or failed.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a proxy process started.
enum Started {
    Listening(ProxyProcess),
    /// The binary was built without the store's feature; the message says which.
    LacksFeature(String),
}

impl ProxyProcess {
    /// Starts `proxy --listen 127.0.0.1:0 --upstream UPSTREAM --store STORE` and waits (up to
    /// [`DEADLINE`]) for the line that names the address it bound.
    async fn start(name: &'static str, binary: &Path, upstream: &str, store: &str) -> Started {
        let mut child = Command::new(binary)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                upstream,
                "--store",
                store,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("proxy {name}: {} does not start: {e}", binary.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut process = ProxyProcess {
            name,
            child,
            stderr: Arc::new(Mutex::new(String::new())),
            addr: None,
        };

        let collected = process.stderr.clone();
        std::thread::spawn(move || {
            let mut stderr = stderr;
            let mut buffer = [0; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut buffer) {
                let text = String::from_utf8_lossy(&buffer[..n]);
                collected
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&text);
            }
        });
        let (lines, mut received) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            // Every line is read (so the pipe never fills); the channel closes at EOF.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = lines.send(line);
            }
        });

        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let line = tokio::time::timeout_at(deadline, received.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "proxy {name} printed no listening address within {DEADLINE:?}; \
                         stderr:\n{}",
                        process.stderr()
                    )
                });
            let Some(line) = line else {
                // Stdout closed: the process is exiting (a store it could not open).
                let status = process.wait_for_exit();
                let stderr = process.stderr();
                if stderr.contains("this build has no") {
                    return Started::LacksFeature(stderr.trim().to_owned());
                }
                panic!(
                    "proxy {name} --store {} exited ({status}); stderr:\n{stderr}",
                    redacted(store)
                );
            };
            // `proxy listening on http://127.0.0.1:PORT, forwarding to ..., store: ...`
            if let Some(rest) = line.strip_prefix("proxy listening on http://") {
                let addr = rest.split(',').next().unwrap_or_default();
                process.addr = Some(addr.parse().unwrap_or_else(|e| {
                    panic!("proxy {name}: {addr:?} in {line:?} is not an address: {e}")
                }));
                return Started::Listening(process);
            }
        }
    }

    fn addr(&self) -> SocketAddr {
        self.addr.expect("a listening proxy")
    }

    /// What the child wrote to stderr so far, for messages.
    fn stderr(&self) -> String {
        let stderr = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        if stderr.is_empty() {
            "(nothing)".to_owned()
        } else {
            stderr.clone()
        }
    }

    /// Waits (up to [`DEADLINE`]) for the child to exit, and a moment for its stderr.
    fn wait_for_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // The stderr thread reads to EOF right after the exit.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "proxy {} closed its stdout but did not exit within {DEADLINE:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The proxy binary, or `None` (skip) when it is not built, except under CI.
fn proxy_binary() -> Option<PathBuf> {
    example_binary("proxy")
}

/// Starts both proxies on `store`; `None` (skip) when the binary lacks the store's feature,
/// except under CI, where every test runs with every feature.
async fn two_proxies(
    binary: &Path,
    upstream: &str,
    store: &str,
) -> Option<(ProxyProcess, ProxyProcess)> {
    let mut started = Vec::new();
    for name in ["A", "B"] {
        match ProxyProcess::start(name, binary, upstream, store).await {
            Started::Listening(process) => started.push(process),
            Started::LacksFeature(message) if under_ci() => panic!(
                "under CI the proxy example must have every store (cargo test \
                 --all-features): {message}"
            ),
            Started::LacksFeature(message) => {
                eprintln!(
                    "skipped: the proxy binary lacks this store (build it with \
                     --all-features): {message}"
                );
                return None;
            }
        }
    }
    let b = started.pop().expect("B");
    let a = started.pop().expect("A");
    Some((a, b))
}

/// One answer through a proxy.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    /// The `Cache-Status` field (RFC 9211), or `-`.
    cache_status: String,
    body: String,
}

impl Answer {
    /// Whether the proxy answered from the store: `Cache-Status: proxy; hit`.
    fn is_hit(&self) -> bool {
        self.cache_status
            .split(';')
            .any(|member| member.trim() == "hit")
    }
}

/// Sends `method /page` (with `headers`) to the proxy at `addr` over plain HTTP/1.1 and reads
/// the whole answer, within [`DEADLINE`].
async fn send(addr: SocketAddr, method: Method, headers: &[(&str, &str)]) -> Answer {
    let mut request = Request::builder()
        .method(method.clone())
        .uri(format!("http://{addr}/page"))
        .header("host", PUBLIC_HOST);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::<Bytes>::default()).expect("request");
    let exchange = async {
        let response = origin::client()
            .request(request)
            .await
            .unwrap_or_else(|e| panic!("{method} /page through {addr}: {e}"));
        let status = response.status();
        let cache_status = response
            .headers()
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{method} /page body through {addr}: {e}"))
            .to_bytes();
        Answer {
            status,
            cache_status,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    };
    tokio::time::timeout(DEADLINE, exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} /page through {addr}: no answer within {DEADLINE:?}"))
}

async fn get(addr: SocketAddr) -> Answer {
    send(addr, Method::GET, &[]).await
}

/// Waits (up to [`DEADLINE`]) until the proxy at `addr` finds `/page` in the store, asking with
/// `Cache-Control: only-if-cached` (RFC 9111 §5.2.1.7), which never reaches the origin: a
/// 504 until the entry is there. Returns how many 504s came first, or the last 504 when the
/// entry never came.
///
/// The proxy that stored the page may send the body's last bytes to its client while its
/// commit to the store is still under way (the commit then finishes in the background), so
/// another process can look a moment too early.
async fn wait_until_stored(addr: SocketAddr) -> Result<usize, Answer> {
    let deadline = Instant::now() + DEADLINE;
    let mut misses = 0;
    loop {
        let probe = send(addr, Method::GET, &[("cache-control", "only-if-cached")]).await;
        if probe.status == StatusCode::OK {
            assert!(probe.is_hit(), "only-if-cached answered: {probe:?}");
            return Ok(misses);
        }
        assert_eq!(
            probe.status,
            StatusCode::GATEWAY_TIMEOUT,
            "only-if-cached answered: {probe:?}"
        );
        if misses == 0 {
            eprintln!("{addr} does not find the page stored yet: {probe:?}");
        }
        misses += 1;
        if Instant::now() > deadline {
            return Err(probe);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The methods that reached the origin, in order.
fn origin_saw(origin: &Origin) -> Vec<String> {
    origin
        .requests()
        .iter()
        .map(|r| r.method.as_str().to_owned())
        .collect()
}

/// `url` without its secret (the S3 URL carries one), for messages.
fn redacted(url: &str) -> String {
    match url.split_once("secret_access_key=") {
        Some((before, after)) => {
            let rest = after.find('&').map_or("", |i| &after[i..]);
            format!("{before}secret_access_key=***{rest}")
        }
        None => url.to_owned(),
    }
}

/// The four steps of the issue through two proxy processes on `store`.
async fn two_proxy_processes_share_one_store(store: &str) {
    let Some(binary) = proxy_binary() else {
        return;
    };
    let origin = versioned_origin().await;
    let upstream = format!("http://{}", origin.addr());
    let Some((a, b)) = two_proxies(&binary, &upstream, store).await else {
        return;
    };
    let shown = redacted(store);
    let context = |step: &str| {
        format!(
            "step {step} (store {shown}); proxy A stderr:\n{}\nproxy B stderr:\n{}",
            a.stderr(),
            b.stderr()
        )
    };

    // 1. Through A: a miss, forwarded and stored.
    let first = get(a.addr()).await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}: {}", context("1"));
    assert!(
        !first.is_hit()
            && first.cache_status.contains("fwd=uri-miss")
            && first.cache_status.contains("stored"),
        "GET through A is not a stored miss: {first:?}: {}",
        context("1")
    );
    assert_eq!(first.body, "version 1");

    // 2. Through B: a hit on what A stored; the origin saw one GET.
    let waited = wait_until_stored(b.addr()).await.unwrap_or_else(|probe| {
        panic!(
            "B did not find what A stored within {DEADLINE:?}: {probe:?}: {}",
            context("2")
        )
    });
    eprintln!("B found A's entry after {waited} only-if-cached 504s (store {shown})");
    let second = get(b.addr()).await;
    assert!(
        second.is_hit(),
        "GET through B is not a hit: {second:?}: {}",
        context("2")
    );
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.body, "version 1");
    assert_eq!(origin_saw(&origin), ["GET"], "{}", context("2"));

    // 3. An unsafe request through B (RFC 9111 §4.4): forwarded, and the stored GET goes.
    let put = send(b.addr(), Method::PUT, &[]).await;
    assert_eq!(
        put.status,
        StatusCode::NO_CONTENT,
        "{put:?}: {}",
        context("3")
    );
    assert_eq!(origin_saw(&origin), ["GET", "PUT"], "{}", context("3"));

    // 4. Through A: B's invalidation is seen, so the origin is asked again.
    let after = get(a.addr()).await;
    assert!(
        !after.is_hit() && after.cache_status.contains("fwd="),
        "GET through A after B's PUT is not a miss: {after:?}: {}",
        context("4")
    );
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(after.body, "version 2", "{}", context("4"));
    assert_eq!(
        origin_saw(&origin),
        ["GET", "PUT", "GET"],
        "{}",
        context("4")
    );
}

/// Two proxy processes on one SQLite file: a GET stored through one is a hit through the
/// other, and a PUT through the other invalidates it for the first (RFC 9111 §4.4).
#[tokio::test]
async fn two_proxy_processes_on_one_sqlite_file_share_hits_and_invalidations() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite:{}", dir.path().join("cache.db").display());
    two_proxy_processes_share_one_store(&url).await;
}

/// Two proxy processes on one Redis server (a fresh key prefix): a GET stored through one is a
/// hit through the other, and a PUT through the other invalidates it for the first (RFC 9111
/// §4.4).
#[tokio::test]
async fn two_proxy_processes_on_one_redis_server_share_hits_and_invalidations() {
    if let Some(url) = server("REDIS_URL") {
        two_proxy_processes_share_one_store(&with_fresh_prefix(&url, "fleet-processes")).await;
    }
}

/// Two proxy processes on one Redis Cluster of three masters (a fresh key prefix): a GET
/// stored through one is a hit through the other, and a PUT through the other invalidates it
/// for the first (RFC 9111 §4.4).
#[tokio::test]
async fn two_proxy_processes_on_one_redis_cluster_share_hits_and_invalidations() {
    if let Some(url) = server("REDIS_CLUSTER_URL") {
        two_proxy_processes_share_one_store(&with_fresh_prefix(&url, "fleet-processes")).await;
    }
}

/// Two proxy processes on one S3 bucket (a fresh object prefix): a GET stored through one is
/// a hit through the other, and a PUT through the other invalidates it for the first (RFC
/// 9111 §4.4).
#[tokio::test]
async fn two_proxy_processes_on_one_s3_bucket_share_hits_and_invalidations() {
    if let Some(s3) = s3_server::S3::from_env() {
        two_proxy_processes_share_one_store(&s3.url(&fresh_prefix("fleet-processes"))).await;
    }
}
