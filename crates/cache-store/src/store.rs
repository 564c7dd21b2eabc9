//! The storage contract: [`Store`] and [`EntryWriter`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use cache_policy::{ParsedResponse, StoredResponse};

use crate::{Entries, StoreError, VariantId};

/// A boxed, `Send` future, the return type of the object-safe [`Store`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the caller knows when it starts writing a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// How long the entry may be kept at most (physical expiry). After this, the store no longer
    /// returns it and may delete it.
    pub ttl: Duration,
    /// The body length announced by the response (`Content-Length`), if any. A store may refuse
    /// a body it already knows to be over its size limit before any byte is written.
    pub content_length: Option<u64>,
}

/// An asynchronous store of HTTP responses, keyed by primary key and [`VariantId`].
///
/// The trait is object safe: a cache can hold an `Arc<dyn Store>` chosen at run time.
///
/// # Implementing a backend
///
/// A toy backend that keeps complete entries in a `Mutex<HashMap>` (no size bound, no expiry):
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::{Arc, Mutex};
///
/// use bytes::{Bytes, BytesMut};
/// use cache_policy::{ParsedResponse, StoredResponse};
/// use cache_store::{
///     BoxFuture, Entries, EntryWriter, Store, StoreError, StoredEntry, VariantId, WriteOptions,
/// };
///
/// type Table = Arc<Mutex<HashMap<String, Vec<(VariantId, Arc<ParsedResponse>, Bytes)>>>>;
///
/// #[derive(Default)]
/// struct ToyStore(Table);
///
/// struct ToyWriter {
///     entries: Table,
///     key: String,
///     response: Arc<ParsedResponse>,
///     body: BytesMut,
/// }
///
/// impl EntryWriter for ToyWriter {
///     fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
///         self.body.extend_from_slice(&chunk);
///         Ok(())
///     }
///
///     fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
///         Box::pin(async move {
///             let variant = VariantId::of(&self.response);
///             let mut entries = self.entries.lock().map_err(|_| StoreError::unavailable("poisoned"))?;
///             let variants = entries.entry(self.key).or_default();
///             variants.retain(|(v, _, _)| *v != variant);
///             variants.push((variant, self.response, self.body.freeze()));
///             Ok(())
///         })
///     }
/// }
///
/// impl Store for ToyStore {
///     fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Entries, StoreError>> {
///         Box::pin(async move {
///             let entries = self.0.lock().map_err(|_| StoreError::unavailable("poisoned"))?;
///             Ok(entries
///                 .get(key)
///                 .into_iter()
///                 .flatten()
///                 .map(|(variant, response, body)| {
///                     StoredEntry::in_memory(variant.clone(), response.clone(), body.clone())
///                 })
///                 .collect())
///         })
///     }
///
///     fn begin<'a>(
///         &'a self,
///         key: &'a str,
///         response: Arc<ParsedResponse>,
///         _options: WriteOptions,
///     ) -> BoxFuture<'a, Result<Box<dyn EntryWriter>, StoreError>> {
///         Box::pin(async move {
///             let writer = ToyWriter {
///                 entries: self.0.clone(),
///                 key: key.to_owned(),
///                 response,
///                 body: BytesMut::new(),
///             };
///             Ok(Box::new(writer) as Box<dyn EntryWriter>)
///         })
///     }
///
///     fn update<'a>(
///         &'a self,
///         key: &'a str,
///         variant: &'a VariantId,
///         response: Arc<ParsedResponse>,
///         _ttl: std::time::Duration,
///     ) -> BoxFuture<'a, Result<(), StoreError>> {
///         Box::pin(async move {
///             let mut entries = self.0.lock().map_err(|_| StoreError::unavailable("poisoned"))?;
///             for (v, stored, _) in entries.get_mut(key).into_iter().flatten() {
///                 if v == variant {
///                     *stored = response.clone();
///                 }
///             }
///             Ok(())
///         })
///     }
///
///     fn remove<'a>(
///         &'a self,
///         key: &'a str,
///         variant: Option<&'a VariantId>,
///     ) -> BoxFuture<'a, Result<(), StoreError>> {
///         Box::pin(async move {
///             let mut entries = self.0.lock().map_err(|_| StoreError::unavailable("poisoned"))?;
///             match variant {
///                 None => {
///                     entries.remove(key);
///                 }
///                 Some(variant) => {
///                     if let Some(variants) = entries.get_mut(key) {
///                         variants.retain(|(v, _, _)| v != variant);
///                     }
///                 }
///             }
///             Ok(())
///         })
///     }
///
///     fn clear(&self) -> BoxFuture<'_, Result<(), StoreError>> {
///         Box::pin(async move {
///             self.0.lock().map_err(|_| StoreError::unavailable("poisoned"))?.clear();
///             Ok(())
///         })
///     }
/// }
/// ```
pub trait Store: Send + Sync + 'static {
    /// Every complete, unexpired variant stored under `key`. An empty list is a miss.
    ///
    /// Entries that fail to decode (corrupt, unknown format version, a key that does not match)
    /// are left out (and may be deleted), not reported as errors.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Entries, StoreError>>;

    /// What [`get`](Store::get) would return, when the store can tell without waiting (it
    /// holds its entries in memory); `None` when it cannot, and the caller awaits `get`.
    ///
    /// A cache calls this first, so that a hit from memory costs no boxed future and no task
    /// wake-up. The default says `None`: a backend that does IO need not implement it.
    ///
    /// ```
    /// use cache_store::{MemoryStore, Store};
    ///
    /// let store = MemoryStore::default();
    /// let entries = store.get_now("https://example.com/").expect("answers at once");
    /// assert!(entries.expect("a memory store does not fail").is_empty());
    /// ```
    fn get_now(&self, key: &str) -> Option<Result<Entries, StoreError>> {
        let _ = key;
        None
    }

    /// Starts writing a new variant of `key`. Its [`VariantId`] is
    /// [`VariantId::of(&response)`](VariantId::of).
    ///
    /// Nothing is visible until [`EntryWriter::commit`] succeeds; the commit replaces any variant
    /// with the same id.
    fn begin<'a>(
        &'a self,
        key: &'a str,
        response: Arc<ParsedResponse>,
        options: WriteOptions,
    ) -> BoxFuture<'a, Result<Box<dyn EntryWriter>, StoreError>>;

    /// What [`begin`](Store::begin) would return, when the store can start the entry without
    /// waiting; `None` when it cannot, and the caller awaits `begin`.
    ///
    /// Like [`get_now`](Store::get_now), this spares a miss the boxed future of a store that
    /// keeps its entries in memory. The key comes shared, so that such a store keeps it without
    /// a copy. The default says `None`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::{Duration, SystemTime};
    ///
    /// use bytes::Bytes;
    /// use cache_policy::StoredResponse;
    /// use cache_store::{MemoryStore, Store, WriteOptions};
    /// use http::{HeaderMap, Method, StatusCode, Uri};
    ///
    /// let store = MemoryStore::default();
    /// let response = StoredResponse {
    ///     method: Method::GET,
    ///     uri: Uri::from_static("https://example.com/"),
    ///     status: StatusCode::OK,
    ///     headers: HeaderMap::new(),
    ///     vary_request_headers: HeaderMap::new(),
    ///     request_time: SystemTime::now(),
    ///     response_time: SystemTime::now(),
    /// };
    /// let key: Arc<str> = Arc::from("https://example.com/");
    /// let options = WriteOptions { ttl: Duration::from_secs(60), content_length: None };
    /// let mut writer = store
    ///     .begin_now(&key, &response.into(), options)
    ///     .expect("a memory store begins at once")
    ///     .expect("and does not fail");
    /// writer.write(Bytes::from_static(b"hello")).expect("written");
    /// ```
    fn begin_now(
        &self,
        key: &Arc<str>,
        response: &Arc<ParsedResponse>,
        options: WriteOptions,
    ) -> Option<Result<Box<dyn EntryWriter>, StoreError>> {
        let _ = (key, response, options);
        None
    }

    /// Replaces the metadata of one stored variant, keeping its body (RFC 9111 §4.3.4, after a
    /// 304), and resets its TTL. Updating a variant that no longer exists is not an error.
    ///
    /// The update is ignored when [`update_applies`] says the new metadata does not describe
    /// the stored body (its `ETag` or `Content-Length` differ): the variant was replaced after
    /// the caller read it, and applying the update would pair one response's header lines with
    /// another's body.
    fn update<'a>(
        &'a self,
        key: &'a str,
        variant: &'a VariantId,
        response: Arc<ParsedResponse>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Removes one variant of `key`, or all of them when `variant` is `None`.
    fn remove<'a>(
        &'a self,
        key: &'a str,
        variant: Option<&'a VariantId>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Removes every entry.
    fn clear(&self) -> BoxFuture<'_, Result<(), StoreError>>;
}

