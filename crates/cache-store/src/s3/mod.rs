//! The S3 backend: [`S3Store`].
//!
//! Entries live as objects in an S3 bucket (AWS S3, or any S3-compatible server: MinIO, Ceph,
//! R2, moto...) under a prefix, through [object_store](https://docs.rs/object_store)'s
//! `AmazonS3`, so that a fleet of caches shares them. Feature `s3` speaks plain HTTP only
//! (for a server on a loopback or internal network) and builds no TLS stack; `s3-tls` adds
//! HTTPS (object_store's reqwest client with rustls).
//!
//! # Connecting
//!
//! [`S3Store::open`] (or [`S3Store::builder`] and [`S3StoreBuilder::build`]) takes
//! `s3://BUCKET[/PREFIX][?PARAMETERS]`. Settings come from the usual `AWS_*` environment
//! variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_ENDPOINT_URL`, `AWS_REGION`...), and the URL's query parameters override them:
//! `endpoint` (`http://HOST:PORT`; an `http://` endpoint means plain HTTP, so
//! `AWS_ALLOW_HTTP` is not needed and not read), `region`,
//! `access_key_id`, `secret_access_key`, `session_token`, `virtual_hosted_style_request`
//! (default: path-style requests, which S3-compatible servers want), `skip_signature`.
//! Values are percent-decoded. [`build`](S3StoreBuilder::build) lists the prefix once, so
//! that a malformed URL, an unreachable server, a missing bucket or refused credentials fail
//! there, with a message saying which and what to do.
//!
//! # Layout
//!
//! `P` is the prefix, `K` the xxh3-128 hash of the primary key and `V` that of the variant
//! id (32 hex digits each):
//!
//! ```text
//! P/e/K/V      one object per variant: the crate's codec encoding (header section with the
//!              key, variant, response, expiry and body length; the body; a CRC32 trailer)
//! P/s/<id>     a body of unknown length being staged (see Writing)
//! ```
//!
//! The variants of a key are the objects listed under `P/e/K/`.
//!
//! # Reading
//!
//! A response without `Vary` (the empty variant id) has a name known without listing, so a
//! read sends its GET along with the LIST of `P/e/K/`, and then GETs the other variants the
//! LIST named, together. A process reuses its listing of a key for
//! [`listing_reuse`](S3StoreBuilder::listing_reuse) (1 s): the reads meanwhile send their
//! GETs at once, with no LIST, so a hit costs one round trip. Its own commits and removals
//! keep the listing up to date; another process's new variant with `Vary` is seen once the
//! listing is taken again (a response without `Vary`, and every removal, at once).
//!
//! Every object is checked
//! on read: the key and variant its header names, its length against the header's, the
//! header's checksum, and the body's checksum before the body's last bytes are released. A
//! damaged, truncated or expired object is a miss and is deleted.
//!
//! # Atomicity
//!
//! S3 makes an object visible whole or not at all: a PUT, or the completion of a multipart
//! upload, publishes it atomically, and a GET streams one version even while it is being
//! replaced. Since an entry's metadata and body are one object, a reader sees an old entry or
//! a new one, never a torn body or one write's metadata with another's body; of two writers
//! racing on one variant, the last to publish wins whole. A writer dropped before its commit
//! abandons its multipart upload, whose parts S3 never shows.
//!
//! An update after a 304 rewrites the object (S3 objects cannot change in place): read it,
//! check [`update_applies`](crate::update_applies), write the new header and the same body.
//! When the object fits one part, the write is a conditional PUT (`If-Match` on the ETag
//! read, object_store's [`PutMode::Update`](object_store::PutMode::Update)): if another
//! writer replaced it meanwhile, the update reads and decides again. A larger object is
//! copied by multipart upload, which S3 cannot make conditional; a replacement landing during
//! that copy is overwritten by the updated previous version, still whole and consistent.
//!
//! S3 has no conditional delete: removing an expired or damaged object is checked against
//! its ETag just before, so a write landing in between is lost at worst (a later miss).
//!
//! # Writing
//!
//! A body of up to one [part](S3StoreBuilder::part_size) (5 MiB by default, S3's minimum
//! part size) stays in the writer's memory and is one PUT at commit, header first. A larger
//! one is a multipart upload fed by a background task, one part at a time:
//!
//! - when the response announced its length (`Content-Length`), the header goes first into
//!   the first part and the parts go straight to the entry's object;
//! - when it did not, the body is uploaded to a staging object `P/s/<id>`, and the commit,
//!   now knowing the length, copies it behind the header into the entry's object (a second
//!   transfer, checked against the body's checksum) and deletes the staging object.
//!
//! # Writer buffer bound
//!
//! [`EntryWriter::write`] never blocks. It fills one part; full
//! parts go to the background task through a queue of
//! [`write_queue_parts`](S3StoreBuilder::write_queue_parts) parts (default 1). A writer holds
//! at most `(write_queue_parts + 2) × part_size` body bytes: the part being filled, the
//! queue, and the part being uploaded (15 MiB by default; S3's 5 MiB minimum part makes the
//! bound larger than the other backends'). When the queue is full the write fails with
//! [`StoreError::Unavailable`] and the upload is aborted.
//! [`EntryWriter::poll_ready`] is pending while the queue is full, and while the part being
//! filled is full and the previous one is still being uploaded: a caller that polls it before
//! each write slows the origin to S3's pace and holds at most two parts (10 MiB by default)
//! and the chunk it writes.
//!
//! # Expiry
//!
//! Each header carries the entry's expiry, checked on every read: an expired object is a
//! miss and is deleted. [`S3Store::sweep`] lists every object of the store and deletes the
//! expired and damaged ones (a ranged GET of each header) and staging objects older than the
//! [staging TTL](S3StoreBuilder::staging_ttl); [`sweep_every`](S3StoreBuilder::sweep_every)
//! runs it periodically. A bucket lifecycle rule can also expire old objects.
//!
//! # Size bound
//!
//! A bucket holds what it is given, and by default the store leaves it at that (expiry, the
//! sweep or a lifecycle rule keep it to live entries). With
//! [`max_size_bytes`](S3StoreBuilder::max_size_bytes) it keeps, in memory, an account of the
//! entries' sizes and last uses, seeded at [`build`](S3StoreBuilder::build) by one listing of
//! the bucket (oldest change first) and kept up by this process's commits, reads, updates and
//! removals; a commit that takes the total over the bound deletes the least recently used
//! keys. The account is per process: entries another process writes are counted once this
//! one reads them (or at its next start), so with several writers the bound is approximate.
//!
//! # Failures
//!
//! Connecting is bounded by [`timeout`](S3StoreBuilder::timeout) (2 s), each wait for an
//! answer and for more of a body by four times that (an answer to an upload gets a second
//! more per MiB sent), with two quick retries, so a server that is down makes operations fail with
//! [`StoreError::Unavailable`] within seconds; once it is back the next operation works,
//! without rebuilding the store. Nothing from the network is unwrapped. Every operation
//! needs a tokio runtime.

