//! The local APIC: one-shot timer for idle wake-ups, EOI, spurious vector.
//!
//! x2APIC (MSR access) when CPUID offers it, else xAPIC through its MMIO page.

use core::ptr::NonNull;

use hermit_sync::OnceCell;
use raw_cpuid::CpuId;
use volatile::VolatilePtr;
use x86_64::PhysAddr;

use crate::cpu::{self, rdmsr, wrmsr};
use crate::memory;

/// Interrupt vectors the kernel owns.
pub(crate) const TIMER_VECTOR: u8 = 0x30;
/// Xen's event-channel upcall on HVM/PVH (`HVMOP_set_evtchn_upcall_vector`).
pub(crate) const EVENT_UPCALL_VECTOR: u8 = 0xf3;
pub(crate) const SPURIOUS_VECTOR: u8 = 0xff;

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const APIC_BASE_ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
const X2APIC_MSR_BASE: u32 = 0x800;

/// Register offsets in the xAPIC page (x2APIC MSR = 0x800 + offset / 16).
mod reg {
    pub const EOI: u32 = 0x0b0;
    pub const SPURIOUS: u32 = 0x0f0;
    pub const LVT_TIMER: u32 = 0x320;
    pub const TIMER_INITIAL_COUNT: u32 = 0x380;
    pub const TIMER_CURRENT_COUNT: u32 = 0x390;
    pub const TIMER_DIVIDE: u32 = 0x3e0;
}

const SPURIOUS_APIC_ENABLE: u32 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
const DIVIDE_BY_16: u32 = 0b0011;

enum Access {
    X2Apic,
    /// The identity-mapped, uncached register page.
    Mmio(NonNull<u32>),
}

// SAFETY: the MMIO pointer names device registers, not Rust data; the one CPU that exists is
// the only accessor.
unsafe impl Send for Access {}
// SAFETY: as above: no two CPUs can reach the registers concurrently.
unsafe impl Sync for Access {}

pub(crate) struct LocalApic {
    access: Access,
    /// Timer ticks (after the divider) per second.
    timer_hz: u64,
}

static APIC: OnceCell<LocalApic> = OnceCell::new();

impl LocalApic {
    /// The register at `offset` in the MMIO page; the device changes it behind our back, so
    /// every access is volatile.
    fn mmio_register(base: NonNull<u32>, offset: u32) -> VolatilePtr<'static, u32> {
        // SAFETY: `base` is the APIC page, mapped uncached by `memory::map_mmio` for the life of
        // the kernel; `offset` is an architectural register inside that page (< 4096, 16-byte
        // aligned), so the pointer is valid and aligned for u32.
        unsafe { VolatilePtr::new(base.byte_add(offset as usize)) }
    }

    fn read(&self, offset: u32) -> u32 {
        match self.access {
            // SAFETY: x2APIC mode is enabled and `offset` is one of the architectural registers.
            Access::X2Apic => unsafe { rdmsr(X2APIC_MSR_BASE + offset / 16) as u32 },
            Access::Mmio(base) => Self::mmio_register(base, offset).read(),
        }
    }

    fn write(&self, offset: u32, value: u32) {
        match self.access {
            // SAFETY: as in `read`; the registers written here do not affect memory safety.
            Access::X2Apic => unsafe { wrmsr(X2APIC_MSR_BASE + offset / 16, u64::from(value)) },
            Access::Mmio(base) => Self::mmio_register(base, offset).write(value),
        }
    }
}

/// Enables the local APIC and measures its timer against the TSC (`tsc_hz`).
pub(crate) fn init(tsc_hz: u64) {
    let cpuid = CpuId::new();
    let x2apic = cpuid.get_feature_info().is_some_and(|f| f.has_x2apic());
    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC (all x86-64 CPUs); enabling the
    // APIC (and x2APIC mode, which CPUID just confirmed) does not touch memory.
    let base = unsafe { rdmsr(IA32_APIC_BASE) };
    let access = if x2apic {
        // SAFETY: as above.
        unsafe { wrmsr(IA32_APIC_BASE, base | APIC_BASE_ENABLE | APIC_BASE_X2APIC) };
        Access::X2Apic
    } else {
        // SAFETY: as above.
        unsafe { wrmsr(IA32_APIC_BASE, base | APIC_BASE_ENABLE) };
        let page = PhysAddr::new(base & APIC_BASE_ADDRESS_MASK);
        let registers = memory::map_mmio(page, 4096).as_mut_ptr::<u32>();
        Access::Mmio(NonNull::new(registers).expect("APIC page at address 0"))
    };
    let mut apic = LocalApic {
        access,
        timer_hz: 0,
    };
    apic.write(
        reg::SPURIOUS,
        SPURIOUS_APIC_ENABLE | u32::from(SPURIOUS_VECTOR),
    );
    apic.write(reg::TIMER_DIVIDE, DIVIDE_BY_16);
    apic.timer_hz = measure_timer(&apic, tsc_hz);
    apic.write(reg::LVT_TIMER, u32::from(TIMER_VECTOR)); // one-shot, unmasked
    log::info!(
        "apic: {} mode, timer {} kHz",
        if x2apic { "x2APIC" } else { "xAPIC" },
        apic.timer_hz / 1000
    );
    let _ = APIC.set(apic);
}

/// Counts timer ticks over ~5 ms of TSC time.
fn measure_timer(apic: &LocalApic, tsc_hz: u64) -> u64 {
    apic.write(reg::LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    let window = tsc_hz / 200;
    apic.write(reg::TIMER_INITIAL_COUNT, u32::MAX);
    let start = cpu::rdtsc();
    while cpu::rdtsc() - start < window {
        core::hint::spin_loop();
    }
    let elapsed_ticks = u64::from(u32::MAX - apic.read(reg::TIMER_CURRENT_COUNT));
    let elapsed_tsc = cpu::rdtsc() - start;
    apic.write(reg::TIMER_INITIAL_COUNT, 0);
    (elapsed_ticks * tsc_hz / elapsed_tsc.max(1)).max(1)
}

/// Arms the one-shot timer to fire after `nanos` (clamped to what the counter can hold; an
/// early wake-up is harmless, the executor just idles again).
pub(crate) fn arm_oneshot(nanos: u64) {
    if let Some(apic) = APIC.get() {
        let ticks = (u128::from(nanos) * u128::from(apic.timer_hz) / 1_000_000_000)
            .clamp(1, u128::from(u32::MAX));
        apic.write(reg::TIMER_INITIAL_COUNT, ticks as u32);
    }
}

/// Stops the timer.
pub(crate) fn disarm() {
    if let Some(apic) = APIC.get() {
        apic.write(reg::TIMER_INITIAL_COUNT, 0);
    }
}

/// Signals end of interrupt for the vector being handled.
pub(crate) fn end_of_interrupt() {
    if let Some(apic) = APIC.get() {
        apic.write(reg::EOI, 0);
    }
}
