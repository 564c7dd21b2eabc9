//! RFC 5861 §3 within bounds: how many `stale-while-revalidate` refreshes run in the
//! background at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The refreshes under way, and how many may be.
#[derive(Debug)]
pub(crate) struct RefreshSlots {
    running: AtomicUsize,
    max: usize,
}

/// One refresh under way; its slot is free again when this is dropped.
#[derive(Debug)]
pub(crate) struct RefreshSlot(Arc<RefreshSlots>);

impl RefreshSlots {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(RefreshSlots {
            running: AtomicUsize::new(0),
            max,
        })
    }

    /// A slot for one more refresh, if fewer than the maximum are running.
    pub(crate) fn take(self: &Arc<Self>) -> Option<RefreshSlot> {
        self.running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |running| {
                (running < self.max).then_some(running + 1)
            })
            .ok()
            .map(|_| RefreshSlot(self.clone()))
    }
}

impl Drop for RefreshSlot {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_more_slots_than_the_maximum_and_a_dropped_slot_is_free_again() {
        let slots = RefreshSlots::new(2);
        let a = slots.take().expect("first");
        let _b = slots.take().expect("second");
        assert!(slots.take().is_none());
        drop(a);
        assert!(slots.take().is_some());
    }
}
