//! The SQLite backend: [`SqliteStore`].
//!
//! One database file (or a private `:memory:` database) holds every entry, through
//! [rusqlite](https://docs.rs/rusqlite) with a bundled SQLite: nothing needs to be installed.
//!
//! # Layout
//!
//! ```text
//! entries (one row per write)
//!   id          INTEGER PRIMARY KEY AUTOINCREMENT   new for every write, never reused
//!   key         TEXT     the primary key
//!   variant     BLOB     the VariantId bytes
//!   committed   INTEGER  0 while the write is staged, 1 once published
//!   header      BLOB     the codec header section (key, variant, response, expiry, body length)
//!   body_len    INTEGER  body length in bytes
//!   body_crc    BLOB     the codec body checksum (4 bytes, BodyChecksum::trailer)
//!   expires_ms  INTEGER  physical expiry, Unix milliseconds
//!   last_access INTEGER  logical access tick, for LRU eviction
//!   size        INTEGER  header + body bytes, counted against the size bound
//!   started_ms  INTEGER  when the write began, Unix milliseconds (to sweep stale staged writes)
//!   UNIQUE (key, variant) WHERE committed = 1; indexes on (committed, last_access, size)
//!   and (committed, expires_ms)
//!
//! chunks (the bodies)
//!   entry_id    INTEGER  entries.id
//!   seq         INTEGER  0, 1, 2, ...
//!   data        BLOB     64 KiB, the last chunk the rest (an empty body has no chunk)
//!   PRIMARY KEY (entry_id, seq)
//! ```
//!
//! The metadata is stored in the crate's versioned, checksummed [`codec`] format
//! (the header section; the body checksum goes in its own column), so a damaged row is a miss,
//! and a newer crate version can add header records without a schema change. The schema
//! version is `PRAGMA user_version` (1); a database of a newer schema is refused.
//!
//! # Atomicity and sharing between processes
//!
//! A body of up to one chunk stays in the writer's memory and is published by the commit in
//! one transaction. A larger one is *staged*: a background job inserts an `entries` row with
//! `committed = 0` and then its chunks under that row's id, each in a short transaction of its
//! own; readers only select `committed = 1` rows and their chunks, so they never see it. The
//! commit is one transaction (`BEGIN IMMEDIATE`) that retires the older entry of the same key
//! and variant, stores the last chunk, flips the new row to `committed = 1`, and enforces the
//! size bound. A retired entry (`committed = 2`: replaced, removed, expired or evicted) is gone
//! from reads but keeps its chunks for 60 s, so that a body being streamed from it reads to its
//! end; later commits and [`SqliteStore::maintain`] sweep it. An entry therefore becomes visible complete and at once, to
//! this process and to every other process that opens the same file (SQLite's locking makes
//! the transaction atomic across processes; file databases use the WAL journal, so readers
//! never wait for the writer, with `synchronous = NORMAL`: a power loss may lose the last
//! commits, never tear one). Writers of several processes take turns, each waiting up to
//! [`SqliteStoreBuilder::busy_timeout`] for the lock.
//!
//! A writer dropped without commit (or failing) deletes what it staged. Staged writes older
//! than [`SqliteStoreBuilder::stale_write_age`] (left by a crashed process), and chunks of no
//! entry, are swept when a store opens the database; a write lasting longer than that age may
//! be swept by another process opening the file, and its commit then fails.
//!
//! Entry ids are never reused, so a body streaming from an entry that is replaced or removed
//! meanwhile ends in an error (its chunks are gone), never in another version's bytes.
//!
//! The database file is created readable and writable by its owner only (mode 0600): a cached
//! response may hold one user's data.
//!
//! # Reads
//!
//! [`Store::get`] selects the key's published rows in one statement, with the first chunk of
//! bodies of up to 64 KiB. Each header is decoded and checked (key, variant, body length); a
//! row that fails is deleted and is a miss, and so is an expired row. A small body is verified
//! against its checksum at once and served as one `Bytes`; a larger one streams chunk by chunk
//! (a few chunks per trip to the blocking pool), and its checksum is verified before the last
//! frame is released: a missing, short or damaged chunk ends the body in an error, never in a
//! complete-looking body, and deletes the entry at once, so the next read is a miss.
//!
//! # Size bound
//!
//! The bound ([`SqliteStoreBuilder::max_size_bytes`]) counts the header and body bytes of the
//! published entries of the whole database (so it holds across processes). When a commit (or
//! an update) takes the total over it, the same transaction deletes expired entries, then the
//! least recently accessed ones, until the total is within the bound. Access order is a logical
//! tick kept in the database: a commit gives its entry the next tick, and hits are recorded
//! approximately, without a write of their own: a process remembers the entries it served and
//! the next write transaction of that process stamps them ([`SqliteStore::maintain`] does it
//! at once). Writes in progress are not counted.
//!
//! # Writer buffer bound
//!
//! [`EntryWriter::write`] never blocks and never keeps a whole large body in memory. It copies
//! the body into a buffer of one 64 KiB chunk; each full chunk goes to the writer's background
//! job through a bounded queue of [`SqliteStoreBuilder::write_queue_chunks`] chunks (default 8);
//! the chunks of a write that finds the queue full wait in an overflow beside it.
//!
//! [`EntryWriter::poll_ready`] is pending while chunks wait in the overflow, so a caller that
//! waits for it between writes (the cache's tee does) is slowed to the database's pace instead
//! of losing the entry. Such a writer holds at most `(write_queue_chunks + 2) × 64 KiB` (640 KiB
//! by default: the chunk being filled, the queue, the chunk being inserted) plus a copy of its
//! last write, one hyper frame (at most its read buffer, 0.4–0.8 MiB). A caller that does not
//! wait fails with [`StoreError::Unavailable`] once `write_queue_chunks` chunks wait in the
//! overflow; the cache then stops storing that response while the client's response goes on,
//! and what was staged is deleted.
//!
//! # Runtime
//!
//! Every SQLite call runs on tokio's blocking pool when a tokio runtime is present (inline
//! otherwise). The background job of a large write is a task that takes a blocking thread
//! only for each insert, never while it waits for the next chunk (without a runtime it runs on
//! a thread of its own). Within a process all writes go through one
//! connection, one at a time; reads of a file database use a small pool of connections of
//! their own. A `:memory:` database lives in one connection shared by everything (each
//! connection to `:memory:` would be a database of its own), and ends with the store.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cache_policy::ParsedResponse;

