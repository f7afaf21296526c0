//! Physical frames and x86-64 page tables for Ringbolt, before the heap exists.
//!
//! Both halves run in early boot, when there is no heap yet (the heap's own memory comes from
//! here), so neither allocates: they live in fixed-size arrays and in the page-table frames
//! themselves. Both are plain safe logic, tested on the host; the kernel core supplies the raw
//! memory access and the TLB flushes.
//!
//! # Frame allocator
//!
//! [`FrameAllocator`] keeps free memory as a sorted list of disjoint `[start, end)` ranges in an
//! array of const-generic capacity. A boot memory map (E820, Xen's `start_info`, Hyper-V's
//! UEFI map) has tens of entries, so a few hundred slots cover it with room for fragmentation,
//! at 16 bytes a slot, where a bitmap for all of RAM would have to be sized before knowing how
//! much RAM there is. Firmware maps are sanitized (clipped, trimmed, merged) rather than trusted.
//! When a change needs more slots than exist the call fails and changes nothing
//! ([`FrameError::TooFragmented`]): losing memory quietly would be worse. Allocation takes the
//! highest frames first, keeping memory below 4 GiB for devices that can only DMA there.
//!
//! # Page tables
//!
//! [`Mapper`] walks and builds 4-level tables (Intel SDM Vol. 3A §4.5) but never touches
//! memory itself: every entry is read and written through [`PageTableMemory`]. Under PVH and on
//! bare hardware that trait writes memory; under Xen PV the guest's page tables are read-only to
//! it and each entry write must become a `HYPERVISOR_mmu_update` (xen/include/public/xen.h), so
//! the trait is the seam where Xen PV plugs in with the same walker. It also makes the walker
//! testable on the host with a fake table store.
#![no_std]
#![forbid(unsafe_code)]

mod frame;
mod paging;

pub use frame::{FRAME_SIZE, FrameAllocator, FrameError, PHYS_LIMIT};
pub use paging::{MapError, Mapper, PageSize, PageTableMemory};
pub use x86_64::structures::paging::PageTableFlags;
pub use x86_64::{PhysAddr, VirtAddr};
