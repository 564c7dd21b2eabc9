//! The state machine: [`CachePolicy`], what it reads of a request and a response, and the
//! helpers several RFC 9111 sections share. The rules themselves live by section:
//! [`storing`](crate::storing) (§3), [`reuse`](crate::reuse) (§4, §4.1, §4.2.4, RFC 5861),
//! [`freshening`](crate::freshening) (§4.3.3 to §4.3.5) and
//! [`invalidation`](crate::invalidation) (§4.4).
//!
//! [`CachePolicy::lookup`] runs before the origin, [`CachePolicy::after_response`] after it,
//! [`CachePolicy::on_error`] when it cannot be reached.

use std::time::SystemTime;

use http::header;
use http::{HeaderMap, Method, StatusCode, Uri};

use crate::directives::RequestDirectives;
use crate::freshness::{self, Freshness};
use crate::parsed::Facts;
use crate::uri::target_uri;
use crate::{PolicyOptions, StoredResponse};

/// The parts of a request the policy reads. Build one from a `Request<B>` or its `Parts`.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request target, in absolute form or origin form (then `Host` gives the authority).
    pub uri: &'a Uri,
    /// The request header lines.
    pub headers: &'a HeaderMap,
}

impl<'a> From<&'a http::request::Parts> for RequestHead<'a> {
    fn from(parts: &'a http::request::Parts) -> Self {
        RequestHead {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
        }
    }
}

impl<'a, B> From<&'a http::Request<B>> for RequestHead<'a> {
    fn from(request: &'a http::Request<B>) -> Self {
        RequestHead {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
        }
    }
}

/// The parts of a response the policy reads. Build one from a `Response<B>` or its `Parts`.
#[derive(Debug, Clone, Copy)]
pub struct ResponseHead<'a> {
    /// The response status.
    pub status: StatusCode,
    /// The response header lines.
    pub headers: &'a HeaderMap,
}

impl<'a> From<&'a http::response::Parts> for ResponseHead<'a> {
    fn from(parts: &'a http::response::Parts) -> Self {
        ResponseHead {
            status: parts.status,
            headers: &parts.headers,
        }
    }
}

impl<'a, B> From<&'a http::Response<B>> for ResponseHead<'a> {
    fn from(response: &'a http::Response<B>) -> Self {
        ResponseHead {
            status: response.status(),
            headers: response.headers(),
        }
    }
}

/// The RFC 9111 state machine. It holds only options: every decision takes the request, the
/// stored candidates and the current time, and returns what to do next.
///
/// # Example
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use cache_policy::{CachePolicy, Lookup, ResponseAction};
/// use http::{Request, Response};
///
/// let policy = CachePolicy::default();
/// let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// let request = Request::get("http://example.com/a").body(()).unwrap();
///
/// // Nothing stored yet: go to the origin.
/// let candidates: Vec<cache_policy::StoredResponse> = Vec::new();
/// assert!(matches!(policy.lookup(&request, &candidates, t0), Lookup::Forward(_)));
///
/// // The origin answers; the policy says to store it.
/// let response = Response::builder()
///     .header("cache-control", "max-age=60")
///     .body(())
///     .unwrap();
/// let decision = policy.after_response(&request, &response, t0, t0, &candidates);
/// let ResponseAction::Store { entry, .. } = decision.action else { panic!() };
///
/// // Thirty seconds later the stored response is fresh, with `Age: 30`.
/// let later = t0 + Duration::from_secs(30);
/// let stored = [entry];
/// let Lookup::Fresh(serve) = policy.lookup(&request, &stored, later) else { panic!() };
/// assert_eq!(serve.response_head(&stored[serve.index]).headers["age"], "30");
/// ```
#[derive(Debug, Clone, Default)]
pub struct CachePolicy {
    pub(crate) options: PolicyOptions,
}

