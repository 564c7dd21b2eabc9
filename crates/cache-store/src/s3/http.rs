//! The plain-HTTP client object_store sends its requests through when the build has no TLS
//! (feature `s3` without `s3-tls`): hyper-util's pooled HTTP/1.1 client.
//!
//! object_store's own client is reqwest, which it cannot build without one of reqwest's TLS
//! stacks; this one keeps the `s3` feature free of any.

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

/// Makes [`Plain`] clients, with `timeout` for connecting and for each response's head.
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
        let answer = tokio::time::timeout(self.timeout, self.client.request(request)).await;
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
        let body = Incoming(body);
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
    }
}

/// hyper's response body with object_store's error type.
struct Incoming(hyper::body::Incoming);

impl Body for Incoming {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, HttpError>>> {
        std::pin::Pin::new(&mut self.0)
            .poll_frame(cx)
            .map_err(|e| HttpError::new(HttpErrorKind::Interrupted, e))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}
