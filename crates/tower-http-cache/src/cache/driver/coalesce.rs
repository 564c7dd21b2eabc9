//! Request coalescing: while one request for a key is at the origin, identical requests wait
//! for its outcome instead of going there too.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Buf;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::{Driver, Forward, Trip};
use crate::cache::body::CacheBody;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The keys with a request at the origin, with the outcome their followers wait on once a
/// follower came (most misses have none, and then allocate nothing and wake nobody).
///
/// Hashed with foldhash (seeded per map, as hashbrown does by default): std's SipHash was a
/// measurable part of a miss.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    keys: Mutex<HashMap<Arc<str>, Flight, foldhash::quality::RandomState>>,
    /// How many keys have followers, so that a leader of a key without any (most misses)
    /// need not take the lock to tell them it is streaming.
    followed: AtomicUsize,
}

/// One key at the origin: whether its leader streams its body into the store, and the outcome
/// its followers wait on, once one came.
#[derive(Debug, Default)]
struct Flight {
    streaming: bool,
    outcome: Option<Arc<Outcome>>,
}

/// Whether the leader of a key is done (or streaming its body into the store), and the
/// followers to wake when it is.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    done: AtomicBool,
    /// The leader's response is being stored as its client reads it.
    streaming: AtomicBool,
    /// The leader failed (the origin could not be reached, answered 5xx, or its body broke
    /// off): one follower should try again for the others.
    failed: AtomicBool,
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
            .and_then(|flight| flight.outcome);
        if let Some(outcome) = outcome {
            self.in_flight.followed.fetch_sub(1, Ordering::AcqRel);
            outcome.done.store(true, Ordering::Release);
            outcome.notify.notify_waiters();
        }
    }
}

impl Leader {
    /// Tells the followers that the response is being stored as the leader's client reads
    /// it: they wait for it a while longer only (see [`wait`]), so that a client that reads
    /// slowly does not hold them.
    pub(crate) fn streaming(&self) {
        let mut keys = self
            .in_flight
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(flight) = keys.get_mut(&self.key) {
            // Followers that come later start their shorter wait when they join.
            flight.streaming = true;
            if let Some(outcome) = &flight.outcome {
                outcome.streaming.store(true, Ordering::Release);
                outcome.notify.notify_waiters();
            }
        }
    }

