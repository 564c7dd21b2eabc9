//! The cache layer over a hand-made connection pool instead of hyper-util's client.
//!
//! The pool is a few dozen lines: hyper's low-level HTTP/1 client connections
//! (`hyper::client::conn::http1::handshake` over a tokio `TcpStream`), kept per authority and
//! reused once their previous response body has been read to the end. It becomes a tower
//! service with `tower::service_fn`, and `ServiceBuilder` puts the cache in front of it; the
//! cache needs nothing else from the inner service (no `Clone`, any error type).
//!
//! The example starts a local origin on 127.0.0.1:0 (offline), sends a few requests, and
//! prints what the cache did and how many connections the pool opened.
//!
//! ```text
//! cargo run --example custom_pool
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use cache_workspace::origin::{self, Origin};
use http::header::HOST;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http_cache::{CacheLayer, CacheOutcome, CacheStatus, MemoryStore};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The origin's answer time, so that concurrent requests overlap.
const LATENCY: Duration = Duration::from_millis(50);

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let report = run().await?;
    report.print();
    Ok(())
}

/// A tiny pool of HTTP/1 connections, per authority. Clones share it.
#[derive(Clone, Default)]
pub(crate) struct Pool {
    inner: Arc<PoolInner>,
}

#[derive(Default)]
struct PoolInner {
    /// Connections whose last exchange is over, by authority.
    idle: Mutex<HashMap<String, Vec<SendRequest<Full<Bytes>>>>>,
    /// How many connections were opened.
    opened: AtomicUsize,
}

impl Pool {
    /// How many connections the pool opened.
    pub(crate) fn opened(&self) -> usize {
        self.inner.opened.load(Ordering::SeqCst)
    }