use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use cache_policy::ParsedResponse;
use object_store::ObjectStore;

use crate::codec::EntryMeta;
use crate::{BoxFuture, Entries, EntryWriter, Store, StoreError, VariantId, WriteOptions};

mod bound;
mod config;
mod guard;
#[cfg(not(feature = "s3-tls"))]
mod http;
mod layout;
mod listings;
mod ops;
mod read;
mod upload;
mod writer;

pub use ops::Sweep;

/// S3's smallest part of a multipart upload (but the last).
const MIN_PART: usize = 5 << 20;

/// A store in an S3 bucket, shareable between processes and machines. See the
/// [module documentation](self) for the layout and guarantees.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cache_store::StoreError> {
/// use std::time::{Duration, SystemTime};
/// use bytes::Bytes;
/// use cache_store::{S3Store, Store, StoredResponse, WriteOptions};
/// use http::{HeaderMap, Method, StatusCode, Uri};
/// use http_body_util::BodyExt;
///
/// let url = "s3://http-cache/v1?endpoint=http://127.0.0.1:9000&region=us-east-1";
/// let store = S3Store::open(url).await?;
/// // Or, to configure it:
/// let store = S3Store::builder(url)
///     .max_body_size(64 << 20)
///     .timeout(Duration::from_secs(5))
///     .sweep_every(Duration::from_secs(600))
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
pub struct S3Store {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    layout: layout::Layout,
    /// The bucket and endpoint, for messages.
    shown: String,
    max_body_size: u64,
    part_size: usize,
    queue_parts: usize,
    /// Bodies up to this many bytes are read whole on `get`; larger ones stream.
    inline_body: usize,
    staging_ttl: Duration,
    /// The size bound's account, with `max_size_bytes`.
    account: Option<Mutex<bound::Account>>,
    listings: listings::Listings,
}

