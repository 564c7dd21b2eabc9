//! The `proxy` example under hostile clients and origins: each test is named after the attack
//! or fault it withstands. Raw requests go over real loopback connections, so that the test
//! controls every byte (two `Host` lines, absolute-form targets, a slow trickle).

use std::time::Duration;

use cache_workspace::origin::{self, Origin, Recorded};
use http::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[allow(dead_code)]
#[path = "../examples/proxy/main.rs"]
mod proxy;

use proxy::{Limits, Proxy, StoreChoice, Upstream};

const TIMEOUT: Duration = Duration::from_secs(30);

async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .expect("finished in time")
}

fn header(request: &Recorded, name: &str) -> String {
    request
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned()
}

/// An origin whose cacheable page names the host and forwarded host it was built for.
async fn echo_origin() -> Origin {
    Origin::start(|request| async move {
        Response::builder()
            .header("cache-control", "max-age=60")
            .body(origin::full(format!(
                "page for {} via {}",
                header(&request, "host"),
                header(&request, "x-forwarded-host")
            )))
            .expect("response")
    })
    .await
}

async fn start(origin: &Origin, limits: Limits) -> Proxy {
    let upstream = Upstream::parse(&format!("http://{}", origin.addr())).expect("upstream");
    let store = StoreChoice::Memory.open().await.expect("memory store");
    Proxy::start_with(([127, 0, 0, 1], 0).into(), upstream, store, limits)
        .await
        .expect("proxy starts")
}

