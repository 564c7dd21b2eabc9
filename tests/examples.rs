//! Smoke tests of the `proxy` and `custom_pool` examples.
//!
//! The examples' sources are compiled into this test as modules, so their flows (the proxy's
//! demonstration, forwarding, hop-by-hop handling, 502, the pool's reuse) are tested in process
//! on the same code. The compiled example binaries are also run when `cargo test` has built
//! them (it does unless targets are selected), and skipped with a message otherwise.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cache_workspace::origin::{self, Origin};
use example_binaries::example_binary;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_http_cache::CacheOutcome;

#[allow(dead_code)]
#[path = "../examples/proxy/main.rs"]
mod proxy;

#[allow(dead_code)]
#[path = "../examples/custom_pool.rs"]
mod custom_pool;

#[path = "support/example_binaries.rs"]
mod example_binaries;

use proxy::{Command as ProxyCommand, Proxy, StoreChoice, Upstream};

const TIMEOUT: Duration = Duration::from_secs(30);

async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .expect("the example's flow finished in time")
}

#[tokio::test]
async fn proxy_demo_hits_then_put_invalidates() {
    let report = within(proxy::demo()).await.expect("demo runs");
    let steps = &report.steps;
    assert_eq!(steps.len(), 4);

    assert_eq!(steps[0].status, StatusCode::OK);
    assert!(!steps[0].is_hit(), "{}", steps[0].cache_status);
    assert!(
        steps[0].cache_status.contains("stored"),
        "{}",
        steps[0].cache_status
    );
    assert_eq!(steps[0].body, "first version");

    assert!(steps[1].is_hit(), "second GET: {}", steps[1].cache_status);
    assert_eq!(steps[1].body, "first version");

    assert_eq!(steps[2].status, StatusCode::NO_CONTENT);
    assert!(
        !steps[3].is_hit(),
        "GET after PUT: {}",
        steps[3].cache_status
    );
    assert_eq!(steps[3].body, "second version");

    // The hit never reached the origin; the PUT's body did.
    let seen: Vec<_> = report
        .origin_requests
        .iter()
        .map(|r| (r.method.as_str().to_owned(), r.body.clone()))
        .collect();
    assert_eq!(
        seen,
        [
            ("GET".to_owned(), Bytes::new()),
            ("PUT".to_owned(), Bytes::from_static(b"second version")),
            ("GET".to_owned(), Bytes::new()),
        ]
    );
}

async fn memory_proxy(
    upstream: std::net::SocketAddr,
) -> (Upstream, Arc<dyn tower_http_cache::Store>) {
    let upstream = Upstream::parse(&format!("http://{upstream}")).expect("upstream URL");
    let store = StoreChoice::Memory.open().await.expect("memory store");
    (upstream, store)
}

