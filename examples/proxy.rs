//! A caching HTTP reverse proxy: a hyper HTTP/1 server in front of one upstream, with
//! hyper-util's legacy client wrapped in the cache layer as a *shared* cache (RFC 9111 §1),
//! adding an RFC 9211 `Cache-Status` header to every response.
//!
//! ```text
//! cargo run --example proxy -- --demo     # offline: local origin + proxy + a few requests
//! cargo run --example proxy -- --upstream http://127.0.0.1:9000
//! cargo run --example proxy -- --listen 127.0.0.1:0 --upstream http://127.0.0.1:9000 \
//!     --store fs:/tmp/proxy-cache
//! curl -si http://127.0.0.1:8080/some/path    # twice: the second answer has `; hit`
//! ```
//!
//! Flags: `--listen ADDR` (default `127.0.0.1:8080`; port 0 picks a free port, the bound
//! address is printed), `--upstream URL` (`http://host[:port]`, required unless `--demo`),
//! `--store memory|fs:PATH` (default `memory`), `--demo`.
//!
//! What the proxy does with each request:
//!
//! - every method is forwarded, request bodies (PUT, POST, ...) are streamed to the upstream
//!   as they arrive, and response bodies are streamed back (and teed into the store when the
//!   response is cacheable);
//! - hop-by-hop fields are removed in both directions (`Connection` and the fields it lists,
//!   `Keep-Alive`, `Proxy-Connection`, `TE`, `Transfer-Encoding`, `Upgrade`); a `Via` field is
//!   appended in both directions (RFC 9110 §7.6.3); every other field goes through unchanged;
//! - the `Host` field is kept as the client sent it, so that an upstream serving several
//!   virtual hosts, or building absolute links and redirects, sees the public name. The cache
//!   therefore keys entries by the URL the client asked for (`http://<Host><path>?<query>`),
//!   which is also what `Location`/`Content-Location` invalidation resolves against; only the
//!   connection goes to `--upstream` (the request target is rewritten to the upstream's scheme
//!   and authority, path and query kept, below the cache layer). A request without `Host`
//!   (HTTP/1.0) gets the upstream's authority;
//! - an unreachable upstream is answered with `502 Bad Gateway`; `CONNECT` (tunnels) and
//!   protocol upgrades (WebSocket) are not supported: `CONNECT` gets `501 Not Implemented`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use cache_workspace::origin::{self, Origin, Recorded};
use http::header::{CONNECTION, CONTENT_TYPE, HOST, TRANSFER_ENCODING, UPGRADE, VIA};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http_cache::{CacheLayer, CacheService, FsStore, MemoryStore, Store};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of the proxy's answers: a cached or upstream body, or a short error text.
type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// The cache layer over the forwarding service.
type ProxyService = CacheService<Forward>;

/// The value appended to `Via` in both directions.
const VIA_VALUE: &str = "1.1 tower-http-cache";

/// Hop-by-hop fields (RFC 9110 §7.6.1), removed in both directions, as well as any field
/// that `Connection` lists.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

#[tokio::main]
async fn main() {
    let command = match parse_args(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let result = match command {
        Command::Help => {
            println!("{USAGE}");
            Ok(())
        }
        Command::Demo => demo().await.map(|report| report.print()),
        Command::Serve(config) => serve(config).await,
    };
    if let Err(error) = result {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

const USAGE: &str = "usage: proxy [--listen ADDR] --upstream http://HOST[:PORT] \
                     [--store memory|fs:PATH]\n       proxy --demo";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub(crate) enum Command {
    /// Print the usage.
    Help,
    /// Run the offline demonstration.
    Demo,
    /// Run the proxy.
    Serve(Config),
}

/// The proxy's configuration.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Config {
    /// Where to listen.
    pub(crate) listen: SocketAddr,
    /// Where to forward.
    pub(crate) upstream: Upstream,
    /// Where to cache.
    pub(crate) store: StoreChoice,
}

/// The upstream's scheme and authority.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Upstream {
    scheme: Scheme,
    authority: Authority,
}

impl Upstream {
    /// Parses `http://host[:port]` (a trailing `/` is accepted; other paths are not).
    pub(crate) fn parse(url: &str) -> Result<Upstream, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("invalid upstream URL {url:?}: {e}"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(format!(
                "the upstream URL {url:?} needs a scheme and a host, as in http://127.0.0.1:9000"
            ));
        };
        if *scheme != Scheme::HTTP {
            return Err(format!(
                "the upstream URL {url:?}: only http:// is supported (no TLS connector here)"
            ));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "the upstream URL {url:?} must not have a path or query: requests keep theirs"
            ));
        }
        Ok(Upstream {
            scheme: scheme.clone(),
            authority: authority.clone(),
        })
    }

    /// The upstream URI for a request target: its path and query on the upstream.
    fn target(&self, uri: &Uri) -> Result<Uri, http::Error> {
        let path_and_query = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority)
    }
}

