//! Xen's paravirtual clock: system time and wall-clock time from the shared-info page.
//!
//! Xen publishes, per vCPU, a `vcpu_time_info` record (`xen/include/public/xen.h`): the TSC
//! and the system time (nanoseconds since the domain booted) at Xen's last update, plus the
//! scale from TSC ticks to nanoseconds. A guest extrapolates with its own `rdtsc`:
//!
//! ```text
//! now = system_time + ((((tsc - tsc_timestamp) << tsc_shift) * tsc_to_system_mul) >> 32)
//! ```
//!
//! which is exactly [`ringbolt_time::TscScale::ticks_to_nanos`], so this crate only reads the
//! record; it does no arithmetic of its own beyond the subtraction.
//!
//! # Reading without tearing: the seqlock
//!
//! Xen may rewrite the record at any moment (on another physical CPU, or when our vCPU is
//! rescheduled). Per `xen.h` it increments `version` before and after every update, so a
//! reader ([`read_vcpu_time`], and [`read_wallclock`] for `wc_version`) does what Linux's
//! `read_seqbegin`/`read_seqretry` do:
//!
//! ```text
//! loop {
//!     v1 = version;  if v1 is odd: an update is in progress, retry
//!     read barrier
//!     copy every field out
//!     read barrier
//!     v2 = version;  if v2 != v1: the copy may be torn, retry
//!     return the copy
//! }
//! ```
//!
//! The loop is bounded ([`MAX_ATTEMPTS`]): an update takes Xen well under a microsecond, so a
//! record that stays odd or keeps changing is broken, and we report [`PvclockError::Unstable`]
//! rather than hang the vCPU.
//!
//! # Monotonicity
//!
//! Each vCPU's record extrapolates from its own update, and TSCs are not always perfectly
//! synchronised across physical CPUs, so two successive readings (on different vCPUs, or across
//! an update) can step backwards by a few nanoseconds. [`Pvclock`] clamps to the largest value it
//! has returned, as Linux's `pvclock_clocksource_read` does with `last_value`, so the kernel's
//! monotonic clock never runs backwards.
//!
//! Memory is reached only through [`SharedMemory`]; the tests play Xen with
//! `ringbolt_shmem::fake::FakeSharedMemory`, changing the record between two loads.
#![no_std]
#![forbid(unsafe_code)]

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use ringbolt_shmem::{OutOfBounds, SharedMemory};
use ringbolt_time::{Instant, TscScale};
use ringbolt_xen_abi::arch_x86::XEN_LEGACY_MAX_VCPUS;
use ringbolt_xen_abi::xen::{shared_info, vcpu_info, vcpu_time_info};

/// Seqlock attempts before a record is declared [`PvclockError::Unstable`].
///
/// Each attempt is a handful of loads, so 1000 attempts bound a broken record to tens of
/// microseconds, while an honest writer needs at most a couple (one if we raced its update).
pub const MAX_ATTEMPTS: u32 = 1000;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Why a clock could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PvclockError {
    /// The record was being updated, or changed, on every one of `attempts` tries.
    Unstable { attempts: u32 },
    /// The offset given does not hold a record inside the shared region: a driver bug.
    OutOfBounds(OutOfBounds),
}

impl From<OutOfBounds> for PvclockError {
    fn from(e: OutOfBounds) -> Self {
        PvclockError::OutOfBounds(e)
    }
}

impl fmt::Display for PvclockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PvclockError::Unstable { attempts } => {
                write!(f, "pvclock record changed on each of {attempts} reads")
            }
            PvclockError::OutOfBounds(e) => write!(f, "pvclock record: {e}"),
        }
    }
}

impl core::error::Error for PvclockError {}

/// Offset of vCPU `vcpu`'s `vcpu_time_info` in the shared-info page, or `None` past
/// `XEN_LEGACY_MAX_VCPUS` (such vCPUs have a `vcpu_info` registered elsewhere).
pub fn vcpu_time_offset(vcpu: usize) -> Option<usize> {
    (vcpu < XEN_LEGACY_MAX_VCPUS)
        .then(|| shared_info::VCPU_INFO + vcpu * vcpu_info::SIZE + vcpu_info::TIME)
}

