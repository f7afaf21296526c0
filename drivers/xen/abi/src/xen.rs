//! `xen/include/public/xen.h`: hypercall numbers, VIRQs, MMU operations, and the layout of
//! the shared-info page.

use crate::DomId;

// Hypercall numbers (`enum hypercall_num`): the index into the hypercall page, whose entries
// are 32 bytes apart.
pub const HYPERVISOR_SET_TRAP_TABLE: u32 = 0;
pub const HYPERVISOR_MMU_UPDATE: u32 = 1;
pub const HYPERVISOR_SET_GDT: u32 = 2;
pub const HYPERVISOR_STACK_SWITCH: u32 = 3;
pub const HYPERVISOR_SET_CALLBACKS: u32 = 4;
pub const HYPERVISOR_FPU_TASKSWITCH: u32 = 5;
pub const HYPERVISOR_PLATFORM_OP: u32 = 7;
pub const HYPERVISOR_SET_DEBUGREG: u32 = 8;
pub const HYPERVISOR_GET_DEBUGREG: u32 = 9;
pub const HYPERVISOR_UPDATE_DESCRIPTOR: u32 = 10;
pub const HYPERVISOR_MEMORY_OP: u32 = 12;
pub const HYPERVISOR_MULTICALL: u32 = 13;
pub const HYPERVISOR_UPDATE_VA_MAPPING: u32 = 14;
pub const HYPERVISOR_SET_TIMER_OP: u32 = 15;
pub const HYPERVISOR_XEN_VERSION: u32 = 17;
pub const HYPERVISOR_CONSOLE_IO: u32 = 18;
pub const HYPERVISOR_GRANT_TABLE_OP: u32 = 20;
pub const HYPERVISOR_VM_ASSIST: u32 = 21;
pub const HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN: u32 = 22;
pub const HYPERVISOR_IRET: u32 = 23;
pub const HYPERVISOR_VCPU_OP: u32 = 24;
pub const HYPERVISOR_SET_SEGMENT_BASE: u32 = 25;
pub const HYPERVISOR_MMUEXT_OP: u32 = 26;
pub const HYPERVISOR_XSM_OP: u32 = 27;
pub const HYPERVISOR_NMI_OP: u32 = 28;
pub const HYPERVISOR_SCHED_OP: u32 = 29;
pub const HYPERVISOR_CALLBACK_OP: u32 = 30;
pub const HYPERVISOR_EVENT_CHANNEL_OP: u32 = 32;
pub const HYPERVISOR_PHYSDEV_OP: u32 = 33;
pub const HYPERVISOR_HVM_OP: u32 = 34;
pub const HYPERVISOR_SYSCTL: u32 = 35;
pub const HYPERVISOR_DOMCTL: u32 = 36;

/// Bytes between consecutive entries of the hypercall page: entry `n` is at `n * 32`.
pub const HYPERCALL_ENTRY_SIZE: usize = 32;

// Virtual interrupts, bound to an event channel with `EVTCHNOP_bind_virq`. "V." in the header
// marks per-vCPU ones, "G." global ones.
/// V. Timebase update, and/or requested timeout.
pub const VIRQ_TIMER: u32 = 0;
/// V. Request guest to dump debug info.
pub const VIRQ_DEBUG: u32 = 1;
/// G. Bytes received on the emergency console (`HYPERVISOR_console_io`).
pub const VIRQ_CONSOLE: u32 = 2;
/// G. Exceptional event for some domain.
pub const VIRQ_DOM_EXC: u32 = 3;
/// G. Bytes received on console.
pub const VIRQ_CON_RING: u32 = 8;
pub const NR_VIRQS: u32 = 24;

