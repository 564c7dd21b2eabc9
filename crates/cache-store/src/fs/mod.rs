//! The filesystem backend: [`FsStore`].
//!
//! # Layout
//!
//! ```text
//! <root>/<h0h1>/<h2h3>/<key hash>-<variant hash>.entry      one file per variant
//! <root>/<h0h1>/<h2h3>/.tmp-<pid>-<n>-<key hash>-<variant hash>  a write in progress
//! ```
//!
//! The key hash is the 128-bit XXH3 of the primary key in hex (its first four hex digits pick
//! the two fan-out directories); the variant hash is the 64-bit XXH3 of the [`VariantId`]
//! bytes. Both are stable across processes and versions. Each file holds one entry in the
//! [`codec`] format: header section (with the primary key, compared on read, so
//! a hash collision is a miss), body, body CRC.
//!
//! # Crash safety and sharing
//!
//! A write goes to a uniquely named temporary file in the destination directory, written in
//! batches by short tasks on the blocking pool (see `writer`): [`EntryWriter::write`] never
//! blocks and no thread is held for a whole body; a writer holds at most
//! [`FsStoreBuilder::write_buffer_bytes`] (1 MiB by default) while the disk is busy with its
//! previous batch, and a writer that would hold more has fallen behind and abandons the entry
//! (the response goes on unstored). The commit writes the
//! trailer, rewrites the header with the final body length, optionally fsyncs the file, then
//! renames it over the final name (atomic on POSIX) and optionally fsyncs the directory. A
//! reader opens a file and keeps that handle: it sees a complete old or a complete new entry,
//! never a mix, even across processes. A torn file (a crash without fsync) fails its checksums
//! and is a miss. A 304 update ([`Store::update`]) writes a new header and copies the body into a
//! new temporary file, then renames it likewise (on Linux the copy is done by the kernel).
//!
//! Temporary files older than [`FsStoreBuilder::stale_temp_age`] (left by crashed writers) are
//! removed when the store first scans the directory (on its first commit, update, clear or
//! [`FsStore::size_bytes`]; reads never wait for the scan). A write that lasts longer than that
//! age may have its temporary file removed by another process's scan; its commit then fails
//! and nothing is stored.
//!
//! On Windows, renaming over a file that a reader holds open fails; such a commit returns an
//! error and the old entry stays.
//!
//! Entry files are created readable and writable by their owner only (mode 0600), and the
//! directories the store creates accessible by their owner only (0700): a cached response may
//! hold one user's data.
//!
//! # Reads
//!
//! [`Store::get`] lists the key's variant files in its fan-out directory, opens each, decodes
//! and checks its header (key, expiry, length). A body of up to 64 KiB is read and checked at
//! once and served as one `Bytes`; a larger one streams from the open file in 64 KiB frames,
//! and its checksum is verified before the last frame is released (a damaged body ends in an
//! error, never in a complete-looking body, and its file is removed at once, so the next read
//! is a miss). A process reuses its last listing of a directory
//! while the directory's modification time is unchanged (one `stat` instead of a directory
//! read), trusting only listings taken when the directory had been quiet for a while, so that
//! coarse filesystem timestamps cannot hide a change.
//!
//! # Size bound
//!
//! Each process keeps an index of entry files (size, last access by this process), built
//! lazily by walking the directory on first write, ordered initially by modification time.
//! After a commit that takes the total over [`FsStoreBuilder::max_size_bytes`], the least
//! recently used files are deleted. Files written by other processes sharing the directory are
//! counted once this process reads them or rescans; each process enforces the bound on what it
//! knows, so the bound is approximate when several processes write.
//!
//! # Runtime
//!
//! Disk work runs on tokio's blocking pool when a tokio runtime is present (and inline
//! otherwise), with one exception: on Linux, a read that the kernel can answer from memory
//! (the page cache and its cache of path lookups) runs on the calling task, because handing
//! it to the blocking pool and back costs more than the read. Such a read never waits for
//! the disk: it looks paths up with `openat2(RESOLVE_CACHED)` and reads with
//! `preadv2(RWF_NOWAIT)`, and the first call that would wait sends the whole read to the
//! blocking pool. See [`FsStoreBuilder::nonblocking_reads`] and
//! [`FsStoreBuilder::inline_reads`].

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use cache_policy::{ParsedResponse, StoredResponse};

mod builder;
mod files;
mod index;
mod listing;
mod read;
mod writer;

pub use builder::FsStoreBuilder;

