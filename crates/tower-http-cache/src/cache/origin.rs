//! [`Origin`]: the inner service, shared by the clones of a [`CacheService`] and their
//! response futures without a `Clone` bound.
//!
//! [`CacheService`]: crate::CacheService

use std::mem;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use tower_service::Service;

/// The inner service behind a mutex that is held only to poll its readiness or call it, never
/// while waiting: nobody can hold it up by stopping polling.
///
/// Many tasks may wait for the inner service to become ready, but a service keeps only one
/// waker (tower's `ConcurrencyLimit` keeps the last one). So the inner service is always polled
/// with one shared waker that wakes every waiting task: none of them loses its wake-up, even
/// when the task the inner service last saw is gone.
pub(crate) struct Origin<S> {
    service: Mutex<S>,
    waiters: Arc<Waiters>,
    /// The waker the inner service is polled with: it wakes all of `waiters`.
    waker: Waker,
    /// Whether the inner service holds a readiness reservation that no call has used yet: set
    /// when its `poll_ready` says ready, cleared by the call that uses it. While it is set,
    /// [`CacheService::poll_ready`](crate::CacheService) answers without the lock, and a hit
    /// leaves the reservation for the next request that goes to the origin.
    reserved: AtomicBool,
}

/// How many wakers [`Waiters`] keeps before it wakes them all.
const MAX_WAITERS: usize = 4096;

/// The tasks waiting for the inner service to become ready.
#[derive(Default)]
struct Waiters {
    wakers: Mutex<Vec<Waker>>,
    /// Counts the inner service's wake-ups, so that a task that registers just after one can
    /// tell it missed it.
    generation: AtomicU64,
}

impl Waiters {
    fn lock(&self) -> MutexGuard<'_, Vec<Waker>> {
        // A list of wakers stays valid whatever panicked while it was held.
        self.wakers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Adds the waker of a task the inner service is not ready for. The list only ever holds
    /// such tasks, and is emptied by the next wake-up.
    fn register(&self, waker: &Waker) {
        let overflow = {
            let mut wakers = self.lock();
            if wakers.iter().any(|w| w.will_wake(waker)) {
                return;
            }
            // `will_wake` can miss that two wakers wake the same task, so a task polled again
            // and again while it waits could grow the list: past this bound, every waiter is
            // woken (a spurious wake-up is harmless) and the list starts again.
            let overflow = if wakers.len() >= MAX_WAITERS {
                mem::take(&mut *wakers)
            } else {
                Vec::new()
            };
            wakers.push(waker.clone());
            overflow
        };
        for waiter in overflow {
            waiter.wake();
        }
    }
}

impl Wake for Waiters {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let wakers = mem::take(&mut *self.lock());
        for waker in wakers {
            waker.wake();
        }
    }
}

impl<S> Origin<S> {
    pub(crate) fn new(service: S) -> Self {
        let waiters = Arc::new(Waiters::default());
        Origin {
            service: Mutex::new(service),
            waker: Waker::from(waiters.clone()),
            waiters,
            reserved: AtomicBool::new(false),
        }
    }

    /// Whether a reservation made by an earlier `poll_ready` is still unused.
    pub(crate) fn is_reserved(&self) -> bool {
        self.reserved.load(Ordering::Acquire)
    }

    /// Polls the inner service's readiness for the task of `cx`; once it is ready, returns it
    /// still locked, for the caller to call it at once.
    pub(crate) fn poll_acquire<Req>(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<MutexGuard<'_, S>, S::Error>>
    where
        S: Service<Req>,
    {
        // Poisoned: a panic in the inner service's `poll_ready` or `call`; its state is its
        // own business, as it would be without the cache in front of it.
        let mut service = self.service.lock().unwrap_or_else(PoisonError::into_inner);
        let generation = self.waiters.generation();
        match service.poll_ready(&mut Context::from_waker(&self.waker)) {
            Poll::Ready(Ok(())) => {
                self.reserved.store(true, Ordering::Release);
                Poll::Ready(Ok(service))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                self.waiters.register(cx.waker());
                if self.waiters.generation() != generation {
                    // The inner service woke its waiters between its poll and this
                    // registration: this task missed it, so it polls again.
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            }
        }
    }

    /// Records that the reservation was used by a call: the next `poll_ready` must ask the
    /// inner service again.
    pub(crate) fn used(&self) {
        self.reserved.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A waker that counts its wake-ups.
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_waiter_list_is_bounded_and_a_wake_up_reaches_every_waiter() {
        let waiters = Arc::new(Waiters::default());
        let counters: Vec<Arc<Counter>> = (0..=MAX_WAITERS)
            .map(|_| Arc::new(Counter(AtomicUsize::new(0))))
            .collect();
        for counter in &counters {
            waiters.register(&Waker::from(counter.clone()));
        }
        // The last registration found the list full: the others were woken, it was kept.
        let woken = |c: &Arc<Counter>| c.0.load(Ordering::SeqCst);
        assert!(counters[..MAX_WAITERS].iter().all(|c| woken(c) == 1));
        assert_eq!(woken(&counters[MAX_WAITERS]), 0);
        assert_eq!(waiters.lock().len(), 1);

        // The same waker twice is kept once; a wake-up empties the list.
        let first = Waker::from(counters[0].clone());
        waiters.register(&first);
        waiters.register(&first);
        assert_eq!(waiters.lock().len(), 2);
        Waker::from(waiters.clone()).wake_by_ref();
        assert_eq!(woken(&counters[MAX_WAITERS]), 1);
        assert_eq!(woken(&counters[0]), 2);
        assert!(waiters.lock().is_empty());
        assert_eq!(waiters.generation(), 1);
    }
}
