//! The metadata a cache keeps for one stored response (RFC 9111 §3).

use std::time::SystemTime;

use http::{HeaderMap, Method, StatusCode, Uri};

/// One stored response, without its body: everything the policy needs to decide whether and how
/// it can be reused, and everything a store must persist.
///
/// It is plain data so that any store can serialize it. The body lives beside it in the store.
///
/// # Example
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use cache_policy::StoredResponse;
/// use http::{HeaderMap, Method, StatusCode, Uri};
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// let entry = StoredResponse {
///     method: Method::GET,
///     uri: Uri::from_static("http://example.com/a"),
///     status: StatusCode::OK,
///     headers: HeaderMap::new(),
///     vary_request_headers: HeaderMap::new(),
///     request_time: now,
///     response_time: now,
/// };
/// assert_eq!(entry.status, StatusCode::OK);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    /// The method of the request that produced this response (RFC 9111 §4: it decides which
    /// later requests the response may answer).
    pub method: Method,
    /// The target URI of the request that produced this response.
    pub uri: Uri,
    /// The response status code.
    pub status: StatusCode,
    /// The response header lines as they are to be stored (RFC 9111 §3.1: hop-by-hop fields
    /// removed, `Date` present). Repeated fields are kept as separate lines, in order.
    pub headers: HeaderMap,
    /// The request header lines named by the response's `Vary` (RFC 9111 §4.1), as received
    /// with the request that produced this response. A name absent here was absent from that
    /// request.
    pub vary_request_headers: HeaderMap,
    /// When the request that produced this response was sent (`request_time`, RFC 9111 §4.2.3).
    pub request_time: SystemTime,
    /// When this response was received (`response_time`, RFC 9111 §4.2.3).
    pub response_time: SystemTime,
}

impl AsRef<StoredResponse> for StoredResponse {
    fn as_ref(&self) -> &StoredResponse {
        self
    }
}