/// Which store backs the cache.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StoreChoice {
    /// In memory (lost on exit).
    Memory,
    /// On disk, in this directory (survives restarts).
    Fs(std::path::PathBuf),
}

impl StoreChoice {
    fn parse(value: &str) -> Result<StoreChoice, String> {
        match value {
            "memory" => Ok(StoreChoice::Memory),
            _ => match value.strip_prefix("fs:") {
                Some(path) if !path.is_empty() => Ok(StoreChoice::Fs(path.into())),
                _ => Err(format!(
                    "--store must be `memory` or `fs:PATH`, not {value:?}"
                )),
            },
        }
    }

    pub(crate) fn open(&self) -> Result<Arc<dyn Store>, BoxError> {
        Ok(match self {
            // A long-running proxy reads every response through hyper: copies keep the
            // store's byte bound true (see `MemoryStoreBuilder::copy_bytes`).
            StoreChoice::Memory => Arc::new(
                MemoryStore::builder()
                    .max_capacity_bytes(256 << 20)
                    .copy_bytes(true)
                    .build(),
            ),
            StoreChoice::Fs(path) => {
                Arc::new(FsStore::builder(path).max_size_bytes(1 << 30).build()?)
            }
        })
    }
}

impl std::fmt::Display for StoreChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreChoice::Memory => f.write_str("memory"),
            StoreChoice::Fs(path) => write!(f, "filesystem at {}", path.display()),
        }
    }
}

/// Parses the arguments (without the program name).
pub(crate) fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 8080).into();
    let mut upstream = None;
    let mut store = StoreChoice::Memory;
    let mut demo = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        // `--flag=value` and `--flag value` both work.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--listen" => {
                let value = value("--listen")?;
                listen = value
                    .parse()
                    .map_err(|e| format!("invalid --listen address {value:?}: {e}"))?;
            }
            "--upstream" => upstream = Some(Upstream::parse(&value("--upstream")?)?),
            "--store" => store = StoreChoice::parse(&value("--store")?)?,
            "--demo" => demo = true,
            "-h" | "--help" => return Ok(Command::Help),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if demo {
        return Ok(Command::Demo);
    }
    let upstream = upstream.ok_or("--upstream is required (or use --demo)")?;
    Ok(Command::Serve(Config {
        listen,
        upstream,
        store,
    }))
}

/// Runs the proxy until Ctrl-C.
async fn serve(config: Config) -> Result<(), BoxError> {
    let store = config.store.open()?;
    let proxy = Proxy::start(config.listen, config.upstream.clone(), store).await?;
    println!(
        "proxy listening on http://{}, forwarding to {}, store: {}",
        proxy.addr(),
        config.upstream,
        config.store
    );
    tokio::signal::ctrl_c().await?;
    println!("shutting down");
    Ok(())
}

