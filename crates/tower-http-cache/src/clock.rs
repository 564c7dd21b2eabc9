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
///
/// On Linux, Android and FreeBSD it reads the coarse wall clock (`CLOCK_REALTIME_COARSE`),
/// which the kernel updates every tick (1 to 10 ms) and which costs a quarter of a precise
/// reading. HTTP counts ages and lifetimes in whole seconds, so the tick does not show in what
/// the cache serves. Elsewhere it is [`SystemTime::now`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    fn now(&self) -> SystemTime {
        use rustix::time::{clock_gettime, ClockId};
        let now = clock_gettime(ClockId::RealtimeCoarse);
        // A wall clock set before 1970 has no `SystemTime` here worth the trouble: take the
        // precise reading, which `SystemTime` represents whatever it is.
        match (u64::try_from(now.tv_sec), u32::try_from(now.tv_nsec)) {
            (Ok(secs), Ok(nanos)) if nanos < 1_000_000_000 => {
                SystemTime::UNIX_EPOCH + std::time::Duration::new(secs, nanos)
            }
            _ => SystemTime::now(),
        }
    }

    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
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
