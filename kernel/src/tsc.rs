//! The TSC as the monotonic clock, and its calibration.
//!
//! Calibration sources, most to least trusted:
//! 1. the hypervisor's own statement (CPUID 0x40000010, KVM/VMware/QEMU "TSC kHz" leaf),
//! 2. CPUID 0x15 (crystal ratio) or 0x16 (nominal base frequency),
//! 3. the i8254 PIT, channel 0, as a stopwatch.
//!
//! A CPUID figure is cross-checked against the PIT when one answers: emulators (QEMU TCG's
//! `-cpu max`) report model frequencies that have nothing to do with the host TSC the guest
//! actually reads, and a clock 30% off breaks every timeout.

use hermit_sync::OnceCell;
use raw_cpuid::CpuId;
use ringbolt_time::{Instant, TscScale};

use crate::cpu::{self, inb, outb};

/// A TSC-based monotonic clock: nanoseconds since `tsc_at_boot`.
pub(crate) struct TscClock {
    tsc_at_boot: u64,
    scale: OnceCell<TscScale>,
}

impl TscClock {
    pub(crate) const fn new(tsc_at_boot: u64) -> Self {
        TscClock {
            tsc_at_boot,
            scale: OnceCell::new(),
        }
    }

    pub(crate) fn tsc_at_boot(&self) -> u64 {
        self.tsc_at_boot
    }

    /// Sets the scale once calibrated; until then the clock reads zero.
    pub(crate) fn set_scale(&self, scale: TscScale) {
        let _ = self.scale.set(scale);
    }

    pub(crate) fn now(&self) -> Instant {
        match self.scale.get() {
            Some(scale) => Instant::from_nanos(
                scale.ticks_to_nanos(cpu::rdtsc().saturating_sub(self.tsc_at_boot)),
            ),
            None => Instant::ZERO,
        }
    }
}

/// Where the TSC frequency came from, for the boot log.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Source {
    HypervisorLeaf,
    Cpuid15,
    Cpuid16,
    Pit,
}

/// How far a CPUID frequency may stray from the PIT's before the PIT wins.
const CROSS_CHECK_TOLERANCE_PERCENT: u64 = 2;

/// Determines the TSC frequency in Hz. `None` if no source answers.
pub(crate) fn calibrate() -> Option<(u64, Source)> {
    let stated = cpuid_frequency();
    let measured = pit_frequency();
    match (stated, measured) {
        (Some((hz, source)), Some(pit_hz)) => {
            if hz.abs_diff(pit_hz) * 100 <= pit_hz * CROSS_CHECK_TOLERANCE_PERCENT {
                Some((hz, source))
            } else {
                log::warn!(
                    "tsc: {source:?} says {hz} Hz but the PIT measures {pit_hz} Hz; using the PIT"
                );
                Some((pit_hz, Source::Pit))
            }
        }
        (Some(stated), None) => Some(stated),
        (None, Some(pit_hz)) => Some((pit_hz, Source::Pit)),
        (None, None) => None,
    }
}

fn cpuid_frequency() -> Option<(u64, Source)> {
    let cpuid = CpuId::new();
    if let Some(khz) = cpuid
        .get_hypervisor_info()
        .and_then(|hv| hv.tsc_frequency())
        && khz != 0
    {
        return Some((u64::from(khz) * 1000, Source::HypervisorLeaf));
    }
    if let Some(hz) = cpuid.get_tsc_info().and_then(|info| info.tsc_frequency())
        && hz != 0
    {
        return Some((hz, Source::Cpuid15));
    }
    cpuid
        .get_processor_frequency_info()
        .map(|info| u64::from(info.processor_base_frequency()) * 1_000_000)
        .filter(|&hz| hz != 0)
        .map(|hz| (hz, Source::Cpuid16))
}

const PIT_HZ: u64 = 1_193_182;
/// ~5 ms of PIT ticks per measurement: long enough that polling jitter (a few µs a read under
/// TCG) stays below 0.1%, short
/// enough for boot.
const PIT_SAMPLE_TICKS: u64 = 5_966;
const PIT_CHANNEL0_DATA: u16 = 0x40;
const PIT_COMMAND: u16 = 0x43;
/// Channel 0, lobyte/hibyte access, mode 2 (rate generator), binary.
const PIT_CHANNEL0_RATE_GENERATOR: u8 = 0b0011_0100;
/// Counter-latch command for channel 0.
const PIT_CHANNEL0_LATCH: u8 = 0b0000_0000;
/// Reads of an unchanging counter before deciding there is no PIT (Firecracker has none, and
/// an absent device reads as all ones).
const PIT_MAX_STALLED_READS: u32 = 100_000;

/// Times [`PIT_SAMPLE_TICKS`] PIT ticks with the TSC, three times; the median, in Hz.
fn pit_frequency() -> Option<u64> {
    let mut samples = [0u64; 3];
    for sample in &mut samples {
        *sample = pit_sample()?;
    }
    samples.sort_unstable();
    Some(samples[1])
}

/// Reads the counter of channel 0 through a latch, so the two byte reads are consistent.
fn pit_read_channel0() -> u16 {
    // SAFETY: the PIT's command and channel 0 data ports; latching and reading the count has no
    // side effect beyond the PIT's read sequence, which this completes.
    unsafe {
        outb(PIT_COMMAND, PIT_CHANNEL0_LATCH);
        let low = inb(PIT_CHANNEL0_DATA);
        let high = inb(PIT_CHANNEL0_DATA);
        u16::from_le_bytes([low, high])
    }
}

/// Lets channel 0 free-run from 0xffff and follows its count (it wraps every ~55 ms) until
/// [`PIT_SAMPLE_TICKS`] have passed. Uses only ports 0x40 and 0x43, which every PIT has;
/// channel 2's gate and output live in port 0x61, which `microvm` lacks.
fn pit_sample() -> Option<u64> {
    // SAFETY: reprogramming channel 0 only changes the rate of IRQ 0, which is masked at the
    // 8259 (apic::init) and the I/O APIC (masked since reset); no memory effect.
    unsafe {
        outb(PIT_COMMAND, PIT_CHANNEL0_RATE_GENERATOR);
        outb(PIT_CHANNEL0_DATA, 0xff);
        outb(PIT_CHANNEL0_DATA, 0xff);
    }
    let mut previous = pit_read_channel0();
    let start = cpu::rdtsc();
    let mut elapsed = 0u64;
    let mut stalled = 0;
    while elapsed < PIT_SAMPLE_TICKS {
        let current = pit_read_channel0();
        if current == previous {
            stalled += 1;
            if stalled == PIT_MAX_STALLED_READS {
                return None;
            }
            continue;
        }
        stalled = 0;
        // Counting down from 0xffff; a larger value means it wrapped.
        elapsed += u64::from(previous.wrapping_sub(current) % 0xffff);
        previous = current;
    }
    let ticks = cpu::rdtsc() - start;
    Some(ticks * PIT_HZ / elapsed)
}
