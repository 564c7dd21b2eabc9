//! Request coalescing: while one request for a key is at the origin, identical requests wait
//! for its outcome instead of going there too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

/// The keys with a request at the origin, with the outcome their followers wait on once a
/// follower came (most misses have none, and then allocate nothing and wake nobody).
///
/// Hashed with foldhash (seeded per map, as hashbrown does by default): std's SipHash was a
/// measurable part of a miss.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    keys: Mutex<HashMap<Arc<str>, Option<Arc<Outcome>>, foldhash::quality::RandomState>>,
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
}

impl Drop for Leader {
    fn drop(&mut self) {
        let outcome = self
            .in_flight
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key)
            .flatten();
        if let Some(outcome) = outcome {
            outcome.done.store(true, Ordering::Release);
            outcome.notify.notify_waiters();
        }
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
        if let Some(outcome) = keys.get_mut(key) {
            // The first follower makes the outcome; the leader finds it when it is done.
            let outcome = outcome.get_or_insert_with(Default::default);
            return Role::Follower(outcome.clone());
        }
        keys.insert(key.clone(), None);
        Role::Leader(self.leader(key))
    }

    /// Leads for `key` when no request for it is at the origin; `None` otherwise, without
    /// making anything to wait on (for work nobody waits for, such as a background refresh).
    pub(crate) fn lead(self: &Arc<Self>, key: &Arc<str>) -> Option<Leader> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.contains_key(key) {
            return None;
        }
        keys.insert(key.clone(), None);
        Some(self.leader(key))
    }

    /// The leader of `key`, which the caller has just marked in flight.
    fn leader(self: &Arc<Self>, key: &Arc<str>) -> Leader {
        Leader {
            in_flight: self.clone(),
            key: key.clone(),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Arc<str> {
        Arc::from("http://example.com/")
    }

    /// A follower is woken by the leader's end, not by its timeout: the (paused) clock does not
    /// move while it waits.
    #[tokio::test(start_paused = true)]
    async fn the_leader_wakes_its_followers() {
        let in_flight = Arc::new(InFlight::default());
        let Role::Leader(leader) = in_flight.join(&key()) else {
            panic!("the first request leads");
        };
        let followers: Vec<_> = (0..3)
            .map(|_| match in_flight.join(&key()) {
                Role::Follower(outcome) => tokio::spawn(wait(outcome, Duration::from_secs(60))),
                Role::Leader(_) => panic!("a second leader while the first is at the origin"),
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(
            followers.iter().all(|f| !f.is_finished()),
            "the followers wait while the leader is at the origin"
        );
        let start = tokio::time::Instant::now();
        drop(leader);
        for follower in followers {
            follower.await.expect("follower");
        }
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "a follower waited for its timeout"
        );
    }

    /// A follower that joins just before the leader ends, and waits only after, still returns
    /// at once.
    #[tokio::test(start_paused = true)]
    async fn a_late_waiter_sees_the_leader_done() {
        let in_flight = Arc::new(InFlight::default());
        let Role::Leader(leader) = in_flight.join(&key()) else {
            panic!("the first request leads");
        };
        let Role::Follower(outcome) = in_flight.join(&key()) else {
            panic!("the second request follows");
        };
        drop(leader);
        let start = tokio::time::Instant::now();
        wait(outcome, Duration::from_secs(60)).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    /// A background refresh leads only when nothing is in flight for the key.
    #[test]
    fn lead_only_when_the_key_is_free() {
        let in_flight = Arc::new(InFlight::default());
        let leader = in_flight.lead(&key()).expect("free key");
        assert!(in_flight.lead(&key()).is_none());
        assert!(matches!(in_flight.join(&key()), Role::Follower(_)));
        drop(leader);
        assert!(in_flight.lead(&key()).is_some());
    }

    /// A leader without followers leaves nothing behind: the next request for the key leads.
    #[test]
    fn a_done_leader_leaves_no_trace() {
        let in_flight = Arc::new(InFlight::default());
        for _ in 0..2 {
            let Role::Leader(leader) = in_flight.join(&key()) else {
                panic!("nobody else is at the origin");
            };
            drop(leader);
        }
        assert!(in_flight.keys.lock().expect("lock").is_empty());
    }
}