// `HYPERVISOR_mmu_update` sub-commands, in `mmu_update.ptr[1:0]`.
/// Checked `*ptr = val`; `ptr` is the machine address of the PTE.
pub const MMU_NORMAL_PT_UPDATE: u64 = 0;
/// `ptr` is the machine address of the frame whose M2P entry to set.
pub const MMU_MACHPHYS_UPDATE: u64 = 1;
/// As `MMU_NORMAL_PT_UPDATE`, keeping the accessed and dirty bits already in the PTE.
pub const MMU_PT_UPDATE_PRESERVE_AD: u64 = 2;

// `HYPERVISOR_mmuext_op` commands (`mmuext_op.cmd`).
pub const MMUEXT_PIN_L1_TABLE: u32 = 0;
pub const MMUEXT_PIN_L2_TABLE: u32 = 1;
pub const MMUEXT_PIN_L3_TABLE: u32 = 2;
pub const MMUEXT_PIN_L4_TABLE: u32 = 3;
pub const MMUEXT_UNPIN_TABLE: u32 = 4;
pub const MMUEXT_NEW_BASEPTR: u32 = 5;
pub const MMUEXT_TLB_FLUSH_LOCAL: u32 = 6;
pub const MMUEXT_INVLPG_LOCAL: u32 = 7;
pub const MMUEXT_TLB_FLUSH_MULTI: u32 = 8;
pub const MMUEXT_INVLPG_MULTI: u32 = 9;
pub const MMUEXT_TLB_FLUSH_ALL: u32 = 10;
pub const MMUEXT_INVLPG_ALL: u32 = 11;
pub const MMUEXT_FLUSH_CACHE: u32 = 12;
pub const MMUEXT_SET_LDT: u32 = 13;
pub const MMUEXT_NEW_USER_BASEPTR: u32 = 15;
pub const MMUEXT_CLEAR_PAGE: u32 = 16;
pub const MMUEXT_COPY_PAGE: u32 = 17;

// `HYPERVISOR_update_va_mapping` flags; the flush type and scope are ORed.
pub const UVMF_NONE: u64 = 0;
pub const UVMF_TLB_FLUSH: u64 = 1;
pub const UVMF_INVLPG: u64 = 2;
pub const UVMF_FLUSHTYPE_MASK: u64 = 3;
/// With `UVMF_MULTI`, OR in a pointer to a vCPU bitmap.
pub const UVMF_MULTI: u64 = 0;
/// `UVMF_MULTI` with a null bitmap.
pub const UVMF_LOCAL: u64 = 0;
pub const UVMF_ALL: u64 = 1 << 2;

// `HYPERVISOR_console_io` commands: the hypervisor's own (emergency) console.
pub const CONSOLEIO_WRITE: u32 = 0;
pub const CONSOLEIO_READ: u32 = 1;

// `HYPERVISOR_vm_assist`.
pub const VMASST_CMD_ENABLE: u32 = 0;
pub const VMASST_CMD_DISABLE: u32 = 1;
pub const VMASST_TYPE_WRITABLE_PAGETABLES: u32 = 2;

/// Ourselves, in calls that name a domain.
pub const DOMID_SELF: DomId = 0x7FF0;

// `vcpu_time_info.flags`.
/// The TSC is synchronised across vCPUs, so time read on one vCPU never runs behind another's.
pub const XEN_PVCLOCK_TSC_STABLE_BIT: u8 = 1 << 0;
/// The vCPU was paused (e.g. for migration) since the last update.
pub const XEN_PVCLOCK_GUEST_STOPPED: u8 = 1 << 1;

