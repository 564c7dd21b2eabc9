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
//! otherwise); reads can be made to run on the calling task with
//! [`FsStoreBuilder::inline_reads`], which is faster on a warm page cache.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use cache_policy::{ParsedResponse, StoredResponse};
use http_body::{Body, Frame};
use tokio::task::JoinHandle;

mod writer;

use crate::blocking::blocking;
use crate::codec::{self, BodyChecksum, DecodeError, EntryMeta, PRELUDE_LEN, TRAILER_LEN};
use crate::{
    BoxFuture, Entries, EntryWriter, Store, StoreError, StoredBody, StoredEntry, VariantId,
    WriteOptions,
};

/// How much a read takes at once: the first read of an entry (a small entry is read whole
/// in one call) and each chunk of a streamed body.
const CHUNK: usize = 64 * 1024;
const ENTRY_SUFFIX: &str = ".entry";
const TEMP_PREFIX: &str = ".tmp-";
const LOCK_STRIPES: usize = 64;

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
    inline_reads: bool,
    write_buffer_bytes: usize,
    index: OnceLock<Mutex<Index>>,
    /// Serializes, within this process, the final rename of a commit with the
    /// read-copy-rename of an update of the same key, so an update never resurrects a body
    /// that a concurrent commit replaced.
    locks: Box<[Mutex<()>]>,
    /// Directory listings reused by reads; see [`Inner::list_variants_for_read`].
    listings: Mutex<Listings>,
}

/// Configures an [`FsStore`]; see [`FsStore::builder`].
#[derive(Debug, Clone)]
pub struct FsStoreBuilder {
    root: PathBuf,
    max_size_bytes: u64,
    max_body_size: u64,
    fsync: bool,
    stale_temp_age: Duration,
    inline_reads: bool,
    write_buffer_bytes: usize,
}

impl FsStoreBuilder {
    /// The total size of entry files kept, in bytes. Default: 1 GiB.
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

    /// Whether a commit waits for the file and its directory to reach the disk (`fsync`).
    /// Without it (the default) a crash may lose recent entries, but never yields a torn one:
    /// checksums catch it and it is a miss.
    pub fn fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// Temporary files older than this, found when the store first scans its directory, are
    /// left over from crashed writers and deleted. Default: 10 minutes.
    pub fn stale_temp_age(mut self, age: Duration) -> Self {
        self.stale_temp_age = age;
        self
    }

    /// Whether reads ([`Store::get`] and the body chunks it streams) run directly on the
    /// calling task instead of tokio's blocking pool. Off by default.
    ///
    /// A read from a warm page cache takes a few microseconds, less than handing it to the
    /// blocking pool and back; but a read that has to wait for a slow disk then stalls the
    /// executor thread. Turn it on when the cache directory is on fast local storage and mostly
    /// in the page cache. Writes always run in the background.
    pub fn inline_reads(mut self, inline: bool) -> Self {
        self.inline_reads = inline;
        self
    }

    /// The most body bytes one writer holds while the disk is busy with its previous batch
    /// (default 1 MiB). A writer that would hold more has fallen behind: the write fails with
    /// [`StoreError::Unavailable`], the entry is abandoned and the response goes on unstored.
    /// At least 64 KiB.
    pub fn write_buffer_bytes(mut self, bytes: usize) -> Self {
        self.write_buffer_bytes = bytes.max(CHUNK);
        self
    }

    /// Creates the directory if needed and builds the store. The directory is scanned lazily,
    /// on first use.
    pub fn build(self) -> Result<FsStore, StoreError> {
        create_private_dir(&self.root)?;
        Ok(FsStore {
            inner: Arc::new(Inner {
                root: self.root,
                max_size: self.max_size_bytes,
                max_body_size: self.max_body_size.min(self.max_size_bytes),
                fsync: self.fsync,
                stale_temp_age: self.stale_temp_age,
                inline_reads: self.inline_reads,
                write_buffer_bytes: self.write_buffer_bytes,
                index: OnceLock::new(),
                locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
                listings: Mutex::default(),
            }),
        })
    }
}

