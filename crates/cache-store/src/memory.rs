//! The in-memory backend: [`MemoryStore`].

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cache_policy::{ParsedResponse, StoredResponse};
use coarsetime::Instant;
use lru::LruCache;
use smallvec::SmallVec;

use crate::{
    BoxFuture, Entries, EntryWriter, Store, StoreError, StoredEntry, VariantId, WriteOptions,
};

mod builder;
pub use builder::MemoryStoreBuilder;

/// Counted for every variant besides its key, header lines and body: the parsed response
/// (about 650 bytes), the variant's place in its key's list, the LRU entry, the shared list
/// reads hand out, and the allocator's headers of them all.
const VARIANT_OVERHEAD: u64 = 1100;

/// Counted for every line a header map has room for, besides the name and value bytes: a
/// `HeaderMap` bucket (name, value, hash and links: 104 bytes on 64-bit targets) and its index
/// slots.
const HEADER_SLOT: u64 = 112;

/// A store held in memory, bounded by bytes, evicting the least recently used primary key
/// (with all its variants) when full.
///
/// Bodies are kept as [`Bytes`] and served with [`StoredBody::full`](crate::StoredBody::full):
/// a hit clones a reference count, never the body bytes. A body written in several chunks is
/// concatenated once, at commit.
///
/// Each variant has its own expiry time (the TTL of [`WriteOptions`] or [`Store::update`]);
/// an expired variant is not returned, and a primary key whose variants all expired is
/// dropped when it is next read or written, or evicted like any other. Expiry is read on the
/// coarse clock of `coarsetime` (the monotonic coarse clock on Linux, macOS and FreeBSD; the
/// wall clock on other systems), which costs a quarter of a precise reading: a variant may
/// still be returned for one tick of that clock after its TTL (4 ms at Linux's usual
/// 250 Hz), which a TTL ceiling does not notice (the cache's policy judges freshness with its
/// own clock).
///
/// The keys live in one least-recently-used list (the `lru` crate) behind a mutex held for a
/// lookup or a swap of the key's variant list, and, on the first read after a change of a
/// key, to build the [`Entries`] that reads hand out until the next change (a reference
/// count per variant). Every other read clones one reference count, allocates nothing, and
/// gets a list that stays valid however the key changes afterwards. Evictions happen at once,
/// on the write that goes over the bound.
///
/// # What the bound counts
///
/// The bound counts what a variant takes: its body, its header lines with the room their map
/// keeps, its key and a fixed overhead for the parsed response and the bookkeeping. Measured
/// with 20 000 responses of 1 KiB from an origin in the process, each counts 2.9 KB and takes
/// 3.1 KB of memory.
///
/// It does not count memory an entry shares with the messages it came from. Header values and
/// bodies are stored as they came, without a copy, and a client that reads them as slices of
/// a connection's read buffer (hyper does) makes a stored entry keep that buffer alive:
/// measured with hyper-util's client, the same responses took 6.0 KB each. With
/// [`copy_bytes`](MemoryStoreBuilder::copy_bytes) the store keeps copies, and they took 2.6 KB
/// each. Turn it on, or size the bound for it, when most entries are small and come through
/// hyper.
///
/// Cloning is cheap and yields a handle on the same store.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cache_store::StoreError> {
/// use std::time::{Duration, SystemTime};
/// use bytes::Bytes;
/// use cache_store::{MemoryStore, Store, StoredResponse, WriteOptions};
/// use http::{HeaderMap, Method, StatusCode, Uri};
/// use http_body_util::BodyExt;
///
/// let store = MemoryStore::builder()
///     .max_capacity_bytes(64 << 20)
///     .max_body_size(1 << 20)
///     .build();
///
/// let now = SystemTime::now();
/// let response = StoredResponse {
///     method: Method::GET,
///     uri: Uri::from_static("https://example.com/"),
///     status: StatusCode::OK,
///     headers: HeaderMap::new(),
///     vary_request_headers: HeaderMap::new(),
///     request_time: now,
///     response_time: now,
/// };
/// let options = WriteOptions { ttl: Duration::from_secs(60), content_length: Some(5) };
/// let mut writer = store.begin("https://example.com/", response.into(), options).await?;
/// writer.write(Bytes::from_static(b"hel"))?;
/// writer.write(Bytes::from_static(b"lo"))?;
/// writer.commit().await?;
///
/// let entries = store.get("https://example.com/").await?;
/// assert_eq!(entries.len(), 1);
/// let body = entries[0].body().expect("held in memory");
/// let body = body.collect().await?.to_bytes();
/// assert_eq!(body, "hello");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Commits, updates and removals of one key read the current variants, change them and
    /// put the result back under this one lock, so concurrent commits to one key never lose
    /// a variant.
    lru: Mutex<Lru>,
    max_body_size: u64,
    max_capacity: u64,
    /// See [`MemoryStoreBuilder::copy_bytes`].
    copy_bytes: bool,
}

