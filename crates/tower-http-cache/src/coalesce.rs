//! Request coalescing: while one request for a key is at the origin, identical requests wait
//! for its outcome instead of going there too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

/// The keys with a request at the origin.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    keys: Mutex<HashMap<Arc<str>, Arc<Outcome>>>,
}

/// Whether the leader of a key is done, and the followers to wake when it is.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    done: AtomicBool,
    notify: Notify,
}

/// Held by the request that goes to the origin. Dropping it (when its response is stored, or
/// known not to be) wakes the waiting requests.
#[derive(Debug)]
pub(crate) struct Leader {
    in_flight: Arc<InFlight>,
    key: Arc<str>,
    outcome: Arc<Outcome>,
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.in_flight
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
        self.outcome.done.store(true, Ordering::Release);
        self.outcome.notify.notify_waiters();
    }
}

pub(crate) enum Role {
    Leader(Leader),
    Follower(Arc<Outcome>),
}

impl InFlight {
    /// Becomes the leader for `key`, or a follower of the current leader.
    pub(crate) fn join(self: &Arc<Self>, key: &Arc<str>) -> Role {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(outcome) = keys.get(key) {
            return Role::Follower(outcome.clone());
        }
        let outcome = Arc::new(Outcome::default());
        keys.insert(key.clone(), outcome.clone());
        Role::Leader(Leader {
            in_flight: self.clone(),
            key: key.clone(),
            outcome,
        })
    }
}

/// Waits until the leader is done, or `timeout` passes. Either way the follower then looks in
/// the store again and goes to the origin itself if nothing usable is there.
pub(crate) async fn wait(outcome: Arc<Outcome>, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, async {
        let notified = outcome.notify.notified();
        let mut notified = std::pin::pin!(notified);
        // Registered before the flag is read, so that a leader finishing in between still
        // wakes this follower.
        notified.as_mut().enable();
        if !outcome.done.load(Ordering::Acquire) {
            notified.await;
        }
    })
    .await;
}
