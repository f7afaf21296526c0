//! Time for apps: the monotonic clock, the wall clock, sleeping and timeouts.

use core::future::Future;
use core::time::Duration;

pub use ringbolt_executor::{Elapsed, Sleep, Timeout};
pub use ringbolt_time::Instant;
pub use ringbolt_time::civil::DateTime;

/// Now, on the monotonic clock.
pub fn now() -> Instant {
    crate::platform::platform().now()
}

/// Time since boot.
pub fn uptime() -> Duration {
    now().since_boot()
}

/// UTC date and time, if the platform has a wall clock.
pub fn wall_clock() -> Option<DateTime> {
    let nanos = crate::platform::platform().wall_clock_unix_nanos()?;
    Some(DateTime::from_unix(nanos / 1_000_000_000))
}

/// Completes after `duration`.
pub fn sleep(duration: Duration) -> Sleep {
    crate::runtime::handle().sleep(duration)
}

/// Completes at `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    crate::runtime::handle().sleep_until(deadline)
}

/// Runs `future` for at most `duration`.
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    crate::runtime::handle().timeout(duration, future)
}
