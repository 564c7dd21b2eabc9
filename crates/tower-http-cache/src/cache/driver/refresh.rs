//! RFC 5861 §3 within bounds: how many `stale-while-revalidate` refreshes run in the
//! background at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use std::future::poll_fn;

use bytes::Buf;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::{Driver, Forward, Trip};

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

impl<S, ReqB, ResB> Driver<S, ReqB, ResB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
    ResB: Body + Send + 'static,
    ResB::Data: Buf + Send,
    ResB::Error: Send,
{
    /// RFC 5861 §3: refreshes a stale response after it was served, in a spawned task, at most
    /// one per key at a time.
    pub(super) fn refresh_in_background(&self, request: Request<ReqB>, mut trip: Trip) {
        // Nothing to do when a refresh (or a miss) for this key is already at the origin, or
        // when as many refreshes as allowed are under way: the stale response was served, and
        // a later request refreshes it.
        let Some(slot) = self.shared.background_refreshes.take() else {
            return;
        };
        let Some(leader) = self.shared.in_flight.lead(trip.exchange.key()) else {
            return;
        };
        trip.leader = Some(leader);
        let driver = self.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let forward = Box::new(Forward {
                request,
                trip,
                coalesce: false,
            });
            if let Ok(response) = driver.go_to_origin(forward).await {
                // Drain the body so that a teed response is stored.
                let mut body = std::pin::pin!(response.into_body());
                while let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
                    if frame.is_err() {
                        break;
                    }
                }
            }
        });
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