/// Configures an [`S3Store`]; see [`S3Store::builder`].
#[derive(Clone)]
pub struct S3StoreBuilder {
    url: String,
    max_body_size: u64,
    part_size: usize,
    write_queue_parts: usize,
    inline_body: usize,
    staging_ttl: Duration,
    timeout: Duration,
    sweep_every: Option<Duration>,
    max_size_bytes: Option<u64>,
    listing_reuse: Duration,
}

impl S3StoreBuilder {
    /// The largest body stored; a larger one makes
    /// [`EntryWriter::write`] fail with [`StoreError::TooLarge`].
    /// Default: 64 MiB.
    pub fn max_body_size(mut self, bytes: u64) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// The size of a multipart upload's parts, and of the largest entry stored by one PUT.
    /// Default and least: 5 MiB (S3's minimum); at most 5 GiB.
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.clamp(MIN_PART, 5 << 30);
        self
    }

    /// How many full parts a writer queues for its background upload before a write fails
    /// (see the [module documentation](self#writer-buffer-bound)). Default: 1; at least 1.
    pub fn write_queue_parts(mut self, parts: usize) -> Self {
        self.write_queue_parts = parts.max(1);
        self
    }

    /// Bodies up to this size are read whole when their entry is read (one `Bytes`, shared
    /// by every reader of the list); larger ones stream from their GET. Default: 64 KiB.
    pub fn inline_body_size(mut self, bytes: usize) -> Self {
        self.inline_body = bytes;
        self
    }

    /// How old a staging object (see [Writing](self#writing)) must be for
    /// [`S3Store::sweep`] to delete it as abandoned. Default: 1 hour.
    pub fn staging_ttl(mut self, ttl: Duration) -> Self {
        self.staging_ttl = ttl;
        self
    }

    /// The longest wait for connecting; each wait for an answer, or for more of a body, is
    /// bounded by four times this (see [Failures](self#failures)). Default: 2 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Runs [`S3Store::sweep`] every `period` in a background task (on the runtime `build`
    /// runs on) for as long as a clone of the store is alive. Default: never.
    pub fn sweep_every(mut self, period: Duration) -> Self {
        self.sweep_every = Some(period.max(Duration::from_secs(1)));
        self
    }

    /// Keeps the store's size near `bytes` by evicting the least recently used keys (see
    /// [Size bound](self#size-bound)). Default: none.
    pub fn max_size_bytes(mut self, bytes: u64) -> Self {
        self.max_size_bytes = Some(bytes);
        self
    }

    /// How long a read reuses this process's last listing of a key's variants instead of
    /// listing them again (see [Reading](self#reading)). Default: 1 s; zero lists on every
    /// read.
    ///
    /// Meanwhile a variant with `Vary` that another process stores is not seen (a miss, or
    /// another variant served, as if it had not been stored yet); a response without `Vary`
    /// is seen at once (it is read by its name, never from a listing), and so is a removal
    /// (a removed object is not found).
    pub fn listing_reuse(mut self, reuse: Duration) -> Self {
        self.listing_reuse = reuse;
        self
    }

    /// Parses the URL, configures the client and lists the prefix once; fails (within about
    /// the timeout) when the URL is malformed, the server cannot be reached, the bucket does
    /// not exist or the credentials are refused.
    pub async fn build(self) -> Result<S3Store, StoreError> {
        let target = config::Target::parse(&self.url)?;
        let (store, shown) = target.client(self.timeout)?;
        let inner = Arc::new(Inner {
            store,
            layout: layout::Layout::new(target.prefix.clone()),
            shown,
            max_body_size: self.max_body_size,
            part_size: self.part_size,
            queue_parts: self.write_queue_parts,
            inline_body: self.inline_body,
            staging_ttl: self.staging_ttl,
            account: self
                .max_size_bytes
                .map(|max| Mutex::new(bound::Account::new(max))),
            listings: listings::Listings::new(self.listing_reuse),
        });
        // One request now, so that a wrong setting fails here rather than at the first hit.
        inner
            .store
            .list_with_delimiter(Some(inner.layout.root()))
            .await
            .map_err(|e| inner.failure("listing the prefix", e))?;
        inner.seed_account().await?;
        if let Some(period) = self.sweep_every {
            let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                StoreError::unavailable("the S3 store's periodic sweep needs a tokio runtime")
            })?;
            runtime.spawn(sweep_periodically(Arc::downgrade(&inner), period));
        }
        Ok(S3Store { inner })
    }
}