/// A running proxy. It stops accepting connections when dropped.
pub(crate) struct Proxy {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Binds `listen` and serves connections in the background.
    pub(crate) async fn start(
        listen: SocketAddr,
        upstream: Upstream,
        store: Arc<dyn Store>,
    ) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let service = proxy_service(upstream.clone(), store);
        let task = tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        eprintln!("accept failed: {error}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let service = service.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let handler = hyper::service::service_fn(move |request| {
                        handle(service.clone(), upstream.clone(), request)
                    });
                    // A client that goes away mid-exchange is not the proxy's problem.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), handler)
                        .await;
                });
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

/// The cache, in shared mode, over the forwarding service.
fn proxy_service(upstream: Upstream, store: Arc<dyn Store>) -> ProxyService {
    let client = Client::builder(TokioExecutor::new()).build_http();
    ServiceBuilder::new()
        .layer(
            CacheLayer::with_shared_store(store)
                .shared(true)
                .cache_status_header(true)
                .cache_name("proxy"),
        )
        .service(Forward { client, upstream })
}

/// One client request: cleaned up, through the cache, and back.
async fn handle(
    service: ProxyService,
    upstream: Upstream,
    mut request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    if request.method() == Method::CONNECT {
        return Ok(error_response(
            StatusCode::NOT_IMPLEMENTED,
            "CONNECT is not supported by this reverse proxy\n".into(),
        ));
    }
    strip_hop_by_hop(request.headers_mut());
    if !request.headers().contains_key(HOST) {
        // HTTP/1.0 without Host: name the upstream, so that the request has a target URI
        // (and a cache key).
        if let Ok(host) = HeaderValue::from_str(upstream.authority.as_str()) {
            request.headers_mut().insert(HOST, host);
        }
    }
    match service.oneshot(request).await {
        Ok(response) => {
            Ok(response.map(|body| body.map_err(|e| Box::new(e) as BoxError).boxed_unsync()))
        }
        Err(error) => Ok(error_response(
            StatusCode::BAD_GATEWAY,
            format!(
                "bad gateway: upstream {upstream} unreachable or failed: {}\n",
                error_chain(&*error)
            ),
        )),
    }
}

/// The forwarding service the cache wraps: retargets a request to the upstream and sends it
/// with hyper-util's legacy client (which keeps the `Host` field it is given).
#[derive(Clone)]
pub(crate) struct Forward {
    client: Client<HttpConnector, Incoming>,
    upstream: Upstream,
}

impl Service<Request<Incoming>> for Forward {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Incoming>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Service::<Request<Incoming>>::poll_ready(&mut self.client, cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<Incoming>) -> Self::Future {
        let target = self.upstream.target(request.uri());
        let client = self.client.clone();
        Box::pin(async move {
            *request.uri_mut() = target?;
            request
                .headers_mut()
                .append(VIA, HeaderValue::from_static(VIA_VALUE));
            let mut response = client.request(request).await?;
            // Hop-by-hop fields go before the cache sees the response, so they are never
            // stored.
            strip_hop_by_hop(response.headers_mut());
            response
                .headers_mut()
                .append(VIA, HeaderValue::from_static(VIA_VALUE));
            Ok(response)
        })
    }
}

/// Removes the hop-by-hop fields: those `Connection` lists, then the fixed ones.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    debug_assert!(!headers.contains_key(TRANSFER_ENCODING) && !headers.contains_key(UPGRADE));
}

fn error_response(status: StatusCode, text: String) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(text))
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

/// One request of the demonstration and what came back.
#[derive(Debug)]
pub(crate) struct DemoStep {
    /// What the step shows.
    pub(crate) what: &'static str,
    /// The request method.
    pub(crate) method: Method,
    /// The request path.
    pub(crate) path: &'static str,
    /// The response status.
    pub(crate) status: StatusCode,
    /// The response's `Cache-Status` field, or `-`.
    pub(crate) cache_status: String,
    /// The response body.
    pub(crate) body: String,
}

impl DemoStep {
    /// Whether the proxy answered from its cache.
    pub(crate) fn is_hit(&self) -> bool {
        self.cache_status
            .split(';')
            .any(|member| member.trim() == "hit")
    }
}