/// The keys in least-recently-used order, and their total weight.
struct Lru {
    map: LruCache<Arc<str>, Arc<Variants>>,
    weight: u64,
}

impl Lru {
    /// Puts the variants of `key`, then evicts least recently used keys while over `capacity`.
    /// Returns what it took out, for the caller to drop once the lock is released: freeing
    /// entries is the slow part of an eviction.
    fn put(&mut self, key: Arc<str>, variants: Arc<Variants>, capacity: u64) -> Removed {
        let mut removed = Removed::default();
        self.weight += variants.weight;
        if let Some(old) = self.map.put(key, variants) {
            self.weight -= old.weight;
            removed.push(old);
        }
        while self.weight > capacity {
            match self.map.pop_lru() {
                Some((_, evicted)) => {
                    self.weight -= evicted.weight;
                    removed.push(evicted);
                }
                None => break,
            }
        }
        removed
    }

    /// Takes the variants of `key` out, for the caller to drop once the lock is released.
    fn remove(&mut self, key: &str) -> Option<Arc<Variants>> {
        let removed = self.map.pop(key)?;
        self.weight -= removed.weight;
        Some(removed)
    }
}

/// What a change took out of the list, to drop once the lock is released. Most changes take
/// out one set (the replaced one, or the one evicted), kept without a list.
#[derive(Default)]
struct Removed {
    first: Option<Arc<Variants>>,
    rest: Vec<Arc<Variants>>,
}

impl Removed {
    fn push(&mut self, variants: Arc<Variants>) {
        match self.first {
            None => self.first = Some(variants),
            Some(_) => self.rest.push(variants),
        }
    }
}

/// The immutable set of variants of one primary key. Changes build a new set and swap it in, so
/// a reader holding the old one is never affected.
struct Variants {
    /// The variants, with their expiry and weight.
    held: HeldList,
    /// What a read hands out, built by the first read after a change (a write is often never
    /// read): a read that finds every variant alive then clones one reference count.
    entries: OnceLock<Entries>,
    /// The expiry of the variant that expires first (none when there is no variant, which a
    /// stored key never is): a read before it checks nothing else.
    earliest: Option<Instant>,
    /// The weight of the variants and of the key.
    weight: u64,
}

/// The variants of one key: most keys have one, kept without a separate allocation.
type HeldList = SmallVec<[Held; 1]>;

/// One variant as the store keeps it.
#[derive(Clone)]
struct Held {
    id: VariantId,
    response: Arc<ParsedResponse>,
    body: Bytes,
    expires: Instant,
    weight: u64,
}

impl Variants {
    fn new(key: &str, held: HeldList) -> Self {
        Variants {
            earliest: held.iter().map(|h| h.expires).min(),
            weight: key.len() as u64 + held.iter().map(|h| h.weight).sum::<u64>(),
            entries: OnceLock::new(),
            held,
        }
    }

    /// The variants still alive at `now`.
    fn live(&self, now: Instant) -> impl Iterator<Item = &Held> {
        self.held.iter().filter(move |h| h.expires > now)
    }

    /// The entries of `held`, as reads hand them out.
    fn entries<'h>(held: impl Iterator<Item = &'h Held>) -> Entries {
        held.map(|h| StoredEntry::in_memory(h.id.clone(), h.response.clone(), h.body.clone()))
            .collect()
    }
}

/// What a variant is counted for against the bound: close to the memory it takes (measured: a
/// 1 KiB response from an origin in the process counts 2.9 KB and takes 3.1 KB).
fn variant_weight(response: &StoredResponse, body: &Bytes) -> u64 {
    let lines = |map: &http::HeaderMap| {
        let bytes: usize = map.iter().map(|(n, v)| n.as_str().len() + v.len()).sum();
        bytes as u64 + map.capacity() as u64 * HEADER_SLOT
    };
    body.len() as u64
        + lines(&response.headers)
        + lines(&response.vary_request_headers)
        + VARIANT_OVERHEAD
}

