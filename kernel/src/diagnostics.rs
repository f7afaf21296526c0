//! Deliberate faults, so tests can prove the exception and panic paths end the VM cleanly.

/// An address no Ringbolt mapping covers (lower half, canonical, far above the identity map
/// and below the heap).
const UNMAPPED: u64 = 0x0000_0800_0000_0000;

/// Reads from an unmapped address: the page-fault handler reports it and the VM stops with a
/// panic status.
pub fn trigger_page_fault() -> ! {
    // SAFETY: the read faults before it can return a value; the fault handler never returns
    // (exceptions are fatal), so no code observes the result.
    let value = unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) };
    panic!("read from unmapped {UNMAPPED:#x} returned {value:#x}: the page tables are wrong");
}
