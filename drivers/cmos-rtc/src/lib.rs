//! MC146818 CMOS real-time clock: wall-clock time at boot on PC-compatible VMMs.
//!
//! QEMU `pc` / `microvm`, Firecracker-style VMMs and Xen HVM all emulate the Motorola MC146818
//! behind index/data ports 0x70/0x71. The kernel reads it once at boot to anchor the monotonic
//! clock to UTC; this crate turns the raw registers into a validated [`DateTime`].
//!
//! The hardware is reached only through [`CmosPorts`], so the whole driver, including its
//! retry logic, runs on the host against a scripted fake.
//!
//! # Reading a consistent time
//!
//! The chip updates its registers once a second, and a read that straddles the update can
//! return a torn value (seconds from 59, minutes from the next hour). The datasheet's
//! guarantee is that once Update-In-Progress (register A bit 7) reads 0, no update begins for
//! at least 244 us. A guest vCPU can be descheduled for longer than that between two port
//! reads, so we do not rely on it alone: as OSDev's "CMOS" page recommends, we wait for UIP to
//! clear, read every register, and repeat until two snapshots agree. Both loops are bounded:
//! a broken or hostile emulation yields an error, never a hang or a wrong date.
//!
//! # Register map (MC146818A datasheet, "Address Map"; OSDev "CMOS")
//!
//! | index | contents                                   |
//! |-------|--------------------------------------------|
//! | 0x00  | seconds                                    |
//! | 0x02  | minutes                                    |
//! | 0x04  | hours (12-hour mode: bit 7 = PM)           |
//! | 0x07  | day of month                               |
//! | 0x08  | month                                      |
//! | 0x09  | year within century                        |
//! | 0x0A  | status A: bit 7 = UIP                      |
//! | 0x0B  | status B: bit 2 = binary, bit 1 = 24-hour  |
//! | 0x32  | century, where ACPI's FADT `CENTURY` says  |
//!
//! Every time register, the century included, is BCD unless status B bit 2 is set.
#![no_std]
#![forbid(unsafe_code)]

use core::fmt;

pub use ringbolt_time::civil::{CivilError, DateTime};

/// Register indices and status bits from the MC146818A datasheet.
mod reg {
    pub const SECONDS: u8 = 0x00;
    pub const MINUTES: u8 = 0x02;
    pub const HOURS: u8 = 0x04;
    pub const DAY_OF_MONTH: u8 = 0x07;
    pub const MONTH: u8 = 0x08;
    pub const YEAR: u8 = 0x09;
    pub const STATUS_A: u8 = 0x0A;
    pub const STATUS_B: u8 = 0x0B;

    /// Status A: an update cycle is in progress or begins within 244 us.
    pub const A_UIP: u8 = 1 << 7;
    /// Status B "DM": time registers are binary rather than BCD.
    pub const B_BINARY: u8 = 1 << 2;
    /// Status B "24/12": hours count 0-23 rather than 1-12 with a PM flag.
    pub const B_24_HOUR: u8 = 1 << 1;
    /// Hours register in 12-hour mode: afternoon.
    pub const HOURS_PM: u8 = 1 << 7;

    /// First byte of battery-backed RAM; below it are the clock and status registers.
    pub const FIRST_RAM: u8 = 0x0E;
    /// Highest index: bit 7 of the index port is the NMI-disable bit, not an address bit.
    pub const LAST_RAM: u8 = 0x7F;
}

/// Status-A reads to wait for UIP to clear before giving up.
///
/// UIP is high for at most 244 us before an update plus the 1984 us update cycle (datasheet,
/// "Update Cycle"). Each poll is two port accesses, at least about a microsecond on hardware
/// (ISA timing) or in a VM (two exits), so 10 000 polls is several times the longest genuine
/// wait while still bounding a stuck emulation to milliseconds.
pub const UIP_POLL_LIMIT: usize = 10_000;

/// Snapshots to take before declaring the clock unstable.
///
/// An honest clock changes at most once a second, so at most one pair of snapshots disagrees
/// unless the guest is descheduled across two updates; eight leaves room for that.
pub const SNAPSHOT_LIMIT: usize = 8;

