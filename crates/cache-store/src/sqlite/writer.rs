//! The writing side: [`SqliteWriter`] buffers one chunk and hands full chunks to a background
//! job through a bounded queue.

use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;

use super::db::Finished;
use super::sql::{self, lock};
use super::{blocking, Inner, CHUNK};
use crate::chunk_queue::{chunk_queue, ChunkReceiver, ChunkSender};
use crate::codec::{self, BodyChecksum, EntryMeta};
use crate::{BoxFuture, EntryWriter, StoreError};

enum Msg {
    /// A full chunk and its sequence number.
    Chunk(i64, Bytes),
    /// The rest of the entry; the job fills in its staging row and publishes.
    Commit(Box<Finished>, oneshot::Sender<Result<(), StoreError>>),
}

/// Why the background job stopped early, for the writer's next call.
type Failure = Arc<Mutex<Option<String>>>;

enum State {
    Open,
    TooLarge,
    Failed(String),
}

/// Writes one entry. Bodies of up to one chunk stay in memory and are published by the commit
/// in one transaction; larger ones are staged chunk by chunk by a background job.
pub(super) struct SqliteWriter {
    inner: Arc<Inner>,
    meta: EntryMeta,
    /// The chunk being filled (at most [`CHUNK`] bytes).
    buf: BytesMut,
    crc: BodyChecksum,
    len: u64,
    /// The sequence number of the next chunk handed out.
    seq: i64,
    /// The background job, started with the first full chunk.
    queue: Option<ChunkSender<Msg>>,
    failure: Failure,
    state: State,
}

impl SqliteWriter {
    pub(super) fn new(inner: Arc<Inner>, meta: EntryMeta) -> Self {
        SqliteWriter {
            inner,
            meta,
            buf: BytesMut::new(),
            crc: BodyChecksum::new(),
            len: 0,
            seq: 0,
            queue: None,
            failure: Arc::default(),
            state: State::Open,
        }
    }

    /// Fails the entry: the background job (if any) sees its queue closed and deletes what it
    /// staged.
    fn fail(&mut self, why: String) -> StoreError {
        self.queue = None;
        self.buf = BytesMut::new();
        self.state = State::Failed(why.clone());
        StoreError::unavailable(why)
    }

    /// Hands the full buffer to the background job, starting it if needed. Never blocks.
    fn hand_off(&mut self) -> Result<(), StoreError> {
        let chunk = self.buf.split().freeze();
        let seq = self.seq;
        self.seq += 1;
        if self.queue.is_none() {
            self.queue = Some(self.start_job()?);
        }
        let Some(queue) = &mut self.queue else {
            return Err(self.fail("the SQLite background writer is gone".into()));
        };
        if queue.send(Msg::Chunk(seq, chunk)).is_err() {
            let why = self.job_failure();
            return Err(self.fail(why));
        }
        Ok(())
    }

    fn job_failure(&self) -> String {
        lock(&self.failure)
            .clone()
            .unwrap_or_else(|| "the SQLite background writer stopped".into())
    }

    /// Starts the job as a task whose database calls go to the blocking pool, so that no
    /// thread waits for the origin; without a runtime, on a thread of its own.
    fn start_job(&self) -> Result<ChunkSender<Msg>, StoreError> {
        let (tx, rx) = chunk_queue(self.inner.queue_chunks);
        let job = Job {
            inner: self.inner.clone(),
            key: self.meta.key.clone(),
            variant: self.meta.variant.as_bytes().to_vec(),
            // The header as known at the start marks the staging row; the commit replaces it.
            header: codec::encode_header(&self.meta)?,
            failure: self.failure.clone(),
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn(job.run(rx))),
            Err(_) => {
                let runtime = tokio::runtime::Builder::new_current_thread().build()?;
                std::thread::Builder::new()
                    .name("cache-store-sqlite-writer".into())
                    .spawn(move || runtime.block_on(job.run(rx)))?;
            }
        }
        Ok(tx)
    }
}

