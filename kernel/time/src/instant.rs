//! Monotonic instants and the clock trait.

use core::fmt;
use core::ops::{Add, AddAssign, Sub};
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

/// A point on the monotonic clock: nanoseconds since boot.
///
/// Saturating arithmetic: an instant never wraps (2^64 ns is 584 years of uptime).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// Boot.
    pub const ZERO: Instant = Instant(0);
    /// Later than any instant a clock will report; a "never" deadline.
    pub const MAX: Instant = Instant(u64::MAX);

    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    pub const fn from_millis(millis: u64) -> Self {
        Instant(millis.saturating_mul(1_000_000))
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time since boot.
    pub const fn since_boot(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// `self - earlier`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at [`Instant::MAX`].
    pub fn saturating_add(self, d: Duration) -> Instant {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = self.saturating_add(d);
    }
}

impl Sub for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

/// Seconds with microseconds, the way boot logs print uptime: `12.345678`.
impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:06}",
            self.0 / 1_000_000_000,
            (self.0 % 1_000_000_000) / 1000
        )
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instant({self}s)")
    }
}

/// A monotonic clock.
pub trait Clock {
    fn now(&self) -> Instant;
}

/// A clock that moves only when told to; for deterministic tests of timeouts.
#[derive(Debug, Default)]
pub struct MockClock {
    nanos: AtomicU64,
}

impl MockClock {
    pub const fn new(start: Instant) -> Self {
        MockClock {
            nanos: AtomicU64::new(start.0),
        }
    }

    pub fn advance(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let now = self.nanos.load(Ordering::Relaxed);
        self.nanos
            .store(now.saturating_add(nanos), Ordering::Relaxed);
    }

    /// Move to `t`; never backwards.
    pub fn advance_to(&self, t: Instant) {
        self.nanos.fetch_max(t.0, Ordering::Relaxed);
    }
}

impl Clock for MockClock {
    fn now(&self) -> Instant {
        Instant(self.nanos.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        let t = Instant::from_nanos(u64::MAX - 5);
        assert_eq!(t + Duration::from_secs(1), Instant::MAX);
        assert_eq!(
            Instant::from_nanos(3) - Instant::from_nanos(10),
            Duration::ZERO
        );
        assert_eq!(
            Instant::from_millis(1500) - Instant::from_millis(500),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn displays_seconds_with_microseconds() {
        extern crate std;
        use std::format;
        assert_eq!(
            format!("{}", Instant::from_nanos(12_345_678_901)),
            "12.345678"
        );
        assert_eq!(format!("{}", Instant::ZERO), "0.000000");
    }

    #[test]
    fn mock_clock_moves_only_forward() {
        let clock = MockClock::new(Instant::from_millis(10));
        clock.advance(Duration::from_millis(5));
        assert_eq!(clock.now(), Instant::from_millis(15));
        clock.advance_to(Instant::from_millis(12));
        assert_eq!(clock.now(), Instant::from_millis(15));
        clock.advance_to(Instant::from_millis(20));
        assert_eq!(clock.now(), Instant::from_millis(20));
    }
}
