//! [`BodyKeyLayer`]: caching requests whose meaning is in their body (POST queries, GraphQL),
//! keyed by a SHA-256 of the body.

use std::error::Error as StdError;
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Request};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use sha2::{Digest, Sha256};
use tower_layer::Layer;
use tower_service::Service;

use crate::CacheKey;

/// Buffers the bodies of requests with the chosen methods (POST by default), up to a size
/// limit, and sets their [`CacheKey`] to the [`default_key`](crate::default_key) of the target
/// URI plus the SHA-256 of the body. Put it in front of a [`CacheLayer`](crate::CacheLayer)
/// whose methods include those methods.
///
/// Requests with other methods, with a key already set, or with a body over the limit go on
/// unchanged and stream as before (a body over the limit is replayed from what was read).
///
/// ```
/// use http::Method;
/// use tower::ServiceBuilder;
/// use tower_http_cache::{BodyKeyLayer, CacheLayer, MemoryStore};
///
/// # let client = tower::service_fn(|_: http::Request<tower_http_cache::ReplayBody<http_body_util::Full<bytes::Bytes>>>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::new())))
/// # });
/// let service = ServiceBuilder::new()
///     .layer(BodyKeyLayer::new().max_body_size(64 * 1024))
///     .layer(CacheLayer::new(MemoryStore::default()).methods([Method::GET, Method::HEAD, Method::POST]))
///     .service(client);
/// ```
#[derive(Debug, Clone)]
pub struct BodyKeyLayer {
    methods: Vec<Method>,
    max_body_size: usize,
}

impl BodyKeyLayer {
    /// Keys POST requests with bodies up to 1 MiB.
    pub fn new() -> Self {
        BodyKeyLayer {
            methods: vec![Method::POST],
            max_body_size: 1 << 20,
        }
    }

    /// The methods whose bodies are part of the key.
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = methods.into_iter().collect();
        self
    }

    /// The largest body buffered; larger requests are not keyed (and so not cached).
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.max_body_size = bytes;
        self
    }
}

impl Default for BodyKeyLayer {
    fn default() -> Self {
        BodyKeyLayer::new()
    }
}

impl<S> Layer<S> for BodyKeyLayer {
    type Service = BodyKey<S>;

    fn layer(&self, inner: S) -> BodyKey<S> {
        BodyKey {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`BodyKeyLayer`].
#[derive(Debug, Clone)]
pub struct BodyKey<S> {
    inner: S,
    layer: BodyKeyLayer,
}

/// An error of [`BodyKey`]: the inner service's, unchanged, or the request body's while it
/// was being read for the key.
#[derive(Debug)]
pub enum BodyKeyError<S, B> {
    /// The inner service failed.
    Inner(S),
    /// Reading the request body failed.
    Body(B),
}

impl<S: fmt::Display, B: fmt::Display> fmt::Display for BodyKeyError<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyKeyError::Inner(e) => e.fmt(f),
            BodyKeyError::Body(e) => write!(f, "reading the request body failed: {e}"),
        }
    }
}

impl<S, B> StdError for BodyKeyError<S, B>
where
    S: StdError + 'static,
    B: StdError + 'static,
{
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            BodyKeyError::Inner(e) => Some(e),
            BodyKeyError::Body(e) => Some(e),
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<B>> for BodyKey<S>
where
    S: Service<Request<ReplayBody<B>>> + Clone + Send + 'static,
    S::Future: Send,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Send,
{
    type Response = S::Response;
    type Error = BodyKeyError<S::Error, B::Error>;
    type Future = BoxFuture<Result<S::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(BodyKeyError::Inner)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let keyed = self.layer.methods.contains(request.method())
            && request.extensions().get::<CacheKey>().is_none();
        if !keyed {
            let future = self.inner.call(request.map(ReplayBody::new));
            return Box::pin(async move { future.await.map_err(BodyKeyError::Inner) });
        }
        // The ready service is the one to call once the body is read; leave a clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let max = self.layer.max_body_size;
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let (prefix, rest) = read_up_to(body, max).await.map_err(BodyKeyError::Body)?;
            let body = match rest {
                Some(rest) => ReplayBody::with_prefix(prefix, rest),
                None => {
                    let target = cache_policy::effective_uri(&parts.uri, &parts.headers);
                    if let Some(target) = target {
                        let digest = Sha256::digest(&prefix);
                        let mut key = crate::default_key(&target);
                        key.push_str("#body-sha256=");
                        for byte in digest {
                            key.push_str(&format!("{byte:02x}"));
                        }
                        parts.extensions.insert(CacheKey(key));
                    }
                    ReplayBody::complete(prefix)
                }
            };
            inner
                .call(Request::from_parts(parts, body))
                .await
                .map_err(BodyKeyError::Inner)
        })
    }
}

/// Reads `body` until its end or until more than `max` bytes. Returns the bytes read and, if
/// the body is longer, the rest of it.
async fn read_up_to<B: Body>(
    body: B,
    max: usize,
) -> Result<(Bytes, Option<Pin<Box<B>>>), B::Error> {
    let mut body = Box::pin(body);
    let mut buffer = BytesMut::new();
    while let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        if let Ok(mut data) = frame?.into_data() {
            buffer.extend_from_slice(&data.copy_to_bytes(data.remaining()));
        }
        if buffer.len() > max {
            return Ok((buffer.freeze(), Some(body)));
        }
    }
    Ok((buffer.freeze(), None))
}

pin_project! {
    /// A request body after [`BodyKey`]: the bytes already read, then the rest of the original
    /// body, if any.
    pub struct ReplayBody<B> {
        prefix: Option<Bytes>,
        // The original body when nothing was read from it.
        #[pin]
        untouched: Option<B>,
        // The rest of a body read in part (pinned while it was read).
        rest: Option<Pin<Box<B>>>,
    }
}

impl<B> ReplayBody<B> {
    fn new(body: B) -> Self {
        ReplayBody {
            prefix: None,
            untouched: Some(body),
            rest: None,
        }
    }

    fn complete(bytes: Bytes) -> Self {
        ReplayBody {
            prefix: Some(bytes).filter(|b| !b.is_empty()),
            untouched: None,
            rest: None,
        }
    }

    fn with_prefix(prefix: Bytes, rest: Pin<Box<B>>) -> Self {
        ReplayBody {
            prefix: Some(prefix).filter(|b| !b.is_empty()),
            untouched: None,
            rest: Some(rest),
        }
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body,
    B::Data: Buf,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        if let Some(prefix) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        let frame = match (this.untouched.as_pin_mut(), this.rest.as_mut()) {
            (Some(body), _) => body.poll_frame(cx),
            (None, Some(body)) => body.as_mut().poll_frame(cx),
            (None, None) => return Poll::Ready(None),
        };
        frame.map(|frame| {
            frame.map(|result| {
                result.map(|frame| frame.map_data(|mut d| d.copy_to_bytes(d.remaining())))
            })
        })
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none()
            && self.untouched.as_ref().is_none_or(Body::is_end_stream)
            && self.rest.as_ref().is_none_or(|rest| rest.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let rest = match (&self.untouched, &self.rest) {
            (Some(body), _) => body.size_hint(),
            (None, Some(body)) => body.size_hint(),
            (None, None) => SizeHint::with_exact(0),
        };
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(prefix));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(prefix));
        }
        hint
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayBody")
            .field("prefix", &self.prefix.as_ref().map(Bytes::len))
            .field(
                "streaming",
                &(self.untouched.is_some() || self.rest.is_some()),
            )
            .finish()
    }
}