/// The index/data port pair 0x70/0x71.
///
/// The kernel implements it with port I/O; tests with a fake register file.
pub trait CmosPorts {
    /// Select `register` (0x00-0x7F) on port 0x70, then read port 0x71.
    ///
    /// The implementation keeps port 0x70's bit 7 (NMI disable) as the rest of the kernel
    /// wants it; this crate never passes it.
    fn read(&mut self, register: u8) -> u8;
}

/// Lend ports to an [`Rtc`] and keep them afterwards.
impl<P: CmosPorts + ?Sized> CmosPorts for &mut P {
    fn read(&mut self, register: u8) -> u8 {
        (**self).read(register)
    }
}

/// Why no time could be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcError {
    /// UIP stayed set for [`UIP_POLL_LIMIT`] polls: the clock is stopped or the emulation broken.
    UpdateNeverFinished,
    /// [`SNAPSHOT_LIMIT`] snapshots without two consecutive ones agreeing.
    Unstable,
    /// A BCD register held a nibble above 9.
    InvalidBcd { register: u8, value: u8 },
    /// A register decoded to a value its field cannot hold (minute 61, month 13, 12-hour hour 0).
    InvalidField { register: u8, value: u8 },
    /// Every field plausible on its own, but not a date (February 30) or not in 1970..=9999.
    InvalidDate(CivilError),
}

impl fmt::Display for RtcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RtcError::UpdateNeverFinished => {
                write!(
                    f,
                    "RTC update-in-progress never cleared after {UIP_POLL_LIMIT} polls"
                )
            }
            RtcError::Unstable => {
                write!(
                    f,
                    "RTC gave no two equal readings in {SNAPSHOT_LIMIT} tries"
                )
            }
            RtcError::InvalidBcd { register, value } => {
                write!(
                    f,
                    "RTC register {register:#04x} holds invalid BCD {value:#04x}"
                )
            }
            RtcError::InvalidField { register, value } => {
                write!(
                    f,
                    "RTC register {register:#04x} holds out-of-range {value:#04x}"
                )
            }
            RtcError::InvalidDate(e) => write!(f, "RTC date invalid: {e}"),
        }
    }
}

impl core::error::Error for RtcError {}

impl From<CivilError> for RtcError {
    fn from(e: CivilError) -> Self {
        RtcError::InvalidDate(e)
    }
}

/// The clock, read through `P`.
#[derive(Debug)]
pub struct Rtc<P: CmosPorts> {
    ports: P,
    century_register: Option<u8>,
}

/// Raw register values from one pass; compared byte for byte between passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Snapshot {
    second: u8,
    minute: u8,
    hour: u8,
    day: u8,
    month: u8,
    year: u8,
    status_b: u8,
    century: Option<u8>,
}

impl<P: CmosPorts> Rtc<P> {
    /// `century_register` is the FADT's `CENTURY` field (ACPI 6.5 section 5.2.9, offset 108;
    /// QEMU uses 0x32), `None` if the FADT has zero there or there is no ACPI.
    ///
    /// An index outside battery-backed RAM (0x0E-0x7F) would alias a clock or status register,
    /// so firmware that reports one is ignored as if it reported none.
    pub fn new(ports: P, century_register: Option<u8>) -> Self {
        let century_register =
            century_register.filter(|r| (reg::FIRST_RAM..=reg::LAST_RAM).contains(r));
        Rtc {
            ports,
            century_register,
        }
    }

    /// The current date and time in UTC, read consistently and validated.
    ///
    /// The RTC is assumed to keep UTC, as QEMU's `-rtc base=utc` (its default) and Xen do.
    pub fn read_datetime(&mut self) -> Result<DateTime, RtcError> {
        self.read_stable_snapshot().and_then(decode)
    }

    /// The current time as seconds since the Unix epoch.
    pub fn read_unix(&mut self) -> Result<u64, RtcError> {
        self.read_datetime().map(DateTime::to_unix)
    }

    /// Snapshots until two in a row are equal.
    fn read_stable_snapshot(&mut self) -> Result<Snapshot, RtcError> {
        let mut previous = self.read_snapshot()?;
        for _ in 1..SNAPSHOT_LIMIT {
            let current = self.read_snapshot()?;
            if current == previous {
                return Ok(current);
            }
            previous = current;
        }
        Err(RtcError::Unstable)
    }

