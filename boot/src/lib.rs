//! Boot protocols in, one validated `BootInfo` out.
//!
//! A loader (QEMU, Xen, a PVH-capable bootloader) leaves structures in guest memory and jumps to
//! the entry in `entry.s` (PVH: `hvm_start_info`; a Xen PV entry gets a `start_info`).
//! Everything those structures say is untrusted until checked here: addresses may point
//! anywhere, counts may be huge, strings may never end. The design:
//!
//! - **No direct memory access.** The parsers reach physical memory only through
//!   [`PhysMemory::read`], which the kernel bounds by what its boot page tables map. Host tests
//!   and the fuzz targets use `fake::FakeMemory` instead (feature `fake`).
//! - **Copy once, then validate.** Each structure is fetched once and its fields are copied out
//!   before any decision is made, so a value checked is the value used (no double fetch).
//! - **Checked views and reprs, the smoltcp way.** [`hvm_start_info`] and [`xen_start_info`]
//!   have byte-range views (`new_checked` makes every accessor panic-free) and a `Repr`
//!   ([`XenPvInfo`] for Xen PV) holding only valid states.
//! - **Fixed capacity, no `alloc`.** This runs before the heap exists. Limits (16 modules,
//!   128 memory-map entries, 4096-byte command lines) are errors when exceeded, never silent
//!   truncation.
//! - **Errors say what and where.** [`BootError`] names the structure, its address and the rule
//!   it broke, because the only person who can fix a bad boot configuration reads it on a
//!   serial console.
//!
//! The result, [`BootInfo`], is protocol-independent: the memory map feeds the frame allocator
//! ([`MemoryMap::usable_ranges`] minus [`BootInfo::occupied_ranges`]) and the command line is read
//! with [`Cmdline`].
#![no_std]
// `deny`, not `forbid`: the PVH entry (`entry.s`, included with `global_asm!`, which the
// `unsafe_code` lint counts as unsafe) is the one place allowed to opt out. Every parser module
// is safe code.
#![deny(unsafe_code)]

#[cfg(test)]
extern crate std;

// The PVH entry point (`entry.s`): assembled for the kernel target only, where the kernel
// defines the `ringbolt_pvh_start` it calls.
#[cfg(target_os = "none")]
#[allow(unsafe_code)] // global_asm!: the one unsafe item in this crate, see entry.s
mod entry;

pub mod boot_info;
pub mod cmdline;
pub mod error;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod hvm_start_info;
mod le;
pub mod memory_map;
pub mod xen_start_info;

pub use boot_info::{BootInfo, BootProtocol, Module};
pub use cmdline::{Arg, Cmdline};
pub use error::{Blob, BootError};
pub use memory_map::{MemoryMap, Region, RegionKind};
pub use xen_start_info::{PvModule, RingPage, XenConsole, XenPvInfo, XenVersion};

/// Read access to guest-physical memory, supplied by the kernel.
///
/// Implementations decide what is reachable (the kernel: what its boot identity map covers) and
/// must guarantee that the bytes returned do not change while borrowed: boot structures are
/// written by the loader before entry and by nobody afterwards.
pub trait PhysMemory {
    /// The `len` bytes at physical address `paddr`, or `None` if any part is outside memory the
    /// kernel can read, including when `paddr + len` overflows. Must not panic.
    ///
    /// Readability must be prefix-closed: if `len` bytes at `paddr` are readable, so is every
    /// shorter run at `paddr`. The string reader relies on it to find where memory ends.
    fn read(&self, paddr: u64, len: usize) -> Option<&[u8]>;
}
