//! Blocking work (disk, SQLite) off the async executor.

use crate::StoreError;

/// Runs blocking work on tokio's blocking pool, or inline without a runtime.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle
            .spawn_blocking(f)
            .await
            .map_err(StoreError::unavailable)?,
        Err(_) => f(),
    }
}