    /// One pass over the time registers, started just after UIP reads clear.
    fn read_snapshot(&mut self) -> Result<Snapshot, RtcError> {
        self.wait_for_update_to_finish()?;
        Ok(Snapshot {
            second: self.ports.read(reg::SECONDS),
            minute: self.ports.read(reg::MINUTES),
            hour: self.ports.read(reg::HOURS),
            day: self.ports.read(reg::DAY_OF_MONTH),
            month: self.ports.read(reg::MONTH),
            year: self.ports.read(reg::YEAR),
            status_b: self.ports.read(reg::STATUS_B),
            century: self.century_register.map(|r| self.ports.read(r)),
        })
    }

    fn wait_for_update_to_finish(&mut self) -> Result<(), RtcError> {
        for _ in 0..UIP_POLL_LIMIT {
            if self.ports.read(reg::STATUS_A) & reg::A_UIP == 0 {
                return Ok(());
            }
        }
        Err(RtcError::UpdateNeverFinished)
    }
}

/// Turns raw registers into a date, rejecting anything the chip could not have meant.
fn decode(raw: Snapshot) -> Result<DateTime, RtcError> {
    let binary = raw.status_b & reg::B_BINARY != 0;
    // Errors name the register and the raw byte as read, so a log shows what the chip said.
    let field = |register: u8, value: u8, range: core::ops::RangeInclusive<u8>| {
        let decoded = decode_number(value & !pm_bit(register, raw.status_b), binary)
            .ok_or(RtcError::InvalidBcd { register, value })?;
        if range.contains(&decoded) {
            Ok(decoded)
        } else {
            Err(RtcError::InvalidField { register, value })
        }
    };

    let second = field(reg::SECONDS, raw.second, 0..=59)?;
    let minute = field(reg::MINUTES, raw.minute, 0..=59)?;
    let hour = if raw.status_b & reg::B_24_HOUR != 0 {
        field(reg::HOURS, raw.hour, 0..=23)?
    } else {
        // 12-hour mode: 12 AM is midnight, 12 PM is noon, 1-11 PM are 13-23.
        match (
            raw.hour & reg::HOURS_PM != 0,
            field(reg::HOURS, raw.hour, 1..=12)?,
        ) {
            (false, 12) => 0,
            (true, 12) => 12,
            (false, h) => h,
            (true, h) => h + 12,
        }
    };
    let day = field(reg::DAY_OF_MONTH, raw.day, 1..=31)?;
    let month = field(reg::MONTH, raw.month, 1..=12)?;
    let year_in_century = field(reg::YEAR, raw.year, 0..=99)?;

    // The century register when it decodes to a plausible century; otherwise the common PC
    // window, which covers the years this kernel can meet without one.
    let century = raw
        .century
        .and_then(|c| decode_number(c, binary))
        .filter(|c| (19..=99).contains(c))
        .unwrap_or(if year_in_century < 70 { 20 } else { 19 });
    let year = u16::from(century) * 100 + u16::from(year_in_century);

    Ok(DateTime::new(year, month, day, hour, minute, second)?)
}

/// The bit of `register` that is a flag rather than part of its number: PM in 12-hour hours.
fn pm_bit(register: u8, status_b: u8) -> u8 {
    if register == reg::HOURS && status_b & reg::B_24_HOUR == 0 {
        reg::HOURS_PM
    } else {
        0
    }
}

