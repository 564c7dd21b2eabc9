//! The Redis backend: [`RedisStore`].
//!
//! Entries live in a Redis server (feature `redis`) or a Redis Cluster (feature
//! `redis-cluster`), through [redis-rs](https://docs.rs/redis) on tokio, under a key prefix,
//! so that several caches (or several processes of one cache) can share a server. No TLS is
//! built in.
//!
//! # Connecting
//!
//! [`RedisStore::open`] (or [`RedisStore::builder`] and [`RedisStoreBuilder::build`]) takes
//! one URL for both kinds of deployment:
//!
//! - `redis://[USER:PASSWORD@]HOST:PORT[/DB][?prefix=P]`: one server, through redis-rs's
//!   [`ConnectionManager`](redis::aio::ConnectionManager), one multiplexed connection that
//!   reconnects by itself after the server went away.
//! - `redis+cluster://[USER:PASSWORD@]HOST1:PORT1,HOST2:PORT2,...[?prefix=P]` (feature
//!   `redis-cluster`): a cluster, through redis-rs's async cluster connection, which finds the
//!   other nodes and follows slot moves by itself. Any of the nodes will do as a seed.
//!
//! `prefix` (percent-encoded; default `http-cache:`, no `{` or `}`) starts every key of the
//! store; other query parameters (such as `protocol=resp3`) go to redis-rs. A malformed URL,
//! or a server that does not answer, is a [`StoreError::Unavailable`] saying what is wrong.
//!
//! # Layout
//!
//! `P` is the prefix and `H` the xxh3-128 hash of the primary key (32 hex digits). Every key
//! of one entry starts with `P{H}`: the braces make `H` its *hash tag*, so all of them live in
//! one cluster slot and one Lua script can change them together.
//!
//! ```text
//! P{H}:i              hash: one field per variant (the VariantId bytes) -> record
//! P{H}:c:<wid>:<n>    string: chunk n (0, 1, ...) of the body of write <wid>
//! P{lru}:order        sorted set: primary key -> last access (only with max_size_bytes)
//! P{lru}:sizes        hash: primary key -> bytes of its entry (only with max_size_bytes)
//! P{lru}:total        string: the sum of the sizes (only with max_size_bytes)
//! ```
//!
//! A record is:
//!
//! ```text
//! offset  size  field
//! 0       16    write id: 64 random bits in hex, new for every write
//! 16      8     chunk count in hex; 0 when the body is inline
//! 24      16    body length in hex
//! 40      4     body checksum (codec::BodyChecksum::trailer)
//! 44      H     the codec header section (key, variant, response, expiry, body length)
//! 44+H    N     the body itself, when inline (bodies of up to one chunk)
//! ```
//!
//! The metadata is the crate's versioned, checksummed [`codec`] header, so a damaged record is
//! a miss and a newer crate version can add header records. Chunks hold
//! [`chunk_size`](RedisStoreBuilder::chunk_size) bytes each (64 KiB by default), the last one
//! the rest; a body is never one large string.
//!
//! # Atomicity
//!
//! A body of up to one chunk stays in the writer's memory and goes into the record. A larger
//! one is *staged*: a background task stores its chunks under the write's fresh id, each with
//! the [staging TTL](RedisStoreBuilder::staging_ttl); no record names that id yet, so no
//! reader sees them. The commit is one Lua script: it checks that every staged chunk is still
//! there, stores the last chunk, gives the chunks the entry's TTL, points the variant's field
//! at the new record, and extends the index's TTL. Metadata and body become visible together,
//! and only complete; of two writers racing on one variant, the last commit wins whole.
//!
//! The chunks of a replaced or removed write are not deleted at once (a reader may be
//! streaming them): they expire after a [grace period](RedisStoreBuilder::replaced_grace)
//! (60 s). A reader that takes longer gets an error, never another write's bytes (write ids
//! are never reused). A writer dropped without commit deletes what it staged (what it cannot
//! delete expires with the staging TTL).
//!
//! An update after a 304 is a check-and-set script: it replaces the record only if it is still
//! the one [`update_applies`](crate::update_applies) was decided on (else it reads and decides
//! again), and resets the TTLs. Removals are scripts too.
//!
//! # Expiry
//!
//! Every key of an entry carries a Redis TTL (`PX`/`PEXPIRE`): the chunks the entry's own, the
//! index the longest of its variants', never less than [`min_ttl`](RedisStoreBuilder::min_ttl).
//! The header carries the exact expiry as well, checked on every read: an expired variant is
//! not returned (and its field is removed), even while Redis still holds it.
//!
//! # Reads
//!
//! [`Store::get`] reads the index with one `HGETALL`. Each record is decoded and checked (key,
//! variant, lengths, expiry); a record that fails is removed and is a miss. An inline body is
//! verified against its checksum at once and served as one `Bytes`. A chunked body streams
//! four chunks per round trip (`MGET`), with [`read_ahead_bytes`](RedisStoreBuilder::read_ahead_bytes)
//! (1 MiB, four `MGET`s) in flight: Redis sends the next batches while one is read and handed
//! out, and a reader holds no more than that. Its
//! checksum is verified before the last frame is released: a missing or damaged chunk ends the body in an error, never in a
//! complete-looking body, and removes the variant (if the index still names that write).
//!
//! # Writer buffer bound
//!
//! [`EntryWriter::write`] never blocks and never keeps a large body in memory. It copies the
//! body into a buffer of one chunk; each full chunk goes to the background task through a
//! bounded queue of [`write_queue_chunks`](RedisStoreBuilder::write_queue_chunks) chunks
//! (default 8); the chunks of a write that finds the queue full wait in an overflow beside it.
//! A writer that waits for [`EntryWriter::poll_ready`] between writes holds at most
//! `(write_queue_chunks + 2) × chunk_size` (640 KiB by default: the chunk being filled, the
//! queue, the chunk being sent) plus a copy of its last write, one hyper frame (at most its
//! read buffer, 0.4–0.8 MiB).
//!
//! [`EntryWriter::poll_ready`] is pending while chunks wait in the overflow, so a caller that
//! waits for it between writes (the cache's tee does) is slowed to Redis's pace instead of
//! losing the entry; a stalled server still fails the entry, once the task's round trip times
//! out. A caller that does not wait fails with [`StoreError::Unavailable`] once
//! `write_queue_chunks` chunks wait in the overflow; the cache then stops storing that
//! response while the client's response goes on, and what was staged is deleted.
//!
//! # Size bound
//!
//! Redis bounds memory itself (`maxmemory` with an `allkeys-lru` or `volatile-lru` policy:
//! every key of the store has a TTL), and by default the store leaves it at that. With
//! [`max_size_bytes`](RedisStoreBuilder::max_size_bytes) it also keeps its own account, in the
//! `P{lru}` keys: every commit, update and removal records the entry's size, every hit its
//! access time, and a commit that takes the total over the bound evicts the least recently
//! used entries. The account is kept across processes, but not in the same transaction as
//! the entries (in a cluster they are in other slots), so it is approximate: an entry expired
//! by Redis is counted until it is the least recently used one.
//!
//! # Failures
//!
//! Every round trip is bounded by [`timeout`](RedisStoreBuilder::timeout) (2 s): a server that
//! is down or stalled makes operations fail with [`StoreError::Unavailable`], quickly, and
//! once it is back the connection is made again by itself, without rebuilding the store.
//! Nothing that comes from the network is unwrapped. Every operation needs a tokio runtime.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cache_policy::ParsedResponse;