/// What the demonstration did.
#[derive(Debug)]
pub(crate) struct DemoReport {
    /// The origin's address.
    pub(crate) origin: SocketAddr,
    /// The proxy's address.
    pub(crate) proxy: SocketAddr,
    /// The requests sent to the proxy.
    pub(crate) steps: Vec<DemoStep>,
    /// The requests that reached the origin.
    pub(crate) origin_requests: Vec<Recorded>,
}

impl DemoReport {
    fn print(&self) {
        println!("origin listening on http://{}", self.origin);
        println!(
            "proxy listening on http://{} (shared cache, memory store)\n",
            self.proxy
        );
        for (i, step) in self.steps.iter().enumerate() {
            println!("{}. {}", i + 1, step.what);
            println!(
                "   {} {} -> {} {:?}{}",
                step.method,
                step.path,
                step.status.as_u16(),
                step.body,
                if step.is_hit() { "  (cache hit)" } else { "" },
            );
            println!("   Cache-Status: {}", step.cache_status);
        }
        println!(
            "\nthe origin saw {} requests for {} sent:",
            self.origin_requests.len(),
            self.steps.len()
        );
        for request in &self.origin_requests {
            println!(
                "   {} {} (Host: {}, body {:?})",
                request.method,
                request.uri,
                request
                    .headers
                    .get(HOST)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-"),
                String::from_utf8_lossy(&request.body),
            );
        }
    }
}

/// The offline demonstration: a local origin, the proxy in front of it, and a GET, a GET
/// served from the cache, a PUT that invalidates it, and a GET that goes to the origin again.
pub(crate) async fn demo() -> Result<DemoReport, BoxError> {
    let document = Arc::new(std::sync::Mutex::new(Bytes::from_static(b"first version")));
    let origin = Origin::start(move |request: Recorded| {
        let document = document.clone();
        async move {
            let mut document = document.lock().unwrap_or_else(|e| e.into_inner());
            let response = Response::builder();
            match (request.method.as_str(), request.uri.path()) {
                ("GET" | "HEAD", "/document") => response
                    .header("cache-control", "max-age=60")
                    .header("content-type", "text/plain")
                    .body(origin::full(document.clone())),
                ("PUT", "/document") => {
                    *document = request.body;
                    response
                        .status(StatusCode::NO_CONTENT)
                        .body(origin::empty())
                }
                _ => response.status(StatusCode::NOT_FOUND).body(origin::empty()),
            }
            .unwrap_or_else(|_| Response::new(origin::empty()))
        }
    })
    .await;
    let upstream = Upstream::parse(&format!("http://{}", origin.addr()))?;
    let store = StoreChoice::Memory.open()?;
    let proxy = Proxy::start(([127, 0, 0, 1], 0).into(), upstream, store).await?;

    let client = origin::client();
    let plan: [(&'static str, Method, &'static str, &'static str); 4] = [
        (
            "first GET: a miss, forwarded and stored",
            Method::GET,
            "/document",
            "",
        ),
        (
            "same GET again: served by the proxy's cache",
            Method::GET,
            "/document",
            "",
        ),
        (
            "PUT with a body: forwarded, invalidates the stored GET",
            Method::PUT,
            "/document",
            "second version",
        ),
        (
            "GET after the PUT: a miss again, the new content",
            Method::GET,
            "/document",
            "",
        ),
    ];
    let mut steps = Vec::new();
    for (what, method, path, body) in plan {
        let request = Request::builder()
            .method(method.clone())
            .uri(format!("http://{}{path}", proxy.addr()))
            .body(Full::new(Bytes::from_static(body.as_bytes())))?;
        let response = client.request(request).await?;
        let status = response.status();
        let cache_status = response
            .headers()
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        // A response is stored once its body has been read to the end.
        let body = response.into_body().collect().await?.to_bytes();
        steps.push(DemoStep {
            what,
            method,
            path,
            status,
            cache_status,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    Ok(DemoReport {
        origin: origin.addr(),
        proxy: proxy.addr(),
        steps,
        origin_requests: origin.requests(),
    })
}
