//! Writing one entry file: a bounded buffer per writer, flushed in batches on tokio's blocking
//! pool, so that no thread is held for a whole body and a slow disk never makes the cache hold
//! more than [`FsStoreBuilder::write_buffer_bytes`](super::FsStoreBuilder::write_buffer_bytes)
//! per writer.
//!
//! [`EntryWriter::write`] never blocks: it appends the chunk to the writer's buffer and, once
//! the buffer holds a batch (64 KiB) and no batch is being written, hands the buffer to one
//! short blocking task. While a batch is on its way to the disk, chunks wait in the buffer.
//! Once the buffer holds half its bound, [`EntryWriter::poll_ready`] is pending until the
//! batch is written: the cache then reads no more from the origin until the disk has caught
//! up (backpressure, for as long as one batch takes). A caller that writes regardless and
//! would take the buffer past its bound makes the write fail: the entry is abandoned, the
//! response goes on. The temporary file is created by the first
//! batch, so beginning an entry does no IO. Without a tokio runtime the batches are written
//! inline.

use std::fs::{self, File};
use std::future::Future;
use std::io::{self, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use cache_policy::ParsedResponse;
use tokio::sync::oneshot;

use super::{expiry, sync_dir, variant_hash, Inner, KeyHash, CHUNK};
use crate::codec::{self, BodyChecksum, EntryMeta, TRAILER_LEN};
use crate::{BoxFuture, EntryWriter, StoreError, VariantId, WriteOptions};

/// What every batch of one entry needs to know.
struct Entry {
    inner: Arc<Inner>,
    meta: EntryMeta,
    /// The encoded header section, with a placeholder body length (rewritten at commit).
    header: Vec<u8>,
    hash: KeyHash,
    vhash: String,
}

/// The temporary file of an entry, with what has been written to it; moved into the batch
/// that writes, and back.
#[derive(Default)]
struct Disk {
    file: Option<(PathBuf, io::BufWriter<File>)>,
    crc: BodyChecksum,
    len: u64,
}

impl Disk {
    /// Appends `chunks`, creating the temporary file (and writing the header) first if needed.
    fn write(&mut self, entry: &Entry, chunks: &[Bytes]) -> Result<(), StoreError> {
        let out = match &mut self.file {
            Some((_, out)) => out,
            None => {
                let dir = entry.inner.dir_of(&entry.hash);
                let (path, file) = entry.inner.create_temp(&dir, &entry.hash, &entry.vhash)?;
                let mut out = io::BufWriter::with_capacity(CHUNK, file);
                let written = out.write_all(&entry.header);
                let (_, out) = self.file.insert((path, out));
                written?;
                out
            }
        };
        for chunk in chunks {
            out.write_all(chunk)?;
            self.crc.update(chunk);
            self.len += chunk.len() as u64;
        }
        Ok(())
    }

    /// Removes the temporary file, if there is one.
    fn discard(mut self) {
        self.remove_file();
    }

    fn remove_file(&mut self) {
        if let Some((path, out)) = self.file.take() {
            drop(out);
            let _ = fs::remove_file(path);
        }
    }

    /// Writes the trailer and the final header, and renames the file over the entry's name.
    fn publish(mut self, entry: &Entry) -> Result<(), StoreError> {
        if self.file.is_none() {
            // An empty body: the file still needs its header.
            self.write(entry, &[])?;
        }
        let Some((path, mut out)) = self.file.take() else {
            return Err(StoreError::Corrupt("no temporary file"));
        };
        let result = (|| {
            out.write_all(&self.crc.clone().trailer())?;
            let mut file = out.into_inner().map_err(|e| e.into_error())?;
            // The body length record has a fixed size, so the header keeps its length.
            let mut meta = entry.meta.clone();
            meta.body_len = self.len;
            let header = codec::encode_header(&meta)?;
            if header.len() != entry.header.len() {
                return Err(StoreError::Corrupt("header changed size"));
            }
            io::Seek::seek(&mut file, io::SeekFrom::Start(0))?;
            file.write_all(&header)?;
            if entry.inner.fsync {
                file.sync_all()?;
            }
            drop(file);
            let dest = entry.inner.entry_path(&entry.hash, &entry.vhash);
            let size = header.len() as u64 + self.len + TRAILER_LEN as u64;
            {
                let _guard = entry.inner.lock(&entry.hash);
                entry.inner.publish(&path, &dest, size)?;
            }
            if entry.inner.fsync {
                sync_dir(&entry.inner.dir_of(&entry.hash))?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&path);
        }
        result
    }
}

impl Drop for Disk {
    /// A safety net: a file neither published nor discarded (a batch that failed, a value
    /// left in a channel) is removed when its `Disk` goes.
    fn drop(&mut self) {
        self.remove_file();
    }
}

/// The writing side of an entry (see the module docs).
pub(super) struct FsWriter {
    entry: Arc<Entry>,
    /// The file, while no batch is being written.
    disk: Option<Disk>,
    /// The batch being written, which hands the file back.
    writing: Option<oneshot::Receiver<Result<Disk, StoreError>>>,
    /// Chunks not yet handed to a batch.
    pending: Vec<Bytes>,
    pending_bytes: usize,
    len: u64,
    limit: u64,
    /// Why the entry was abandoned, once it was.
    failed: Option<StoreError>,
}

impl FsWriter {
    /// A writer for a new variant of `key`. Does no IO: the first batch creates the file.
    pub(super) fn begin(
        inner: &Arc<Inner>,
        key: &str,
        response: Arc<ParsedResponse>,
        options: WriteOptions,
    ) -> Result<FsWriter, StoreError> {
        let limit = inner.max_body_size;
        if options.content_length.is_some_and(|len| len > limit) {
            return Err(StoreError::TooLarge { limit });
        }
        let variant = VariantId::of(&response);
        let vhash = variant_hash(&variant);
        let meta = EntryMeta {
            key: key.to_owned(),
            variant,
            response: Arc::unwrap_or_clone(response).into_response(),
            expires: expiry(options.ttl),
            body_len: 0,
        };
        // Encoded now, so metadata that cannot be stored fails before any byte is written.
        let header = codec::encode_header(&meta)?;
        Ok(FsWriter {
            entry: Arc::new(Entry {
                inner: inner.clone(),
                hash: KeyHash::of(key),
                vhash,
                meta,
                header,
            }),
            disk: Some(Disk::default()),
            writing: None,
            pending: Vec::new(),
            pending_bytes: 0,
            len: 0,
            limit,
            failed: None,
        })
    }

    /// Takes the file back from a batch that has finished.
    fn collect(&mut self) -> Result<(), StoreError> {
        let Some(writing) = &mut self.writing else {
            return Ok(());
        };
        match writing.try_recv() {
            Ok(Ok(disk)) => {
                self.writing = None;
                self.disk = Some(disk);
                Ok(())
            }
            Ok(Err(error)) => {
                self.writing = None;
                Err(error)
            }
            Err(oneshot::error::TryRecvError::Empty) => Ok(()),
            Err(oneshot::error::TryRecvError::Closed) => {
                self.writing = None;
                Err(StoreError::unavailable("a file write task was cancelled"))
            }
        }
    }

    /// Hands the pending chunks to a batch: a blocking task, or inline without a runtime.
    fn flush(&mut self) -> Result<(), StoreError> {
        let Some(mut disk) = self.disk.take() else {
            return Ok(());
        };
        let chunks = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let entry = self.entry.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let (sender, receiver) = oneshot::channel();
                handle.spawn_blocking(move || {
                    let result = disk.write(&entry, &chunks).map(|()| disk);
                    // The writer is gone (dropped without commit): nothing wants the file.
                    if let Err(Ok(disk)) = sender.send(result) {
                        disk.discard();
                    }
                });
                self.writing = Some(receiver);
                Ok(())
            }
            Err(_) => {
                let result = disk.write(&entry, &chunks);
                self.disk = Some(disk);
                result
            }
        }
    }

    /// Abandons the entry: its temporary file goes now, not when the writer is dropped.
    fn fail(&mut self, error: StoreError) -> StoreError {
        self.pending.clear();
        self.abandon();
        self.failed = Some(StoreError::unavailable(error.to_string()));
        error
    }

    /// Removes the temporary file, now or once the batch writing it is done.
    fn abandon(&mut self) {
        if let Some(writing) = self.writing.take() {
            // Wait for the batch off this thread, and discard what it hands back.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    if let Ok(Ok(disk)) = writing.await {
                        drop(tokio::task::spawn_blocking(move || disk.discard()));
                    }
                });
            }
        }
        if let Some(disk) = self.disk.take() {
            if disk.file.is_some() {
                match tokio::runtime::Handle::try_current() {
                    Ok(handle) => drop(handle.spawn_blocking(move || disk.discard())),
                    Err(_) => disk.discard(),
                }
            }
        }
    }
}

