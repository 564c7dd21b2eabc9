//! Logging through `tracing` when the feature is on; nothing otherwise.

#[cfg(feature = "tracing")]
pub(crate) fn store_error(operation: &str, error: &dyn std::error::Error) {
    tracing::warn!(operation, %error, "cache store failed; continuing without the cache");
}

#[cfg(not(feature = "tracing"))]
pub(crate) fn store_error(_operation: &str, _error: &dyn std::error::Error) {}
