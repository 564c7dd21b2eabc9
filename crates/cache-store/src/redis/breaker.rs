//! A circuit breaker for a server that is down: after a connection failure, operations fail at
//! once for a short pause instead of each waiting for its own reconnection attempts (about a
//! second with redis-rs's retries), so an outage costs the cache its hits, not its latency.
//! After the pause one operation goes through as a probe; while it is out the others still
//! fail at once, and its success closes the breaker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::StoreError;

/// How long operations fail at once after a connection failure before one probes again.
pub(super) const PAUSE: Duration = Duration::from_millis(250);

/// `0` when closed (all operations go through); otherwise the time, in milliseconds after
/// `start`, before which operations are refused.
#[derive(Debug)]
pub(super) struct Breaker {
    start: Instant,
    refuse_until_ms: AtomicU64,
}

const CLOSED: u64 = 0;

impl Breaker {
    pub(super) fn new() -> Breaker {
        Breaker {
            start: Instant::now(),
            refuse_until_ms: AtomicU64::new(CLOSED),
        }
    }

    fn now_ms(&self) -> u64 {
        // Never 0, which means closed.
        self.start.elapsed().as_millis() as u64 + 1
    }

    /// Whether an operation may go to the server now. An operation let through while the
    /// breaker is open is the probe: the pause starts again for every other one.
    pub(super) fn admit(&self) -> Result<(), StoreError> {
        let until = self.refuse_until_ms.load(Ordering::Acquire);
        if until == CLOSED {
            return Ok(());
        }
        let now = self.now_ms();
        let pause = PAUSE.as_millis() as u64;
        if now >= until
            && self
                .refuse_until_ms
                .compare_exchange(until, now + pause, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Ok(());
        }
        Err(super::conn::message(format!(
            "Redis is unreachable (a connection failed less than {PAUSE:?} ago); \
             not trying again yet"
        )))
    }

    /// Records how an admitted operation ended: a failure to reach the server opens the
    /// breaker, anything else closes it.
    pub(super) fn record(&self, reached_server: bool) {
        if reached_server {
            self.refuse_until_ms.store(CLOSED, Ordering::Release);
        } else {
            let until = self.now_ms() + PAUSE.as_millis() as u64;
            self.refuse_until_ms.store(until, Ordering::Release);
        }
    }
}

/// Whether `error` says the server could not be reached (rather than that it answered with
/// an error).
pub(super) fn unreachable(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_refusal()
        || error.is_connection_dropped()
        || error.is_timeout()
        || error.is_cluster_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_refuses_until_the_pause_is_over_then_lets_one_probe_through() {
        let breaker = Breaker::new();
        assert!(breaker.admit().is_ok(), "closed");
        breaker.record(false);
        assert!(breaker.admit().is_err(), "open right after a failure");
        std::thread::sleep(PAUSE + Duration::from_millis(20));
        assert!(breaker.admit().is_ok(), "the probe");
        assert!(breaker.admit().is_err(), "only one probe at a time");
        breaker.record(true);
        assert!(breaker.admit().is_ok(), "closed by the probe's success");
        assert!(breaker.admit().is_ok());
    }
}