impl FsStore {
    /// A builder for a store in `dir`, with the defaults: 1 GiB in total, bodies up to 64 MiB,
    /// no fsync.
    pub fn builder(dir: impl Into<PathBuf>) -> FsStoreBuilder {
        FsStoreBuilder {
            root: dir.into(),
            max_size_bytes: 1 << 30,
            max_body_size: 64 << 20,
            fsync: false,
            stale_temp_age: Duration::from_secs(600),
            inline_reads: false,
            write_buffer_bytes: 1 << 20,
        }
    }

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

/// How long a directory must have been unchanged before a listing of it is reused; more than
/// the timestamp granularity of any common filesystem.
const LISTING_SETTLE: Duration = Duration::from_secs(2);
/// Directory listings kept for reads, at most (one per fan-out directory at most).
const MAX_LISTINGS: usize = 1 << 16;

/// Entry file names per fan-out directory, with the directory's modification time.
type Listings = HashMap<PathBuf, (SystemTime, Vec<String>)>;

/// The names of the entry files in `dir`.
fn read_entry_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        if let Ok(name) = entry?.file_name().into_string() {
            if name.ends_with(ENTRY_SUFFIX) {
                names.push(name);
            }
        }
    }
    names.sort();
    Ok(names)
}

/// The paths of the variant files of `key` among the entry file `names` of `dir`.
fn variants_of(dir: &Path, key: &KeyHash, names: &[String]) -> Vec<PathBuf> {
    names
        .iter()
        .filter(|name| {
            name.len() > key.0.len()
                && name.starts_with(&key.0)
                && name.as_bytes()[key.0.len()] == b'-'
        })
        .map(|name| dir.join(name))
        .collect()
}

fn ignore_not_found(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

/// Fills `buf` from `offset`, stopping early only at the end of the file. Returns the count.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match read_at(file, &mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    if read_full_at(file, buf, offset)? == buf.len() {
        Ok(())
    } else {
        Err(io::ErrorKind::UnexpectedEof.into())
    }
}

/// Options that create a new file readable and writable by its owner only: cached responses
/// may hold one user's data, and other local users must not read them.
fn private_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Creates a directory and its parents, those it creates accessible by their owner only.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Whether `path` still names the file whose metadata is `opened`.
fn still_names(path: &Path, opened: &fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(path).is_ok_and(|now| now.ino() == opened.ino() && now.dev() == opened.dev())
    }
    #[cfg(not(unix))]
    {
        let _ = (path, opened);
        true
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    // Directories cannot be opened as files on Windows; the rename is durable there anyway
    // once the file is.
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    let _ = dir;
    Ok(())
}

/// What the lazy index knows of one entry file.
#[derive(Debug, Clone, Copy)]
struct Known {
    size: u64,
    tick: u64,
}

/// Sizes and access order of the entry files, for the size bound.
#[derive(Debug, Default)]
struct Index {
    files: HashMap<PathBuf, Known>,
    by_age: BTreeMap<u64, PathBuf>,
    total: u64,
    next_tick: u64,
}

impl Index {
    fn touch(&mut self, path: &Path, size: u64) {
        let tick = self.next_tick;
        self.next_tick += 1;
        if let Some(old) = self.files.insert(path.to_owned(), Known { size, tick }) {
            self.by_age.remove(&old.tick);
            self.total -= old.size;
        }
        self.by_age.insert(tick, path.to_owned());
        self.total += size;
    }

    fn forget(&mut self, path: &Path) {
        if let Some(old) = self.files.remove(path) {
            self.by_age.remove(&old.tick);
            self.total -= old.size;
        }
    }

    /// Deletes least recently used files until the total is within `max`.
    fn evict(&mut self, max: u64) {
        while self.total > max {
            let Some((_, path)) = self.by_age.pop_first() else {
                break;
            };
            if let Some(old) = self.files.remove(&path) {
                self.total -= old.size;
            }
            // Already gone (removed by another process) is as good as deleted.
            let _ = ignore_not_found(fs::remove_file(&path));
        }
    }
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