impl SqliteWriter {
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

impl EntryWriter for SqliteWriter {
    fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        if let Some(error) = self.refused() {
            return Err(error);
        }
        if let Some(queue) = &self.queue {
            if let Err(why) = queue.refuse_if_behind("the SQLite database", CHUNK) {
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
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            // A full buffer is handed off only when more bytes come, so that a body of exactly
            // one chunk is still published by the commit alone.
            if self.buf.len() == CHUNK {
                self.hand_off()?;
            }
            if self.buf.capacity() == 0 {
                self.buf.reserve(CHUNK);
            }
            let take = rest.len().min(CHUNK - self.buf.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        Ok(())
    }

    /// Pending while chunks of earlier writes wait beside the full queue (see
    /// [`chunk_queue`](crate::chunk_queue)); an error once the entry was abandoned.
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
            let finished = Box::new(Finished {
                key: self.meta.key.clone(),
                variant: self.meta.variant.as_bytes().to_vec(),
                header: codec::encode_header(&self.meta)?,
                body_len: self.len,
                body_crc: self.crc.clone().trailer(),
                expires_ms: sql::unix_ms(self.meta.expires),
                staged: None,
                tail_seq: self.seq,
                tail: self.buf.split().freeze(),
            });
            match self.queue.take() {
                None => {
                    let inner = self.inner.clone();
                    blocking(move || inner.db.publish(*finished, inner.max_size)).await
                }
                Some(mut queue) => {
                    let (reply, done) = oneshot::channel();
                    if queue.send_last(Msg::Commit(finished, reply)).await.is_err() {
                        return Err(StoreError::unavailable(self.job_failure()));
                    }
                    match done.await {
                        Ok(result) => result,
                        Err(_) => Err(StoreError::unavailable(self.job_failure())),
                    }
                }
            }
        })
    }
}

/// The background half of a [`SqliteWriter`] whose body needs more than one chunk: creates
/// the staging row, stores chunks as they come, publishes on commit, and deletes what it
/// staged if the writer goes away (or anything fails).
struct Job {
    inner: Arc<Inner>,
    key: String,
    variant: Vec<u8>,
    header: Vec<u8>,
    failure: Failure,
}

impl Job {
    async fn run(self, mut rx: ChunkReceiver<Msg>) {
        let mut staged: Option<i64> = None;
        let result = loop {
            match rx.recv().await {
                Some(Msg::Chunk(seq, data)) => {
                    let id = match staged {
                        Some(id) => id,
                        None => {
                            let (inner, key) = (self.inner.clone(), self.key.clone());
                            let (variant, header) = (self.variant.clone(), self.header.clone());
                            match blocking(move || inner.db.stage(&key, &variant, &header)).await {
                                Ok(id) => *staged.insert(id),
                                Err(e) => break Err(e),
                            }
                        }
                    };
                    let inner = self.inner.clone();
                    if let Err(e) = blocking(move || inner.db.insert_chunk(id, seq, &data)).await {
                        break Err(e);
                    }
                }
                Some(Msg::Commit(mut finished, reply)) => {
                    finished.staged = staged;
                    let inner = self.inner.clone();
                    let result =
                        blocking(move || inner.db.publish(*finished, inner.max_size)).await;
                    if result.is_ok() {
                        staged = None;
                    }
                    let _ = reply.send(result);
                    break Ok(());
                }
                // The writer was dropped without committing.
                None => break Ok(()),
            }
        };
        if let Err(error) = result {
            *lock(&self.failure) = Some(format!("the SQLite background write failed: {error}"));
            rx.close();
            // Answer a commit that was already queued.
            while let Some(msg) = rx.recv().await {
                if let Msg::Commit(_, reply) = msg {
                    let why = format!("the SQLite background write failed: {error}");
                    let _ = reply.send(Err(StoreError::unavailable(why)));
                }
            }
        }
        if let Some(id) = staged {
            // A failed delete leaves a staged row that the next open sweeps once stale.
            let inner = self.inner.clone();
            let _ = blocking(move || inner.db.discard(id)).await;
        }
    }
}
