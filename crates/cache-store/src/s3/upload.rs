//! A multipart upload fed part by part: the background task of a writer whose body needs more
//! than one part, and the copy of an object into a new one (a staged body, an update).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;

use bytes::BytesMut;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, PutMultipartOptions, PutPayload};
use tokio::sync::mpsc;

use super::read::ByteStream;
use super::Inner;
use crate::codec::BodyChecksum;
use crate::StoreError;

/// What a writer sends its task.
pub(super) enum Part {
    /// A full part (at least the 5 MiB S3 wants of every part but the last).
    Middle(PutPayload),
    /// The last part (maybe empty): complete the upload.
    Last(PutPayload),
}

/// Where the task leaves why it stopped early, for the writer's next call.
pub(super) type Failure = Arc<Mutex<Option<String>>>;

/// What a writer's `poll_ready` waits on: the parts handed to the task and not yet uploaded,
/// and the waker to call when that changes.
#[derive(Default)]
pub(super) struct Signal {
    pub(super) waker: Mutex<Option<Waker>>,
    /// Parts queued or being uploaded.
    pub(super) busy: AtomicUsize,
}

pub(super) type Waiting = Arc<Signal>;

pub(super) fn lock<T>(slot: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) fn wake(waiting: &Waiting) {
    if let Some(waker) = lock(&waiting.waker).take() {
        waker.wake();
    }
}

/// Starts a multipart upload to `path` and uploads what `rx` brings, one part at a time, until
/// [`Part::Last`] completes it. A queue closed before that (the writer dropped, or failed)
/// aborts the upload: S3 then keeps none of its parts.
pub(super) async fn run(
    inner: Arc<Inner>,
    path: Path,
    mut rx: mpsc::Receiver<Part>,
    failure: Failure,
    waiting: Waiting,
) -> Result<(), StoreError> {
    let result = feed(&inner, &path, &mut rx, &waiting).await;
    if let Err(e) = &result {
        *lock(&failure) = Some(e.to_string());
        rx.close();
    }
    wake(&waiting);
    result
}

async fn feed(
    inner: &Inner,
    path: &Path,
    rx: &mut mpsc::Receiver<Part>,
    waiting: &Waiting,
) -> Result<(), StoreError> {
    let mut upload: Option<Box<dyn MultipartUpload>> = None;
    loop {
        let Some(part) = rx.recv().await else {
            if let Some(mut upload) = upload {
                // Best effort: S3 drops an abandoned upload's parts by itself only with a
                // lifecycle rule.
                let _ = upload.abort().await;
            }
            return Err(StoreError::unavailable(
                "the entry was abandoned before its commit",
            ));
        };
        // A slot in the queue is free again.
        wake(waiting);
        let (bytes, last) = match part {
            Part::Middle(bytes) => (bytes, false),
            Part::Last(bytes) => (bytes, true),
        };
        let up = match &mut upload {
            Some(up) => up,
            None => upload.insert(start(inner, path).await?),
        };
        let sent = if bytes.content_length() == 0 {
            Ok(())
        } else {
            up.put_part(bytes).await
        };
        let finished = match sent {
            Ok(()) if last => up.complete().await.map(drop),
            other => other,
        };
        if let Err(e) = finished {
            let _ = up.abort().await;
            return Err(inner.failure("uploading a body part", e));
        }
        if last {
            return Ok(());
        }
        // One part fewer held: a writer waiting for the upload to catch up may go on.
        waiting.busy.fetch_sub(1, Ordering::SeqCst);
        wake(waiting);
    }
}

async fn start(inner: &Inner, path: &Path) -> Result<Box<dyn MultipartUpload>, StoreError> {
    inner
        .store
        .put_multipart_opts(path, PutMultipartOptions::default())
        .await
        .map_err(|e| inner.failure("starting a multipart upload", e))
}

/// Writes `first` and then the bytes of `source` to a new object at `path` by multipart
/// upload, in parts of `part_size`, then `last`. `check` (if given) is `(length, trailer)`:
/// the source's bytes must be that long and match that checksum, or the upload is abandoned
/// (a staged or stored body that went bad on the way is not published). At most two parts
/// are held at a time: the one being filled and the one being sent.
pub(super) async fn copy(
    inner: &Inner,
    path: &Path,
    first: &[u8],
    mut source: ByteStream,
    last: &[u8],
    check: Option<(u64, [u8; 4])>,
) -> Result<(), StoreError> {
    let size = inner.part_size;
    let mut up = start(inner, path).await?;
    let result = async {
        let mut part = BytesMut::with_capacity(size);
        part.extend_from_slice(first);
        let mut crc = BodyChecksum::new();
        let mut copied = 0u64;
        while let Some(chunk) = source.next().await {
            let chunk = chunk.map_err(|e| inner.failure("reading the source of a copy", e))?;
            crc.update(&chunk);
            copied += chunk.len() as u64;
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                if part.len() >= size {
                    let full = std::mem::replace(&mut part, BytesMut::with_capacity(size));
                    up.put_part(PutPayload::from(full.freeze()))
                        .await
                        .map_err(|e| inner.failure("uploading a body part", e))?;
                }
                let take = rest.len().min(size - part.len());
                part.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
            }
        }
        if let Some((len, trailer)) = check {
            if copied != len || crc.trailer() != trailer {
                return Err(StoreError::Corrupt(
                    "the body changed on its way to its object; not publishing it",
                ));
            }
        }
        part.extend_from_slice(last);
        up.put_part(PutPayload::from(part.freeze()))
            .await
            .map_err(|e| inner.failure("uploading a body part", e))?;
        up.complete()
            .await
            .map_err(|e| inner.failure("completing a multipart upload", e))?;
        Ok(())
    }
    .await;
    if result.is_err() {
        let _ = up.abort().await;
    }
    result
}