use files::{
    create_private_dir, ignore_not_found, is_would_block, open_to_read, private_file_options,
    still_names, sync_dir, would_block, Wait,
};
use index::Index;
use listing::Listings;
use read::{decode_open, read_header, EntryFile, ReadError};

use crate::blocking::blocking;
use crate::codec::{self, DecodeError, EntryMeta, TRAILER_LEN};
use crate::{
    BoxFuture, Entries, EntryWriter, Store, StoreError, StoredEntry, VariantId, WriteOptions,
};

/// How much a read takes at once: the first read of an entry (a small entry is read whole
/// in one call) and each chunk of a streamed body.
const CHUNK: usize = 64 * 1024;
const ENTRY_SUFFIX: &str = ".entry";
const TEMP_PREFIX: &str = ".tmp-";
const LOCK_STRIPES: usize = 64;

/// Where reads run (see [`FsStoreBuilder::nonblocking_reads`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reads {
    /// On the blocking pool.
    Pool,
    /// On the calling task when nothing has to wait for the disk, else on the blocking pool.
    Cached,
    /// On the calling task, whatever the wait.
    Inline,
}

/// A store on the local filesystem, safe against crashes and shareable between processes.
/// See the [module documentation](self) for the layout and guarantees.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cache_store::StoreError> {
/// use std::time::{Duration, SystemTime};
/// use bytes::Bytes;
/// use cache_store::{FsStore, Store, StoredResponse, WriteOptions};
/// use http::{HeaderMap, Method, StatusCode, Uri};
/// use http_body_util::BodyExt;
///
/// let dir = tempfile::tempdir()?;
/// let store = FsStore::builder(dir.path())
///     .max_size_bytes(1 << 30)
///     .max_body_size(64 << 20)
///     .fsync(false)
///     .build()?;
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
pub struct FsStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    max_size: u64,
    max_body_size: u64,
    fsync: bool,
    stale_temp_age: Duration,
    reads: Reads,
    write_buffer_bytes: usize,
    index: OnceLock<Mutex<Index>>,
    /// Serializes, within this process, the final rename of a commit with the
    /// read-copy-rename of an update of the same key, so an update never resurrects a body
    /// that a concurrent commit replaced.
    locks: Box<[Mutex<()>]>,
    /// Directory listings reused by reads; see [`Inner::list_variants_for_read`].
    listings: Mutex<Listings>,
}

impl FsStore {
    /// The directory of the store.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The configured limit on the size of one body.
    pub fn max_body_size(&self) -> u64 {
        self.inner.max_body_size
    }

    /// The total size of the entry files this process knows of (scanning the directory first
    /// if it has not been scanned yet).
    pub fn size_bytes(&self) -> u64 {
        self.inner.index().total
    }

    /// The files currently holding variants of `key`, for diagnostics and tests.
    pub fn variant_paths(&self, key: &str) -> io::Result<Vec<PathBuf>> {
        self.inner.list_variants(&KeyHash::of(key))
    }

    /// The temporary files of writes in progress (or left by crashed writers), for diagnostics
    /// and tests.
    pub fn temp_paths(&self) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        self.inner.walk(|path, name| {
            if name.starts_with(TEMP_PREFIX) {
                out.push(path.to_owned());
            }
        })?;
        Ok(out)
    }
}

impl fmt::Debug for FsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FsStore")
            .field("root", &self.inner.root)
            .field("max_size_bytes", &self.inner.max_size)
            .field("max_body_size", &self.inner.max_body_size)
            .field("fsync", &self.inner.fsync)
            .finish()
    }
}

/// The hex XXH3-128 of a primary key.
struct KeyHash(String);

impl KeyHash {
    fn of(key: &str) -> Self {
        KeyHash(format!(
            "{:032x}",
            xxhash_rust::xxh3::xxh3_128(key.as_bytes())
        ))
    }

    fn stripe(&self) -> usize {
        usize::from_str_radix(&self.0[28..32], 16).unwrap_or(0) % LOCK_STRIPES
    }
}

fn variant_hash(variant: &VariantId) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(variant.as_bytes()))
}

impl Inner {
    fn dir_of(&self, key: &KeyHash) -> PathBuf {
        self.root.join(&key.0[0..2]).join(&key.0[2..4])
    }

    fn entry_path(&self, key: &KeyHash, variant: &str) -> PathBuf {
        self.dir_of(key)
            .join(format!("{}-{variant}{ENTRY_SUFFIX}", key.0))
    }