pub(crate) fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Whether a stored response to `stored` may answer a request with method `presented` (RFC
/// 9111 §4): the same method, or a stored GET for a HEAD (§4.3.5).
pub(crate) fn method_allows(stored: &Method, presented: &Method) -> bool {
    stored == presented || (*stored == Method::GET && *presented == Method::HEAD)
}

/// The request fields that change a lookup, found in one pass over the field names instead of
/// one hash lookup each (most requests carry none of them).
#[derive(Default)]
pub(crate) struct RequestScan {
    /// `Range`.
    pub(crate) range: bool,
    /// `If-Match`, `If-Unmodified-Since` or `If-Range`.
    pub(crate) precondition: bool,
    /// `Cache-Control` or `Pragma`.
    pub(crate) directives: bool,
    /// `If-None-Match` or `If-Modified-Since`.
    pub(crate) conditional: bool,
}

impl RequestScan {
    pub(crate) fn new(headers: &HeaderMap) -> Self {
        let mut scan = RequestScan::default();
        for name in headers.keys() {
            if name == header::RANGE {
                scan.range = true;
            } else if name == header::IF_MATCH
                || name == header::IF_UNMODIFIED_SINCE
                || name == header::IF_RANGE
            {
                scan.precondition = true;
            } else if name == header::CACHE_CONTROL || name == header::PRAGMA {
                scan.directives = true;
            } else if name == header::IF_NONE_MATCH || name == header::IF_MODIFIED_SINCE {
                scan.conditional = true;
            }
        }
        scan
    }
}

impl CachePolicy {
    /// A policy with these options.
    pub fn new(options: PolicyOptions) -> Self {
        CachePolicy { options }
    }

    /// The options of this policy.
    pub fn options(&self) -> &PolicyOptions {
        &self.options
    }

    /// The target URI of a request (RFC 9110 §7.1, RFC 9112 §3.3): its request-target in
    /// absolute form, or, in origin form, [`origin_form_scheme`] with the authority of its
    /// one `Host` line. `None` when no authority is known or `Host` is ambiguous (see
    /// [`effective_uri`](crate::effective_uri)).
    ///
    /// [`origin_form_scheme`]: PolicyOptions::origin_form_scheme
    ///
    /// ```
    /// use cache_policy::{CachePolicy, PolicyOptions};
    /// use http::{uri::Scheme, Request};
    ///
    /// let policy = CachePolicy::new(PolicyOptions::default().origin_form_scheme(Scheme::HTTPS));
    /// let request = Request::get("/a").header("host", "example.com").body(()).unwrap();
    /// assert_eq!(policy.target_uri(&request).unwrap(), "https://example.com/a");
    /// ```
    pub fn target_uri<'r>(&self, request: impl Into<RequestHead<'r>>) -> Option<Uri> {
        let request = request.into();
        target_uri(
            request.uri,
            request.headers,
            &self.options.origin_form_scheme,
        )
    }

    pub(crate) fn request_directives(&self, headers: &HeaderMap) -> RequestDirectives {
        if self.options.ignore_rules {
            // Only the client's refusal to talk to the origin still counts.
            return RequestDirectives {
                only_if_cached: RequestDirectives::from_headers(headers).only_if_cached,
                ..RequestDirectives::default()
            };
        }
        RequestDirectives::from_headers(headers)
    }

    /// RFC 9111 §4.2: the freshness of a stored response at `now`.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use cache_policy::{CachePolicy, StoredResponse};
    /// use http::{HeaderMap, Method, StatusCode, Uri};
    ///
    /// let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    /// let mut headers = HeaderMap::new();
    /// headers.insert("cache-control", "max-age=100".parse().unwrap());
    /// headers.insert("age", "10".parse().unwrap());
    /// let stored = StoredResponse {
    ///     method: Method::GET, uri: Uri::from_static("http://a/"), status: StatusCode::OK,
    ///     headers, vary_request_headers: HeaderMap::new(), request_time: t0, response_time: t0,
    /// };
    /// let freshness = CachePolicy::default().freshness(&stored, t0 + Duration::from_secs(5));
    /// assert_eq!(freshness.age, Duration::from_secs(15));
    /// assert_eq!(freshness.time_to_live(), Duration::from_secs(85));
    /// ```
    pub fn freshness(&self, stored: &StoredResponse, now: SystemTime) -> Freshness {
        self.freshness_of(stored, &Facts::of(stored), now)
    }

    /// The freshness of `stored`, whose header values `facts` holds parsed, at `now`.
    pub(crate) fn freshness_of(
        &self,
        stored: &StoredResponse,
        facts: &Facts,
        now: SystemTime,
    ) -> Freshness {
        let (cc, use_expires) = facts.directives(&self.options);
        let (lifetime, source) = freshness::lifetime(stored, facts, cc, use_expires, &self.options);
        Freshness {
            lifetime,
            age: facts.current_age(stored, now),
            source,
        }
    }
}
