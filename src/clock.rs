//! A clock the test steps by hand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tower_http_cache::Clock;

/// A wall clock that only moves when told to. Clones share the time.
///
/// ```
/// use std::time::Duration;
/// use cache_workspace::clock::ManualClock;
/// use tower_http_cache::Clock;
///
/// let clock = ManualClock::new();
/// let t0 = clock.now();
/// clock.advance(Duration::from_secs(90));
/// assert_eq!(clock.now(), t0 + Duration::from_secs(90));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    /// Seconds since the Unix epoch.
    seconds: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock reading a fixed, whole-second time (2023-11-14T22:13:20Z).
    pub fn new() -> Self {
        ManualClock {
            seconds: Arc::new(AtomicU64::new(1_700_000_000)),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.seconds.fetch_add(by.as_secs(), Ordering::SeqCst);
    }

    /// The current time as an IMF-fixdate, for `Date` headers.
    pub fn http_date(&self) -> String {
        httpdate::fmt_http_date(self.now())
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.seconds.load(Ordering::SeqCst))
    }
}
