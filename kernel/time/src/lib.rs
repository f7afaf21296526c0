//! Time for Ringbolt: monotonic instants, clock sources, TSC scaling, civil dates.
//!
//! Protocol and executor code never reads a global clock: it is handed an [`Instant`] or a
//! [`Clock`], so tests drive time by hand (see `MockClock`).
//!
//! - [`Instant`]: nanoseconds since boot on the platform's monotonic clock.
//! - [`Clock`]: anything that can say what time it is now.
//! - [`TscScale`]: cycles -> nanoseconds as `(cycles << shift) * mul >> 32`, the form Xen's
//!   `vcpu_time_info` and Hyper-V's reference TSC page use, so every platform shares it.
//! - [`civil`]: Gregorian date and time <-> Unix seconds, for RTCs and wall-clock output.
#![no_std]
#![forbid(unsafe_code)]

pub mod civil;
mod instant;
mod scale;

pub use instant::{Clock, Instant, MockClock};
pub use scale::TscScale;
