//! A scripted origin: a hyper HTTP/1 server on 127.0.0.1:0 whose answers a test writes as a
//! closure, and which records every request that reached it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body::Frame;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// The body an origin answers with: complete, or chunks sent over time.
pub type OriginBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// A request as the origin received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The method.
    pub method: Method,
    /// The request target.
    pub uri: Uri,
    /// The header lines.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

type Handler = Arc<
    dyn Fn(Recorded) -> Pin<Box<dyn Future<Output = Response<OriginBody>> + Send>> + Send + Sync,
>;

/// A running origin. It stops when dropped.
pub struct Origin {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Origin {
    /// Starts an origin answering every request with `handler`.
    pub async fn start<F, Fut>(handler: F) -> Origin
    where
        F: Fn(Recorded) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<OriginBody>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |request| Box::pin(handler(request)));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            // Connections live in this set, so stopping the origin closes them too.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                let recorded = recorded.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let handler = handler.clone();
                        let recorded = recorded.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let request = Recorded {
                                method: parts.method,
                                uri: parts.uri,
                                headers: parts.headers,
                                body,
                            };
                            recorded.lock().expect("lock").push(request.clone());
                            Ok::<_, Infallible>(handler(request).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Origin {
            addr,
            requests,
            task,
        }
    }

    /// The origin's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// An absolute URL on this origin.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// How many requests reached the origin.
    pub fn hits(&self) -> usize {
        self.requests.lock().expect("lock").len()
    }

    /// The requests that reached the origin, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("lock").clone()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> OriginBody {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> OriginBody {
    Empty::new()
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// A body sent as `chunks`, each after `delay`, in a background task (chunked encoding).
pub fn slow_chunks(chunks: Vec<Bytes>, delay: Duration) -> OriginBody {
    let (sender, receiver) = mpsc::channel(1);
    tokio::spawn(async move {
        for chunk in chunks {
            tokio::time::sleep(delay).await;
            if sender.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
    });
    ChannelBody { receiver }.boxed()
}

/// A body that sends `prefix`, then fails: the connection is cut mid-body.
pub fn failing_after(prefix: Bytes) -> OriginBody {
    let (sender, receiver) = mpsc::channel(2);
    tokio::spawn(async move {
        let _ = sender.send(Ok(prefix)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = sender
            .send(Err(std::io::Error::other("origin body failed")))
            .await;
    });
    ChannelBody { receiver }.boxed()
}

struct ChannelBody {
    receiver: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.receiver
            .poll_recv(cx)
            .map(|item| item.map(|result| result.map(Frame::data)))
    }
}

/// The client side: hyper-util's legacy client over plain HTTP.
pub type LegacyClient = Client<HttpConnector, Full<Bytes>>;

/// A hyper-util legacy client, the transport the layer wraps in the tests and examples.
pub fn client() -> LegacyClient {
    Client::builder(TokioExecutor::new()).build_http()
}