    /// Tells the followers that this leader failed: when it is dropped, the first follower to
    /// look again leads the next attempt and the others follow it (see [`wait`]).
    pub(crate) fn failed(&self) {
        if self.in_flight.followed.load(Ordering::Acquire) == 0 {
            return;
        }
        let keys = self
            .in_flight
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(Flight {
            outcome: Some(outcome),
            ..
        }) = keys.get(&self.key)
        {
            outcome.failed.store(true, Ordering::Release);
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
        // One lookup for both roles (the key is hashed once): a follower drops its clone.
        match keys.entry(key.clone()) {
            Entry::Occupied(mut flight) => {
                // The first follower makes the outcome; the leader finds it when it is done.
                let flight = flight.get_mut();
                let streaming = flight.streaming;
                let outcome = flight.outcome.get_or_insert_with(|| {
                    self.followed.fetch_add(1, Ordering::AcqRel);
                    Arc::new(Outcome {
                        streaming: AtomicBool::new(streaming),
                        ..Outcome::default()
                    })
                });
                Role::Follower(outcome.clone())
            }
            Entry::Vacant(vacant) => {
                vacant.insert(Flight::default());
                Role::Leader(self.leader(key))
            }
        }
    }

    /// Leads for `key` when no request for it is at the origin; `None` otherwise, without
    /// making anything to wait on (for work nobody waits for, such as a background refresh).
    pub(crate) fn lead(self: &Arc<Self>, key: &Arc<str>) -> Option<Leader> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.contains_key(key) {
            return None;
        }
        keys.insert(key.clone(), Flight::default());
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

/// Waits until the leader is done, or `deadline` passes, or, once the leader streams its body
/// into the store, `streaming_wait` after that. Either way the follower then looks in the
/// store again. Returns whether the leader failed: then the follower leads or follows anew
/// (until `deadline`) if nothing usable is there; otherwise it goes to the origin alone (the
/// response was not one to share).
pub(crate) async fn wait(
    outcome: Arc<Outcome>,
    deadline: Instant,
    streaming_wait: Duration,
) -> bool {
    let mut deadline = deadline;
    let mut saw_streaming = false;
    loop {
        let notified = outcome.notify.notified();
        let mut notified = std::pin::pin!(notified);
        // Registered before the flags are read, so that a leader finishing in between still
        // wakes this follower.
        notified.as_mut().enable();
        if outcome.done.load(Ordering::Acquire) {
            return outcome.failed.load(Ordering::Acquire);
        }
        if !saw_streaming && outcome.streaming.load(Ordering::Acquire) {
            saw_streaming = true;
            deadline = deadline.min(Instant::now() + streaming_wait);
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return false;
        }
    }
}

/// A request that found another one for its key at the origin: it waits for that one's
/// outcome, at most until `deadline`.
pub(super) struct Following {
    outcome: Arc<Outcome>,
    deadline: tokio::time::Instant,
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
    /// Joins the in-flight requests for the key: `Ok(Some)` leads, `Ok(None)` goes alone
    /// (coalescing is off, or the mode does not store), `Err` follows the request already at
    /// the origin.
    pub(super) fn join(&self, trip: &Trip) -> Result<Option<Leader>, Following> {
        let Some(timeout) = self.shared.coalesce else {
            return Ok(None);
        };
        if !trip.exchange.may_reuse_others() {
            return Ok(None);
        }
        let key = trip.exchange.key();
        let deadline = match trip.follow_deadline {
            // Followed long enough: lead if the key is free, else go alone.
            Some(deadline) if tokio::time::Instant::now() >= deadline => {
                return Ok(self.shared.in_flight.lead(key));
            }
            Some(deadline) => deadline,
            None => tokio::time::Instant::now() + timeout,
        };
        match self.shared.in_flight.join(key) {
            Role::Leader(leader) => Ok(Some(leader)),
            Role::Follower(outcome) => Err(Following { outcome, deadline }),
        }
    }

    /// Waits for the request for the same key already at the origin, then looks in the store
    /// again. When the leader failed and nothing usable is there, the first follower to look
    /// leads the next attempt and the others follow it, until their deadline: a failed leader
    /// hands over to one new leader, not to a stampede. When the leader's response was not
    /// one to store, each follower goes to the origin for its own.
    pub(super) async fn follow(
        self,
        following: Following,
        forward: Box<Forward<ReqB>>,
    ) -> Result<Response<CacheBody<ResB>>, S::Error> {
        let handed_over = wait(
            following.outcome,
            following.deadline,
            self.shared.coalesce_streaming_wait,
        )
        .await;
        let Forward {
            request, mut trip, ..
        } = *forward;
        trip.follow_deadline = Some(following.deadline);
        self.lookup(request, trip, handed_over).await
    }
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
                Role::Follower(outcome) => tokio::spawn(wait(
                    outcome,
                    Instant::now() + Duration::from_secs(60),
                    Duration::from_secs(60),
                )),
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
        wait(
            outcome,
            Instant::now() + Duration::from_secs(60),
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    /// A leader that streams its body into the store holds its followers only
    /// `streaming_wait` longer: a slow client of the leader does not hold them.
    #[tokio::test(start_paused = true)]
    async fn a_streaming_leader_holds_its_followers_only_a_while() {
        let in_flight = Arc::new(InFlight::default());
        let Role::Leader(leader) = in_flight.join(&key()) else {
            panic!("the first request leads");
        };
        let Role::Follower(outcome) = in_flight.join(&key()) else {
            panic!("the second request follows");
        };
        let start = Instant::now();
        let follower = tokio::spawn(wait(
            outcome,
            start + Duration::from_secs(60),
            Duration::from_secs(1),
        ));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            !follower.is_finished(),
            "waiting for the leader's response head"
        );
        leader.streaming();
        follower.await.expect("follower");
        assert_eq!(start.elapsed(), Duration::from_secs(6));
        drop(leader);
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
