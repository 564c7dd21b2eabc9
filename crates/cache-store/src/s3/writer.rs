//! The writing side: [`S3Writer`] fills one part at a time and hands full parts to a
//! background multipart upload through a bounded queue; a body that fits one part is one PUT.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::layout;
use super::upload::{self, lock, Failure, Part, Waiting};
use super::Inner;
use crate::codec::{self, BodyChecksum, EntryMeta};
use crate::{BoxFuture, EntryWriter, StoreError};

enum State {
    Open,
    TooLarge,
    Failed(String),
}

/// Writes one variant's object; see the [module documentation](super#writing).
pub(super) struct S3Writer {
    inner: Arc<Inner>,
    runtime: tokio::runtime::Handle,
    meta: EntryMeta,
    /// The entry's object.
    path: Path,
    /// The announced body length, when the header (which carries it) went first into the
    /// first part: the parts then go straight to the entry's object.
    declared: Option<u64>,
    /// The length of the header written first (with `declared`).
    header_len: usize,
    /// The staging object, once a body of unknown length outgrew one part.
    staging: Option<Path>,
    /// The part being filled (at most `part_size` bytes), as the chunks written: the writer
    /// keeps the caller's buffers instead of copying them into one of 5 MiB (whose
    /// allocations, freed, stayed resident: +23 MiB for a 1 GiB body against +10 MiB held).
    part: PartBuf,
    crc: BodyChecksum,
    len: u64,
    queue: Option<mpsc::Sender<Part>>,
    job: Option<JoinHandle<Result<(), StoreError>>>,
    failure: Failure,
    waiting: Waiting,
    state: State,
}

impl S3Writer {
    pub(super) fn new(
        inner: Arc<Inner>,
        runtime: tokio::runtime::Handle,
        mut meta: EntryMeta,
        content_length: Option<u64>,
    ) -> Result<Self, StoreError> {
        let path = inner.layout.variant(&meta.key, &meta.variant);
        let mut part = PartBuf::default();
        let mut declared = None;
        meta.body_len = content_length.unwrap_or(0);
        // Encoded now so that metadata that cannot be stored fails before any byte is written.
        let header = codec::encode_header(&meta)?;
        if let Some(len) = content_length {
            if meta.encoded_len(header.len()) > inner.part_size as u64 {
                part.push(Bytes::copy_from_slice(&header));
                declared = Some(len);
            }
        }
        Ok(S3Writer {
            inner,
            runtime,
            meta,
            path,
            declared,
            header_len: header.len(),
            staging: None,
            part,
            crc: BodyChecksum::new(),
            len: 0,
            queue: None,
            job: None,
            failure: Arc::default(),
            waiting: Arc::default(),
            state: State::Open,
        })
    }

    /// Fails the entry: the task (if any) sees its queue closed and aborts the upload.
    fn fail(&mut self, why: String) -> StoreError {
        self.queue = None;
        self.part = PartBuf::default();
        self.state = State::Failed(why.clone());
        StoreError::unavailable(why)
    }

    fn job_failure(&self) -> String {
        lock(&self.failure)
            .clone()
            .unwrap_or_else(|| "the S3 background upload stopped".into())
    }

    fn refused(&self) -> Option<StoreError> {
        match &self.state {
            State::Open => None,
            State::TooLarge => Some(StoreError::TooLarge {
                limit: self.inner.max_body_size,
            }),
            State::Failed(why) => Some(StoreError::unavailable(why.clone())),
        }
    }