    /// How many connections are idle, for all authorities.
    pub(crate) fn idle(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<SendRequest<Full<Bytes>>>>> {
        self.inner.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a request in absolute form (`http://host:port/path`) on an idle connection to its
    /// authority, or on a new one.
    pub(crate) async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<PooledBody>, BoxError> {
        let (mut parts, body) = request.into_parts();
        if parts.uri.scheme_str() != Some("http") {
            return Err(format!("only http:// URIs are supported, not {}", parts.uri).into());
        }
        let authority = parts
            .uri
            .authority()
            .ok_or_else(|| format!("no authority in {}", parts.uri))?
            .clone();
        // On the wire: origin form, with the authority in `Host`.
        if !parts.headers.contains_key(HOST) {
            parts
                .headers
                .insert(HOST, HeaderValue::from_str(authority.as_str())?);
        }
        parts.uri = Uri::from(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );

        let mut sender = self.checkout(authority.as_str()).await?;
        let response = sender
            .send_request(Request::from_parts(parts, body))
            .await?;
        // The connection goes back to the pool when the response body has been read.
        let pool = self.clone();
        let key = authority.as_str().to_owned();
        Ok(response.map(|body| PooledBody::new(body, pool, key, sender)))
    }

    /// An idle connection that is still open, or a new one.
    async fn checkout(&self, authority: &str) -> Result<SendRequest<Full<Bytes>>, BoxError> {
        loop {
            let idle = self.lock().get_mut(authority).and_then(Vec::pop);
            let Some(mut sender) = idle else { break };
            // An idle connection is ready once hyper has seen the end of its last exchange;
            // one the server closed fails here and is dropped.
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        let stream = TcpStream::connect(authority).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        // The connection's I/O runs in its own task until either side closes it.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        self.inner.opened.fetch_add(1, Ordering::SeqCst);
        Ok(sender)
    }

    fn checkin(&self, authority: String, sender: SendRequest<Full<Bytes>>) {
        if !sender.is_closed() {
            self.lock().entry(authority).or_default().push(sender);
        }
    }
}

/// A response body that returns its connection to the pool once read to the end. Dropped
/// early, it drops the connection (its unread bytes make it unusable).
pub(crate) struct PooledBody {
    body: Incoming,
    slot: Option<(Pool, String, SendRequest<Full<Bytes>>)>,
}

impl PooledBody {
    fn new(
        body: Incoming,
        pool: Pool,
        authority: String,
        sender: SendRequest<Full<Bytes>>,
    ) -> Self {
        let mut body = PooledBody {
            body,
            slot: Some((pool, authority, sender)),
        };
        if body.body.is_end_stream() {
            body.release();
        }
        body
    }

    fn release(&mut self) {
        if let Some((pool, authority, sender)) = self.slot.take() {
            pool.checkin(authority, sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.body).poll_frame(cx));
        match &frame {
            None => self.release(),
            Some(Ok(_)) if self.body.is_end_stream() => self.release(),
            Some(Err(_)) => self.slot = None,
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// One request of the example and what came back.
#[derive(Debug)]
pub(crate) struct Step {
    /// The request path.
    pub(crate) path: String,
    /// What the cache did.
    pub(crate) outcome: Option<CacheOutcome>,
    /// The response body.
    pub(crate) body: String,
    /// Connections the pool had opened after this request.
    pub(crate) opened: usize,
}

/// What the example did.
#[derive(Debug)]
pub(crate) struct Report {
    /// The requests, in order (the last two ran concurrently).
    pub(crate) steps: Vec<Step>,
    /// Requests that reached the origin.
    pub(crate) origin_hits: usize,
    /// Connections the pool opened.
    pub(crate) opened: usize,
    /// Connections idle in the pool at the end.
    pub(crate) idle: usize,
}

impl Report {
    fn print(&self) {
        for (i, step) in self.steps.iter().enumerate() {
            let hit = if matches!(step.outcome, Some(CacheOutcome::Hit)) {
                "  <- cache hit, the pool was not used"
            } else {
                ""
            };
            println!(
                "{}. GET {:<12} {:?} {:?}, connections opened so far: {}{hit}",
                i + 1,
                step.path,
                step.outcome,
                step.body,
                step.opened,
            );
        }
        println!(
            "\n{} requests sent, {} reached the origin; the pool opened {} connections \
             ({} idle now)",
            self.steps.len(),
            self.origin_hits,
            self.opened,
            self.idle,
        );
        if self
            .steps
            .get(1)
            .is_some_and(|s| s.outcome == Some(CacheOutcome::Hit))
        {
            println!("the second request was a cache hit");
        }
    }
}

/// Starts an origin, sends the requests through the cache and the pool, and reports.
pub(crate) async fn run() -> Result<Report, BoxError> {
    let origin = Origin::start(|request| async move {
        tokio::time::sleep(LATENCY).await;
        let path = request.uri.path().to_owned();
        let response = Response::builder().header("content-type", "text/plain");
        match path.as_str() {
            "/cached" => response
                .header("cache-control", "max-age=60")
                .body(origin::full("stored for a minute")),
            "/live" | "/live/a" | "/live/b" => response
                .header("cache-control", "no-store")
                .body(origin::full(format!("live data from {path}"))),
            _ => response.status(StatusCode::NOT_FOUND).body(origin::empty()),
        }
        .unwrap_or_else(|_| Response::new(origin::empty()))
    })
    .await;

    let pool = Pool::default();
    let transport = {
        let pool = pool.clone();
        tower::service_fn(move |request: Request<Full<Bytes>>| {
            let pool = pool.clone();
            async move { pool.send(request).await }
        })
    };
    let mut client = ServiceBuilder::new()
        .layer(CacheLayer::new(
            MemoryStore::builder().max_capacity_bytes(16 << 20).build(),
        ))
        .service(transport);

    let mut steps = Vec::new();
    // One after the other: a miss, a hit, then uncacheable responses on the reused connection.
    for path in ["/cached", "/cached", "/live", "/live"] {
        let step = get(&mut client, origin.addr(), path, &pool).await?;
        steps.push(step);
    }
    // Two at once: the idle connection serves one, the pool opens another for the other.
    let (mut first, mut second) = (client.clone(), client.clone());
    let (a, b) = tokio::join!(
        get(&mut first, origin.addr(), "/live/a", &pool),
        get(&mut second, origin.addr(), "/live/b", &pool),
    );
    steps.push(a?);
    steps.push(b?);

    Ok(Report {
        steps,
        origin_hits: origin.hits(),
        opened: pool.opened(),
        idle: pool.idle(),
    })
}

async fn get<S, B>(
    client: &mut S,
    origin: SocketAddr,
    path: &str,
    pool: &Pool,
) -> Result<Step, BoxError>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    let request = Request::get(format!("http://{origin}{path}")).body(Full::default())?;
    let response = client
        .ready()
        .await
        .map_err(Into::<BoxError>::into)?
        .call(request)
        .await
        .map_err(Into::<BoxError>::into)?;
    let outcome = response
        .extensions()
        .get::<CacheStatus>()
        .map(|status| status.outcome);
    // Reading the body to the end stores a cacheable response and frees the connection.
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(Into::<BoxError>::into)?
        .to_bytes();
    Ok(Step {
        path: path.to_owned(),
        outcome,
        body: String::from_utf8_lossy(&body).into_owned(),
        opened: pool.opened(),
    })
}