use crate::blocking::blocking;
use crate::codec::{self, BodyChecksum, EntryMeta};
use crate::{
    BoxFuture, Entries, EntryWriter, Store, StoreError, StoredBody, StoredEntry, VariantId,
    WriteOptions,
};

mod body;
mod db;
mod sql;
mod writer;

use db::{Db, Row, Update};

/// The size of a body chunk: of each row of the chunks table, of the writer's buffer, and of
/// the largest body read whole.
const CHUNK: usize = 64 * 1024;

/// A store in one SQLite database, shareable between processes. See the
/// [module documentation](self) for the schema and guarantees.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cache_store::StoreError> {
/// use std::time::{Duration, SystemTime};
/// use bytes::Bytes;
/// use cache_store::{SqliteStore, Store, StoredResponse, WriteOptions};
/// use http::{HeaderMap, Method, StatusCode, Uri};
/// use http_body_util::BodyExt;
///
/// let dir = tempfile::tempdir()?;
/// let store = SqliteStore::builder(dir.path().join("cache.sqlite"))
///     .max_size_bytes(1 << 30)
///     .max_body_size(64 << 20)
///     .build()?;
/// // `SqliteStore::builder(":memory:")` keeps the database in memory instead.
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
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Db>,
    path: PathBuf,
    max_size: u64,
    max_body_size: u64,
    queue_chunks: usize,
}

/// Configures a [`SqliteStore`]; see [`SqliteStore::builder`].
#[derive(Debug, Clone)]
pub struct SqliteStoreBuilder {
    path: PathBuf,
    max_size_bytes: u64,
    max_body_size: u64,
    busy_timeout: Duration,
    stale_write_age: Duration,
    write_queue_chunks: usize,
}