/// A register's number in the chip's current data mode; `None` for a nibble above 9 in BCD.
fn decode_number(value: u8, binary: bool) -> Option<u8> {
    if binary {
        return Some(value);
    }
    let (tens, ones) = (value >> 4, value & 0x0F);
    (tens <= 9 && ones <= 9).then_some(tens * 10 + ones)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec::Vec;

    const CENTURY: u8 = 0x32;

    /// A register file with scripted misbehaviour.
    struct FakeCmos {
        regs: [u8; 128],
        /// Status-A reads still to report UIP set; `usize::MAX` for a clock that never settles.
        uip_polls: usize,
        /// Writes applied right after the first read of the seconds register: an update that
        /// lands in the middle of the first snapshot.
        update_after_first_seconds_read: Option<Vec<(u8, u8)>>,
        /// Bump the seconds on every read of them: a clock that never reads the same twice.
        always_ticking: bool,
        reads: usize,
    }

    impl FakeCmos {
        /// 2026-11-25 06:01:02 in BCD, 24-hour mode, century register set.
        fn new() -> Self {
            let mut regs = [0; 128];
            regs[usize::from(reg::SECONDS)] = 0x02;
            regs[usize::from(reg::MINUTES)] = 0x01;
            regs[usize::from(reg::HOURS)] = 0x06;
            regs[usize::from(reg::DAY_OF_MONTH)] = 0x25;
            regs[usize::from(reg::MONTH)] = 0x11;
            regs[usize::from(reg::YEAR)] = 0x26;
            regs[usize::from(reg::STATUS_A)] = 0x26; // 32.768 kHz divider, 1024 Hz rate
            regs[usize::from(reg::STATUS_B)] = reg::B_24_HOUR;
            regs[usize::from(CENTURY)] = 0x20;
            FakeCmos {
                regs,
                uip_polls: 0,
                update_after_first_seconds_read: None,
                always_ticking: false,
                reads: 0,
            }
        }

        /// 2099-12-31 23:45:59 in binary, 24-hour mode.
        fn binary() -> Self {
            FakeCmos::new().with(&[
                (reg::STATUS_B, reg::B_24_HOUR | reg::B_BINARY),
                (reg::SECONDS, 59),
                (reg::MINUTES, 45),
                (reg::HOURS, 23),
                (reg::DAY_OF_MONTH, 31),
                (reg::MONTH, 12),
                (reg::YEAR, 99),
                (CENTURY, 20),
            ])
        }

        fn with(mut self, writes: &[(u8, u8)]) -> Self {
            for &(r, v) in writes {
                self.regs[usize::from(r)] = v;
            }
            self
        }
    }

    impl CmosPorts for FakeCmos {
        fn read(&mut self, register: u8) -> u8 {
            assert!(
                register <= reg::LAST_RAM,
                "NMI bit passed in index {register:#x}"
            );
            self.reads += 1;
            let value = self.regs[usize::from(register)];
            match register {
                reg::STATUS_A if self.uip_polls > 0 => {
                    self.uip_polls -= 1;
                    value | reg::A_UIP
                }
                reg::SECONDS => {
                    if let Some(writes) = self.update_after_first_seconds_read.take() {
                        for (r, v) in writes {
                            self.regs[usize::from(r)] = v;
                        }
                    }
                    if self.always_ticking {
                        self.regs[usize::from(reg::SECONDS)] = (value + 1) % 60;
                    }
                    value
                }
                _ => value,
            }
        }
    }

    fn read(fake: FakeCmos, century: Option<u8>) -> Result<DateTime, RtcError> {
        Rtc::new(fake, century).read_datetime()
    }

    fn date(year: u16, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> DateTime {
        DateTime::new(year, month, day, hour, minute, second).unwrap()
    }

    #[test]
    fn reads_bcd_24_hour_time_with_century_register() {
        let mut fake = FakeCmos::new();
        let mut rtc = Rtc::new(&mut fake, Some(CENTURY));
        assert_eq!(rtc.read_datetime(), Ok(date(2026, 11, 25, 6, 1, 2)));
        assert_eq!(rtc.read_unix(), Ok(1_795_586_462));
        // Two snapshots of 1 UIP poll + 8 registers each, per call.
        assert_eq!(fake.reads, 2 * 2 * 9);
    }

    #[test]
    fn reads_binary_mode() {
        assert_eq!(
            read(FakeCmos::binary(), Some(CENTURY)),
            Ok(date(2099, 12, 31, 23, 45, 59))
        );
    }

    #[test]
    fn decodes_12_hour_mode() {
        let cases = [
            (0x12, 0),                  // 12 AM: midnight
            (0x01, 1),                  // 1 AM
            (0x11, 11),                 // 11 AM
            (reg::HOURS_PM | 0x12, 12), // 12 PM: noon
            (reg::HOURS_PM | 0x01, 13), // 1 PM
            (reg::HOURS_PM | 0x11, 23), // 11 PM
        ];
        for (raw, hour) in cases {
            let fake = FakeCmos::new().with(&[(reg::STATUS_B, 0), (reg::HOURS, raw)]);
            assert_eq!(
                read(fake, Some(CENTURY)).map(|d| d.hour),
                Ok(hour),
                "raw {raw:#x}"
            );
        }
        // Binary 12-hour mode keeps the PM flag in bit 7 too.
        for (raw, hour) in [(12, 0), (reg::HOURS_PM | 12, 12), (reg::HOURS_PM | 11, 23)] {
            let fake =
                FakeCmos::binary().with(&[(reg::STATUS_B, reg::B_BINARY), (reg::HOURS, raw)]);
            assert_eq!(
                read(fake, Some(CENTURY)),
                Ok(date(2099, 12, 31, hour, 45, 59)),
                "{raw:#x}"
            );
        }
    }

    #[test]
    fn rejects_impossible_12_hour_values() {
        for raw in [0x00, reg::HOURS_PM, 0x13, reg::HOURS_PM | 0x13] {
            let fake = FakeCmos::new().with(&[(reg::STATUS_B, 0), (reg::HOURS, raw)]);
            assert_eq!(
                read(fake, None),
                Err(RtcError::InvalidField {
                    register: reg::HOURS,
                    value: raw
                })
            );
        }
        let bad = reg::HOURS_PM | 0x1A;
        let fake = FakeCmos::new().with(&[(reg::STATUS_B, 0), (reg::HOURS, bad)]);
        assert_eq!(
            read(fake, None),
            Err(RtcError::InvalidBcd {
                register: reg::HOURS,
                value: bad
            })
        );
    }

    #[test]
    fn takes_the_century_from_its_register() {
        let fake = FakeCmos::new().with(&[(reg::YEAR, 0x85), (CENTURY, 0x21)]);
        assert_eq!(read(fake, Some(CENTURY)).map(|d| d.year), Ok(2185));
        let fake = FakeCmos::new().with(&[(reg::YEAR, 0x99), (CENTURY, 0x19)]);
        assert_eq!(read(fake, Some(CENTURY)).map(|d| d.year), Ok(1999));
    }

    #[test]
    fn windows_the_year_without_a_usable_century() {
        // No century register: 00-69 are 20xx, 70-99 are 19xx.
        let fake = FakeCmos::new().with(&[(reg::YEAR, 0x69), (CENTURY, 0x21)]);
        assert_eq!(read(fake, None).map(|d| d.year), Ok(2069));
        let fake = FakeCmos::new().with(&[(reg::YEAR, 0x70), (CENTURY, 0x21)]);
        assert_eq!(read(fake, None).map(|d| d.year), Ok(1970));
        // A century register that reads 0 (unimplemented) or garbage is ignored.
        for century in [0x00, 0xFF, 0x18] {
            let fake = FakeCmos::new().with(&[(CENTURY, century)]);
            assert_eq!(
                read(fake, Some(CENTURY)).map(|d| d.year),
                Ok(2026),
                "{century:#x}"
            );
        }
        // The FADT pointing into the clock registers: ignored, not decoded as a century.
        let mut fake = FakeCmos::new().with(&[(reg::SECONDS, 0x21)]);
        let mut rtc = Rtc::new(&mut fake, Some(reg::SECONDS));
        assert_eq!(rtc.read_datetime().map(|d| d.year), Ok(2026));
        assert_eq!(fake.reads, 2 * 8);
    }

    #[test]
    fn waits_out_update_in_progress() {
        let mut fake = FakeCmos::new();
        fake.uip_polls = 500;
        let mut rtc = Rtc::new(&mut fake, Some(CENTURY));
        assert_eq!(rtc.read_datetime(), Ok(date(2026, 11, 25, 6, 1, 2)));
        assert_eq!(fake.reads, 500 + 2 * 9);
    }

    #[test]
    fn gives_up_when_update_in_progress_never_clears() {
        let mut fake = FakeCmos::new();
        fake.uip_polls = usize::MAX;
        let mut rtc = Rtc::new(&mut fake, Some(CENTURY));
        assert_eq!(rtc.read_datetime(), Err(RtcError::UpdateNeverFinished));
        // Bounded, and no time register was read while the chip was updating.
        assert_eq!(fake.reads, UIP_POLL_LIMIT);
    }

    #[test]
    fn rollover_during_read_gives_the_later_consistent_time() {
        // 1999-12-31 23:59:59 ticks over after the first read of the seconds, so the first
        // snapshot is torn (:59 seconds with every other field from 2000-01-01 00:00).
        let mut fake = FakeCmos::new().with(&[
            (reg::SECONDS, 0x59),
            (reg::MINUTES, 0x59),
            (reg::HOURS, 0x23),
            (reg::DAY_OF_MONTH, 0x31),
            (reg::MONTH, 0x12),
            (reg::YEAR, 0x99),
            (CENTURY, 0x19),
        ]);
        fake.update_after_first_seconds_read = Some(Vec::from([
            (reg::SECONDS, 0x00),
            (reg::MINUTES, 0x00),
            (reg::HOURS, 0x00),
            (reg::DAY_OF_MONTH, 0x01),
            (reg::MONTH, 0x01),
            (reg::YEAR, 0x00),
            (CENTURY, 0x20),
        ]));
        let mut rtc = Rtc::new(&mut fake, Some(CENTURY));
        assert_eq!(rtc.read_datetime(), Ok(date(2000, 1, 1, 0, 0, 0)));
        // Torn snapshot, then two agreeing ones.
        assert_eq!(fake.reads, 3 * 9);
    }

    #[test]
    fn gives_up_on_a_clock_that_never_reads_the_same_twice() {
        let mut fake = FakeCmos::new();
        fake.always_ticking = true;
        let mut rtc = Rtc::new(&mut fake, Some(CENTURY));
        assert_eq!(rtc.read_datetime(), Err(RtcError::Unstable));
        assert_eq!(fake.reads, SNAPSHOT_LIMIT * 9);
    }

    #[test]
    fn rejects_invalid_bcd() {
        for (register, value) in [
            (reg::SECONDS, 0x5A),
            (reg::MINUTES, 0xA0),
            (reg::DAY_OF_MONTH, 0x1F),
            (reg::YEAR, 0xFF),
        ] {
            let fake = FakeCmos::new().with(&[(register, value)]);
            assert_eq!(
                read(fake, Some(CENTURY)),
                Err(RtcError::InvalidBcd { register, value })
            );
        }
    }

    #[test]
    fn rejects_out_of_range_fields() {
        for (register, value) in [
            (reg::SECONDS, 0x60),
            (reg::MINUTES, 0x99),
            (reg::HOURS, 0x24),
            (reg::DAY_OF_MONTH, 0x00),
            (reg::DAY_OF_MONTH, 0x32),
            (reg::MONTH, 0x00),
            (reg::MONTH, 0x13),
        ] {
            let fake = FakeCmos::new().with(&[(register, value)]);
            assert_eq!(
                read(fake, Some(CENTURY)),
                Err(RtcError::InvalidField { register, value })
            );
        }
        // Binary mode: 150 is a valid byte but not a year within a century.
        let fake = FakeCmos::binary().with(&[(reg::YEAR, 150)]);
        assert_eq!(
            read(fake, None),
            Err(RtcError::InvalidField {
                register: reg::YEAR,
                value: 150
            })
        );
    }

    #[test]
    fn rejects_days_the_month_does_not_have() {
        let fake = FakeCmos::new().with(&[(reg::MONTH, 0x02), (reg::DAY_OF_MONTH, 0x30)]);
        assert_eq!(
            read(fake, Some(CENTURY)),
            Err(RtcError::InvalidDate(CivilError::Day {
                year: 2026,
                month: 2,
                day: 30
            }))
        );
        // 29 February only in leap years.
        let fake = FakeCmos::new().with(&[(reg::MONTH, 0x02), (reg::DAY_OF_MONTH, 0x29)]);
        assert!(read(fake, Some(CENTURY)).is_err());
        let fake = FakeCmos::new().with(&[
            (reg::MONTH, 0x02),
            (reg::DAY_OF_MONTH, 0x29),
            (reg::YEAR, 0x24),
        ]);
        assert_eq!(read(fake, Some(CENTURY)), Ok(date(2024, 2, 29, 6, 1, 2)));
    }

    #[test]
    fn rejects_years_before_the_epoch() {
        let fake = FakeCmos::new().with(&[(reg::YEAR, 0x50), (CENTURY, 0x19)]);
        assert_eq!(
            read(fake, Some(CENTURY)),
            Err(RtcError::InvalidDate(CivilError::Year(1950)))
        );
    }

    #[test]
    fn errors_display_the_offending_register() {
        use std::format;
        let e = RtcError::InvalidBcd {
            register: 0x00,
            value: 0x5a,
        };
        assert_eq!(format!("{e}"), "RTC register 0x00 holds invalid BCD 0x5a");
        assert_eq!(
            format!("{}", RtcError::UpdateNeverFinished),
            "RTC update-in-progress never cleared after 10000 polls"
        );
    }
}