async fn sweep_periodically(inner: Weak<Inner>, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        // A failed sweep is retried at the next tick; reads check expiry meanwhile.
        let _ = inner.sweep().await;
    }
}

impl fmt::Debug for S3StoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3StoreBuilder")
            .field("url", &config::redact(&self.url))
            .field("max_body_size", &self.max_body_size)
            .field("part_size", &self.part_size)
            .field("write_queue_parts", &self.write_queue_parts)
            .field("inline_body_size", &self.inline_body)
            .field("staging_ttl", &self.staging_ttl)
            .field("timeout", &self.timeout)
            .field("sweep_every", &self.sweep_every)
            .field("max_size_bytes", &self.max_size_bytes)
            .finish()
    }
}

impl S3Store {
    /// Opens the bucket and prefix of `url` (see [Connecting](self#connecting)) with the
    /// defaults of [`builder`](Self::builder).
    pub async fn open(url: &str) -> Result<S3Store, StoreError> {
        Self::builder(url).build().await
    }

    /// A builder for a store at `url`, with the defaults: 64 MiB bodies, 5 MiB parts, a
    /// queue of one part, bodies up to 64 KiB read whole, a staging TTL of one hour, a 2 s
    /// timeout, no periodic sweep, no size bound.
    pub fn builder(url: impl Into<String>) -> S3StoreBuilder {
        S3StoreBuilder {
            url: url.into(),
            max_body_size: 64 << 20,
            part_size: MIN_PART,
            write_queue_parts: 1,
            inline_body: 64 << 10,
            staging_ttl: Duration::from_secs(3600),
            timeout: Duration::from_secs(2),
            sweep_every: None,
            max_size_bytes: None,
            listing_reuse: Duration::from_secs(1),
        }
    }

    /// Deletes every expired or damaged entry of the store, and abandoned staging objects
    /// (see [Expiry](self#expiry)). Reads skip expired entries anyway; this reclaims space.
    pub async fn sweep(&self) -> Result<Sweep, StoreError> {
        self.inner.sweep().await
    }

    /// The object that holds `variant` of `primary_key` (for tests and operators).
    pub fn object_path(&self, primary_key: &str, variant: &VariantId) -> String {
        self.inner.layout.variant(primary_key, variant).to_string()
    }

    /// The directory under which the variants of `primary_key` are stored.
    pub fn key_prefix(&self, primary_key: &str) -> String {
        self.inner.layout.key_dir(primary_key).to_string()
    }

    /// The object_store client the store uses, to look at (or damage, in tests) its objects
    /// as another process would. Writing under the store's prefix by other means than the
    /// store is safe only in that every object is checked on read: a bad one is a miss.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.inner.store.clone()
    }
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("at", &self.inner.shown)
            .field("prefix", &self.inner.layout.root().as_ref())
            .field("max_body_size", &self.inner.max_body_size)
            .field("part_size", &self.inner.part_size)
            .finish_non_exhaustive()
    }
}

impl Store for S3Store {
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
                StoreError::unavailable("the S3 store needs a tokio runtime to write")
            })?;
            let meta = EntryMeta {
                key: key.to_owned(),
                variant: VariantId::of(&response),
                response: Arc::unwrap_or_clone(response).into_response(),
                expires: layout::expiry(options.ttl),
                body_len: 0,
            };
            let writer =
                writer::S3Writer::new(self.inner.clone(), runtime, meta, options.content_length)?;
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
        Box::pin(self.inner.remove(key, variant))
    }

    fn clear(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.inner.clear())
    }
}
