//! A circuit breaker for a server that is down (Redis, S3): after a connection failure,
//! operations fail at once for a short pause instead of each waiting for its own reconnection
//! attempts (about a second with redis-rs's retries, a connect timeout and backoff with
//! object_store's), so an outage costs the cache its hits, not its latency.
//! After the pause one operation goes through as a probe; while it is out the others still
//! fail at once, and its success closes the breaker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long operations fail at once after a connection failure before one probes again.
pub(crate) const PAUSE: Duration = Duration::from_millis(250);

/// `0` when closed (all operations go through); otherwise the time, in milliseconds after
/// `start`, before which operations are refused.
#[derive(Debug)]
pub(crate) struct Breaker {
    start: Instant,
    refuse_until_ms: AtomicU64,
}

const CLOSED: u64 = 0;

impl Breaker {
    pub(crate) fn new() -> Breaker {
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
    pub(crate) fn admit(&self) -> bool {
        let until = self.refuse_until_ms.load(Ordering::Acquire);
        if until == CLOSED {
            return true;
        }
        let now = self.now_ms();
        let pause = PAUSE.as_millis() as u64;
        now >= until
            && self
                .refuse_until_ms
                .compare_exchange(until, now + pause, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// Records how an admitted operation ended: a failure to reach the server opens the
    /// breaker, anything else closes it.
    pub(crate) fn record(&self, reached_server: bool) {
        if reached_server {
            self.refuse_until_ms.store(CLOSED, Ordering::Release);
        } else {
            let until = self.now_ms() + PAUSE.as_millis() as u64;
            self.refuse_until_ms.store(until, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_refuses_until_the_pause_is_over_then_lets_one_probe_through() {
        let breaker = Breaker::new();
        assert!(breaker.admit(), "closed");
        breaker.record(false);
        assert!(!breaker.admit(), "open right after a failure");
        std::thread::sleep(PAUSE + Duration::from_millis(20));
        assert!(breaker.admit(), "the probe");
        assert!(!breaker.admit(), "only one probe at a time");
        breaker.record(true);
        assert!(breaker.admit(), "closed by the probe's success");
        assert!(breaker.admit());
    }
}
