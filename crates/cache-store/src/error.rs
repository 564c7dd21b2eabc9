//! The error type of every store operation.

use std::error::Error as StdError;

/// Why a store operation failed. The cache treats every one of them as "no cache": it logs the
/// error and goes to the origin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The body is larger than the store accepts; the response is passed through uncached.
    #[error("body exceeds the store's limit of {limit} bytes")]
    TooLarge {
        /// The configured limit in bytes.
        limit: u64,
    },
    /// The response has more header lines than an entry holds ([`MAX_HEADER_LINES`]); it is
    /// passed through uncached.
    ///
    /// [`MAX_HEADER_LINES`]: crate::codec::MAX_HEADER_LINES
    #[error("response has more than {limit} header lines, more than the store keeps")]
    TooManyHeaderLines {
        /// The limit in lines.
        limit: usize,
    },
    /// An I/O error from the disk or the network.
    #[error("storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// A stored entry could not be decoded.
    #[error("stored entry is corrupt: {0}")]
    Corrupt(&'static str),
    /// A store URL names no store this build can open (see [`open`](crate::open)).
    #[error("invalid store URL: {0}")]
    InvalidUrl(String),
    /// The backend cannot be reached or refused the operation.
    #[error("storage backend unavailable: {0}")]
    Unavailable(Box<dyn StdError + Send + Sync>),
}

impl StoreError {
    /// A [`StoreError::Unavailable`] from any error or message.
    ///
    /// ```
    /// let error = cache_store::StoreError::unavailable("connection refused");
    /// assert_eq!(error.to_string(), "storage backend unavailable: connection refused");
    /// ```
    pub fn unavailable(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        StoreError::Unavailable(source.into())
    }
}
