//! The bounded queue between a streaming [`EntryWriter`](crate::EntryWriter) and the
//! background job that stores its chunks (SQLite, Redis).
//!
//! `write` must not wait, and one write may bring many chunks (hyper hands out frames as large
//! as its read buffer, which grew past 800 KiB under load). So a chunk that finds the queue
//! full waits in an overflow beside it, and `poll_ready` stays pending until the overflow has
//! moved into the queue: a writer that waits for readiness between writes, as the cache's tee
//! does, is slowed to the job's pace and never fails for being ahead; it holds at most `depth`
//! chunks plus those of the one write it was allowed. One that does not wait is refused at the
//! start of a write once `depth` chunks wait in the overflow
//! ([`ChunkSender::refuse_if_behind`]).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::mpsc;

/// The waker of a writer waiting in `poll_ready` for the job to take a chunk.
type Waiting = Arc<Mutex<Option<Waker>>>;

fn wake(waiting: &Waiting) {
    let waker = waiting
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// A queue of `depth` items and an overflow of as many.
pub(crate) fn chunk_queue<T>(depth: usize) -> (ChunkSender<T>, ChunkReceiver<T>) {
    let depth = depth.max(1);
    let (tx, rx) = mpsc::channel(depth);
    let waiting = Waiting::default();
    let sender = ChunkSender {
        tx,
        overflow: VecDeque::new(),
        depth,
        waiting: waiting.clone(),
    };
    (sender, ChunkReceiver { rx, waiting })
}

/// The job stopped: it takes no more items.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Closed;

/// The writer's end.
pub(crate) struct ChunkSender<T> {
    tx: mpsc::Sender<T>,
    overflow: VecDeque<T>,
    depth: usize,
    waiting: Waiting,
}

impl<T> ChunkSender<T> {
    /// Whether `depth` chunks wait in the overflow: the writer did not wait for readiness
    /// and the job fell behind it.
    fn is_behind(&self) -> bool {
        self.overflow.len() >= self.depth
    }

    /// Asked at the start of each write: why `backend` refuses it once the writer is a whole
    /// overflow ahead of the job (chunks of `chunk_size` bytes).
    pub(crate) fn refuse_if_behind(&self, backend: &str, chunk_size: usize) -> Result<(), String> {
        if !self.is_behind() {
            return Ok(());
        }
        let waiting = 2 * self.depth;
        Err(format!(
            "{backend} fell behind: {waiting} chunks ({} KiB) of this body are already waiting \
             to be written; not storing it",
            waiting * chunk_size / 1024
        ))
    }

    /// Queues `item` without waiting, in the overflow if the queue is full.
    pub(crate) fn send(&mut self, item: T) -> Result<(), Closed> {
        if self.overflow.is_empty() {
            match self.tx.try_send(item) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(Closed),
                Err(mpsc::error::TrySendError::Full(item)) => self.overflow.push_back(item),
            }
            return Ok(());
        }
        if self.tx.is_closed() {
            return Err(Closed);
        }
        self.overflow.push_back(item);
        Ok(())
    }

    /// Moves what fits from the overflow into the queue.
    fn drain(&mut self) -> Result<(), Closed> {
        while let Some(item) = self.overflow.pop_front() {
            match self.tx.try_send(item) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(item)) => {
                    self.overflow.push_front(item);
                    return Ok(());
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(Closed),
            }
        }
        Ok(())
    }

    /// Ready once the overflow is empty (the next write can go into the queue); an error
    /// once the job stopped.
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Closed>> {
        if self.tx.is_closed() {
            return Poll::Ready(Err(Closed));
        }
        self.drain()?;
        if self.overflow.is_empty() {
            return Poll::Ready(Ok(()));
        }
        *self.waiting.lock().unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
        // The job may have taken an item, or stopped, since the first look.
        if self.tx.is_closed() {
            return Poll::Ready(Err(Closed));
        }
        self.drain()?;
        if self.overflow.is_empty() {
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }

    /// Waits until everything written so far is in the queue.
    pub(crate) async fn flush(&mut self) -> Result<(), Closed> {
        poll_fn(|cx| self.poll_ready(cx)).await
    }

    /// Queues `item` after everything before it, waiting for room.
    #[cfg(feature = "sqlite")]
    pub(crate) async fn send_last(&mut self, item: T) -> Result<(), Closed> {
        self.flush().await?;
        self.tx.send(item).await.map_err(|_| Closed)
    }
}

/// The job's end. Every item taken wakes a writer waiting for room.
pub(crate) struct ChunkReceiver<T> {
    rx: mpsc::Receiver<T>,
    waiting: Waiting,
}

impl<T> ChunkReceiver<T> {
    /// The next item, or `None` once the writer is gone and the queue is empty.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        let item = self.rx.recv().await;
        wake(&self.waiting);
        item
    }

    /// Stops taking items (the job failed): the writer's next call sees it.
    pub(crate) fn close(&mut self) {
        self.rx.close();
        wake(&self.waiting);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the job's `recv` does, without a runtime.
    fn take<T>(rx: &mut ChunkReceiver<T>) -> Option<T> {
        let item = rx.rx.try_recv().ok();
        wake(&rx.waiting);
        item
    }

    fn poll<T>(sender: &mut ChunkSender<T>) -> Poll<Result<(), Closed>> {
        let mut cx = Context::from_waker(Waker::noop());
        sender.poll_ready(&mut cx)
    }

    #[test]
    fn a_writer_that_waits_is_slowed_and_never_refused() {
        let (mut tx, mut rx) = chunk_queue::<u32>(2);
        // A writer that found the queue ready may bring any number of chunks in one write
        // (hyper's frames grow with its read buffer): two go into the queue, the rest wait.
        assert!(!tx.is_behind());
        for i in 0..5 {
            tx.send(i)
                .expect("a write after readiness is never refused");
        }
        assert_eq!(poll(&mut tx), Poll::Pending, "the overflow is not empty");
        assert_eq!(take(&mut rx), Some(0));
        assert_eq!(take(&mut rx), Some(1));
        assert_eq!(
            poll(&mut tx),
            Poll::Pending,
            "one still waits beside the queue"
        );
        assert_eq!(take(&mut rx), Some(2));
        assert_eq!(poll(&mut tx), Poll::Ready(Ok(())));
        for i in 3..5 {
            assert_eq!(take(&mut rx), Some(i), "in order");
        }
    }

    #[test]
    fn a_writer_that_does_not_wait_is_found_behind() {
        let (mut tx, _rx) = chunk_queue::<u32>(2);
        for i in 0..3 {
            tx.send(i).expect("queued or waiting");
        }
        assert!(!tx.is_behind(), "one chunk waits: not yet a whole overflow");
        tx.send(3).expect("waiting");
        assert!(
            tx.is_behind(),
            "2 queued + 2 waiting: the next write is refused"
        );
    }

    #[test]
    fn a_stopped_job_is_reported() {
        let (mut tx, mut rx) = chunk_queue::<u32>(1);
        tx.send(0).expect("queued");
        tx.send(1).expect("overflow");
        rx.close();
        assert_eq!(poll(&mut tx), Poll::Ready(Err(Closed)));
        assert_eq!(tx.send(2), Err(Closed));
    }
}