/// Sends `raw` on a new connection and reads the answer until the proxy closes it.
async fn exchange(proxy: &Proxy, raw: &str) -> String {
    let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
    stream.write_all(raw.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

fn body_of(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

#[tokio::test]
async fn absolute_form_target_with_another_host_cannot_poison_that_target() {
    let origin = echo_origin().await;
    let proxy = start(&origin, Limits::default()).await;
    let planted = within(exchange(
        &proxy,
        "GET http://a.example/page HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n",
    ))
    .await;
    assert_eq!(status_of(&planted), 200, "{planted}");
    let seen = origin.requests();
    assert_eq!(header(&seen[0], "host"), "a.example");
    assert_eq!(seen[0].uri, "/page");

    // a's page, from the cache, is a's; b's page was never stored.
    let a = within(exchange(
        &proxy,
        "GET /page HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
    ))
    .await;
    assert!(a.contains("; hit"), "{a}");
    assert_eq!(body_of(&a), "page for a.example via a.example");
    let b = within(exchange(
        &proxy,
        "GET /page HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n",
    ))
    .await;
    assert!(!b.contains("; hit"), "{b}");
    assert_eq!(body_of(&b), "page for b.example via b.example");
}

#[tokio::test]
async fn two_host_fields_or_an_invalid_host_are_refused_with_400() {
    let origin = echo_origin().await;
    let proxy = start(&origin, Limits::default()).await;
    for raw in [
        "GET /page HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
        "GET /page HTTP/1.1\r\nHost: a.example@b.example\r\nConnection: close\r\n\r\n",
        "GET https://a.example/page HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
    ] {
        let answer = within(exchange(&proxy, raw)).await;
        assert_eq!(status_of(&answer), 400, "{raw:?}: {answer}");
    }
    assert_eq!(origin.hits(), 0);
}

#[tokio::test]
async fn client_forwarding_and_override_headers_cannot_steer_the_upstream() {
    let origin = echo_origin().await;
    let proxy = start(&origin, Limits::default()).await;
    let answer = within(exchange(
        &proxy,
        "GET /page HTTP/1.1\r\nHost: a.example\r\n\
         X-Forwarded-Host: evil.example\r\n\
         Forwarded: host=evil.example\r\n\
         X-Forwarded-For: 6.6.6.6\r\n\
         X-HTTP-Method-Override: DELETE\r\n\
         X-Original-URL: /admin\r\n\
         X-Rewrite-URL: /admin\r\n\
         X-Real-IP: 6.6.6.6\r\n\
         Connection: close\r\n\r\n",
    ))
    .await;
    assert_eq!(body_of(&answer), "page for a.example via a.example");
    let seen = &origin.requests()[0];
    for name in [
        "forwarded",
        "x-http-method-override",
        "x-original-url",
        "x-rewrite-url",
        "x-real-ip",
    ] {
        assert!(
            !seen.headers.contains_key(name),
            "{name} reached the upstream"
        );
    }
    assert_eq!(header(seen, "x-forwarded-for"), "127.0.0.1");
    assert_eq!(header(seen, "x-forwarded-proto"), "http");
}

#[tokio::test]
async fn a_request_that_loops_back_through_the_proxy_gets_508() {
    // A proxy whose upstream is itself.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let upstream = Upstream::parse(&format!("http://127.0.0.1:{port}")).expect("upstream");
    let store = StoreChoice::Memory.open().await.expect("store");
    let proxy = Proxy::start(([127, 0, 0, 1], port).into(), upstream, store)
        .await
        .expect("proxy starts");
    let answer = within(exchange(
        &proxy,
        "GET /page HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
    ))
    .await;
    assert_eq!(status_of(&answer), 508, "{answer}");
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_by_the_header_timeout() {
    let origin = echo_origin().await;
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let proxy = start(&origin, limits).await;
    let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
    stream
        .write_all(b"GET /page HTTP/1.1\r\nHost: a.example\r\n")
        .await
        .expect("write");
    // One header line every 100 ms for 10 s: the proxy must hang up long before the end.
    let mut lines_sent = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
            break;
        }
        lines_sent += 1;
        let mut byte = [0u8; 1];
        // Anything read (an end of stream, an error, a 408) means the proxy hung up.
        let read = tokio::time::timeout(Duration::from_millis(1), stream.read(&mut byte)).await;
        if read.is_ok() {
            break;
        }
    }
    assert!(lines_sent < 100, "the proxy waited for the whole trickle");
    assert_eq!(origin.hits(), 0);

    // An idle connection is closed too (`within` fails the test if it stays open).
    let mut idle = TcpStream::connect(proxy.addr()).await.expect("connect");
    let mut buffer = Vec::new();
    let _ = within(idle.read_to_end(&mut buffer)).await;
    let answer = String::from_utf8_lossy(&buffer);
    assert!(buffer.is_empty() || status_of(&answer) == 408, "{answer}");
}

#[tokio::test]
async fn oversized_heads_and_bodies_are_refused() {
    let origin = Origin::start(|request| async move {
        Response::new(origin::full(format!("got {} bytes", request.body.len())))
    })
    .await;
    let limits = Limits {
        max_request_body: 1024,
        ..Limits::default()
    };
    let proxy = start(&origin, limits).await;
    let many_lines: String = (0..200).map(|i| format!("X-Line-{i}: 1\r\n")).collect();
    let answer = within(exchange(
        &proxy,
        &format!("GET / HTTP/1.1\r\nHost: a\r\n{many_lines}Connection: close\r\n\r\n"),
    ))
    .await;
    assert_eq!(status_of(&answer), 431, "{answer}");
    let long = "x".repeat(20 << 10);
    let answer = within(exchange(
        &proxy,
        &format!("GET / HTTP/1.1\r\nHost: a\r\nX-Long: {long}\r\nConnection: close\r\n\r\n"),
    ))
    .await;
    assert_eq!(
        status_of(&answer),
        431,
        "{}",
        &answer[..answer.len().min(200)]
    );

    let body = "y".repeat(2000);
    let answer = within(exchange(
        &proxy,
        &format!(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n{body}"
        ),
    ))
    .await;
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert_eq!(origin.hits(), 0);

    // A chunked body that grows past the limit never reaches the upstream whole.
    let answer = within(exchange(
        &proxy,
        &format!(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             7d0\r\n{body}\r\n0\r\n\r\n"
        ),
    ))
    .await;
    assert_ne!(body_of(&answer), "got 2000 bytes", "{answer}");
    assert!(origin.requests().iter().all(|r| r.body.len() <= 1024));
}

#[tokio::test]
async fn an_upstream_that_does_not_answer_in_time_gets_the_client_a_504() {
    let origin = Origin::start(|_| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Response::new(origin::full("too late"))
    })
    .await;
    let limits = Limits {
        upstream_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let proxy = start(&origin, limits).await;
    let answer = within(exchange(
        &proxy,
        "GET /slow HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    ))
    .await;
    assert_eq!(status_of(&answer), 504, "{answer}");
    assert!(!answer.contains("127.0.0.1"), "{answer}");
}
