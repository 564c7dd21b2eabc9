//! Reading a response of the cache to its end, for assertions.

use std::fmt::Debug;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::BodyExt;
use tower_http_cache::CacheStatus;

/// A response read to its end, with the cache's account of it.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The header lines.
    pub headers: HeaderMap,
    /// The [`CacheStatus`] the cache put in the response extensions.
    pub cache: CacheStatus,
    /// The whole body.
    pub body: Bytes,
}

impl Answer {
    /// Reads `response` to its end. Test support: panics if the body fails or if the response
    /// carries no [`CacheStatus`].
    pub async fn read<B>(response: Response<B>) -> Answer
    where
        B: http_body::Body,
        B::Error: Debug,
    {
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Answer {
            status: parts.status,
            cache: parts
                .extensions
                .get::<CacheStatus>()
                .cloned()
                .expect("CacheStatus in the extensions"),
            headers: parts.headers,
            body,
        }
    }
}
