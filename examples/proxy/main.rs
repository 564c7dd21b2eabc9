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
//! `--store memory|fs:PATH|sqlite:PATH|redis://HOST:PORT/DB|redis+cluster://H1:P1,...`
//! (default `memory`; the shared stores need the example built with `--features sqlite` or
//! `--features redis`), `--header-timeout SECS` (default 10),
//! `--upstream-timeout SECS` (default 30), `--max-body BYTES` (default 16 MiB), `--demo`.
//!
//! What the proxy does with each request:
//!
//! - every method is forwarded, request bodies (PUT, POST, ...) are streamed to the upstream
//!   as they arrive, and response bodies are streamed back (and teed into the store when the
//!   response is cacheable);
//! - hop-by-hop fields are removed in both directions (`Connection` and the fields it lists,
//!   `Keep-Alive`, `Proxy-Connection`, `TE`, `Transfer-Encoding`, `Upgrade`); a `Via` field
//!   with a per-process pseudonym is appended in both directions (RFC 9110 §7.6.3), and a
//!   request that already carries it (a loop) gets `508 Loop Detected`;
//! - the client's `Host` is kept, so that an upstream serving several virtual hosts, or
//!   building absolute links and redirects, sees the public name. The cache therefore keys
//!   entries by the URL the client asked for (`http://<Host><path>?<query>`), which is also
//!   what `Location`/`Content-Location` invalidation resolves against; only the connection
//!   goes to `--upstream` (the request target is rewritten to the upstream's scheme and
//!   authority, path and query kept, below the cache layer). A request without `Host`
//!   (HTTP/1.0) gets the upstream's authority;
//! - what a client could use to plant a response for others is checked first (module
//!   `admit`): two `Host` lines or an invalid one get `400`; a target in absolute form wins
//!   over `Host`, which is rewritten to it; `Forwarded`, `X-Forwarded-*`,
//!   `X-HTTP-Method-Override`, `X-Original-URL` and their kin are removed, and the proxy sets
//!   `X-Forwarded-For`, `X-Forwarded-Host` and `X-Forwarded-Proto` itself;
//! - limits (module `server`): a request head must arrive within the header timeout, which
//!   also closes idle connections (slowloris); heads over 16 KiB or 100 lines get `431`;
//!   bodies over `--max-body` get `413` (or are cut off when chunked); an upstream that sends
//!   no response head within the upstream timeout gets the client a `504`;
//! - an unreachable upstream is answered with `502 Bad Gateway`, whose body names no address
//!   or internal error (those go to the proxy's log); `CONNECT` (tunnels) and protocol
//!   upgrades (WebSocket) are not supported: `CONNECT` gets `501 Not Implemented`.

pub(crate) mod admit;
pub(crate) mod forward;
pub(crate) mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cache_workspace::origin::{self, Origin, Recorded};
use http::header::HOST;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower_http_cache::{FsStore, MemoryStore, Store};

pub(crate) use forward::Upstream;
pub(crate) use server::{Limits, Proxy};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
                     [--store memory|fs:PATH|sqlite:PATH|redis://...] [--header-timeout SECS] \
                     [--upstream-timeout SECS] [--max-body BYTES]\n       proxy --demo";

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
    /// What clients may send and how long the upstream may take.
    pub(crate) limits: Limits,
}

/// Which store backs the cache.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StoreChoice {
    /// In memory (lost on exit).
    Memory,
    /// On disk, in this directory (survives restarts).
    Fs(std::path::PathBuf),
    /// Any other store URL (`sqlite:PATH`, `redis://...`, `redis+cluster://...`), opened by
    /// `cache_store::open`.
    Url(String),
}

impl StoreChoice {
    fn parse(value: &str) -> Result<StoreChoice, String> {
        const SHARED: [&str; 4] = ["sqlite:", "redis://", "redis+cluster://", "s3://"];
        if value == "memory" {
            return Ok(StoreChoice::Memory);
        }
        match value.strip_prefix("fs:") {
            Some(path) if !path.is_empty() => Ok(StoreChoice::Fs(path.into())),
            _ if SHARED.iter().any(|prefix| value.starts_with(prefix)) => {
                Ok(StoreChoice::Url(value.to_owned()))
            }
            _ => Err(format!(
                "--store must be `memory`, `fs:PATH`, `sqlite:PATH`, `redis://HOST:PORT/DB` or \
                 `redis+cluster://H1:P1,H2:P2`, not {value:?}"
            )),
        }
    }

    pub(crate) async fn open(&self) -> Result<Arc<dyn Store>, BoxError> {
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
            StoreChoice::Url(url) => tower_http_cache::store::open(url).await?,
        })
    }
}

impl std::fmt::Display for StoreChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreChoice::Memory => f.write_str("memory"),
            StoreChoice::Fs(path) => write!(f, "filesystem at {}", path.display()),
            // The URL may carry a password or an S3 secret key.
            StoreChoice::Url(url) => f.write_str(&tower_http_cache::store::redact(url)),
        }
    }
}

/// Parses the arguments (without the program name).
pub(crate) fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 8080).into();
    let mut upstream = None;
    let mut store = StoreChoice::Memory;
    let mut limits = Limits::default();
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
            "--header-timeout" => {
                limits.header_read_timeout = seconds("--header-timeout", &value(&flag)?)?;
            }
            "--upstream-timeout" => {
                limits.upstream_timeout = seconds("--upstream-timeout", &value(&flag)?)?;
            }
            "--max-body" => {
                let value = value("--max-body")?;
                limits.max_request_body = value
                    .parse()
                    .map_err(|_| format!("--max-body takes a number of bytes, not {value:?}"))?;
            }
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
        limits,
        listen,
        upstream,
        store,
    }))
}

/// A positive number of seconds (fractions allowed).
fn seconds(flag: &str, value: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("{flag} takes a positive number of seconds, not {value:?}"))
}

/// Runs the proxy until Ctrl-C.
async fn serve(config: Config) -> Result<(), BoxError> {
    let store = config.store.open().await?;
    let proxy =
        Proxy::start_with(config.listen, config.upstream.clone(), store, config.limits).await?;
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
    let store = StoreChoice::Memory.open().await?;
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