    fn lock(&self, key: &KeyHash) -> MutexGuard<'_, ()> {
        // The guarded data is `()`: a panic elsewhere cannot leave it inconsistent.
        self.locks[key.stripe()]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        // Unlink under the index lock, so a concurrent commit to the same path in this process
        // is either removed with the old file or recorded after it.
        let index = self.index_if_built();
        let result = ignore_not_found(fs::remove_file(path));
        if let Some(mut index) = index {
            index.forget(path);
        }
        result
    }

    fn temp_path(&self, dir: &Path, key: &KeyHash, variant: &str) -> PathBuf {
        // Process-wide, so that two stores on one directory in one process never collide.
        static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        dir.join(format!(
            "{TEMP_PREFIX}{}-{n}-{}-{variant}",
            std::process::id(),
            key.0
        ))
    }

    /// Creates a new temporary file in `dir`, creating the directory if needed.
    fn create_temp(&self, dir: &Path, key: &KeyHash, variant: &str) -> io::Result<(PathBuf, File)> {
        let mut attempts = 0;
        loop {
            let path = self.temp_path(dir, key, variant);
            match private_file_options().open(&path) {
                Ok(file) => return Ok((path, file)),
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts == 0 => {
                    create_private_dir(dir)?;
                }
                // Left by a crashed process that had our pid: take the next name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 16 => {}
                Err(e) => return Err(e),
            }
            attempts += 1;
        }
    }

    /// Renames a complete temporary file over `dest`, records it and enforces the size bound.
    fn publish(&self, temp: &Path, dest: &Path, size: u64) -> io::Result<()> {
        let mut index = self.index();
        fs::rename(temp, dest)?;
        index.touch(dest, size);
        index.evict(self.max_size);
        Ok(())
    }

    /// Reads one variant file. `Ok(None)` is a miss (missing, expired, corrupt or another
    /// key's entry); corrupt and expired files are deleted.
    ///
    /// With [`Wait::Never`], whatever would wait for the disk, a removal included, fails with
    /// [`io::ErrorKind::WouldBlock`] instead.
    fn read_entry(
        self: &Arc<Self>,
        key: &str,
        path: &Path,
        wait: Wait,
    ) -> io::Result<Option<StoredEntry>> {
        let file = match open_to_read(path, wait) {
            Ok(file) => file,
            // Removed or replaced between listing and opening.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let opened = file.metadata()?;
        let file_len = opened.len();
        let source = EntryFile {
            store: Arc::downgrade(self),
            path: path.to_owned(),
            opened: opened.clone(),
        };
        match decode_open(key, file, source, self.reads, wait) {
            Ok((meta, body)) => {
                if meta.expires <= SystemTime::now() {
                    if wait == Wait::Never {
                        return Err(would_block());
                    }
                    self.remove_file(path)?;
                    return Ok(None);
                }
                if let Some(mut index) = self.index_if_built() {
                    index.touch(path, file_len);
                }
                let response = Arc::new(ParsedResponse::new(meta.response));
                Ok(Some(StoredEntry::new(meta.variant, response, body)))
            }
            Err(ReadError::Io(e)) => Err(e),
            // Intact, but another key's: leave it to that key.
            Err(ReadError::Decode(DecodeError::KeyMismatch)) => Ok(None),
            Err(ReadError::Decode(_)) if wait == Wait::Never => Err(would_block()),
            Err(ReadError::Decode(_)) => {
                self.remove_damaged(path, &opened)?;
                Ok(None)
            }
        }
    }

    /// Removes a damaged entry file, but only if the name still holds it: another writer may
    /// have renamed a good entry over it since it was opened.
    fn remove_damaged(&self, path: &Path, opened: &fs::Metadata) -> io::Result<()> {
        if still_names(path, opened) {
            self.remove_file(path)?;
        }
        Ok(())
    }

    fn get(self: &Arc<Self>, key: &str, wait: Wait) -> Result<Entries, StoreError> {
        let hash = KeyHash::of(key);
        let mut out = Vec::new();
        for path in self.list_variants_for_read(&hash, wait)? {
            if let Some(entry) = self.read_entry(key, &path, wait)? {
                out.push(entry);
            }
        }
        Ok(out.into())
    }

    fn update(
        &self,
        key: &str,
        variant: &VariantId,
        response: StoredResponse,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let hash = KeyHash::of(key);
        let vhash = variant_hash(variant);
        let path = self.entry_path(&hash, &vhash);
        let _guard = self.lock(&hash);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let file_len = file.metadata()?.len();
        let (old, header_len) = match read_header(&file, file_len) {
            Ok(found) => found,
            Err(ReadError::Io(e)) => return Err(e.into()),
            Err(ReadError::Decode(_)) => return Ok(()),
        };
        if old.key != key
            || old.variant != *variant
            || !crate::update_applies(&old.response, old.body_len, &response)
        {
            return Ok(());
        }
        let meta = EntryMeta {
            key: key.to_owned(),
            variant: variant.clone(),
            response,
            expires: expiry(ttl),
            body_len: old.body_len,
        };
        let header = codec::encode_header(&meta)?;
        let dir = self.dir_of(&hash);
        let (temp, mut out) = self.create_temp(&dir, &hash, &vhash)?;
        let result = (|| -> Result<u64, StoreError> {
            out.write_all(&header)?;
            // Body and trailer are copied as they are: the body checksum still covers them.
            let rest = old.body_len + TRAILER_LEN as u64;
            io::Seek::seek(&mut file, io::SeekFrom::Start(header_len as u64))?;
            let copied = io::copy(&mut (&mut file).take(rest), &mut out)?;
            if copied != rest {
                return Err(DecodeError::Truncated.into());
            }
            if self.fsync {
                out.sync_all()?;
            }
            Ok(header.len() as u64 + rest)
        })();
        let size = match result {
            Ok(size) => size,
            Err(e) => {
                let _ = fs::remove_file(&temp);
                return Err(e);
            }
        };
        drop(out);
        if let Err(e) = self.publish(&temp, &path, size) {
            let _ = fs::remove_file(&temp);
            return Err(e.into());
        }
        if self.fsync {
            sync_dir(&dir)?;
        }
        Ok(())
    }

    fn remove(&self, key: &str, variant: Option<&VariantId>) -> Result<(), StoreError> {
        let hash = KeyHash::of(key);
        let paths = match variant {
            Some(variant) => vec![self.entry_path(&hash, &variant_hash(variant))],
            None => self.list_variants(&hash)?,
        };
        for path in paths {
            self.remove_file(&path)?;
        }
        Ok(())
    }

    fn clear(&self) -> Result<(), StoreError> {
        let mut index = self.index();
        let mut result = Ok(());
        self.walk(|path, name| {
            if name.ends_with(ENTRY_SUFFIX) {
                if let Err(e) = ignore_not_found(fs::remove_file(path)) {
                    result = Err(e);
                }
            }
        })?;
        *index = Index {
            next_tick: index.next_tick,
            ..Index::default()
        };
        Ok(result?)
    }
}