impl SqliteStoreBuilder {
    /// The total size of the published entries (header and body bytes), in bytes. Default:
    /// 1 GiB.
    pub fn max_size_bytes(mut self, bytes: u64) -> Self {
        self.max_size_bytes = bytes;
        self
    }

    /// The largest body stored; a larger one makes [`EntryWriter::write`] fail with
    /// [`StoreError::TooLarge`]. Default: 64 MiB, and never more than the total size.
    pub fn max_body_size(mut self, bytes: u64) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// How long an operation waits for another connection's write lock (another process, or
    /// this process's readers while the WAL is checkpointed) before it fails. Default: 5 s.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Staged writes older than this, found when the store opens the database, are left over
    /// from crashed processes and deleted. Default: 10 minutes.
    pub fn stale_write_age(mut self, age: Duration) -> Self {
        self.stale_write_age = age;
        self
    }

    /// How many full 64 KiB chunks a writer queues for its background job before
    /// [`EntryWriter::poll_ready`] makes it wait (see the
    /// [module documentation](self#writer-buffer-bound)). Default: 8; at least 1.
    pub fn write_queue_chunks(mut self, chunks: usize) -> Self {
        self.write_queue_chunks = chunks.max(1);
        self
    }

    /// Opens (creating if needed) the database and its schema, and sweeps stale staged writes.
    /// Blocks while it does.
    pub fn build(self) -> Result<SqliteStore, StoreError> {
        let memory = self.path == Path::new(":memory:");
        let db = Db::open(
            (!memory).then_some(self.path.as_path()),
            self.busy_timeout,
            self.stale_write_age,
        )?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                db: Arc::new(db),
                path: self.path,
                max_size: self.max_size_bytes,
                max_body_size: self.max_body_size.min(self.max_size_bytes),
                queue_chunks: self.write_queue_chunks,
            }),
        })
    }
}

impl SqliteStore {
    /// A builder for a store in the database file at `path` (`":memory:"` for a private
    /// in-memory database), with the defaults: 1 GiB in total, bodies up to 64 MiB, a 5 s busy
    /// timeout, staged writes stale after 10 minutes, 8 queued chunks per writer.
    pub fn builder(path: impl Into<PathBuf>) -> SqliteStoreBuilder {
        SqliteStoreBuilder {
            path: path.into(),
            max_size_bytes: 1 << 30,
            max_body_size: 64 << 20,
            busy_timeout: Duration::from_secs(5),
            stale_write_age: Duration::from_secs(600),
            write_queue_chunks: 8,
        }
    }

    /// The path of the database (`:memory:` for an in-memory one).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The configured limit on the size of one body.
    pub fn max_body_size(&self) -> u64 {
        self.inner.max_body_size
    }

    /// The total size of the published entries (header and body bytes). Blocks: call it from
    /// a blocking context (or `spawn_blocking`), not from an async task.
    pub fn size_bytes(&self) -> Result<u64, StoreError> {
        self.inner.db.size_bytes()
    }

    /// Brings housekeeping up to date: records the access times of recent hits, deletes
    /// expired entries and enforces the size bound. Commits do all of it as they go; this is
    /// for tests and idle moments. Blocks like [`size_bytes`](Self::size_bytes).
    pub fn maintain(&self) -> Result<(), StoreError> {
        self.inner.db.maintain(self.inner.max_size)
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("max_size_bytes", &self.inner.max_size)
            .field("max_body_size", &self.inner.max_body_size)
            .finish_non_exhaustive()
    }
}