    /// The index, scanning the directory on first use. Call from blocking contexts only.
    fn index(&self) -> MutexGuard<'_, Index> {
        self.index
            .get_or_init(|| Mutex::new(self.scan()))
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The index if it was already built: reads use this, so that a read never waits for the
    /// first directory scan (which will see the files anyway).
    fn index_if_built(&self) -> Option<MutexGuard<'_, Index>> {
        self.index.get().map(|index| {
            index
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        })
    }

    /// Calls `f(path, file name)` for every file in the two fan-out levels.
    fn walk(&self, mut f: impl FnMut(&Path, &str)) -> io::Result<()> {
        for level1 in fs::read_dir(&self.root)? {
            let level1 = level1?;
            if !level1.file_type()?.is_dir() {
                continue;
            }
            for level2 in fs::read_dir(level1.path())? {
                let level2 = level2?;
                if !level2.file_type()?.is_dir() {
                    continue;
                }
                let files = match fs::read_dir(level2.path()) {
                    Ok(files) => files,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                for file in files {
                    let file = file?;
                    if let Some(name) = file.file_name().to_str() {
                        f(&file.path(), name);
                    }
                }
            }
        }
        Ok(())
    }

    /// Builds the index from the directory and deletes stale temporary files.
    fn scan(&self) -> Index {
        let now = SystemTime::now();
        let mut found = Vec::new();
        // A failed walk leaves an index that only knows later writes; the store still works.
        let _ = self.walk(|path, name| {
            let Ok(meta) = fs::metadata(path) else {
                return;
            };
            let modified = meta.modified().unwrap_or(now);
            if name.starts_with(TEMP_PREFIX) {
                let age = now.duration_since(modified).unwrap_or_default();
                if age >= self.stale_temp_age {
                    let _ = fs::remove_file(path);
                }
            } else if name.ends_with(ENTRY_SUFFIX) {
                found.push((modified, path.to_owned(), meta.len()));
            }
        });
        found.sort();
        let mut index = Index::default();
        for (_, path, size) in found {
            index.touch(&path, size);
        }
        index
    }

    /// The variant files of `key`, listed from the directory.
    fn list_variants(&self, key: &KeyHash) -> io::Result<Vec<PathBuf>> {
        let dir = self.dir_of(key);
        let names = match read_entry_names(&dir) {
            Ok(names) => names,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(variants_of(&dir, key, &names))
    }

    /// The variant files of `key` for a read: like [`Inner::list_variants`], but reusing this
    /// process's last listing of the directory while the directory is unchanged, which costs
    /// one `stat` instead of reading the directory.
    ///
    /// A listing is only reused if, when it was taken, the directory's modification time was
    /// [`LISTING_SETTLE`] older than the clock: any later change to the directory then carries
    /// a later modification time, even on filesystems with coarse timestamps, so an unchanged
    /// time means unchanged contents. (A stale listing could only cause a miss anyway: every
    /// file is opened and checked.)
    fn list_variants_for_read(&self, key: &KeyHash) -> io::Result<Vec<PathBuf>> {
        let dir = self.dir_of(key);
        let modified = match fs::metadata(&dir) {
            Ok(meta) => meta.modified().ok(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let Some(modified) = modified else {
            return self.list_variants(key);
        };
        let listings = self
            .listings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((at, names)) = listings.get(&dir) {
            if *at == modified {
                return Ok(variants_of(&dir, key, names));
            }
        }
        drop(listings);
        let names = match read_entry_names(&dir) {
            Ok(names) => names,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let out = variants_of(&dir, key, &names);
        let settled = SystemTime::now()
            .duration_since(modified)
            .is_ok_and(|age| age >= LISTING_SETTLE);
        if settled {
            let mut listings = self
                .listings
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // Bounded: forgetting listings only costs a directory read.
            if listings.len() >= MAX_LISTINGS {
                listings.clear();
            }
            listings.insert(dir, (modified, names));
        }
        Ok(out)
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
    fn read_entry(self: &Arc<Self>, key: &str, path: &Path) -> io::Result<Option<StoredEntry>> {
        let file = match File::open(path) {
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
        match decode_open(key, file, source, self.inline_reads) {
            Ok((meta, body)) => {
                if meta.expires <= SystemTime::now() {
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

    fn get(self: &Arc<Self>, key: &str) -> Result<Entries, StoreError> {
        let hash = KeyHash::of(key);
        let mut out = Vec::new();
        for path in self.list_variants_for_read(&hash)? {
            if let Some(entry) = self.read_entry(key, &path)? {
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

enum ReadError {
    Io(io::Error),
    Decode(DecodeError),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

impl From<DecodeError> for ReadError {
    fn from(e: DecodeError) -> Self {
        ReadError::Decode(e)
    }
}

/// Reads and decodes the header section of an entry file; checks the file length against it.
fn read_header(file: &File, file_len: u64) -> Result<(EntryMeta, usize), ReadError> {
    let mut prelude = [0; PRELUDE_LEN];
    if read_full_at(file, &mut prelude, 0)? < PRELUDE_LEN {
        return Err(DecodeError::Truncated.into());
    }
    let header_len = codec::header_len(&prelude)?;
    if header_len as u64 > file_len {
        return Err(DecodeError::Truncated.into());
    }
    let mut header = vec![0; header_len];
    read_exact_at(file, &mut header, 0)?;
    let (meta, len) = codec::decode_header(&header)?;
    check_len(&meta, len, file_len)?;
    Ok((meta, len))
}

fn check_len(meta: &EntryMeta, header_len: usize, file_len: u64) -> Result<(), DecodeError> {
    let expected = (header_len as u64)
        .checked_add(meta.body_len)
        .and_then(|n| n.checked_add(TRAILER_LEN as u64));
    match expected {
        Some(n) if n == file_len => Ok(()),
        Some(n) if n > file_len => Err(DecodeError::Truncated),
        _ => Err(DecodeError::Invalid("bytes after the trailer")),
    }
}

/// Decodes an open entry file. A small entry is read whole and checked at once; a larger one
/// keeps the file open and streams its body from it.
fn decode_open(
    key: &str,
    file: File,
    source: EntryFile,
    inline: bool,
) -> Result<(EntryMeta, StoredBody), ReadError> {
    let file_len = source.opened.len();
    let first_len = usize::try_from(file_len).unwrap_or(usize::MAX).min(CHUNK);
    let mut buf = BytesMut::zeroed(first_len);
    let n = read_full_at(&file, &mut buf, 0)?;
    buf.truncate(n);
    let header_len = codec::header_len(&buf)?;
    if header_len > buf.len() {
        // A header section larger than the first read: rare, read it whole.
        if header_len as u64 > file_len {
            return Err(DecodeError::Truncated.into());
        }
        buf.resize(header_len, 0);
        read_exact_at(&file, &mut buf[n..], n as u64)?;
    }
    let (meta, header_len) = codec::decode_header(&buf)?;
    meta.check_key(key)?;
    check_len(&meta, header_len, file_len)?;

    if meta.body_len + TRAILER_LEN as u64 <= CHUNK as u64 {
        // Small: have the whole file in memory, verify it, serve it as one `Bytes`.
        let total = file_len as usize;
        if buf.len() < total {
            let have = buf.len();
            buf.resize(total, 0);
            read_exact_at(&file, &mut buf[have..], have as u64)?;
        }
        let mut buf = buf.freeze();
        let mut body = buf.split_off(header_len);
        let trailer = body.split_off(meta.body_len as usize);
        let mut crc = BodyChecksum::new();
        crc.update(&body);
        crc.verify(&trailer)?;
        return Ok((meta, StoredBody::full(body)));
    }

    // Large: the body bytes already read (always fewer than the whole body, so that the last
    // read from the file is the one that reaches the trailer and can verify it) are the first
    // frame; the rest streams from the open file.
    let body_len = meta.body_len;
    let mut first = buf.freeze().split_off(header_len);
    first.truncate(usize::try_from(body_len - 1).unwrap_or(usize::MAX));
    let mut crc = BodyChecksum::new();
    crc.update(&first);
    let body = FileBody {
        file: Arc::new(file),
        offset: (header_len + first.len()) as u64,
        remaining: body_len - first.len() as u64,
        crc: Some(crc),
        source: Some(source),
        ready: Some(first).filter(|f| !f.is_empty()).into_iter().collect(),
        reading: None,
        inline,
        done: false,
    };
    Ok((meta, StoredBody::stream(body, Some(body_len))))
}

/// What one read of a [`FileBody`] produced: frames, and the running checksum to continue
/// with. The read that reaches the end of the body also checks the trailer, and yields an
/// error instead of its frames if the body does not match.
type BatchRead = Result<(Vec<Bytes>, BodyChecksum), StoreError>;

/// Where an open entry file came from, so that a body found damaged while streaming can be
/// removed at once rather than served damaged to every later reader until it expires.
struct EntryFile {
    store: Weak<Inner>,
    path: PathBuf,
    opened: fs::Metadata,
}

impl EntryFile {
    /// Removes the file (if its name still holds it), off the executor when there is one.
    fn remove(self) {
        let remove = move || {
            if let Some(store) = self.store.upgrade() {
                // A failed removal leaves a file that fails its checksum again: still a miss.
                let _ = store.remove_damaged(&self.path, &self.opened);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// A body streamed from an open entry file, verified against its checksum at the end.
struct FileBody {
    file: Arc<File>,
    /// Offset of the next byte to read.
    offset: u64,
    /// Body bytes not yet read from the file.
    remaining: u64,
    /// The checksum of the body bytes read so far; with the read task while one runs.
    crc: Option<BodyChecksum>,
    /// Where the file came from; taken to remove it if the body turns out damaged.
    source: Option<EntryFile>,
    /// Frames read and checked, not yet yielded.
    ready: std::collections::VecDeque<Bytes>,
    reading: Option<JoinHandle<BatchRead>>,
    /// Read chunks on the polling task (see [`FsStoreBuilder::inline_reads`]).
    inline: bool,
    done: bool,
}

/// Reads up to `chunks` chunks of [`CHUNK`] bytes from `offset`; when that reaches the end of
/// the body, also the trailer, which is verified before anything is returned.
fn read_batch(
    file: &File,
    offset: u64,
    remaining: u64,
    mut crc: BodyChecksum,
    chunks: usize,
) -> BatchRead {
    let want = remaining.min((CHUNK * chunks) as u64) as usize;
    let last = want as u64 == remaining;
    let mut buf = BytesMut::zeroed(want + if last { TRAILER_LEN } else { 0 });
    read_exact_at(file, &mut buf, offset)?;
    let trailer = buf.split_off(want);
    crc.update(&buf);
    if last {
        crc.clone().verify(&trailer)?;
    }
    let mut data = buf.freeze();
    let mut frames = Vec::with_capacity(chunks);
    while !data.is_empty() {
        frames.push(data.split_to(data.len().min(CHUNK)));
    }
    Ok((frames, crc))
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = StoreError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StoreError>>> {
        let this = &mut *self;
        loop {
            if let Some(frame) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(frame))));
            }
            let result = if let Some(reading) = &mut this.reading {
                let result = ready!(Pin::new(reading).poll(cx));
                this.reading = None;
                result.unwrap_or_else(|e| Err(StoreError::unavailable(e)))
            } else {
                if this.done || this.remaining == 0 {
                    return Poll::Ready(None);
                }
                let Some(crc) = this.crc.take() else {
                    return Poll::Ready(None);
                };
                let (file, offset, remaining) = (this.file.clone(), this.offset, this.remaining);
                match tokio::runtime::Handle::try_current() {
                    // Off the executor, read several chunks per trip to the blocking pool: each
                    // trip costs a thread handoff. Polled on the next turn of the loop.
                    Ok(handle) if !this.inline => {
                        this.reading =
                            Some(handle.spawn_blocking(move || {
                                read_batch(&file, offset, remaining, crc, 4)
                            }));
                        continue;
                    }
                    _ => read_batch(&file, offset, remaining, crc, 1),
                }
            };
            match result {
                Ok((frames, crc)) => {
                    let read: u64 = frames.iter().map(|f| f.len() as u64).sum();
                    this.offset += read;
                    this.remaining -= read;
                    this.crc = Some(crc);
                    this.ready.extend(frames);
                }
                Err(e) => {
                    this.done = true;
                    // A body that fails its checksum or ends early is damaged on disk; a
                    // failure of the blocking pool is not, and leaves the file alone.
                    if matches!(e, StoreError::Corrupt(_) | StoreError::Io(_)) {
                        if let Some(source) = this.source.take() {
                            source.remove();
                        }
                    }
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || (self.remaining == 0 && self.ready.is_empty())
    }
}

impl Store for FsStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Entries, StoreError>> {
        if self.inner.inline_reads {
            return Box::pin(async move { self.inner.get(key) });
        }
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
