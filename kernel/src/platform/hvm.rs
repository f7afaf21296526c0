//! What every hardware-virtualized platform (plain VMM, Xen PVH, Hyper-V) does the same way:
//! idle with `sti; hlt` and the local APIC timer, page tables read and written directly, CR3
//! loads, CR2 for the fault address.

use ringbolt_mm::PageSize;
use ringbolt_time::Instant;
use x86_64::PhysAddr;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;

use crate::apic;

/// Sleeps until an interrupt or `deadline` (`None`: only an interrupt). `now` is the platform
/// clock's current reading.
pub(crate) fn wait_for_event(now: Instant, deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => {
            if deadline <= now {
                return;
            }
            apic::arm_oneshot((deadline - now).as_nanos() as u64);
        }
        None => apic::disarm(),
    }
    // `sti; hlt` back to back: an interrupt arriving between the deadline check and the halt is
    // taken right after `sti`'s one-instruction shadow ends, i.e. it wakes the hlt.
    x86_64::instructions::interrupts::enable_and_hlt();
    x86_64::instructions::interrupts::disable();
}

pub(crate) fn read_pte(table: PhysAddr, index: usize) -> u64 {
    assert!(index < 512, "page-table index {index} out of range");
    // SAFETY: `table` is a page-table frame from `memory::PlatformPageTables` (identity-mapped,
    // 4 KiB, aligned) and index < 512 keeps the read inside it.
    unsafe { core::ptr::read_volatile((table.as_u64() as *const u64).add(index)) }
}

pub(crate) fn write_pte(table: PhysAddr, index: usize, value: u64) {
    assert!(index < 512, "page-table index {index} out of range");
    // SAFETY: `table` is a page-table frame from `memory::PlatformPageTables` (identity-mapped,
    // 4 KiB aligned) and index < 512 keeps the store inside it. The mapper only writes entries
    // that map memory it was asked to map, so no live mapping changes under running code.
    unsafe { core::ptr::write_volatile((table.as_u64() as *mut u64).add(index), value) };
}

pub(crate) fn activate_page_table(root: PhysAddr) {
    let frame = PhysFrame::from_start_address(root).expect("page-table root not frame-aligned");
    // SAFETY: `root` is a complete PML4 built by `memory::init` that identity-maps the kernel
    // image, its stack and every structure in use, so execution continues unchanged.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
}

pub(crate) fn fault_address() -> u64 {
    x86_64::registers::control::Cr2::read_raw()
}

/// 1 GiB pages where CPUID offers them, else 2 MiB.
pub(crate) fn largest_page() -> PageSize {
    let gib_pages = raw_cpuid::CpuId::new()
        .get_extended_processor_and_feature_identifiers()
        .is_some_and(|features| features.has_1gib_pages());
    if gib_pages {
        PageSize::Size1G
    } else {
        PageSize::Size2M
    }
}

/// The paging methods of [`Platform`](super::Platform), the same on every hardware-virtualized
/// platform: the kernel builds its own tables and writes them directly.
macro_rules! hvm_paging_methods {
    () => {
        fn boot_page_tables(&self) -> Option<$crate::platform::BootPageTables> {
            None
        }

        fn largest_page(&self) -> ringbolt_mm::PageSize {
            $crate::platform::hvm::largest_page()
        }

        fn read_pte(&self, table: x86_64::PhysAddr, index: usize) -> u64 {
            $crate::platform::hvm::read_pte(table, index)
        }

        fn write_pte(&self, table: x86_64::PhysAddr, index: usize, value: u64) {
            $crate::platform::hvm::write_pte(table, index, value);
        }

        fn prepare_page_table(&self, _frame: x86_64::PhysAddr) {}

        fn activate_page_table(&self, root: x86_64::PhysAddr) {
            $crate::platform::hvm::activate_page_table(root);
        }

        fn fault_address(&self) -> u64 {
            $crate::platform::hvm::fault_address()
        }
    };
}
pub(crate) use hvm_paging_methods;
