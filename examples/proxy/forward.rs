//! The forwarding service the cache wraps: the upstream, hop-by-hop fields, `Via`, and the
//! upstream timeout.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CONNECTION, TRANSFER_ENCODING, UPGRADE, VIA};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, Uri};
use http_body_util::Limited;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use tower::Service;

use super::BoxError;

/// A client's request body, cut off past the proxy's limit.
pub(crate) type RequestBody = Limited<Incoming>;

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

/// The upstream's scheme and authority.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Upstream {
    pub(crate) scheme: Scheme,
    pub(crate) authority: Authority,
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

/// The upstream did not send its response head in time.
#[derive(Debug)]
pub(crate) struct UpstreamTimeout(pub(crate) Duration);

impl std::fmt::Display for UpstreamTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the upstream sent no response within {:?}", self.0)
    }
}

impl std::error::Error for UpstreamTimeout {}

/// The forwarding service the cache wraps: retargets a request to the upstream and sends it
/// with hyper-util's legacy client (which keeps the `Host` field it is given), waiting at
/// most `timeout` for the response head.
#[derive(Clone)]
pub(crate) struct Forward {
    pub(crate) client: Client<HttpConnector, RequestBody>,
    pub(crate) upstream: Upstream,
    /// This proxy's `Via` entry, appended in both directions.
    pub(crate) via: HeaderValue,
    pub(crate) timeout: Duration,
}

impl Service<Request<RequestBody>> for Forward {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Incoming>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Service::<Request<RequestBody>>::poll_ready(&mut self.client, cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<RequestBody>) -> Self::Future {
        let target = self.upstream.target(request.uri());
        let client = self.client.clone();
        let (via, timeout) = (self.via.clone(), self.timeout);
        Box::pin(async move {
            *request.uri_mut() = target?;
            request.headers_mut().append(VIA, via.clone());
            let mut response = tokio::time::timeout(timeout, client.request(request))
                .await
                .map_err(|_| UpstreamTimeout(timeout))??;
            // Hop-by-hop fields go before the cache sees the response, so they are never
            // stored.
            strip_hop_by_hop(response.headers_mut());
            response.headers_mut().append(VIA, via);
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
