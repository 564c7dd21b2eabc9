//! Configuring an [`FsStore`]: [`FsStoreBuilder`] and its defaults.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::files::create_private_dir;
use super::{FsStore, Inner, Reads, CHUNK, LOCK_STRIPES};
use crate::StoreError;

/// Configures an [`FsStore`]; see [`FsStore::builder`].
#[derive(Debug, Clone)]
pub struct FsStoreBuilder {
    root: PathBuf,
    max_size_bytes: u64,
    max_body_size: u64,
    fsync: bool,
    stale_temp_age: Duration,
    inline_reads: bool,
    nonblocking_reads: bool,
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
    ///
    /// [`EntryWriter::write`]: crate::EntryWriter::write
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

    /// Whether a read ([`Store::get`], or a chunk of the body it streams) runs on the calling
    /// task when the kernel can answer it from memory, without waiting for the disk. On by
    /// default; Linux only (elsewhere reads run on the blocking pool).
    ///
    /// A read from the page cache takes a few microseconds, less than handing it to tokio's
    /// blocking pool and back. Such a read cannot stall the executor thread: paths are looked
    /// up with `openat2(RESOLVE_CACHED)` and data read with `preadv2(RWF_NOWAIT)`, which fail
    /// rather than wait, and then the whole read is done again on the blocking pool. So is a
    /// read that has to remove a file (an expired or damaged entry) or list a directory that
    /// changed in the last two seconds. A kernel without these calls (before 5.12) or a
    /// filesystem without `RWF_NOWAIT` sends every read to the pool.
    ///
    /// ```
    /// # fn main() -> Result<(), cache_store::StoreError> {
    /// # let dir = std::env::temp_dir().join("cache-store-doc-nonblocking");
    /// // Every read on tokio's blocking pool:
    /// let store = cache_store::FsStore::builder(&dir).nonblocking_reads(false).build()?;
    /// # Ok(()) }
    /// ```
    ///
    /// [`Store::get`]: crate::Store::get
    pub fn nonblocking_reads(mut self, nonblocking: bool) -> Self {
        self.nonblocking_reads = nonblocking;
        self
    }

    /// Whether every read ([`Store::get`] and the body chunks it streams) runs on the calling
    /// task, even one that has to wait for the disk. Off by default.
    ///
    /// This saves the blocking pool's handoff on the reads that
    /// [`nonblocking_reads`](Self::nonblocking_reads) sends there, and off Linux on all of
    /// them; but a read that waits for a slow disk then stalls the executor thread. Writes
    /// always run in the background.
    ///
    /// [`Store::get`]: crate::Store::get
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
                reads: match (self.inline_reads, self.nonblocking_reads) {
                    (true, _) => Reads::Inline,
                    (false, true) => Reads::Cached,
                    (false, false) => Reads::Pool,
                },
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
            nonblocking_reads: true,
            write_buffer_bytes: 1 << 20,
        }
    }
}