fn expiry(ttl: Duration) -> SystemTime {
    let now = SystemTime::now();
    // A TTL too large to represent is "as late as we can say".
    now.checked_add(ttl)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

impl Store for FsStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Entries, StoreError>> {
        match self.inner.reads {
            Reads::Inline => return Box::pin(async move { self.inner.get(key, Wait::Allowed) }),
            Reads::Cached if tokio::runtime::Handle::try_current().is_ok() => {
                match self.inner.get(key, Wait::Never) {
                    Err(StoreError::Io(e)) if is_would_block(&e) => {}
                    read => return Box::pin(std::future::ready(read)),
                }
            }
            _ => {}
        }
        let inner = self.inner.clone();
        let key = key.to_owned();
        Box::pin(blocking(move || inner.get(&key, Wait::Allowed)))
    }

    fn begin<'a>(
        &'a self,
        key: &'a str,
        response: Arc<ParsedResponse>,
        options: WriteOptions,
    ) -> BoxFuture<'a, Result<Box<dyn EntryWriter>, StoreError>> {
        let begun = writer::FsWriter::begin(&self.inner, key, response, options);
        Box::pin(std::future::ready(
            begun.map(|writer| Box::new(writer) as Box<dyn EntryWriter>),
        ))
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
            inner.update(&key, &variant, response, ttl)
        }))
    }

    fn remove<'a>(
        &'a self,
        key: &'a str,
        variant: Option<&'a VariantId>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let inner = self.inner.clone();
        let (key, variant) = (key.to_owned(), variant.cloned());
        Box::pin(blocking(move || inner.remove(&key, variant.as_ref())))
    }

    fn clear(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        let inner = self.inner.clone();
        Box::pin(blocking(move || inner.clear()))
    }
}