    /// Hands the full part to the background upload, starting it if needed. Never blocks.
    fn hand_off(&mut self) -> Result<(), StoreError> {
        let part = self.part.take();
        if self.queue.is_none() {
            let target = match self.declared {
                Some(_) => self.path.clone(),
                None => {
                    let staging = self.inner.layout.staging(&layout::write_id());
                    self.staging = Some(staging.clone());
                    staging
                }
            };
            let (tx, rx) = mpsc::channel(self.inner.queue_parts);
            let job = upload::run(
                self.inner.clone(),
                target,
                rx,
                self.failure.clone(),
                self.waiting.clone(),
            );
            self.job = Some(self.runtime.spawn(job));
            self.queue = Some(tx);
        }
        let Some(queue) = &self.queue else {
            return Err(self.fail("the S3 background upload is gone".into()));
        };
        self.waiting.busy.fetch_add(1, Ordering::SeqCst);
        match queue.try_send(Part::Middle(part)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                let parts = self.inner.queue_parts;
                let mib = (parts * self.inner.part_size) >> 20;
                Err(self.fail(format!(
                    "S3 fell behind: {parts} parts ({mib} MiB) of this body are already waiting \
                     to be uploaded; not storing it"
                )))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                let why = self.job_failure();
                Err(self.fail(why))
            }
        }
    }

    /// Sends the last part and waits until the background upload completed (or failed).
    async fn finish_upload(&mut self, last: PutPayload) -> Result<(), StoreError> {
        if let Some(queue) = self.queue.take() {
            if queue.send(Part::Last(last)).await.is_err() {
                return Err(StoreError::unavailable(self.job_failure()));
            }
        }
        match self.job.take() {
            Some(job) => match job.await {
                Ok(result) => result,
                Err(e) => Err(StoreError::unavailable(e)),
            },
            None => Ok(()),
        }
    }

    /// The header with the final body length, the body and the trailer as one PUT; the
    /// object's size.
    async fn put_whole(&mut self, trailer: [u8; 4]) -> Result<u64, StoreError> {
        let mut parts = Vec::with_capacity(3);
        if self.declared.is_none() {
            self.meta.body_len = self.len;
            parts.push(Bytes::from(codec::encode_header(&self.meta)?));
        }
        parts.extend(self.part.take_chunks());
        parts.push(Bytes::copy_from_slice(&trailer));
        let size = parts.iter().map(|p| p.len() as u64).sum();
        let payload: PutPayload = parts.into_iter().collect();
        self.inner
            .store
            .put(&self.path, payload)
            .await
            .map(|_| size)
            .map_err(|e| self.inner.failure("storing an entry", e))
    }

    /// Publishes the entry; its object's size.
    async fn commit_inner(&mut self) -> Result<u64, StoreError> {
        if let Some(error) = self.refused() {
            return Err(error);
        }
        let trailer = self.crc.clone().trailer();
        if let Some(declared) = self.declared {
            if self.len != declared {
                return Err(self.fail(format!(
                    "the body is {} bytes, its Content-Length said {declared}; not storing it",
                    self.len
                )));
            }
            if self.queue.is_none() {
                return self.put_whole(trailer).await;
            }
            self.part.push(Bytes::copy_from_slice(&trailer));
            let last = self.part.take();
            self.finish_upload(last).await?;
            return Ok(self.meta.encoded_len(self.header_len));
        }
        let Some(staging) = self.staging.clone() else {
            return self.put_whole(trailer).await;
        };
        // A body of unknown length, staged: now that its length is known, the entry is the
        // header followed by a copy of the staged body.
        let last = self.part.take();
        let result = async {
            self.finish_upload(last).await?;
            self.meta.body_len = self.len;
            let header = codec::encode_header(&self.meta)?;
            let staged = self
                .inner
                .store
                .get(&staging)
                .await
                .map_err(|e| self.inner.failure("reading a staged body", e))?
                .into_stream();
            let check = Some((self.len, trailer));
            upload::copy(&self.inner, &self.path, &header, staged, &trailer, check).await?;
            Ok(self.meta.encoded_len(header.len()))
        }
        .await;
        // Best effort: a staging object left behind is removed by `sweep`.
        let _ = self.inner.store.delete(&staging).await;
        result
    }
}

impl EntryWriter for S3Writer {
    fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        if let Some(error) = self.refused() {
            return Err(error);
        }
        let limit = self.inner.max_body_size;
        self.len = self.len.saturating_add(chunk.len() as u64);
        if self.len > limit {
            self.queue = None;
            self.part = PartBuf::default();
            self.state = State::TooLarge;
            return Err(StoreError::TooLarge { limit });
        }
        if let Some(declared) = self.declared.filter(|&d| self.len > d) {
            return Err(self.fail(format!(
                "the body is longer than its Content-Length of {declared}; not storing it"
            )));
        }
        self.crc.update(&chunk);
        let size = self.inner.part_size;
        let mut rest = chunk;
        while !rest.is_empty() {
            // A full part is handed off only when more bytes come, so that a body of exactly
            // one part is still one PUT.
            if self.part.len >= size {
                self.hand_off()?;
            }
            let take = rest.len().min(size - self.part.len);
            self.part.push(rest.split_to(take));
        }
        Ok(())
    }

    /// Pending while the queue to the background upload is full, and while the part being
    /// filled is full and the previous one is still being uploaded (so that a writer polled
    /// before each write holds at most two parts); an error once the entry was abandoned. A
    /// stalled server does not keep it pending for ever: the upload's request times out and
    /// the entry fails.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StoreError>> {
        if let Some(error) = self.refused() {
            return Poll::Ready(Err(error));
        }
        let Some(queue) = &self.queue else {
            return Poll::Ready(Ok(()));
        };
        let full = self.part.len >= self.inner.part_size;
        let ready = |queue: &mpsc::Sender<Part>, busy: &std::sync::atomic::AtomicUsize| {
            queue.capacity() > 0 && !(full && busy.load(Ordering::SeqCst) > 0)
        };
        if ready(queue, &self.waiting.busy) {
            return Poll::Ready(Ok(()));
        }
        *lock(&self.waiting.waker) = Some(cx.waker().clone());
        // The task may have taken or uploaded a part, or stopped, since the first look.
        if queue.is_closed() {
            let why = self.job_failure();
            return Poll::Ready(Err(self.fail(why)));
        }
        if ready(queue, &self.waiting.busy) {
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }

    fn commit(mut self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move {
            let size = self.commit_inner().await?;
            let inner = self.inner.clone();
            if !self.meta.variant.as_bytes().is_empty() {
                let dir = inner.layout.key_dir(&self.meta.key).to_string();
                inner.listings.committed(&dir, &self.path);
            }
            inner.committed(&self.meta.key, &self.path, size).await;
            Ok(())
        })
    }
}

/// The chunks of the part being filled, and their total length.
#[derive(Default)]
struct PartBuf {
    chunks: Vec<Bytes>,
    len: usize,
}

impl PartBuf {
    fn push(&mut self, chunk: Bytes) {
        self.len += chunk.len();
        self.chunks.push(chunk);
    }

    fn take_chunks(&mut self) -> Vec<Bytes> {
        self.len = 0;
        std::mem::take(&mut self.chunks)
    }

    fn take(&mut self) -> PutPayload {
        self.take_chunks().into_iter().collect()
    }
}
