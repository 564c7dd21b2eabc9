//! The listening side: connections with their limits, and one client request through the
//! checks, the cache and back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt};
use tower_http_cache::{CacheLayer, CacheService, Store};

use super::admit::{admit, ViaName};
use super::forward::{Forward, Upstream, UpstreamTimeout};
use super::BoxError;

/// The body of the proxy's answers: a cached or upstream body, or a short error text.
pub(crate) type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// The cache layer over the forwarding service.
type ProxyService = CacheService<Forward>;

/// What the proxy accepts from clients and waits for from the upstream.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Limits {
    /// How long a client may take to send a request head; also how long an idle keep-alive
    /// connection stays open (hyper starts the same timer when it waits for the next
    /// request). A slowloris client is cut off after it. Default 10 s.
    pub(crate) header_read_timeout: Duration,
    /// The largest request head (request line and header lines), in bytes; larger ones get
    /// `431`. Default 16 KiB.
    pub(crate) max_header_bytes: usize,
    /// The most header lines in a request; more get `431`. Default 100.
    pub(crate) max_headers: usize,
    /// The largest request body, in bytes: a larger `Content-Length` gets `413`, and a
    /// chunked body that grows past it is cut off. Default 16 MiB.
    pub(crate) max_request_body: usize,
    /// How long the upstream may take to send its response head; then `504`. Default 30 s.
    pub(crate) upstream_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 << 10,
            max_headers: 100,
            max_request_body: 16 << 20,
            upstream_timeout: Duration::from_secs(30),
        }
    }
}

/// A running proxy. It stops accepting connections when dropped.
pub(crate) struct Proxy {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

/// What every connection shares.
#[derive(Clone)]
struct Serving {
    service: ProxyService,
    upstream: Upstream,
    via: ViaName,
    limits: Arc<Limits>,
}

impl Proxy {
    /// Binds `listen` and serves connections in the background, with the default limits.
    pub(crate) async fn start(
        listen: SocketAddr,
        upstream: Upstream,
        store: Arc<dyn Store>,
    ) -> std::io::Result<Proxy> {
        Proxy::start_with(listen, upstream, store, Limits::default()).await
    }

    /// Binds `listen` and serves connections in the background, within `limits`.
    pub(crate) async fn start_with(
        listen: SocketAddr,
        upstream: Upstream,
        store: Arc<dyn Store>,
        limits: Limits,
    ) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let via = ViaName::new();
        let serving = Serving {
            service: proxy_service(upstream.clone(), store, &via, &limits),
            upstream,
            via,
            limits: Arc::new(limits),
        };
        let task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        eprintln!("accept failed: {error}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                tokio::spawn(serve_connection(serving.clone(), stream, peer));
            }
        });
        Ok(Proxy { addr, task })
    }

    /// The bound address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_connection(serving: Serving, stream: tokio::net::TcpStream, peer: SocketAddr) {
    let limits = serving.limits.clone();
    let handler = hyper::service::service_fn(move |request| handle(serving.clone(), peer, request));
    // A client that goes away mid-exchange, or is cut off by a limit, is not the proxy's
    // problem.
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_headers(limits.max_headers)
        .serve_connection(TokioIo::new(stream), handler)
        .await;
}

/// The cache, in shared mode, over the forwarding service.
fn proxy_service(
    upstream: Upstream,
    store: Arc<dyn Store>,
    via: &ViaName,
    limits: &Limits,
) -> ProxyService {
    let client = Client::builder(TokioExecutor::new()).build_http();
    ServiceBuilder::new()
        .layer(
            CacheLayer::with_shared_store(store)
                .shared(true)
                .cache_status_header(true)
                .cache_name("proxy"),
        )
        .service(Forward {
            client,
            upstream,
            via: via.value(),
            timeout: limits.upstream_timeout,
        })
}

/// One client request: checked and cleaned up, through the cache, and back.
async fn handle(
    serving: Serving,
    peer: SocketAddr,
    mut request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    if request.method() == Method::CONNECT {
        return Ok(error_response(
            StatusCode::NOT_IMPLEMENTED,
            "CONNECT is not supported by this reverse proxy\n",
        ));
    }
    if let Err(refused) = admit(&mut request, peer.ip(), &serving.via, &serving.upstream) {
        return Ok(error_response(refused.status, refused.reason));
    }
    let max_body = serving.limits.max_request_body;
    let announced = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > max_body as u64) {
        return Ok(error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large\n",
        ));
    }
    let request = request.map(|body| Limited::new(body, max_body));
    match serving.service.oneshot(request).await {
        Ok(response) => {
            Ok(response.map(|body| body.map_err(|e| Box::new(e) as BoxError).boxed_unsync()))
        }
        Err(error) => {
            // The details (addresses, the error chain) go to the log, not to the client.
            eprintln!(
                "upstream {} failed: {}",
                serving.upstream,
                error_chain(&*error)
            );
            Ok(if error.is::<UpstreamTimeout>() {
                error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    "the upstream did not answer in time\n",
                )
            } else {
                error_response(
                    StatusCode::BAD_GATEWAY,
                    "bad gateway: the upstream failed\n",
                )
            })
        }
    }
}

fn error_response(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// An error and its sources on one line (the legacy client's errors say little on their own).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
