//! RFC 9111 §4.4: invalidating stored responses after an unsafe request.

use http::{header, Uri};

use crate::policy::is_safe;
use crate::uri::{resolve, same_origin};
use crate::{CachePolicy, RequestHead, ResponseHead};

impl CachePolicy {
    /// RFC 9111 §4.4: the URIs to invalidate after `response` to an unsafe `request`: the
    /// target URI, and the `Location` and `Content-Location` URIs when they share its origin.
    pub(crate) fn invalidations(
        &self,
        request: RequestHead<'_>,
        response: ResponseHead<'_>,
    ) -> Vec<Uri> {
        let status = response.status;
        if is_safe(request.method) || !(status.is_success() || status.is_redirection()) {
            return Vec::new();
        }
        let Some(target) = self.target_uri(request) else {
            return Vec::new();
        };
        let mut uris = Vec::new();
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            if let Some(value) = response.headers.get(name) {
                if let Some(uri) = resolve(&target, value.as_bytes()) {
                    if same_origin(&target, &uri) && uri != target && !uris.contains(&uri) {
                        uris.push(uri);
                    }
                }
            }
        }
        uris.insert(0, target);
        uris
    }
}