/// Receives the body of one variant as it streams from the origin.
///
/// [`write`](EntryWriter::write) never blocks: a backend buffers or hands the chunk to a
/// background writer. Dropping the writer without committing aborts the entry and must leave
/// nothing behind (temporary files removed, partial uploads abandoned).
pub trait EntryWriter: Send {
    /// Appends one chunk of the body.
    ///
    /// Returns [`StoreError::TooLarge`] once the body exceeds the store's size limit; the caller
    /// then stops writing and drops the writer, and the response is not cached.
    fn write(&mut self, chunk: Bytes) -> Result<(), StoreError>;

    /// Whether the writer can take another chunk without holding more than its bound.
    /// `Pending` (with the waker registered) while the backend works through what it already
    /// has; `Ready(Err)` once the entry had to be abandoned.
    ///
    /// A caller that tees a body polls this before it reads the next chunk from its source,
    /// so that a backend that falls behind slows the source for as long as the backend takes
    /// to catch up (backpressure), instead of the entry being abandoned at once. The default
    /// is always ready: for writers that never hold more than a chunk, or that abandon the
    /// entry when their buffer is full.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StoreError>> {
        let _ = cx;
        Poll::Ready(Ok(()))
    }

    /// Completes the entry and makes it visible, atomically replacing the variant with the same
    /// id.
    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>>;
}

