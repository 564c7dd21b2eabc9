//! The writing side: [`RedisWriter`] buffers one chunk and hands full chunks to a background
//! task through a bounded queue; the commit publishes the entry with one script.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::task::JoinHandle;

use super::layout::{self, ttl_ms};
use super::{scripts, Inner};
use crate::chunk_queue::{chunk_queue, ChunkReceiver, ChunkSender};
use crate::codec::{self, BodyChecksum, EntryMeta};
use crate::{BoxFuture, EntryWriter, StoreError};

/// Why the background task stopped early, for the writer's next call.
type Failure = Arc<Mutex<Option<String>>>;

enum State {
    Open,
    TooLarge,
    Failed(String),
}

/// Writes one entry. A body of up to one chunk stays in memory and goes into the index record
/// with the commit; a larger one is staged chunk by chunk, under a fresh write id, by a
/// background task.
pub(super) struct RedisWriter {
    inner: Arc<Inner>,
    runtime: tokio::runtime::Handle,
    meta: EntryMeta,
    write_id: String,
    /// The chunk being filled (at most one chunk).
    buf: BytesMut,
    crc: BodyChecksum,
    len: u64,
    /// Chunks handed to the background task so far.
    staged: u32,
    queue: Option<ChunkSender<Bytes>>,
    job: Option<JoinHandle<Result<(), StoreError>>>,
    /// Set before the commit closes the queue, so that the task keeps what it staged.
    committing: Arc<AtomicBool>,
    failure: Failure,
    state: State,
}

fn lock<T>(slot: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RedisWriter {
    pub(super) fn new(inner: Arc<Inner>, runtime: tokio::runtime::Handle, meta: EntryMeta) -> Self {
        RedisWriter {
            inner,
            runtime,
            meta,
            write_id: layout::write_id(),
            buf: BytesMut::new(),
            crc: BodyChecksum::new(),
            len: 0,
            staged: 0,
            queue: None,
            job: None,
            committing: Arc::default(),
            failure: Arc::default(),
            state: State::Open,
        }
    }

    /// Fails the entry: the task (if any) sees its queue closed and deletes what it staged.
    fn fail(&mut self, why: String) -> StoreError {
        self.queue = None;
        self.buf = BytesMut::new();
        self.state = State::Failed(why.clone());
        StoreError::unavailable(why)
    }

    fn job_failure(&self) -> String {
        lock(&self.failure)
            .clone()
            .unwrap_or_else(|| "the Redis background writer stopped".into())
    }

    /// Hands the full buffer to the background task, starting it if needed. Never blocks.
    fn hand_off(&mut self) -> Result<(), StoreError> {
        let chunk = self.buf.split().freeze();
        if self.queue.is_none() {
            self.start_job();
        }
        let Some(queue) = &mut self.queue else {
            return Err(self.fail("the Redis background writer is gone".into()));
        };
        if queue.send(chunk).is_err() {
            let why = self.job_failure();
            return Err(self.fail(why));
        }
        self.staged += 1;
        Ok(())
    }

    fn start_job(&mut self) {
        let (tx, rx) = chunk_queue(self.inner.queue_chunks);
        let job = Job {
            inner: self.inner.clone(),
            base: format!(
                "{}{}:",
                self.inner.keys.chunk_base(&self.meta.key),
                self.write_id
            ),
            committing: self.committing.clone(),
            failure: self.failure.clone(),
        };
        self.job = Some(self.runtime.spawn(job.run(rx)));
        self.queue = Some(tx);
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
}

impl EntryWriter for RedisWriter {
    fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        if let Some(error) = self.refused() {
            return Err(error);
        }
        if let Some(queue) = &self.queue {
            if let Err(why) = queue.refuse_if_behind("Redis", self.inner.chunk_size) {
                return Err(self.fail(why));
            }
        }
        let limit = self.inner.max_body_size;
        self.len = self.len.saturating_add(chunk.len() as u64);
        if self.len > limit {
            self.queue = None;
            self.buf = BytesMut::new();
            self.state = State::TooLarge;
            return Err(StoreError::TooLarge { limit });
        }
        self.crc.update(&chunk);
        let size = self.inner.chunk_size;
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            // A full buffer is handed off only when more bytes come, so that a body of exactly
            // one chunk is still stored inline by the commit alone.
            if self.buf.len() == size {
                self.hand_off()?;
            }
            if self.buf.capacity() == 0 {
                self.buf.reserve(size);
            }
            let take = rest.len().min(size - self.buf.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        Ok(())
    }

    /// Pending while chunks of earlier writes wait beside the full queue (see
    /// [`chunk_queue`](crate::chunk_queue)); an error once the entry was abandoned. A stalled
    /// server does not keep it pending for ever: the task's round trip times out and the
    /// entry fails.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StoreError>> {
        if let Some(error) = self.refused() {
            return Poll::Ready(Err(error));
        }
        let Some(queue) = &mut self.queue else {
            return Poll::Ready(Ok(()));
        };
        match ready!(queue.poll_ready(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(_) => {
                let why = self.job_failure();
                Poll::Ready(Err(self.fail(why)))
            }
        }
    }

    fn commit(mut self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move {
            if let Some(error) = self.refused() {
                return Err(error);
            }
            self.meta.body_len = self.len;
            let header = codec::encode_header(&self.meta)?;
            let crc = self.crc.clone().trailer();
            let tail = self.buf.split().freeze();
            // Wait for the staged chunks: the task ends once the closed queue is drained.
            if let Some(queue) = &mut self.queue {
                if queue.flush().await.is_err() {
                    return Err(StoreError::unavailable(self.job_failure()));
                }
            }
            self.committing.store(true, Ordering::SeqCst);
            self.queue = None;
            if let Some(job) = self.job.take() {
                match job.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(e) => return Err(StoreError::unavailable(e)),
                }
            }
            let chunks = if self.staged == 0 { 0 } else { self.staged + 1 };
            let inline: &[u8] = if chunks == 0 { &tail } else { b"" };
            let record =
                layout::encode_record(&self.write_id, chunks, self.len, crc, &header, inline);
            let inner = &self.inner;
            let key = &self.meta.key;
            let mut invocation = scripts::COMMIT.prepare_invoke();
            invocation
                .key(inner.keys.index(key))
                .arg(self.meta.variant.as_bytes())
                .arg(record)
                .arg(ttl_ms(self.ttl(), inner.min_ttl))
                .arg(inner.keys.chunk_base(key))
                .arg(&self.write_id)
                .arg(chunks)
                .arg(if chunks == 0 { &[][..] } else { &tail[..] })
                .arg(ttl_ms(inner.grace, std::time::Duration::ZERO))
                .arg(if inner.max_size.is_some() { "1" } else { "0" });
            let size: i64 = inner
                .conn
                .invoke(inner.timeout, "commit script", &invocation)
                .await?;
            if size < 0 {
                return Err(StoreError::unavailable(format!(
                    "staged body chunks expired before the commit (the write took longer than \
                     the staging TTL of {:?}); not storing it",
                    inner.staging_ttl
                )));
            }
            inner.account(key, size).await
        })
    }
}