use crate::codec::{self, EntryMeta};
use crate::{BoxFuture, Entries, EntryWriter, Store, StoreError, VariantId, WriteOptions};

mod body;
mod conn;
mod layout;
mod ops;
mod scripts;
mod writer;

use conn::{Conn, Target};
use layout::Keys;
use ops::Removal;

/// The prefix of a URL without `prefix=`.
const DEFAULT_PREFIX: &str = "http-cache:";

/// A store in Redis or a Redis Cluster, shareable between processes. See the
/// [module documentation](self) for the layout and guarantees.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cache_store::StoreError> {
/// use std::time::{Duration, SystemTime};
/// use bytes::Bytes;
/// use cache_store::{RedisStore, Store, StoredResponse, WriteOptions};
/// use http::{HeaderMap, Method, StatusCode, Uri};
/// use http_body_util::BodyExt;
///
/// let store = RedisStore::open("redis://127.0.0.1:6379/0?prefix=myapp:").await?;
/// // Or, to configure it:
/// let store = RedisStore::builder("redis://127.0.0.1:6379/0?prefix=myapp:")
///     .max_body_size(16 << 20)
///     .timeout(Duration::from_secs(1))
///     .build()
///     .await?;
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
/// let options = WriteOptions { ttl: Duration::from_secs(60), content_length: None };
/// let mut writer = store.begin("https://example.com/", response.into(), options).await?;
/// writer.write(Bytes::from_static(b"hello"))?;
/// writer.commit().await?;
///
/// let entries = store.get("https://example.com/").await?;
/// let body = entries[0].body().expect("read once");
/// assert_eq!(body.collect().await?.to_bytes(), "hello");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    keys: Keys,
    shown_url: String,
    cluster: bool,
    max_body_size: u64,
    chunk_size: usize,
    queue_chunks: usize,
    /// `MGET`s of body chunks a reader keeps in flight (at least 1).
    read_ahead_batches: usize,
    max_size: Option<u64>,
    min_ttl: Duration,
    grace: Duration,
    staging_ttl: Duration,
    timeout: Duration,
}