impl EntryWriter for FsWriter {
    fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        if let Some(failed) = &self.failed {
            return Err(StoreError::unavailable(failed.to_string()));
        }
        self.len += chunk.len() as u64;
        if self.len > self.limit {
            return Err(self.fail(StoreError::TooLarge { limit: self.limit }));
        }
        self.pending_bytes += chunk.len();
        self.pending.push(chunk);
        if let Err(error) = self.collect() {
            return Err(self.fail(error));
        }
        if self.writing.is_none() {
            if self.pending_bytes >= CHUNK {
                if let Err(error) = self.flush() {
                    return Err(self.fail(error));
                }
            }
        } else if self.pending_bytes > self.entry.inner.write_buffer_bytes {
            let bound = self.entry.inner.write_buffer_bytes;
            return Err(self.fail(StoreError::unavailable(format!(
                "the disk fell behind: more than {bound} bytes of one body waiting to be written"
            ))));
        }
        Ok(())
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StoreError>> {
        loop {
            if let Some(failed) = &self.failed {
                return Poll::Ready(Err(StoreError::unavailable(failed.to_string())));
            }
            let Some(writing) = &mut self.writing else {
                return Poll::Ready(Ok(()));
            };
            // Half the bound left: room for the next frame, whatever its size.
            if self.pending_bytes < self.entry.inner.write_buffer_bytes / 2 {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(writing).poll(cx)) {
                Ok(Ok(disk)) => {
                    self.writing = None;
                    self.disk = Some(disk);
                    if let Err(error) = self.flush() {
                        let error = self.fail(error);
                        return Poll::Ready(Err(error));
                    }
                }
                Ok(Err(error)) => {
                    self.writing = None;
                    let error = self.fail(error);
                    return Poll::Ready(Err(error));
                }
                Err(_) => {
                    self.writing = None;
                    let error =
                        self.fail(StoreError::unavailable("a file write task was cancelled"));
                    return Poll::Ready(Err(error));
                }
            }
        }
    }

    fn commit(mut self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move {
            if let Some(failed) = self.failed.take() {
                return Err(failed);
            }
            if let Some(writing) = self.writing.take() {
                let disk = writing
                    .await
                    .map_err(|_| StoreError::unavailable("a file write task was cancelled"))??;
                self.disk = Some(disk);
            }
            let Some(mut disk) = self.disk.take() else {
                return Err(StoreError::Corrupt("no file to commit"));
            };
            let chunks = std::mem::take(&mut self.pending);
            let entry = self.entry.clone();
            crate::blocking::blocking(move || {
                let written = disk.write(&entry, &chunks);
                match written {
                    Ok(()) => disk.publish(&entry),
                    Err(error) => {
                        disk.discard();
                        Err(error)
                    }
                }
            })
            .await
        })
    }
}

impl Drop for FsWriter {
    fn drop(&mut self) {
        // Dropped without commit (or after a failed one): the temporary file goes.
        self.abandon();
    }
}