impl<S: Store + ?Sized> Store for Arc<S> {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Entries, StoreError>> {
        (**self).get(key)
    }

    fn get_now(&self, key: &str) -> Option<Result<Entries, StoreError>> {
        (**self).get_now(key)
    }

    fn begin<'a>(
        &'a self,
        key: &'a str,
        response: Arc<ParsedResponse>,
        options: WriteOptions,
    ) -> BoxFuture<'a, Result<Box<dyn EntryWriter>, StoreError>> {
        (**self).begin(key, response, options)
    }

    fn begin_now(
        &self,
        key: &Arc<str>,
        response: &Arc<ParsedResponse>,
        options: WriteOptions,
    ) -> Option<Result<Box<dyn EntryWriter>, StoreError>> {
        (**self).begin_now(key, response, options)
    }

    fn update<'a>(
        &'a self,
        key: &'a str,
        variant: &'a VariantId,
        response: Arc<ParsedResponse>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).update(key, variant, response, ttl)
    }

    fn remove<'a>(
        &'a self,
        key: &'a str,
        variant: Option<&'a VariantId>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).remove(key, variant)
    }

    fn clear(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        (**self).clear()
    }
}

/// Whether `update` (metadata refreshed by a 304) may replace the metadata of a stored variant
/// whose response is `stored` and whose body is `stored_body_len` bytes long.
///
/// It may not when both carry an `ETag` and they differ (the 304 refreshed another
/// representation: RFC 9111 §4.3.4 selects stored responses by validator), or when `update`
/// carries a `Content-Length` other than the stored body's length. Backends call this inside
/// [`Store::update`], under whatever makes their read-modify-write atomic.
///
/// ```
/// use cache_store::update_applies;
/// # use std::time::SystemTime;
/// # use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
/// # let mut stored = cache_policy::StoredResponse {
/// #     method: Method::GET, uri: Uri::from_static("http://example.com/"),
/// #     status: StatusCode::OK, headers: HeaderMap::new(), vary_request_headers: HeaderMap::new(),
/// #     request_time: SystemTime::UNIX_EPOCH, response_time: SystemTime::UNIX_EPOCH,
/// # };
/// stored.headers.insert("etag", HeaderValue::from_static("\"v2\""));
/// let mut refreshed = stored.clone();
/// assert!(update_applies(&stored, 10, &refreshed));
/// refreshed.headers.insert("etag", HeaderValue::from_static("\"v1\""));
/// assert!(!update_applies(&stored, 10, &refreshed));
/// ```
pub fn update_applies(
    stored: &StoredResponse,
    stored_body_len: u64,
    update: &StoredResponse,
) -> bool {
    let etags = |r: &StoredResponse| -> Vec<Vec<u8>> {
        r.headers
            .get_all(http::header::ETAG)
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect()
    };
    let (old, new) = (etags(stored), etags(update));
    if !old.is_empty() && !new.is_empty() && old != new {
        return false;
    }
    let lengths = update.headers.get_all(http::header::CONTENT_LENGTH);
    lengths.iter().all(|value| {
        value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_none_or(|len| len == stored_body_len)
    })
}