impl MemoryStore {
    /// A store of at most `bytes` in total, with the other defaults of [`MemoryStore::builder`].
    pub fn with_capacity(bytes: u64) -> Self {
        Self::builder().max_capacity_bytes(bytes).build()
    }

    /// The configured limit on the size of one body.
    pub fn max_body_size(&self) -> u64 {
        self.inner.max_body_size
    }

    /// The configured total size.
    pub fn max_capacity_bytes(&self) -> u64 {
        self.inner.max_capacity
    }

    /// The current weighted size in bytes (evictions are immediate, so it is never above the
    /// capacity after a write returns).
    pub fn weighted_size(&self) -> u64 {
        self.inner.lock().weight
    }

    /// Kept for callers of earlier versions: evictions and expirations need no housekeeping,
    /// so this does nothing.
    pub fn run_pending_tasks(&self) {}
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::builder().build()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("max_capacity_bytes", &self.inner.max_capacity)
            .field("max_body_size", &self.inner.max_body_size)
            .field("weighted_size", &self.weighted_size())
            .finish()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Lru> {
        // Every change leaves the list and its weight consistent before it can panic (the
        // closures of `modify` run before the list is touched), so a poisoned lock is usable.
        self.lru
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces the variants of `key` by `change(current live variants)`, atomically with
    /// respect to other changes.
    ///
    /// `key` is anything that reads as the key and can become the shared key the list stores
    /// (a writer's `Arc<str>` moves in without a copy).
    fn modify(&self, key: impl AsRef<str> + Into<Arc<str>>, change: impl FnOnce(&mut HeldList)) {
        let now = Instant::now_without_cache_update();
        let mut lru = self.lock();
        let mut held: HeldList = lru
            .map
            .peek(key.as_ref())
            .map(|v| v.live(now).cloned().collect())
            .unwrap_or_default();
        change(&mut held);
        let removed = if held.is_empty() {
            Removed {
                first: lru.remove(key.as_ref()),
                rest: Vec::new(),
            }
        } else {
            let variants = Arc::new(Variants::new(key.as_ref(), held));
            lru.put(key.into(), variants, self.max_capacity)
        };
        drop(lru);
        drop(removed);
    }

    /// The live variants of `key`, marking it recently used.
    fn read(&self, key: &str) -> Entries {
        // The coarse clock (a few milliseconds of resolution, which physical expiry does not
        // notice) costs a quarter of a precise reading, a large part of a hit.
        let now = Instant::now_without_cache_update();
        let live = {
            let mut lru = self.lock();
            let Some(variants) = lru.map.get(key) else {
                return Entries::default();
            };
            if variants.earliest.is_some_and(|earliest| now < earliest) {
                let entries = variants
                    .entries
                    .get_or_init(|| Variants::entries(variants.held.iter()));
                return entries.clone();
            }
            Variants::entries(variants.live(now))
        };
        // Some variant expired: give its room back now.
        self.modify(key, |_| {});
        live
    }
}

fn expires_after(ttl: Duration) -> Instant {
    // A TTL too large to represent is "as late as we can say".
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    Instant::now_without_cache_update().saturating_add(ttl.min(CENTURY).into())
}

impl MemoryStore {
    /// A writer for a new variant of `key`, unless its announced length is over the limit.
    fn writer(
        &self,
        key: Arc<str>,
        response: Arc<ParsedResponse>,
        options: WriteOptions,
    ) -> Result<Box<dyn EntryWriter>, StoreError> {
        let limit = self.inner.max_body_size;
        match options.content_length {
            Some(len) if len > limit => Err(StoreError::TooLarge { limit }),
            _ => Ok(Box::new(MemoryWriter {
                inner: self.inner.clone(),
                key,
                response,
                ttl: options.ttl,
                first: Bytes::new(),
                rest: Vec::new(),
                len: 0,
                failed: false,
            })),
        }
    }
}

impl Store for MemoryStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Entries, StoreError>> {
        Box::pin(std::future::ready(Ok(self.inner.read(key))))
    }

    fn get_now(&self, key: &str) -> Option<Result<Entries, StoreError>> {
        Some(Ok(self.inner.read(key)))
    }