/// `struct vcpu_time_info` (32 bytes), the per-vCPU pvclock record, updated by Xen under a
/// seqlock on `VERSION`: odd while an update is in progress.
///
/// ```text
/// system_time + ((((tsc - tsc_timestamp) << tsc_shift) * tsc_to_system_mul) >> 32)
/// ```
pub mod vcpu_time_info {
    /// `u32`, odd while Xen is updating the record.
    pub const VERSION: usize = 0;
    /// `u64`, the TSC at the last update.
    pub const TSC_TIMESTAMP: usize = 8;
    /// `u64`, nanoseconds since boot at `TSC_TIMESTAMP`.
    pub const SYSTEM_TIME: usize = 16;
    /// `u32`, 0.32 fixed-point nanoseconds per (shifted) tick.
    pub const TSC_TO_SYSTEM_MUL: usize = 24;
    /// `i8`, power of two applied to the tick delta first.
    pub const TSC_SHIFT: usize = 28;
    /// `u8`, `XEN_PVCLOCK_*` (interface 0x00040600 and later; zero before).
    pub const FLAGS: usize = 29;
    pub const SIZE: usize = 32;
}

/// `struct vcpu_info` (64 bytes on x86).
pub mod vcpu_info {
    /// `u8`, set by Xen when an event is pending for this vCPU; the guest clears it before
    /// scanning.
    pub const EVTCHN_UPCALL_PENDING: usize = 0;
    /// `u8`, nonzero to hold off upcalls (PV; `XEN_HAVE_PV_UPCALL_MASK` on x86).
    pub const EVTCHN_UPCALL_MASK: usize = 1;
    /// `xen_ulong_t`, one bit per word of `shared_info.evtchn_pending` with work.
    pub const EVTCHN_PENDING_SEL: usize = 8;
    /// `struct arch_vcpu_info`, see [`crate::arch_x86::arch_vcpu_info`].
    pub const ARCH: usize = 16;
    /// `struct vcpu_time_info`, see [`super::vcpu_time_info`].
    pub const TIME: usize = 32;
    pub const SIZE: usize = 64;
}

/// `struct shared_info`, the page Xen shares with every domain (x86_64 layout).
///
/// The header warns that its size may grow within compatible versions; only these offsets are
/// stable.
pub mod shared_info {
    use crate::arch_x86::{XEN_LEGACY_MAX_VCPUS, arch_shared_info};

    /// `struct vcpu_info[XEN_LEGACY_MAX_VCPUS]`; vCPU `n`'s is at `VCPU_INFO + n * 64`.
    pub const VCPU_INFO: usize = 0;
    /// `xen_ulong_t[64]`, one pending bit per 2-level event channel.
    pub const EVTCHN_PENDING: usize = VCPU_INFO + XEN_LEGACY_MAX_VCPUS * super::vcpu_info::SIZE;
    /// `xen_ulong_t[64]`, one mask bit per 2-level event channel.
    pub const EVTCHN_MASK: usize = 2560;
    /// `u32`, seqlock version of the three wall-clock fields, as for `vcpu_time_info`.
    pub const WC_VERSION: usize = 3072;
    /// `u32`, low 32 bits of the Unix seconds at system time zero.
    pub const WC_SEC: usize = 3076;
    /// `u32`, nanoseconds to add to `WC_SEC`.
    pub const WC_NSEC: usize = 3080;
    /// `u32`, high 32 bits of the Unix seconds (in `shared_info` itself on x86_64; only i386
    /// keeps it in `arch_shared_info`).
    pub const WC_SEC_HI: usize = 3084;
    /// `struct arch_shared_info`, see [`crate::arch_x86::arch_shared_info`].
    pub const ARCH: usize = 3088;
    pub const SIZE: usize = ARCH + arch_shared_info::SIZE;
}

/// `struct mmu_update`, an array of which `HYPERVISOR_mmu_update` applies.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmuUpdate {
    /// Machine address of the PTE, ORed with an `MMU_*` command in bits 1:0.
    pub ptr: u64,
    /// New contents of the PTE.
    pub val: u64,
}