/// Configures a [`RedisStore`]; see [`RedisStore::builder`].
#[derive(Clone)]
pub struct RedisStoreBuilder {
    url: String,
    prefix: Option<String>,
    max_body_size: u64,
    chunk_size: usize,
    write_queue_chunks: usize,
    read_ahead_bytes: usize,
    max_size_bytes: Option<u64>,
    min_ttl: Duration,
    replaced_grace: Duration,
    staging_ttl: Duration,
    timeout: Duration,
}

impl RedisStoreBuilder {
    /// The key prefix, instead of the URL's `prefix` parameter (default `http-cache:`). It
    /// must not contain `{` or `}` (the hash tags' braces).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// The largest body stored; a larger one makes [`EntryWriter::write`] fail with
    /// [`StoreError::TooLarge`]. Default: 64 MiB.
    pub fn max_body_size(mut self, bytes: u64) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// The size of a body chunk: of each chunk key, of the writer's buffer, and of the largest
    /// body stored inline in its record. Default: 64 KiB; between 1 KiB and 64 MiB.
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes.clamp(1024, 64 << 20);
        self
    }

    /// How many full chunks a writer queues for its background task before
    /// [`EntryWriter::poll_ready`] makes it wait (see the
    /// [module documentation](self#writer-buffer-bound)). Default: 8; at least 1.
    pub fn write_queue_chunks(mut self, chunks: usize) -> Self {
        self.write_queue_chunks = chunks.max(1);
        self
    }

    /// How many body bytes a reader asks for ahead of the frame it hands out, in `MGET`s of
    /// four chunks (at least one): Redis sends them while the reader works, and a reader holds
    /// at most this much. Default: 1 MiB (four `MGET`s of 64 KiB chunks).
    pub fn read_ahead_bytes(mut self, bytes: usize) -> Self {
        self.read_ahead_bytes = bytes;
        self
    }

    /// Keeps the store's own account of its size and evicts the least recently used entries
    /// over `bytes` (see the [module documentation](self#size-bound)). Default: none (Redis's
    /// `maxmemory` bounds the server).
    pub fn max_size_bytes(mut self, bytes: u64) -> Self {
        self.max_size_bytes = Some(bytes);
        self
    }

    /// The shortest Redis TTL given to an entry's keys, whatever the entry's own TTL (which
    /// its header still enforces on reads). Default: 1 s.
    pub fn min_ttl(mut self, ttl: Duration) -> Self {
        self.min_ttl = ttl;
        self
    }

    /// How long the chunks of a replaced or removed write stay for the readers still
    /// streaming them. Default: 60 s.
    pub fn replaced_grace(mut self, grace: Duration) -> Self {
        self.replaced_grace = grace;
        self
    }

    /// The TTL of staged chunks: a write that has not committed by then fails, and the chunks
    /// of a writer that died (with its process) expire then. Default: 10 minutes.
    pub fn staging_ttl(mut self, ttl: Duration) -> Self {
        self.staging_ttl = ttl;
        self
    }

    /// The longest wait for connecting and for each answer from Redis. Default: 2 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Parses the URL and connects; fails (after about the timeout, at most) when the URL is
    /// malformed or no server answers.
    pub async fn build(self) -> Result<RedisStore, StoreError> {
        let target = Target::parse(&self.url)?;
        let prefix = self
            .prefix
            .or(target.prefix.clone())
            .unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
        if prefix.contains(['{', '}']) {
            return Err(StoreError::unavailable(format!(
                "invalid Redis key prefix `{prefix}`: it must not contain `{{` or `}}` (they \
                 would change the keys' hash tags)"
            )));
        }
        let conn = Conn::connect(&target, self.timeout).await?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conn,
                keys: Keys::new(prefix),
                shown_url: target.shown,
                cluster: target.cluster,
                max_body_size: self.max_body_size,
                chunk_size: self.chunk_size,
                queue_chunks: self.write_queue_chunks,
                read_ahead_batches: (self.read_ahead_bytes
                    / (body::CHUNKS_PER_READ as usize * self.chunk_size))
                    .max(1),
                max_size: self.max_size_bytes,
                min_ttl: self.min_ttl,
                grace: self.replaced_grace,
                staging_ttl: self.staging_ttl,
                timeout: self.timeout,
            }),
        })
    }
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("url", &conn::redact(&self.url))
            .field("prefix", &self.prefix)
            .field("max_body_size", &self.max_body_size)
            .field("chunk_size", &self.chunk_size)
            .field("write_queue_chunks", &self.write_queue_chunks)
            .field("read_ahead_bytes", &self.read_ahead_bytes)
            .field("max_size_bytes", &self.max_size_bytes)
            .field("min_ttl", &self.min_ttl)
            .field("replaced_grace", &self.replaced_grace)
            .field("staging_ttl", &self.staging_ttl)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RedisStore {
    /// Connects to the server or cluster of `url` (see [Connecting](self#connecting)) with the
    /// defaults of [`builder`](Self::builder).
    pub async fn open(url: &str) -> Result<RedisStore, StoreError> {
        Self::builder(url).build().await
    }

    /// A builder for a store at `url`, with the defaults: the URL's prefix (else
    /// `http-cache:`), bodies up to 64 MiB in 64 KiB chunks, 8 queued chunks per writer, 1 MiB
    /// read ahead per reader, no
    /// size bound of its own, a 1 s TTL floor, 60 s of grace for replaced bodies, a 10 minute
    /// staging TTL and a 2 s timeout.
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            prefix: None,
            max_body_size: 64 << 20,
            chunk_size: 64 * 1024,
            write_queue_chunks: 8,
            read_ahead_bytes: 1 << 20,
            max_size_bytes: None,
            min_ttl: Duration::from_secs(1),
            replaced_grace: Duration::from_secs(60),
            staging_ttl: Duration::from_secs(600),
            timeout: Duration::from_secs(2),
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.inner.keys.prefix()
    }

    /// Whether the store is on a cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.cluster
    }

    /// The configured limit on the size of one body.
    pub fn max_body_size(&self) -> u64 {
        self.inner.max_body_size
    }

    /// The name of the index hash of `primary_key` (see [Layout](self#layout)), for
    /// inspecting the store with other tools.
    pub fn index_key(&self, primary_key: &str) -> String {
        self.inner.keys.index(primary_key)
    }

    /// The name of chunk `n` of the write `write_id` (the first 16 bytes of its record) of
    /// `primary_key`.
    pub fn chunk_key(&self, primary_key: &str, write_id: &str, n: u32) -> String {
        format!("{}{write_id}:{n}", self.inner.keys.chunk_base(primary_key))
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.inner.shown_url)
            .field("prefix", &self.inner.keys.prefix())
            .field("cluster", &self.inner.cluster)
            .field("max_body_size", &self.inner.max_body_size)
            .field("max_size_bytes", &self.inner.max_size)
            .finish_non_exhaustive()
    }
}

