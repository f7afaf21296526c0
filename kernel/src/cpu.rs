//! Thin, documented wrappers over the privileged instructions the kernel uses.
//!
//! Only plain-VMM and HVM platforms call the port and MSR helpers; a Xen PV guest runs in ring 3
//! where they fault, which is why they are reached only through the platform modules.

use x86_64::instructions::port::Port;
use x86_64::registers::model_specific::Msr;

/// Reads the time-stamp counter. `lfence` first so the read is not hoisted above earlier loads.
pub(crate) fn rdtsc() -> u64 {
    // SAFETY: lfence and rdtsc only read state; RDTSC is allowed at CPL 0 and, unless CR4.TSD is
    // set (we never set it), at CPL 3 too.
    unsafe {
        core::arch::x86_64::_mm_lfence();
        core::arch::x86_64::_rdtsc()
    }
}

/// Writes a byte to an I/O port.
///
/// # Safety
/// The caller must own the device at `port` and know that this write has no effect on memory
/// safety (it does not, say, start DMA into memory the kernel uses).
pub(crate) unsafe fn outb(port: u16, value: u8) {
    // SAFETY: forwarded to the caller's contract.
    unsafe { Port::new(port).write(value) }
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// As for [`outb`]: the caller owns the device and the read has no memory-safety side effect.
pub(crate) unsafe fn inb(port: u16) -> u8 {
    // SAFETY: forwarded to the caller's contract.
    unsafe { Port::new(port).read() }
}

/// Writes a 16-bit value to an I/O port.
///
/// # Safety
/// As for [`outb`].
pub(crate) unsafe fn outw(port: u16, value: u16) {
    // SAFETY: forwarded to the caller's contract.
    unsafe { Port::new(port).write(value) }
}

/// Reads a 16-bit value from an I/O port.
///
/// # Safety
/// As for [`outb`].
pub(crate) unsafe fn inw(port: u16) -> u16 {
    // SAFETY: forwarded to the caller's contract.
    unsafe { Port::new(port).read() }
}

/// Reads a model-specific register.
///
/// # Safety
/// `msr` must exist on this CPU (checked by CPUID by the caller) and reading it must have no
/// side effect the caller has not accounted for.
pub(crate) unsafe fn rdmsr(msr: u32) -> u64 {
    // SAFETY: forwarded to the caller's contract.
    unsafe { Msr::new(msr).read() }
}

/// Writes a model-specific register.
///
/// # Safety
/// `msr` must exist and the value must not break an invariant the kernel relies on (paging,
/// segmentation, the APIC's vector assignments).
pub(crate) unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: forwarded to the caller's contract.
    unsafe { Msr::new(msr).write(value) }
}

/// Halts forever with interrupts off: the end of the line when even shutdown failed.
pub(crate) fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
