//! The time source of a cache. The policy never reads a clock; the service reads this one.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

/// Where a cache gets the current time. The default is [`SystemClock`]; tests use a clock they
/// step by hand, so that freshness and age are exact.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::time::{Duration, SystemTime};
/// use tower_http_cache::Clock;
///
/// #[derive(Default)]
/// struct ManualClock(AtomicU64);
///
/// impl Clock for ManualClock {
///     fn now(&self) -> SystemTime {
///         SystemTime::UNIX_EPOCH + Duration::from_secs(self.0.load(Ordering::SeqCst))
///     }
/// }
///
/// let clock = ManualClock::default();
/// clock.0.store(60, Ordering::SeqCst);
/// assert_eq!(clock.now(), SystemTime::UNIX_EPOCH + Duration::from_secs(60));
/// ```
pub trait Clock: Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }
}

pub(crate) struct SharedClock(pub(crate) Arc<dyn Clock>);

impl fmt::Debug for SharedClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}
