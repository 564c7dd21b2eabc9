//! Identity of one variant under a primary key.

use std::sync::Arc;

use cache_policy::StoredResponse;

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
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VariantId(
    /// `None` for the empty id (every response without `Vary`), which then allocates nothing;
    /// never `Some` of empty bytes, so that equal ids compare equal.
    Option<Arc<[u8]>>,
);

impl VariantId {
    /// The id of a stored response, from [`StoredResponse::variant_key`].
    pub fn of(response: &StoredResponse) -> Self {
        Self::from_bytes(&response.variant_key())
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