    fn begin<'a>(
        &'a self,
        key: &'a str,
        response: Arc<ParsedResponse>,
        options: WriteOptions,
    ) -> BoxFuture<'a, Result<Box<dyn EntryWriter>, StoreError>> {
        Box::pin(std::future::ready(self.writer(
            key.into(),
            response,
            options,
        )))
    }

    fn begin_now(
        &self,
        key: &Arc<str>,
        response: &Arc<ParsedResponse>,
        options: WriteOptions,
    ) -> Option<Result<Box<dyn EntryWriter>, StoreError>> {
        Some(self.writer(key.clone(), response.clone(), options))
    }

    fn update<'a>(
        &'a self,
        key: &'a str,
        variant: &'a VariantId,
        response: Arc<ParsedResponse>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.inner.modify(key, |list| {
                for slot in list
                    .iter_mut()
                    .filter(|v| v.id == *variant)
                    .filter(|v| crate::update_applies(&v.response, v.body.len() as u64, &response))
                {
                    slot.weight = variant_weight(&response, &slot.body);
                    slot.response = response.clone();
                    slot.expires = expires_after(ttl);
                }
            });
            Ok(())
        })
    }

    fn remove<'a>(
        &'a self,
        key: &'a str,
        variant: Option<&'a VariantId>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            match variant {
                None => {
                    let removed = self.inner.lock().remove(key);
                    drop(removed);
                }
                Some(variant) => self
                    .inner
                    .modify(key, |list| list.retain(|v| v.id != *variant)),
            }
            Ok(())
        })
    }

    fn clear(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut lru = self.inner.lock();
            let entries = std::mem::replace(&mut lru.map, LruCache::unbounded());
            lru.weight = 0;
            drop(lru);
            drop(entries);
            Ok(())
        })
    }
}

/// The answer of a commit that is already done.
struct Committed;

impl std::future::Future for Committed {
    type Output = Result<(), StoreError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// With [`MemoryStoreBuilder::copy_bytes`], bodies of one chunk up to this size are copied;
/// a larger one is kept as it came (a buffer it shares is then not much larger than it).
const COPIED_BODY_MAX: usize = 64 * 1024;

struct MemoryWriter {
    inner: Arc<Inner>,
    key: Arc<str>,
    response: Arc<ParsedResponse>,
    ttl: Duration,
    /// The first chunk, kept as it came: most bodies are one chunk, stored without a copy and
    /// without a list.
    first: Bytes,
    /// The chunks after the first, joined once at commit.
    rest: Vec<Bytes>,
    len: u64,
    failed: bool,
}

impl EntryWriter for MemoryWriter {
    fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        let limit = self.inner.max_body_size;
        if self.failed {
            return Err(StoreError::TooLarge { limit });
        }
        self.len += chunk.len() as u64;
        if self.len > limit {
            // Free what was buffered now: the caller may keep the writer until the body ends.
            self.failed = true;
            self.first = Bytes::new();
            self.rest = Vec::new();
            return Err(StoreError::TooLarge { limit });
        }
        if self.first.is_empty() {
            self.first = chunk;
        } else if !chunk.is_empty() {
            self.rest.push(chunk);
        }
        Ok(())
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        let this = *self;
        if this.failed {
            let limit = this.inner.max_body_size;
            return Box::pin(std::future::ready(Err(StoreError::TooLarge { limit })));
        }
        let mut response = this.response;
        if this.inner.copy_bytes {
            // Unique here in practice (the cache hands the entry over), so nothing is cloned.
            Arc::make_mut(&mut response).copy_bytes();
        }
        let body = if this.rest.is_empty() {
            if this.inner.copy_bytes && this.first.len() <= COPIED_BODY_MAX {
                Bytes::copy_from_slice(&this.first)
            } else {
                this.first
            }
        } else {
            let mut buf = BytesMut::with_capacity(this.len as usize);
            for chunk in std::iter::once(&this.first).chain(&this.rest) {
                buf.extend_from_slice(chunk);
            }
            buf.freeze()
        };
        let variant = Held {
            weight: variant_weight(&response, &body),
            id: VariantId::of(&response),
            response,
            body,
            expires: expires_after(this.ttl),
        };
        this.inner.modify(this.key, |list| {
            list.retain(|v| v.id != variant.id);
            list.push(variant);
        });
        // Committed already: a future with nothing in it, which boxing does not allocate.
        Box::pin(Committed)
    }
}
