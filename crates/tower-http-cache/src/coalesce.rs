//! Request coalescing: while one request for a key is at the origin, identical requests wait
//! for its outcome instead of going there too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

/// The keys with a request at the origin.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    keys: Mutex<HashMap<Arc<str>, watch::Receiver<()>>>,
}

/// Held by the request that goes to the origin. Dropping it (when its response is stored, or
/// known not to be) wakes the waiting requests.
#[derive(Debug)]
pub(crate) struct Leader {
    in_flight: Arc<InFlight>,
    key: Arc<str>,
    _done: watch::Sender<()>,
}

impl Drop for Leader {
    fn drop(&mut self) {
        let mut keys = self
            .in_flight
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        keys.remove(&self.key);
    }
}

pub(crate) enum Role {
    Leader(Leader),
    Follower(watch::Receiver<()>),
}

impl InFlight {
    /// Becomes the leader for `key`, or a follower of the current leader.
    pub(crate) fn join(self: &Arc<Self>, key: &Arc<str>) -> Role {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(receiver) = keys.get(key) {
            return Role::Follower(receiver.clone());
        }
        let (sender, receiver) = watch::channel(());
        keys.insert(key.clone(), receiver);
        Role::Leader(Leader {
            in_flight: self.clone(),
            key: key.clone(),
            _done: sender,
        })
    }
}

/// Waits until the leader is done, or `timeout` passes. Either way the follower then looks in
/// the store again and goes to the origin itself if nothing usable is there.
pub(crate) async fn wait(mut receiver: watch::Receiver<()>, timeout: Duration) {
    // `changed` fails once the leader's sender is dropped, which is the signal.
    let _ =
        tokio::time::timeout(timeout, async { while receiver.changed().await.is_ok() {} }).await;
}