/// A consistent copy of a `vcpu_time_info` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuTime {
    /// The TSC when Xen last updated the record.
    pub tsc_timestamp: u64,
    /// Nanoseconds since boot at `tsc_timestamp`.
    pub system_time: u64,
    /// `tsc_to_system_mul` and `tsc_shift`.
    pub scale: TscScale,
}

impl VcpuTime {
    /// System time in nanoseconds when the TSC read `tsc`.
    ///
    /// TSC values are compared modulo 2^64, as Linux does: for an HVM/PVH guest Xen stamps the
    /// record in the guest's TSC domain, where a stamp taken before the guest's TSC started at
    /// zero is "negative" (measured on Xen 4.17: `tsc_timestamp` = 2^64 - 396,762,931 at boot).
    /// A `tsc` before `tsc_timestamp` (a signed difference below zero: read on a vCPU whose TSC
    /// lags the one Xen sampled, or taken before a newer record was copied) counts as no time
    /// elapsed: the result is `system_time`, never an extrapolation backwards. The sum
    /// saturates at `u64::MAX` (584 years of uptime).
    pub fn system_time_at(&self, tsc: u64) -> u64 {
        let delta = tsc.wrapping_sub(self.tsc_timestamp);
        let delta = if (delta as i64) < 0 { 0 } else { delta };
        self.system_time
            .saturating_add(self.scale.ticks_to_nanos(delta))
    }
}

/// Reads the `vcpu_time_info` record at `offset` (see [`vcpu_time_offset`]) under its seqlock.
pub fn read_vcpu_time(mem: &impl SharedMemory, offset: usize) -> Result<VcpuTime, PvclockError> {
    // Saturating: an offset near usize::MAX becomes one the bounds check rejects.
    let field = |name: usize| offset.saturating_add(name);
    read_consistent(mem, field(vcpu_time_info::VERSION), || {
        Ok(VcpuTime {
            tsc_timestamp: mem.read_u64(field(vcpu_time_info::TSC_TIMESTAMP))?,
            system_time: mem.read_u64(field(vcpu_time_info::SYSTEM_TIME))?,
            scale: TscScale {
                mul: mem.read_u32(field(vcpu_time_info::TSC_TO_SYSTEM_MUL))?,
                shift: mem.read_u8(field(vcpu_time_info::TSC_SHIFT))? as i8,
            },
        })
    })
}

/// Wall-clock (Unix) time at system time zero, from `shared_info.wc_*`.
///
/// Add system time to get the time of day: `now = wallclock.at(system_time)`. Xen keeps the
/// base fixed while system time advances, and moves it when the toolstack sets the domain's
/// time offset or the guest writes the emulated RTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock {
    /// Seconds since 1970-01-01 00:00:00 UTC.
    pub secs: u64,
    /// Always below 1 000 000 000.
    pub nanos: u32,
}

impl WallClock {
    /// The wall-clock time `system_time` after the base, saturating at the largest
    /// representable time.
    pub fn at(self, system_time: Instant) -> WallClock {
        let total = self.as_unix_nanos() + u128::from(system_time.as_nanos());
        match u64::try_from(total / u128::from(NANOS_PER_SEC)) {
            Ok(secs) => WallClock {
                secs,
                nanos: (total % u128::from(NANOS_PER_SEC)) as u32,
            },
            Err(_) => WallClock {
                secs: u64::MAX,
                nanos: (NANOS_PER_SEC - 1) as u32,
            },
        }
    }

    /// Nanoseconds since the Unix epoch.
    pub fn as_unix_nanos(self) -> u128 {
        u128::from(self.secs) * u128::from(NANOS_PER_SEC) + u128::from(self.nanos)
    }
}

