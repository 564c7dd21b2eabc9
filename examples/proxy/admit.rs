//! What the proxy does to a client's request before the cache sees it: the checks and
//! rewrites that keep a client from choosing what is stored for everyone else (RFC 9111
//! §7.1, cache poisoning).
//!
//! - More than one `Host` line, or a `Host` that is not a host and port: `400` (RFC 9112
//!   §3.2).
//! - A target in absolute form (`GET http://a.example/page`): its authority wins over `Host`,
//!   which is rewritten to it, and the target becomes origin form (RFC 9112 §3.2.2); a
//!   scheme other than `http`, which this listener does not serve, is a `400`.
//! - A request whose `Via` already names this proxy has come round in a loop: `508`.
//! - Fields through which a client could make the upstream build its answer from something
//!   the cache key does not see (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`,
//!   `X-HTTP-Method-Override`, `X-Original-URL` and their kin) are removed; the proxy sets
//!   `X-Forwarded-For` (the peer's address), `X-Forwarded-Host` (the keyed host) and
//!   `X-Forwarded-Proto` itself.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;

use http::header::{HOST, VIA};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, StatusCode, Uri};

use super::forward::{strip_hop_by_hop, Upstream};

/// Fields removed from every client request (see the module docs).
const CLIENT_FORWARDING: [&str; 24] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "front-end-https",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-host",
    "x-original-host",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-override-url",
    "x-proxy-url",
    "x-forwarded-uri",
];

/// This proxy's name in `Via` (RFC 9110 §7.6.3): a pseudonym drawn once per process, so that
/// a request that comes back through the same proxy is recognised, and so that `Via` reveals
/// no address.
#[derive(Debug, Clone)]
pub(crate) struct ViaName {
    pseudonym: String,
}

impl ViaName {
    pub(crate) fn new() -> Self {
        // A randomly keyed hasher is std's source of a per-process random number.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        ViaName {
            pseudonym: format!("tower-http-cache-{random:016x}"),
        }
    }

    /// The value this proxy appends to `Via`.
    pub(crate) fn value(&self) -> HeaderValue {
        HeaderValue::from_str(&format!("1.1 {}", self.pseudonym))
            .unwrap_or_else(|_| HeaderValue::from_static("1.1 tower-http-cache"))
    }

    fn seen_in(&self, request: &Request<impl Sized>) -> bool {
        request
            .headers()
            .get_all(VIA)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|hop| hop.split_whitespace().nth(1) == Some(self.pseudonym.as_str()))
    }
}

/// Why a request is refused before it reaches the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) status: StatusCode,
    pub(crate) reason: &'static str,
}

const fn refused(status: StatusCode, reason: &'static str) -> Refused {
    Refused { status, reason }
}

/// Checks and rewrites a client's request (see the module docs).
pub(crate) fn admit<B>(
    request: &mut Request<B>,
    peer: IpAddr,
    via: &ViaName,
    upstream: &Upstream,
) -> Result<(), Refused> {
    strip_hop_by_hop(request.headers_mut());
    if via.seen_in(request) {
        return Err(refused(
            StatusCode::LOOP_DETECTED,
            "this request has already passed through this proxy\n",
        ));
    }
    let mut hosts = request.headers().get_all(HOST).iter();
    if let (Some(_), Some(_)) = (hosts.next(), hosts.next()) {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "more than one Host field\n",
        ));
    }
    if let Some(authority) = request.uri().authority().cloned() {
        if request.uri().scheme() != Some(&Scheme::HTTP) {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "this proxy serves http:// targets only\n",
            ));
        }
        // RFC 9112 §3.2.2: the target's authority wins; user information is not part of it.
        let host = authority
            .as_str()
            .rsplit_once('@')
            .map_or(authority.as_str(), |(_, host)| host);
        let host = HeaderValue::from_str(host)
            .map_err(|_| refused(StatusCode::BAD_REQUEST, "invalid request target\n"))?;
        request.headers_mut().insert(HOST, host);
        let path = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::from(path);
    }
    let host = match request.headers().get(HOST) {
        Some(host) => {
            let valid = Authority::try_from(host.as_bytes())
                .is_ok_and(|a| !a.host().is_empty() && !a.as_str().contains('@'));
            if !valid {
                return Err(refused(StatusCode::BAD_REQUEST, "invalid Host field\n"));
            }
            host.clone()
        }
        // HTTP/1.0 without Host: name the upstream, so that the request has a target URI
        // (and a cache key).
        None => HeaderValue::from_str(upstream.authority.as_str())
            .map_err(|_| refused(StatusCode::BAD_REQUEST, "no Host field\n"))?,
    };
    let headers = request.headers_mut();
    for name in CLIENT_FORWARDING {
        headers.remove(name);
    }
    if let Ok(peer) = HeaderValue::from_str(&peer.to_string()) {
        headers.insert("x-forwarded-for", peer);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    headers.insert("x-forwarded-host", host.clone());
    headers.insert(HOST, host);
    Ok(())
}
