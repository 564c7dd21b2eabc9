//! Identity of one variant under a primary key.

use std::sync::Arc;

use cache_policy::Candidate;

/// Identifies one variant of a primary key: the `Vary` field names of the stored response and
/// the normalized values the request had for them (RFC 9111 §4.1).
///
/// Two responses with the same id are interchangeable for selection, so a newer one replaces an
/// older one. A response without `Vary` has the empty id.
///
/// ```
/// use cache_store::VariantId;
/// # use std::time::SystemTime;
/// # use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
/// # let mut response = cache_policy::StoredResponse {
/// #     method: Method::GET, uri: Uri::from_static("http://example.com/"),
/// #     status: StatusCode::OK, headers: HeaderMap::new(), vary_request_headers: HeaderMap::new(),
/// #     request_time: SystemTime::UNIX_EPOCH, response_time: SystemTime::UNIX_EPOCH,
/// # };
/// assert!(VariantId::of(&response).as_bytes().is_empty());
/// response.headers.insert("vary", HeaderValue::from_static("accept-language"));
/// response.vary_request_headers.insert("accept-language", HeaderValue::from_static("fr"));
/// assert!(!VariantId::of(&response).as_bytes().is_empty());
/// // A parsed response has the same id.
/// let parsed = cache_policy::ParsedResponse::new(response.clone());
/// assert_eq!(VariantId::of(&parsed), VariantId::of(&response));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VariantId(
    /// `None` for the empty id (every response without `Vary`), which then allocates nothing;
    /// never `Some` of empty bytes, so that equal ids compare equal.
    Option<Arc<[u8]>>,
);

impl VariantId {
    /// The id of a stored response, from
    /// [`StoredResponse::variant_key`](cache_policy::StoredResponse::variant_key). A
    /// [`ParsedResponse`](cache_policy::ParsedResponse) knows whether it has `Vary`, and one
    /// without it has the empty id at once.
    pub fn of<C: Candidate + ?Sized>(response: &C) -> Self {
        match response.parsed_response() {
            Some(parsed) => Self::from_bytes(&parsed.variant_key()),
            None => Self::from_bytes(&response.stored_response().variant_key()),
        }
    }

    /// Rebuilds an id from the bytes [`VariantId::as_bytes`] returned, e.g. when a backend
    /// reads it back from storage.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        VariantId((!bytes.is_empty()).then(|| bytes.into()))
    }

    /// The canonical bytes of the id, stable across processes and versions of this crate.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_deref().unwrap_or_default()
    }
}