fn expiry(ttl: Duration) -> SystemTime {
    let now = SystemTime::now();
    // A TTL too large to represent is "as late as we can say".
    now.checked_add(ttl)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

impl Inner {
    fn get(&self, key: &str) -> Result<Entries, StoreError> {
        let rows = self.db.published(key, CHUNK)?;
        let now = sql::now_ms();
        let mut out = Vec::with_capacity(rows.len());
        let mut doomed = Vec::new();
        let mut served = Vec::with_capacity(rows.len());
        for row in rows {
            let id = row.id;
            if row.expires_ms <= now {
                doomed.push(id);
                continue;
            }
            match self.entry_of(key, row) {
                Some(entry) => {
                    served.push(id);
                    out.push(entry);
                }
                None => doomed.push(id),
            }
        }
        if !doomed.is_empty() {
            // What could not be deleted is met (and skipped) again by the next read.
            let _ = self.db.delete(&doomed);
        }
        // Access times only steer eviction: a failure to record them is no failed read.
        let _ = self.db.touch(&served);
        Ok(out.into())
    }

    /// The entry of a published row; `None` if the row is damaged.
    fn entry_of(&self, key: &str, row: Row) -> Option<StoredEntry> {
        let (meta, header_len) = codec::decode_header(&row.header).ok()?;
        meta.check_key(key).ok()?;
        let body_len = u64::try_from(row.body_len).ok()?;
        let crc: [u8; 4] = row.body_crc.as_slice().try_into().ok()?;
        if header_len != row.header.len()
            || meta.variant.as_bytes() != row.variant.as_slice()
            || meta.body_len != body_len
        {
            return None;
        }
        let body = if body_len <= CHUNK as u64 {
            let data = row.first_chunk.unwrap_or_default();
            if data.len() as u64 != body_len {
                return None;
            }
            let mut check = BodyChecksum::new();
            check.update(&data);
            check.verify(&crc).ok()?;
            StoredBody::full(Bytes::from(data))
        } else {
            let body = body::ChunkBody::new(self.db.clone(), row.id, body_len, crc);
            StoredBody::stream(body, Some(body_len))
        };
        let response = Arc::new(ParsedResponse::new(meta.response));
        Some(StoredEntry::new(meta.variant, response, body))
    }
}

impl Store for SqliteStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Entries, StoreError>> {
        let inner = self.inner.clone();
        let key = key.to_owned();
        Box::pin(blocking(move || inner.get(&key)))
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
            let meta = EntryMeta {
                key: key.to_owned(),
                variant: VariantId::of(&response),
                response: Arc::unwrap_or_clone(response).into_response(),
                expires: expiry(options.ttl),
                body_len: 0,
            };
            // Encode now so metadata that cannot be stored fails before any byte is written.
            codec::encode_header(&meta)?;
            let writer = writer::SqliteWriter::new(self.inner.clone(), meta);
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
        let inner = self.inner.clone();
        let (key, variant) = (key.to_owned(), variant.clone());
        let response = Arc::unwrap_or_clone(response).into_response();
        Box::pin(blocking(move || {
            let mut encoded = Ok(());
            inner.db.update(
                &key,
                variant.as_bytes(),
                inner.max_size,
                |header, body_len| {
                    let Ok((old, _)) = codec::decode_header(header) else {
                        return Update::Damaged;
                    };
                    if old.key != key || old.variant != variant || old.body_len != body_len {
                        return Update::Damaged;
                    }
                    if !crate::update_applies(&old.response, body_len, &response) {
                        return Update::Keep;
                    }
                    let expires = expiry(ttl);
                    let meta = EntryMeta {
                        key: key.clone(),
                        variant: variant.clone(),
                        response,
                        expires,
                        body_len,
                    };
                    match codec::encode_header(&meta) {
                        Ok(header) => Update::Replace {
                            header,
                            expires_ms: sql::unix_ms(expires),
                        },
                        Err(e) => {
                            encoded = Err(e);
                            Update::Keep
                        }
                    }
                },
            )?;
            encoded
        }))
    }

    fn remove<'a>(
        &'a self,
        key: &'a str,
        variant: Option<&'a VariantId>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let inner = self.inner.clone();
        let (key, variant) = (key.to_owned(), variant.cloned());
        Box::pin(blocking(move || {
            inner
                .db
                .remove(&key, variant.as_ref().map(VariantId::as_bytes))
        }))
    }

    fn clear(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        let inner = self.inner.clone();
        Box::pin(blocking(move || inner.db.clear()))
    }
}
