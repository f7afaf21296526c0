//! The time synchronisation service (`HV_TS_GUID`, 9527e630-d0ae-497b-adce-e80ab0175caf).
//!
//! The host sends its UTC time (`parenttime`, 100 ns units since 1601-01-01, without leap
//! seconds) with flags: `ICTIMESYNCFLAG_SYNC` after boot and resume, when the guest should step
//! its clock, `ICTIMESYNCFLAG_SAMPLE` every few seconds otherwise. Before version 4 the message
//! is `ictimesync_data`; from 4.0 it is `ictimesync_ref_data`, which adds the partition
//! reference time (the guest's Hyper-V reference counter, also 100 ns units) at which the host
//! read its clock, so the guest can add the time the message spent in flight:
//!
//! ```text
//!  v1/v3: 0 parenttime  8 childtime  16 roundtriptime  24 flags                (25 bytes)
//!  v4:    0 parenttime  8 vmreferencetime  16 flags  17 leapflags  18 stratum  19 reserved[3]
//! ```
//!
//! Every message is answered (`HV_S_OK`, the request echoed). The time goes to the kernel as
//! [`Action::SetWallClock`]; applying it (stepping on sync, disciplining or ignoring samples)
//! is the kernel's policy.

use log::{debug, info};

use crate::error::Error;
use crate::icmsg::{MessageType, Status, Version};
use crate::service::{Action, Service};
use crate::wire::Reader;

/// `WLTIMEDELTA`: 1601-01-01 to 1970-01-01 in 100 ns units.
pub const WLTIMEDELTA: u64 = 116_444_736_000_000_000;

/// `sizeof(struct ictimesync_data)`.
pub const MESSAGE_SIZE: usize = 25;
/// `sizeof(struct ictimesync_ref_data)`.
pub const REF_MESSAGE_SIZE: usize = 22;

/// The flags.
pub mod flags {
    pub const PROBE: u8 = 0;
    pub const SYNC: u8 = 1;
    pub const SAMPLE: u8 = 2;
}

/// The partition reference counter ("reference time now", 100 ns units), which the kernel
/// reads from the reference TSC page or `HV_X64_MSR_TIME_REF_COUNT`. Any `Fn() -> u64` is
/// one.
pub trait ReferenceClock {
    fn now(&self) -> u64;
}

impl<F: Fn() -> u64> ReferenceClock for F {
    fn now(&self) -> u64 {
        self()
    }
}

/// The host time `t` (100 ns units since 1601) as Unix nanoseconds.
pub fn unix_nanos(t: u64) -> Result<u64, Error> {
    t.checked_sub(WLTIMEDELTA)
        .and_then(|since_1970| since_1970.checked_mul(100))
        .ok_or(Error::HostTimeOutOfRange(t))
}

/// The time synchronisation service; see the module documentation.
#[derive(Debug)]
pub struct Timesync<C> {
    clock: C,
}

impl<C: ReferenceClock> Timesync<C> {
    pub fn new(clock: C) -> Self {
        Timesync { clock }
    }
}

impl<C: ReferenceClock> Service for Timesync<C> {
    const NAME: &'static str = "timesync";
    const MESSAGE_TYPE: MessageType = MessageType::TIMESYNC;
    /// Linux's `ts_versions`.
    const VERSIONS: &'static [Version] =
        &[Version::new(4, 0), Version::new(3, 0), Version::new(1, 0)];

    fn handle(
        &mut self,
        version: Version,
        payload: &mut [u8],
    ) -> Result<(Status, Option<Action>), Error> {
        let r = Reader::new(payload);
        // Like Linux: the reference-time format for anything newer than 3.0.
        let (host_time, request) = if version > Version::new(3, 0) {
            r.require(REF_MESSAGE_SIZE)?;
            let (parent, sample) = (r.u64(0)?, r.u64(8)?);
            let now = self.clock.now();
            let in_flight = now
                .checked_sub(sample)
                .ok_or(Error::ReferenceTimeAhead { sample, now })?;
            let adjusted = parent
                .checked_add(in_flight)
                .ok_or(Error::HostTimeOutOfRange(parent))?;
            (adjusted, r.u8(16)?)
        } else {
            r.require(MESSAGE_SIZE)?;
            (r.u64(0)?, r.u8(24)?)
        };
        let unix_nanos = unix_nanos(host_time)?;
        let sync = request & flags::SYNC != 0;
        if sync {
            info!("timesync IC: host time {unix_nanos} ns since 1970, sync");
        } else {
            debug!("timesync IC: host time {unix_nanos} ns since 1970, sample");
        }
        Ok((Status::OK, Some(Action::SetWallClock { unix_nanos, sync })))
    }
}