/// Sends `raw` on a new connection and reads the answer until the proxy closes it.
async fn raw_exchange(addr: std::net::SocketAddr, raw: &str) -> String {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the proxy");
    stream.write_all(raw.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    String::from_utf8(answer).expect("UTF-8 answer")
}

#[tokio::test]
async fn proxy_forwards_faithfully_and_strips_hop_by_hop_fields() {
    let origin = Origin::start(|request| async move {
        Response::builder()
            .header("cache-control", "no-store")
            .header("connection", "x-origin-hop")
            .header("x-origin-hop", "must not pass")
            .header("keep-alive", "timeout=5")
            .header("proxy-connection", "keep-alive")
            .header("x-origin-kept", "yes")
            .body(origin::full(format!(
                "echo: {}",
                String::from_utf8_lossy(&request.body)
            )))
            .expect("response")
    })
    .await;
    let (upstream, store) = memory_proxy(origin.addr()).await;
    let proxy = Proxy::start(([127, 0, 0, 1], 0).into(), upstream, store)
        .await
        .expect("proxy starts");

    let answer = within(raw_exchange(
        proxy.addr(),
        "POST /echo?x=1 HTTP/1.1\r\n\
         Host: public.example:8080\r\n\
         Connection: close, X-Hop\r\n\
         X-Hop: secret\r\n\
         Keep-Alive: timeout=5\r\n\
         Proxy-Connection: keep-alive\r\n\
         TE: trailers\r\n\
         X-Custom: a\r\n\
         X-Custom: b\r\n\
         Content-Type: text/plain\r\n\
         Transfer-Encoding: chunked\r\n\
         \r\n\
         5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    ))
    .await;

    // What reached the origin.
    let requests = origin.requests();
    assert_eq!(requests.len(), 1);
    let seen = &requests[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.uri, "/echo?x=1");
    assert_eq!(seen.body, "hello world");
    assert_eq!(seen.headers["host"], "public.example:8080", "Host kept");
    assert_eq!(seen.headers["content-type"], "text/plain");
    let custom: Vec<_> = seen.headers.get_all("x-custom").iter().collect();
    assert_eq!(custom, ["a", "b"], "repeated fields kept in order");
    for hop in ["x-hop", "keep-alive", "proxy-connection", "te", "upgrade"] {
        assert!(!seen.headers.contains_key(hop), "{hop} reached the origin");
    }
    assert!(
        seen.headers.get_all("connection").iter().all(|v| !v
            .to_str()
            .unwrap_or("")
            .to_ascii_lowercase()
            .contains("x-hop")),
        "{:?}",
        seen.headers
    );
    assert!(seen.headers["via"]
        .to_str()
        .expect("ASCII")
        .contains("tower-http-cache"));

    // What came back.
    let (head, body) = answer.split_once("\r\n\r\n").expect("a complete answer");
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("\r\nx-origin-kept: yes"), "{head}");
    assert!(head.contains("\r\ncache-status: proxy;"), "{head}");
    assert!(head.contains("\r\nvia: 1.1 tower-http-cache"), "{head}");
    assert!(!head.contains("x-origin-hop"), "{head}");
    assert!(!head.contains("keep-alive:"), "{head}");
    assert!(!head.contains("proxy-connection"), "{head}");
    assert!(body.contains("echo: hello world"), "{body}");
}

#[tokio::test]
async fn proxy_caches_per_host_and_answers_head_from_get() {
    let origin = Origin::start(|request| async move {
        let host = request
            .headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        Response::builder()
            .header("cache-control", "max-age=60")
            .body(origin::full(format!("page for {host}")))
            .expect("response")
    })
    .await;
    let (upstream, store) = memory_proxy(origin.addr()).await;
    let proxy = Proxy::start(([127, 0, 0, 1], 0).into(), upstream, store)
        .await
        .expect("proxy starts");
    let client = origin::client();
    let url = format!("http://{}/page", proxy.addr());

    let mut answers = Vec::new();
    for (method, host) in [
        ("GET", "a.example"),
        ("GET", "b.example"),
        ("GET", "a.example"),
        ("GET", "b.example"),
        ("HEAD", "a.example"),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(&url)
            .header("host", host)
            .body(Full::<Bytes>::default())
            .expect("request");
        let response = within(client.request(request)).await.expect("answer");
        let status = response.headers()["cache-status"]
            .to_str()
            .expect("ASCII")
            .to_owned();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        answers.push((status.contains("; hit"), body));
    }
    assert_eq!(
        answers,
        [
            (false, Bytes::from_static(b"page for a.example")),
            (false, Bytes::from_static(b"page for b.example")),
            (true, Bytes::from_static(b"page for a.example")),
            (true, Bytes::from_static(b"page for b.example")),
            (true, Bytes::new()),
        ]
    );
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn proxy_with_a_filesystem_store_serves_hits() {
    let origin = Origin::start(|_| async move {
        Response::builder()
            .header("cache-control", "max-age=60")
            .body(origin::full("on disk"))
            .expect("response")
    })
    .await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let choice = proxy::parse_args([
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        format!("--upstream=http://{}", origin.addr()),
        format!("--store=fs:{}", dir.path().display()),
    ])
    .expect("arguments parse");
    let ProxyCommand::Serve(config) = choice else {
        panic!("not a serve command: {choice:?}");
    };
    let store = config.store.open().await.expect("fs store opens");
    let proxy = Proxy::start(config.listen, config.upstream, store)
        .await
        .expect("proxy starts");
    let client = origin::client();
    let mut hits = Vec::new();
    for _ in 0..2 {
        let request = Request::get(format!("http://{}/file", proxy.addr()))
            .body(Full::<Bytes>::default())
            .expect("request");
        let response = within(client.request(request)).await.expect("answer");
        hits.push(
            response.headers()["cache-status"]
                .to_str()
                .expect("ASCII")
                .contains("; hit"),
        );
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(body, "on disk");
    }
    assert_eq!(hits, [false, true]);
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn proxy_answers_502_when_the_upstream_is_down() {
    // A port nothing listens on any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = listener.local_addr().expect("address");
    drop(listener);
    let (upstream, store) = memory_proxy(dead).await;
    let proxy = Proxy::start(([127, 0, 0, 1], 0).into(), upstream, store)
        .await
        .expect("proxy starts");
    let request = Request::get(format!("http://{}/anything", proxy.addr()))
        .body(Full::<Bytes>::default())
        .expect("request");
    let response = within(origin::client().request(request))
        .await
        .expect("the proxy answers");
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("bad gateway"), "{body}");
    // The client learns nothing of the proxy's network: no address, no error chain.
    assert!(
        !body.contains(&dead.port().to_string()) && !body.contains("127.0.0.1"),
        "{body}"
    );
}

#[test]
fn proxy_arguments() {
    let parse = |args: &[&str]| proxy::parse_args(args.iter().map(|a| a.to_string()));

    let Ok(ProxyCommand::Serve(config)) = parse(&["--upstream", "http://127.0.0.1:9000"]) else {
        panic!("defaults");
    };
    assert_eq!(config.listen, ([127, 0, 0, 1], 8080).into());
    assert_eq!(config.upstream.to_string(), "http://127.0.0.1:9000");
    assert_eq!(config.store, StoreChoice::Memory);

    let Ok(ProxyCommand::Serve(config)) = parse(&[
        "--listen",
        "0.0.0.0:0",
        "--upstream",
        "http://localhost:9000/",
        "--store",
        "fs:/tmp/cache dir",
    ]) else {
        panic!("all flags");
    };
    assert_eq!(config.listen, ([0, 0, 0, 0], 0).into());
    assert_eq!(config.store, StoreChoice::Fs("/tmp/cache dir".into()));
    assert_eq!(config.limits, proxy::Limits::default());

    let Ok(ProxyCommand::Serve(config)) = parse(&[
        "--upstream=http://a",
        "--header-timeout=2.5",
        "--upstream-timeout",
        "7",
        "--max-body",
        "1024",
    ]) else {
        panic!("limits");
    };
    assert_eq!(
        config.limits.header_read_timeout,
        Duration::from_millis(2500)
    );
    assert_eq!(config.limits.upstream_timeout, Duration::from_secs(7));
    assert_eq!(config.limits.max_request_body, 1024);

    // The store is shown at startup: never with its secrets.
    let Ok(ProxyCommand::Serve(config)) = parse(&[
        "--upstream=http://a",
        "--store=s3://b/p?access_key_id=AK&secret_access_key=SK&session_token=ST",
    ]) else {
        panic!("s3 store");
    };
    let shown = config.store.to_string();
    assert!(!shown.contains("SK") && !shown.contains("ST"), "{shown}");
    assert!(shown.contains("access_key_id=AK"), "{shown}");
    let Ok(ProxyCommand::Serve(config)) =
        parse(&["--upstream=http://a", "--store=redis://me:hunter2@h:6379/0"])
    else {
        panic!("redis store");
    };
    assert_eq!(config.store.to_string(), "redis://me:***@h:6379/0");

    assert_eq!(parse(&["--demo"]), Ok(ProxyCommand::Demo));
    assert_eq!(parse(&["--help"]), Ok(ProxyCommand::Help));
    for bad in [
        &[][..],
        &["--upstream"],
        &["--upstream", "https://example.com"],
        &["--upstream", "http://example.com/prefix"],
        &["--upstream", "example.com"],
        &["--upstream", "http://a", "--store", "redis"],
        &["--upstream", "http://a", "--store", "fs:"],
        &["--upstream", "http://a", "--listen", "nowhere"],
        &["--upstream", "http://a", "--verbose"],
        &["--upstream", "http://a", "--header-timeout", "0"],
        &["--upstream", "http://a", "--upstream-timeout", "soon"],
        &["--upstream", "http://a", "--max-body", "-1"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn hop_by_hop_fields_are_removed() {
    let mut headers = http::HeaderMap::new();
    for (name, value) in [
        ("connection", "keep-alive, X-One"),
        ("connection", "x-two"),
        ("x-one", "1"),
        ("x-two", "2"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("te", "trailers"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "websocket"),
        ("x-end-to-end", "kept"),
        ("cache-control", "max-age=1"),
    ] {
        headers.append(name, value.parse().expect("value"));
    }
    proxy::forward::strip_hop_by_hop(&mut headers);
    let mut left: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
    left.sort_unstable();
    assert_eq!(left, ["cache-control", "x-end-to-end"]);
}

#[tokio::test]
async fn custom_pool_hits_and_reuses_connections() {
    let report = within(custom_pool::run()).await.expect("example runs");
    let outcomes: Vec<_> = report.steps.iter().map(|s| s.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Some(CacheOutcome::Miss),
            Some(CacheOutcome::Hit),
            Some(CacheOutcome::Miss),
            Some(CacheOutcome::Miss),
            Some(CacheOutcome::Miss),
            Some(CacheOutcome::Miss),
        ]
    );
    assert_eq!(report.steps[1].body, "stored for a minute");
    // The sequential requests shared one connection; the two concurrent ones needed two.
    let opened: Vec<_> = report.steps.iter().map(|s| s.opened).collect();
    assert_eq!(opened[..4], [1, 1, 1, 1]);
    assert_eq!(report.opened, 2);
    assert_eq!(report.idle, 2);
    assert_eq!(report.origin_hits, 5);
}

/// Runs an example binary to completion (killed after a deadline); returns its stdout.
fn run_example(path: &std::path::Path, args: &[&str]) -> String {
    let mut child = Command::new(path)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("example starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} {args:?} did not exit within 60 s", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        path.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn proxy_binary_demo_exits_0_and_shows_a_hit() {
    let Some(path) = example_binary("proxy") else {
        return;
    };
    let stdout = run_example(&path, &["--demo"]);
    assert!(stdout.contains("(cache hit)"), "{stdout}");
    assert!(stdout.contains("Cache-Status: proxy; hit"), "{stdout}");
    assert!(
        stdout.contains("the origin saw 3 requests for 4 sent"),
        "{stdout}"
    );
}

#[test]
fn custom_pool_binary_exits_0_and_shows_a_hit() {
    let Some(path) = example_binary("custom_pool") else {
        return;
    };
    let stdout = run_example(&path, &[]);
    assert!(
        stdout.contains("the second request was a cache hit"),
        "{stdout}"
    );
    assert!(stdout.contains("the pool opened 2 connections"), "{stdout}");
}