/// Reads the wall-clock base from the shared-info page `mem` under `wc_version`'s seqlock.
///
/// The seconds are `wc_sec_hi << 32 | wc_sec` (x86_64 keeps `wc_sec_hi` in `shared_info`
/// itself, so the base does not wrap in 2106). A `wc_nsec` of a second or more, which Xen never
/// writes, is carried into the seconds, as Linux's `set_normalized_timespec64` does, rather than
/// rejected: the sum it encodes is still meaningful. The seconds saturate at `u64::MAX`.
pub fn read_wallclock(mem: &impl SharedMemory) -> Result<WallClock, PvclockError> {
    let (lo, hi, nsec) = read_consistent(mem, shared_info::WC_VERSION, || {
        Ok((
            mem.read_u32(shared_info::WC_SEC)?,
            mem.read_u32(shared_info::WC_SEC_HI)?,
            mem.read_u32(shared_info::WC_NSEC)?,
        ))
    })?;
    let secs = u64::from(hi) << 32 | u64::from(lo);
    let nsec = u64::from(nsec);
    Ok(WallClock {
        secs: secs.saturating_add(nsec / NANOS_PER_SEC),
        nanos: (nsec % NANOS_PER_SEC) as u32,
    })
}

/// The seqlock reader shared by both records: `copy` runs between two equal, even reads of the
/// version at `version_offset`.
fn read_consistent<T>(
    mem: &impl SharedMemory,
    version_offset: usize,
    copy: impl Fn() -> Result<T, OutOfBounds>,
) -> Result<T, PvclockError> {
    for _ in 0..MAX_ATTEMPTS {
        let before = mem.read_u32(version_offset)?;
        if before & 1 != 0 {
            continue;
        }
        mem.read_barrier();
        let value = copy()?;
        mem.read_barrier();
        if mem.read_u32(version_offset)? == before {
            return Ok(value);
        }
    }
    Err(PvclockError::Unstable {
        attempts: MAX_ATTEMPTS,
    })
}

/// A monotonic clock over one `vcpu_time_info` record.
///
/// Remembers the largest time it has returned and never returns less, so the kernel's
/// [`Instant`]s stay ordered even if successive records disagree by a few nanoseconds.
///
/// [`Pvclock::now`] reads the one record fixed at construction. On more than one vCPU, keep a
/// single `Pvclock` and pass each vCPU's own reading
/// (`read_vcpu_time(..)?.system_time_at(tsc)`) through [`Pvclock::clamp`], so the clamp spans
/// every vCPU as Linux's global `last_value` does.
#[derive(Debug)]
pub struct Pvclock {
    time_offset: usize,
    last: AtomicU64,
}

impl Pvclock {
    /// A clock reading the `vcpu_time_info` at `time_offset` of the shared region.
    pub const fn new(time_offset: usize) -> Self {
        Pvclock {
            time_offset,
            last: AtomicU64::new(0),
        }
    }

    /// A clock reading vCPU `vcpu`'s record in the shared-info page, or `None` past
    /// `XEN_LEGACY_MAX_VCPUS`.
    pub fn for_vcpu(vcpu: usize) -> Option<Self> {
        vcpu_time_offset(vcpu).map(Self::new)
    }

    /// The time when the TSC read `tsc`: the record's extrapolation, or the last time returned
    /// if that is later.
    pub fn now(&self, mem: &impl SharedMemory, tsc: u64) -> Result<Instant, PvclockError> {
        let time = read_vcpu_time(mem, self.time_offset)?;
        Ok(self.clamp(time.system_time_at(tsc)))
    }