/// `struct mmuext_op`, an array of which `HYPERVISOR_mmuext_op` applies.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmuextOp {
    /// `MMUEXT_*`.
    pub cmd: u32,
    /// `mfn` (pin, unpin, new base pointer) or `linear_addr` (invlpg, set LDT).
    pub arg1: u64,
    /// `nr_ents` (set LDT) or `vcpumask`, a guest handle (multi-vCPU flushes).
    pub arg2: u64,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<MmuUpdate>() == 16);
    assert!(size_of::<MmuextOp>() == 24);
    assert!(offset_of!(MmuextOp, arg1) == 8 && offset_of!(MmuextOp, arg2) == 16);
    assert!(vcpu_info::TIME + vcpu_time_info::SIZE == vcpu_info::SIZE);
    assert!(shared_info::SIZE <= crate::XEN_PAGE_SIZE);
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch_x86::XEN_LEGACY_MAX_VCPUS;
    use core::mem::{offset_of, size_of};

    // The C structs, transcribed from xen.h and arch-x86/xen-x86_64.h, so the compiler computes
    // the offsets the way a C compiler does and the tests compare them with ours. Only
    // `offset_of!` and `size_of` touch them.
    #[allow(dead_code, reason = "layout mirrors, never constructed")]
    #[repr(C)]
    struct CVcpuTimeInfo {
        version: u32,
        pad0: u32,
        tsc_timestamp: u64,
        system_time: u64,
        tsc_to_system_mul: u32,
        tsc_shift: i8,
        flags: u8,
        pad1: [u8; 2],
    }

    #[allow(dead_code, reason = "layout mirrors, never constructed")]
    #[repr(C)]
    struct CVcpuInfo {
        evtchn_upcall_pending: u8,
        evtchn_upcall_mask: u8,
        evtchn_pending_sel: u64,
        arch: [u64; 2],
        time: CVcpuTimeInfo,
    }

    #[allow(dead_code, reason = "layout mirrors, never constructed")]
    #[repr(C)]
    struct CSharedInfo {
        vcpu_info: [CVcpuInfo; XEN_LEGACY_MAX_VCPUS],
        evtchn_pending: [u64; 64],
        evtchn_mask: [u64; 64],
        wc_version: u32,
        wc_sec: u32,
        wc_nsec: u32,
        wc_sec_hi: u32,
        arch: [u64; 6],
    }

    #[test]
    fn vcpu_time_info_matches_the_c_layout() {
        assert_eq!(vcpu_time_info::VERSION, offset_of!(CVcpuTimeInfo, version));
        assert_eq!(
            vcpu_time_info::TSC_TIMESTAMP,
            offset_of!(CVcpuTimeInfo, tsc_timestamp)
        );
        assert_eq!(
            vcpu_time_info::SYSTEM_TIME,
            offset_of!(CVcpuTimeInfo, system_time)
        );
        assert_eq!(
            vcpu_time_info::TSC_TO_SYSTEM_MUL,
            offset_of!(CVcpuTimeInfo, tsc_to_system_mul)
        );
        assert_eq!(
            vcpu_time_info::TSC_SHIFT,
            offset_of!(CVcpuTimeInfo, tsc_shift)
        );
        assert_eq!(vcpu_time_info::FLAGS, offset_of!(CVcpuTimeInfo, flags));
        assert_eq!(vcpu_time_info::SIZE, size_of::<CVcpuTimeInfo>());
        // The header's own numbers.
        assert_eq!(
            (
                vcpu_time_info::TSC_TIMESTAMP,
                vcpu_time_info::SYSTEM_TIME,
                vcpu_time_info::TSC_TO_SYSTEM_MUL,
                vcpu_time_info::TSC_SHIFT,
                vcpu_time_info::SIZE
            ),
            (8, 16, 24, 28, 32)
        );
    }

    #[test]
    fn vcpu_info_matches_the_c_layout() {
        assert_eq!(
            vcpu_info::EVTCHN_UPCALL_PENDING,
            offset_of!(CVcpuInfo, evtchn_upcall_pending)
        );
        assert_eq!(
            vcpu_info::EVTCHN_UPCALL_MASK,
            offset_of!(CVcpuInfo, evtchn_upcall_mask)
        );
        assert_eq!(
            vcpu_info::EVTCHN_PENDING_SEL,
            offset_of!(CVcpuInfo, evtchn_pending_sel)
        );
        assert_eq!(vcpu_info::ARCH, offset_of!(CVcpuInfo, arch));
        assert_eq!(vcpu_info::TIME, offset_of!(CVcpuInfo, time));
        assert_eq!(vcpu_info::SIZE, size_of::<CVcpuInfo>());
        assert_eq!(vcpu_info::SIZE, 64);
    }

    #[test]
    fn shared_info_matches_the_c_layout() {
        assert_eq!(shared_info::VCPU_INFO, offset_of!(CSharedInfo, vcpu_info));
        assert_eq!(
            shared_info::EVTCHN_PENDING,
            offset_of!(CSharedInfo, evtchn_pending)
        );
        assert_eq!(
            shared_info::EVTCHN_MASK,
            offset_of!(CSharedInfo, evtchn_mask)
        );
        assert_eq!(shared_info::WC_VERSION, offset_of!(CSharedInfo, wc_version));
        assert_eq!(shared_info::WC_SEC, offset_of!(CSharedInfo, wc_sec));
        assert_eq!(shared_info::WC_NSEC, offset_of!(CSharedInfo, wc_nsec));
        assert_eq!(shared_info::WC_SEC_HI, offset_of!(CSharedInfo, wc_sec_hi));
        assert_eq!(shared_info::ARCH, offset_of!(CSharedInfo, arch));
        assert_eq!(shared_info::SIZE, size_of::<CSharedInfo>());
        assert_eq!(
            (
                shared_info::EVTCHN_PENDING,
                shared_info::EVTCHN_MASK,
                shared_info::WC_VERSION,
                shared_info::WC_SEC,
                shared_info::WC_NSEC,
                shared_info::WC_SEC_HI,
                shared_info::SIZE
            ),
            (2048, 2560, 3072, 3076, 3080, 3084, 3136)
        );
    }

    #[test]
    fn hypercall_numbers_match_the_header() {
        let numbers = [
            (HYPERVISOR_SET_TRAP_TABLE, 0),
            (HYPERVISOR_MMU_UPDATE, 1),
            (HYPERVISOR_SET_CALLBACKS, 4),
            (HYPERVISOR_MEMORY_OP, 12),
            (HYPERVISOR_UPDATE_VA_MAPPING, 14),
            (HYPERVISOR_XEN_VERSION, 17),
            (HYPERVISOR_CONSOLE_IO, 18),
            (HYPERVISOR_GRANT_TABLE_OP, 20),
            (HYPERVISOR_VCPU_OP, 24),
            (HYPERVISOR_MMUEXT_OP, 26),
            (HYPERVISOR_SCHED_OP, 29),
            (HYPERVISOR_EVENT_CHANNEL_OP, 32),
            (HYPERVISOR_HVM_OP, 34),
        ];
        for (ours, header) in numbers {
            assert_eq!(ours, header);
        }
        // The last entry of the hypercall page still fits in it.
        assert!((HYPERVISOR_DOMCTL as usize + 1) * HYPERCALL_ENTRY_SIZE <= crate::XEN_PAGE_SIZE);
    }

    #[test]
    fn update_flags_and_commands_match_the_header() {
        assert_eq!((MMU_NORMAL_PT_UPDATE, UVMF_INVLPG, UVMF_ALL), (0, 2, 4));
        assert_eq!((CONSOLEIO_WRITE, CONSOLEIO_READ), (0, 1));
        assert_eq!((VIRQ_TIMER, VIRQ_CONSOLE), (0, 2));
        assert_eq!((MMUEXT_PIN_L4_TABLE, MMUEXT_NEW_BASEPTR), (3, 5));
        assert_eq!(MMUEXT_NEW_USER_BASEPTR, 15);
    }
}
