//! The plain-HTTP client object_store sends its requests through when the build has no TLS
//! (feature `s3` without `s3-tls`): hyper-util's pooled HTTP/1.1 client.
//!
//! object_store's own client is reqwest, which it cannot build without one of reqwest's TLS
//! stacks; this one keeps the `s3` feature free of any.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Body;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody,
    HttpResponse, HttpResponseBody, HttpService,
};
use object_store::ClientOptions;

/// Makes [`Plain`] clients, with `timeout` for connecting, and four times that for each
/// response's head (plus a second per MiB of the request's body, which goes out first) and
/// for each wait for more of a response's body.
#[derive(Debug, Clone, Copy)]
pub(super) struct PlainConnector {
    pub(super) timeout: Duration,
}

impl HttpConnector for PlainConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let mut tcp = TcpConnector::new();
        tcp.set_connect_timeout(Some(self.timeout));
        tcp.set_nodelay(true);
        // Only http:// endpoints reach this client; an https:// one is refused before.
        tcp.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(tcp);
        Ok(HttpClient::new(Plain {
            client,
            timeout: self.timeout,
        }))
    }
}

/// One pooled client; see the [module documentation](self).
#[derive(Debug, Clone)]
struct Plain {
    client: Client<TcpConnector, HttpRequestBody>,
    timeout: Duration,
}

#[async_trait::async_trait]
impl HttpService for Plain {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        // As long as for more of a body (a server may take a while to complete a multipart
        // upload), and a part upload sends megabytes before the answer can come: at least
        // 1 MiB/s.
        let body_len = request.body().content_length() as u64;
        let mut wait = self.timeout.saturating_mul(4) + Duration::from_secs(body_len >> 20);
        if is_complete_multipart(&request) {
            // The server assembles the object before it answers: moto took 13.6 s for a
            // 1 GiB object of 205 parts, and S3 may take minutes. The request lists the
            // parts (about 80 bytes each): a quarter of a second per part.
            wait += Duration::from_millis(body_len.saturating_mul(250) / 80);
        }
        let answer = tokio::time::timeout(wait, self.client.request(request)).await;
        let response = match answer {
            Err(elapsed) => return Err(HttpError::new(HttpErrorKind::Timeout, elapsed)),
            Ok(Err(e)) => {
                let kind = if e.is_connect() {
                    HttpErrorKind::Connect
                } else {
                    HttpErrorKind::Request
                };
                return Err(HttpError::new(kind, e));
            }
            Ok(Ok(response)) => response,
        };
        let (parts, body) = response.into_parts();
        let body = Incoming {
            body,
            idle: self.timeout.saturating_mul(4),
            timer: None,
        };
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
    }
}

/// Whether `request` completes a multipart upload (`POST ...?uploadId=...`).
fn is_complete_multipart(request: &HttpRequest) -> bool {
    request.method() == http::Method::POST
        && request
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p.starts_with("uploadId=")))
}

/// hyper's response body with object_store's error type, failing when the server sends
/// nothing for `idle` while it is being read (a stalled server must not hang a reader). The
/// timer runs only while the body is polled, so a reader that pauses is not cut off.
struct Incoming {
    body: hyper::body::Incoming,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Body for Incoming {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.timer = None;
                Poll::Ready(
                    frame.map(|f| f.map_err(|e| HttpError::new(HttpErrorKind::Interrupted, e))),
                )
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.timer = None;
                        let why = format!("the S3 server sent nothing for {idle:?}");
                        Poll::Ready(Some(Err(HttpError::new_boxed(
                            HttpErrorKind::Timeout,
                            why.into(),
                        ))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