impl Store for RedisStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Entries, StoreError>> {
        Box::pin(self.inner.get(key))
    }

    fn begin<'a>(
        &'a self,
        key: &'a str,
        response: Arc<ParsedResponse>,
        options: WriteOptions,
    ) -> BoxFuture<'a, Result<Box<dyn EntryWriter>, StoreError>> {
        Box::pin(async move {
            let limit = self.inner.max_body_size;
            if options.content_length.is_some_and(|len| len > limit) {
                return Err(StoreError::TooLarge { limit });
            }
            let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                StoreError::unavailable("the Redis store needs a tokio runtime to write")
            })?;
            let meta = EntryMeta {
                key: key.to_owned(),
                variant: VariantId::of(&response),
                response: Arc::unwrap_or_clone(response).into_response(),
                expires: ops::expiry(options.ttl),
                body_len: 0,
            };
            // Encode now so metadata that cannot be stored fails before any byte is written.
            codec::encode_header(&meta)?;
            let writer = writer::RedisWriter::new(self.inner.clone(), runtime, meta);
            Ok(Box::new(writer) as Box<dyn EntryWriter>)
        })
    }

    fn update<'a>(
        &'a self,
        key: &'a str,
        variant: &'a VariantId,
        response: Arc<ParsedResponse>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let response = Arc::unwrap_or_clone(response).into_response();
        Box::pin(async move { self.inner.update(key, variant, response, ttl).await })
    }

    fn remove<'a>(
        &'a self,
        key: &'a str,
        variant: Option<&'a VariantId>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let what = match variant {
                None => Removal::All,
                Some(variant) => Removal::One(variant.as_bytes()),
            };
            self.inner.remove(key, what).await
        })
    }

    fn clear(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.inner.clear())
    }
}