    /// `nanos`, or the largest time returned so far if that is later; records the result.
    pub fn clamp(&self, nanos: u64) -> Instant {
        // fetch_max is Linux's cmpxchg loop on last_value in one instruction sequence.
        let previous = self.last.fetch_max(nanos, Ordering::Relaxed);
        Instant::from_nanos(previous.max(nanos))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use ringbolt_shmem::Fault;
    use ringbolt_shmem::fake::{Event, FakeSharedMemory};
    use std::cell::Cell;
    use std::rc::Rc;

    const VCPU0: usize = vcpu_info::TIME;

    /// Lays a record out at `offset` the way Xen does, version last.
    fn publish(mem: &FakeSharedMemory, offset: usize, version: u32, t: VcpuTime) {
        mem.peer_write_u64(offset + vcpu_time_info::TSC_TIMESTAMP, t.tsc_timestamp);
        mem.peer_write_u64(offset + vcpu_time_info::SYSTEM_TIME, t.system_time);
        mem.peer_write_u32(offset + vcpu_time_info::TSC_TO_SYSTEM_MUL, t.scale.mul);
        mem.peer_write_u8(offset + vcpu_time_info::TSC_SHIFT, t.scale.shift as u8);
        mem.peer_write_u32(offset + vcpu_time_info::VERSION, version);
    }

    fn put_u32(bytes: &mut [u8], offset: usize, value: u32) {
        bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }

    fn put_u64(bytes: &mut [u8], offset: usize, value: u64) {
        bytes[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
    }

    fn version_reads(mem: &FakeSharedMemory, version_offset: usize) -> usize {
        mem.events()
            .iter()
            .filter(|e| {
                **e == Event::Load {
                    offset: version_offset,
                    width: 4,
                }
            })
            .count()
    }

    fn three_ghz(tsc_timestamp: u64, system_time: u64) -> VcpuTime {
        VcpuTime {
            tsc_timestamp,
            system_time,
            scale: TscScale::from_hz(3_000_000_000).unwrap(),
        }
    }

    /// 1 GHz: mul 2^31, shift 1, exactly a nanosecond per tick.
    fn one_ghz(tsc_timestamp: u64, system_time: u64) -> VcpuTime {
        VcpuTime {
            tsc_timestamp,
            system_time,
            scale: TscScale::from_hz(1_000_000_000).unwrap(),
        }
    }

    #[test]
    fn locates_each_vcpus_record_in_shared_info() {
        assert_eq!(vcpu_time_offset(0), Some(32));
        assert_eq!(vcpu_time_offset(1), Some(96));
        assert_eq!(vcpu_time_offset(31), Some(31 * 64 + 32));
        assert_eq!(vcpu_time_offset(32), None);
        assert!(Pvclock::for_vcpu(32).is_none());
    }

    #[test]
    fn reads_a_stable_record_with_one_pass() {
        let mem = FakeSharedMemory::page();
        let t = three_ghz(1_000_000, 5_000_000_000);
        publish(&mem, VCPU0, 2, t);
        assert_eq!(read_vcpu_time(&mem, VCPU0), Ok(t));
        // version, barrier, four fields, barrier, version.
        let events = mem.events();
        assert_eq!(events.len(), 8);
        assert_eq!(events[1], Event::ReadBarrier);
        assert_eq!(events[6], Event::ReadBarrier);
        assert_eq!(version_reads(&mem, VCPU0), 2);
    }

    #[test]
    fn extrapolates_a_three_ghz_guest() {
        // 3 GHz: shift -1, mul 0xAAAAAAAA (TscScale::from_hz).
        let t = three_ghz(1_000_000, 5_000_000_000);
        assert_eq!(t.scale.shift, -1);
        assert_eq!(t.system_time_at(1_000_000), 5_000_000_000);
        // One second of ticks is 999_999_999 ns after truncation.
        assert_eq!(t.system_time_at(1_000_000 + 3_000_000_000), 5_999_999_999);
        // 3 ticks = 1 ns; the negative shift drops the odd tick first.
        assert_eq!(t.system_time_at(1_000_000 + 3), 5_000_000_000);
        assert_eq!(t.system_time_at(1_000_000 + 4), 5_000_000_001);
    }

    #[test]
    fn extrapolates_with_the_scale_read_from_memory() {
        // A record as Xen publishes it for a ~3.3 GHz TSC: mul 0x9a1d6d0f, shift -1.
        let mem = FakeSharedMemory::page();
        let t = VcpuTime {
            tsc_timestamp: 0x10_0000_0000,
            system_time: 42_000_000_000,
            scale: TscScale {
                mul: 0x9a1d_6d0f,
                shift: -1,
            },
        };
        publish(&mem, VCPU0, 8, t);
        let read = read_vcpu_time(&mem, VCPU0).unwrap();
        assert_eq!(read.scale.shift, -1);
        assert_eq!(
            read.system_time_at(0x10_0000_0000 + 3_322_195_642),
            42_999_999_999
        );
    }

    #[test]
    fn extrapolates_with_a_positive_shift_past_64_bits() {
        // 10 MHz (shift 7): delta << 7 overflows 64 bits although the answer fits.
        let t = VcpuTime {
            tsc_timestamp: 7,
            system_time: 1,
            scale: TscScale::from_hz(10_000_000).unwrap(),
        };
        assert_eq!(t.scale.shift, 7);
        let delta = 150_000_000_000_000_000;
        assert!(delta > u64::MAX >> 7);
        assert_eq!(t.system_time_at(7 + delta), 15_000_000_000_000_000_001);
        // Past u64::MAX nanoseconds: saturates, never wraps.
        assert_eq!(t.system_time_at(7 + i64::MAX as u64), u64::MAX);
    }

    #[test]
    fn extrapolates_from_a_stamp_before_the_guest_tsc_started() {
        // What Xen 4.17 gave a PVH guest at boot: the stamp is "negative" in the guest's TSC.
        let stamp = 0u64.wrapping_sub(396_762_931);
        let t = one_ghz(stamp, 10_073_889_641);
        assert_eq!(
            t.system_time_at(674_133_804),
            10_073_889_641 + 396_762_931 + 674_133_804
        );
        assert_eq!(t.system_time_at(stamp - 1), 10_073_889_641);
    }

    #[test]
    fn tsc_before_the_timestamp_counts_as_no_time() {
        let t = three_ghz(1_000_000, 5_000_000_000);
        assert_eq!(t.system_time_at(999_999), 5_000_000_000);
        assert_eq!(t.system_time_at(0), 5_000_000_000);
    }

    #[test]
    fn retries_while_the_version_is_odd() {
        let mem = FakeSharedMemory::page();
        let t = three_ghz(100, 200);
        publish(&mem, VCPU0, 5, t);
        // Xen finishes its update after our third look at the version.
        let looks = Rc::new(Cell::new(0));
        let seen = looks.clone();
        mem.set_read_hook(move |load, bytes| {
            if load.offset == VCPU0 {
                seen.set(seen.get() + 1);
                if seen.get() == 3 {
                    put_u32(bytes, VCPU0, 6);
                }
            }
        });
        assert_eq!(read_vcpu_time(&mem, VCPU0), Ok(t));
        // Two odd reads, then the even read and the confirming read.
        assert_eq!(version_reads(&mem, VCPU0), 4);
        // No field was copied during the odd reads.
        let field_loads = mem
            .events()
            .iter()
            .filter(|e| matches!(e, Event::Load { offset, .. } if *offset != VCPU0))
            .count();
        assert_eq!(field_loads, 4);
    }

    #[test]
    fn discards_a_copy_torn_by_an_update_mid_read() {
        let mem = FakeSharedMemory::page();
        publish(&mem, VCPU0, 2, three_ghz(1000, 10_000));
        // Xen rewrites the whole record just before we load system_time: the first copy mixes
        // the old tsc_timestamp with the new system_time, and only the version shows it.
        let updated = Rc::new(Cell::new(false));
        let flag = updated.clone();
        mem.set_read_hook(move |load, bytes| {
            if load.offset == VCPU0 + vcpu_time_info::SYSTEM_TIME && !flag.get() {
                flag.set(true);
                put_u64(bytes, VCPU0 + vcpu_time_info::TSC_TIMESTAMP, 9000);
                put_u64(bytes, VCPU0 + vcpu_time_info::SYSTEM_TIME, 90_000);
                put_u32(bytes, VCPU0, 4);
            }
        });
        assert_eq!(read_vcpu_time(&mem, VCPU0), Ok(three_ghz(9000, 90_000)));
        assert!(updated.get());
        assert_eq!(version_reads(&mem, VCPU0), 4);
    }

    #[test]
    fn gives_up_on_a_record_stuck_mid_update() {
        let mem = FakeSharedMemory::page();
        publish(&mem, VCPU0, 7, three_ghz(1, 2));
        assert_eq!(
            read_vcpu_time(&mem, VCPU0),
            Err(PvclockError::Unstable {
                attempts: MAX_ATTEMPTS
            })
        );
        assert_eq!(version_reads(&mem, VCPU0), MAX_ATTEMPTS as usize);
    }

    #[test]
    fn gives_up_on_a_record_that_never_holds_still() {
        let mem = FakeSharedMemory::page();
        publish(&mem, VCPU0, 2, three_ghz(1, 2));
        // Every look at the version sees a new, even one: each copy is suspect.
        let version = Rc::new(Cell::new(2u32));
        mem.set_read_hook(move |load, bytes| {
            if load.offset == VCPU0 {
                version.set(version.get() + 2);
                put_u32(bytes, VCPU0, version.get());
            }
        });
        assert_eq!(
            read_vcpu_time(&mem, VCPU0),
            Err(PvclockError::Unstable {
                attempts: MAX_ATTEMPTS
            })
        );
        assert_eq!(version_reads(&mem, VCPU0), 2 * MAX_ATTEMPTS as usize);
    }

    #[test]
    fn rejects_a_record_outside_the_region() {
        let mem = FakeSharedMemory::new(64);
        assert!(matches!(
            read_vcpu_time(&mem, 48),
            Err(PvclockError::OutOfBounds(OutOfBounds {
                fault: Fault::PastEnd,
                ..
            }))
        ));
        assert!(matches!(
            read_vcpu_time(&mem, usize::MAX - 8),
            Err(PvclockError::OutOfBounds(_))
        ));
        assert!(matches!(
            read_vcpu_time(&mem, 4),
            Err(PvclockError::OutOfBounds(OutOfBounds {
                fault: Fault::Misaligned,
                ..
            }))
        ));
        assert!(matches!(
            read_wallclock(&mem),
            Err(PvclockError::OutOfBounds(_))
        ));
    }

    #[test]
    fn clamps_readings_that_step_backwards() {
        let mem = FakeSharedMemory::page();
        let clock = Pvclock::for_vcpu(0).unwrap();
        publish(&mem, VCPU0, 2, one_ghz(3_000, 1_000_000));
        assert_eq!(clock.now(&mem, 6_000), Ok(Instant::from_nanos(1_003_000)));
        // A new record a little behind the old extrapolation (TSC skew between pCPUs).
        publish(&mem, VCPU0, 4, one_ghz(6_000, 1_002_500));
        assert_eq!(clock.now(&mem, 6_200), Ok(Instant::from_nanos(1_003_000)));
        // Time catches up and moves on.
        assert_eq!(clock.now(&mem, 7_000), Ok(Instant::from_nanos(1_003_500)));
        assert_eq!(clock.clamp(5), Instant::from_nanos(1_003_500));
        assert_eq!(clock.clamp(1_004_000), Instant::from_nanos(1_004_000));
    }

    #[test]
    fn clock_reports_an_unreadable_record_without_moving() {
        let mem = FakeSharedMemory::page();
        let clock = Pvclock::new(VCPU0);
        publish(&mem, VCPU0, 2, one_ghz(0, 500));
        assert_eq!(clock.now(&mem, 0), Ok(Instant::from_nanos(500)));
        mem.peer_write_u32(VCPU0, 3);
        assert!(matches!(
            clock.now(&mem, 10),
            Err(PvclockError::Unstable { .. })
        ));
        mem.peer_write_u32(VCPU0, 4);
        assert_eq!(clock.now(&mem, 3), Ok(Instant::from_nanos(503)));
    }

    fn publish_wallclock(mem: &FakeSharedMemory, version: u32, sec_hi: u32, sec: u32, nsec: u32) {
        mem.peer_write_u32(shared_info::WC_SEC, sec);
        mem.peer_write_u32(shared_info::WC_SEC_HI, sec_hi);
        mem.peer_write_u32(shared_info::WC_NSEC, nsec);
        mem.peer_write_u32(shared_info::WC_VERSION, version);
    }

    #[test]
    fn reads_the_wallclock_base() {
        let mem = FakeSharedMemory::page();
        // Booted at Unix 1704066200.25; 1000.75 s later it is 1704067201.0.
        publish_wallclock(&mem, 2, 0, 1_704_066_200, 250_000_000);
        let base = read_wallclock(&mem).unwrap();
        assert_eq!(
            base,
            WallClock {
                secs: 1_704_066_200,
                nanos: 250_000_000
            }
        );
        let now = base.at(Instant::from_nanos(999_750_000_000 + 1_000_000_000));
        assert_eq!(
            now,
            WallClock {
                secs: 1_704_067_201,
                nanos: 0
            }
        );
        assert_eq!(now.as_unix_nanos(), 1_704_067_201_000_000_000);
        assert_eq!(version_reads(&mem, shared_info::WC_VERSION), 2);
    }

    #[test]
    fn combines_the_high_seconds_word() {
        let mem = FakeSharedMemory::page();
        // 2106-02-07T06:28:16Z is 2^32 seconds: the low word alone would wrap to 1970.
        publish_wallclock(&mem, 10, 1, 5, 7);
        assert_eq!(
            read_wallclock(&mem),
            Ok(WallClock {
                secs: (1 << 32) + 5,
                nanos: 7
            })
        );
    }

    #[test]
    fn carries_excess_nanoseconds_into_seconds() {
        let mem = FakeSharedMemory::page();
        publish_wallclock(&mem, 2, 0, 100, 2_500_000_000);
        assert_eq!(
            read_wallclock(&mem),
            Ok(WallClock {
                secs: 102,
                nanos: 500_000_000
            })
        );
        // All-ones words: the carry saturates instead of overflowing.
        publish_wallclock(&mem, 4, u32::MAX, u32::MAX, u32::MAX);
        assert_eq!(
            read_wallclock(&mem),
            Ok(WallClock {
                secs: u64::MAX,
                nanos: 294_967_295
            })
        );
    }

    #[test]
    fn retries_the_wallclock_while_it_is_being_set() {
        let mem = FakeSharedMemory::page();
        publish_wallclock(&mem, 1, 0, 1, 0);
        let looks = Rc::new(Cell::new(0));
        let seen = looks.clone();
        mem.set_read_hook(move |load, bytes| {
            if load.offset == shared_info::WC_VERSION {
                seen.set(seen.get() + 1);
                if seen.get() == 2 {
                    put_u32(bytes, shared_info::WC_SEC, 1_700_000_000);
                    put_u32(bytes, shared_info::WC_VERSION, 2);
                }
            }
        });
        assert_eq!(
            read_wallclock(&mem),
            Ok(WallClock {
                secs: 1_700_000_000,
                nanos: 0
            })
        );
        assert_eq!(looks.get(), 3);
    }

    #[test]
    fn wallclock_saturates_far_in_the_future() {
        let base = WallClock {
            secs: u64::MAX - 1,
            nanos: 999_999_999,
        };
        assert_eq!(
            base.at(Instant::from_nanos(1)),
            WallClock {
                secs: u64::MAX,
                nanos: 0
            }
        );
        assert_eq!(
            base.at(Instant::MAX),
            WallClock {
                secs: u64::MAX,
                nanos: 999_999_999
            }
        );
    }
}