impl RedisWriter {
    /// The entry's TTL, from its expiry.
    fn ttl(&self) -> std::time::Duration {
        self.meta
            .expires
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
    }
}

/// The background half of a [`RedisWriter`] whose body needs more than one chunk: stores
/// chunks as they come (each with the staging TTL), and deletes them if the writer goes away
/// without committing (or anything fails).
struct Job {
    inner: Arc<Inner>,
    /// `<chunk base><write id>:`.
    base: String,
    committing: Arc<AtomicBool>,
    failure: Failure,
}

impl Job {
    async fn run(self, mut rx: ChunkReceiver<Bytes>) -> Result<(), StoreError> {
        let staging = ttl_ms(self.inner.staging_ttl, std::time::Duration::ZERO);
        let mut n: u32 = 0;
        let result = loop {
            let Some(chunk) = rx.recv().await else {
                break Ok(());
            };
            let key = format!("{}{n}", self.base);
            let set = self
                .inner
                .conn
                .query::<()>(
                    self.inner.timeout,
                    "SET (body chunk)",
                    redis::cmd("SET")
                        .arg(&key)
                        .arg(&chunk[..])
                        .arg("PX")
                        .arg(staging),
                )
                .await;
            n += 1;
            if let Err(e) = set {
                break Err(e);
            }
        };
        if let Err(e) = &result {
            *lock(&self.failure) = Some(format!("the Redis background write failed: {e}"));
            rx.close();
        }
        if result.is_err() || !self.committing.load(Ordering::SeqCst) {
            // Best effort: what is not deleted expires with the staging TTL.
            let keys: Vec<String> = (0..n).map(|i| format!("{}{i}", self.base)).collect();
            for batch in keys.chunks(100) {
                let _: Result<i64, _> = self
                    .inner
                    .conn
                    .query(
                        self.inner.timeout,
                        "UNLINK (aborted write)",
                        redis::cmd("UNLINK").arg(batch),
                    )
                    .await;
            }
        }
        result
    }
}
