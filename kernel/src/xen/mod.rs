//! Talking to Xen: detection, the hypercall page and the few typed hypercalls the kernel makes.
//!
//! Arguments go in rdi, rsi, rdx, r10, r8; the result comes back in rax; the stub clobbers rcx
//! and r11 (xen/include/public/arch-x86/xen-x86_64.h, "Hypercall interface"). Structures passed
//! by pointer live on our stack, whose virtual address Xen translates through our page tables
//! (PVH) or its own (PV).

use ringbolt_xen_abi::DomId;
use ringbolt_xen_abi::arch_x86::{TrapInfo, XEN_CPUID_SIGNATURE};
use ringbolt_xen_abi::event_channel::{
    EVTCHNOP_ALLOC_UNBOUND, EVTCHNOP_BIND_VIRQ, EVTCHNOP_SEND, EvtchnAllocUnbound, EvtchnBindVirq,
    EvtchnSend,
};
use ringbolt_xen_abi::grant_table::{
    GNTTABOP_QUERY_SIZE, GNTTABOP_SETUP_TABLE, GnttabQuerySize, GnttabSetupTable,
};
use ringbolt_xen_abi::hvm::hvm_op::{
    HVMOP_GET_PARAM, HVMOP_SET_EVTCHN_UPCALL_VECTOR, XenHvmEvtchnUpcallVector, XenHvmParam,
};
use ringbolt_xen_abi::memory::{
    XENMAPSPACE_GRANT_TABLE, XENMAPSPACE_SHARED_INFO, XENMEM_ADD_TO_PHYSMAP,
    XENMEM_MACHPHYS_MAPPING, XenAddToPhysmap, XenMachphysMapping,
};
use ringbolt_xen_abi::sched::{SCHEDOP_BLOCK, SCHEDOP_SHUTDOWN, SchedShutdown};
use ringbolt_xen_abi::vcpu::{
    VCPUOP_SET_SINGLESHOT_TIMER, VCPUOP_STOP_PERIODIC_TIMER, VCPUOP_STOP_SINGLESHOT_TIMER,
    VcpuSetSingleshotTimer,
};
use ringbolt_xen_abi::xen::{
    CONSOLEIO_WRITE, DOMID_SELF, HYPERVISOR_CONSOLE_IO, HYPERVISOR_EVENT_CHANNEL_OP,
    HYPERVISOR_GRANT_TABLE_OP, HYPERVISOR_HVM_OP, HYPERVISOR_MEMORY_OP, HYPERVISOR_MMU_UPDATE,
    HYPERVISOR_MMUEXT_OP, HYPERVISOR_SCHED_OP, HYPERVISOR_SET_CALLBACKS, HYPERVISOR_SET_TRAP_TABLE,
    HYPERVISOR_UPDATE_VA_MAPPING, HYPERVISOR_VCPU_OP, MmuUpdate, MmuextOp,
};

use crate::cpu;

pub(crate) mod blk;
pub(crate) mod events;
pub(crate) mod grant;
pub(crate) mod net;
pub(crate) mod store;
pub(crate) mod xenbus;

/// CPUID leaves where a hypervisor may publish its signature: 0x40000000 and, when Xen also
/// offers Viridian (Hyper-V) enlightenments, every 0x100 above.
const HYPERVISOR_LEAVES: core::ops::RangeInclusive<u32> = 0x4000_0000..=0x4001_0000;

unsafe extern "C" {
    /// The page in the image (boot/src/entry.s) that Xen fills with hypercall stubs.
    static hypercall_page: [u8; 4096];
}

/// Xen's CPUID base leaf, if we run on Xen.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Xen {
    base_leaf: u32,
}

/// Finds Xen's CPUID leaves.
pub(crate) fn detect() -> Option<Xen> {
    HYPERVISOR_LEAVES.step_by(0x100).find_map(|leaf| {
        let regs = raw_cpuid::native_cpuid::cpuid_count(leaf, 0);
        let mut signature = [0u8; 12];
        signature[..4].copy_from_slice(&regs.ebx.to_le_bytes());
        signature[4..8].copy_from_slice(&regs.ecx.to_le_bytes());
        signature[8..].copy_from_slice(&regs.edx.to_le_bytes());
        (signature == XEN_CPUID_SIGNATURE && regs.eax >= leaf + 2)
            .then_some(Xen { base_leaf: leaf })
    })
}

impl Xen {
    /// Xen's version, from CPUID base+1: (major, minor).
    pub(crate) fn version(self) -> (u16, u16) {
        let eax = raw_cpuid::native_cpuid::cpuid_count(self.base_leaf + 1, 0).eax;
        ((eax >> 16) as u16, eax as u16)
    }

    /// Asks Xen to fill the hypercall page (HVM/PVH): write its guest-physical address to the
    /// MSR that CPUID base+2 names.
    pub(crate) fn install_hypercall_page(self) {
        let regs = raw_cpuid::native_cpuid::cpuid_count(self.base_leaf + 2, 0);
        let msr = regs.ebx;
        let page = (&raw const hypercall_page) as u64;
        // SAFETY: CPUID base+2 names this MSR for exactly this purpose; the value is the
        // physical (= identity-mapped virtual) address of a page-aligned, 4 KiB page in our image
        // reserved for the stubs, which nothing else uses.
        unsafe { cpu::wrmsr(msr, page) };
    }
}

/// Calls hypercall `number` with up to five arguments.
///
/// # Safety
/// The hypercall page must be installed, and the arguments must be what hypercall `number`
/// expects: in particular every pointer argument must point to memory of the right layout that
/// stays valid (and, where Xen writes, writable) for the call.
pub(crate) unsafe fn hypercall(number: u32, args: [u64; 5]) -> i64 {
    let entry = (&raw const hypercall_page) as u64 + u64::from(number) * 32;
    let result: i64;
    // SAFETY: the caller guarantees the stub exists and the arguments are valid; the stub
    // follows the register convention in the module doc and returns with `ret`.
    unsafe {
        core::arch::asm!(
            "call {entry}",
            entry = in(reg) entry,
            inlateout("rax") 0i64 => result,
            inlateout("rdi") args[0] => _,
            inlateout("rsi") args[1] => _,
            inlateout("rdx") args[2] => _,
            inlateout("r10") args[3] => _,
            inlateout("r8") args[4] => _,
            out("rcx") _,
            out("r11") _,
        );
    }
    result
}

/// A hypercall's negative errno (xen/include/public/errno.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct XenError(pub i64);

fn check(result: i64) -> Result<i64, XenError> {
    if result < 0 {
        Err(XenError(result))
    } else {
        Ok(result)
    }
}

/// `SCHEDOP_shutdown`: ends the domain with `reason` (`SHUTDOWN_poweroff`, `_crash`, ...).
pub(crate) fn sched_shutdown(reason: u32) -> Result<i64, XenError> {
    let shutdown = SchedShutdown { reason };
    // SAFETY: SCHEDOP_shutdown takes a pointer to a sched_shutdown, which lives across the call.
    check(unsafe {
        hypercall(
            HYPERVISOR_SCHED_OP,
            [SCHEDOP_SHUTDOWN.into(), pointer(&shutdown), 0, 0, 0],
        )
    })
}

/// `EVTCHNOP_send`: notifies the other end of `port`.
pub(crate) fn evtchn_send(port: u32) -> Result<i64, XenError> {
    let send = EvtchnSend { port };
    // SAFETY: EVTCHNOP_send takes a pointer to an evtchn_send, which lives across the call.
    check(unsafe {
        hypercall(
            HYPERVISOR_EVENT_CHANNEL_OP,
            [EVTCHNOP_SEND.into(), pointer(&send), 0, 0, 0],
        )
    })
}

/// `HVMOP_get_param` for our own domain.
pub(crate) fn hvm_get_param(index: u32) -> Result<u64, XenError> {
    let mut param = XenHvmParam {
        domid: DOMID_SELF,
        pad: 0,
        index,
        value: 0,
    };
    // SAFETY: HVMOP_get_param takes a pointer to a xen_hvm_param, which Xen fills in; `param`
    // is writable and lives across the call.
    check(unsafe {
        hypercall(
            HYPERVISOR_HVM_OP,
            [HVMOP_GET_PARAM.into(), (&raw mut param) as u64, 0, 0, 0],
        )
    })?;
    Ok(param.value)
}

/// `HVMOP_set_evtchn_upcall_vector` for vCPU 0 (HVM/PVH): event upcalls arrive as `vector`
/// through the local APIC.
pub(crate) fn set_evtchn_upcall_vector(vector: u8) -> Result<i64, XenError> {
    let request = XenHvmEvtchnUpcallVector { vcpu: 0, vector };
    // SAFETY: the op takes a pointer to a xen_hvm_evtchn_upcall_vector, which lives across the
    // call; the caller has an IDT entry for the vector.
    check(unsafe {
        hypercall(
            HYPERVISOR_HVM_OP,
            [
                HVMOP_SET_EVTCHN_UPCALL_VECTOR.into(),
                pointer(&request),
                0,
                0,
                0,
            ],
        )
    })
}

/// `XENMEM_add_to_physmap` of `shared_info` at guest frame `gpfn` (HVM/PVH). The frame's old
/// contents are gone: Xen puts the shared page there.
pub(crate) fn map_shared_info(gpfn: u64) -> Result<(), XenError> {
    add_to_physmap(XENMAPSPACE_SHARED_INFO, 0, gpfn)
}

/// `XENMEM_add_to_physmap` of our grant table's frame `index` at guest frame `gpfn`
/// (HVM/PVH), growing the table to it if needed. The frame's old contents are gone.
pub(crate) fn map_grant_frame(index: u64, gpfn: u64) -> Result<(), XenError> {
    add_to_physmap(XENMAPSPACE_GRANT_TABLE, index, gpfn)
}

fn add_to_physmap(space: u32, idx: u64, gpfn: u64) -> Result<(), XenError> {
    let request = XenAddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space,
        idx,
        gpfn,
    };
    // SAFETY: XENMEM_add_to_physmap takes a pointer to a xen_add_to_physmap. The target frame
    // is one the caller reserved for this purpose (the public wrappers' callers).
    check(unsafe {
        hypercall(
            HYPERVISOR_MEMORY_OP,
            [XENMEM_ADD_TO_PHYSMAP.into(), pointer(&request), 0, 0, 0],
        )
    })?;
    Ok(())
}

/// `SCHEDOP_block`: sleeps until an event is pending. Unmasks event upcalls first (atomically
/// with the check for pending events), so an upcall is delivered on the way back.
pub(crate) fn sched_block() -> Result<i64, XenError> {
    // SAFETY: SCHEDOP_block takes no argument.
    check(unsafe { hypercall(HYPERVISOR_SCHED_OP, [SCHEDOP_BLOCK.into(), 0, 0, 0, 0]) })
}

/// `EVTCHNOP_alloc_unbound`: a new local port that domain `remote` may bind to.
pub(crate) fn evtchn_alloc_unbound(remote: DomId) -> Result<u32, XenError> {
    let mut alloc = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: remote,
        port: 0,
    };
    // SAFETY: EVTCHNOP_alloc_unbound takes a pointer to an evtchn_alloc_unbound, which Xen
    // completes; `alloc` is writable and lives across the call.
    check(unsafe {
        hypercall(
            HYPERVISOR_EVENT_CHANNEL_OP,
            [
                EVTCHNOP_ALLOC_UNBOUND.into(),
                (&raw mut alloc) as u64,
                0,
                0,
                0,
            ],
        )
    })?;
    Ok(alloc.port)
}

/// `GNTTABOP_query_size` for our own domain. Xen's verdict is in `status` (`GNTST_*`).
pub(crate) fn gnttab_query_size() -> Result<GnttabQuerySize, XenError> {
    let mut query = GnttabQuerySize {
        dom: DOMID_SELF,
        ..GnttabQuerySize::default()
    };
    // SAFETY: GNTTABOP_query_size takes `count` (1) gnttab_query_size structures, which Xen
    // completes; `query` is writable and lives across the call.
    check(unsafe {
        hypercall(
            HYPERVISOR_GRANT_TABLE_OP,
            [GNTTABOP_QUERY_SIZE.into(), (&raw mut query) as u64, 1, 0, 0],
        )
    })?;
    Ok(query)
}

/// `GNTTABOP_setup_table` for our own domain (PV): grows the table to `frames.len()` frames
/// and fills `frames` with their machine frame numbers. Returns Xen's `GNTST_*` status.
pub(crate) fn gnttab_setup_table(frames: &mut [u64]) -> Result<i16, XenError> {
    let mut setup = GnttabSetupTable {
        dom: DOMID_SELF,
        // Never more than the slice holds, so Xen never writes past it.
        nr_frames: frames.len().min(u32::MAX as usize) as u32,
        status: 0,
        frame_list: frames.as_mut_ptr() as u64,
    };
    // SAFETY: GNTTABOP_setup_table takes `count` (1) gnttab_setup_table structures; Xen writes
    // at most `nr_frames` (<= `frames.len()`) frame numbers through `frame_list`, all inside
    // `frames`, and completes `setup`; both are writable and live across the call.
    check(unsafe {
        hypercall(
            HYPERVISOR_GRANT_TABLE_OP,
            [
                GNTTABOP_SETUP_TABLE.into(),
                (&raw mut setup) as u64,
                1,
                0,
                0,
            ],
        )
    })?;
    Ok(setup.status)
}

/// `EVTCHNOP_bind_virq` for vCPU 0: the new local port.
pub(crate) fn bind_virq(virq: u32) -> Result<u32, XenError> {
    let mut bind = EvtchnBindVirq {
        virq,
        vcpu: 0,
        port: 0,
    };
    // SAFETY: EVTCHNOP_bind_virq takes a pointer to an evtchn_bind_virq, which Xen completes;
    // `bind` is writable and lives across the call.
    check(unsafe {
        hypercall(
            HYPERVISOR_EVENT_CHANNEL_OP,
            [EVTCHNOP_BIND_VIRQ.into(), (&raw mut bind) as u64, 0, 0, 0],
        )
    })?;
    Ok(bind.port)
}

/// `VCPUOP_set_singleshot_timer` on vCPU 0: `VIRQ_TIMER` at Xen system time `deadline_ns` (at
/// once if that has passed).
pub(crate) fn set_singleshot_timer(deadline_ns: u64) -> Result<i64, XenError> {
    let timer = VcpuSetSingleshotTimer {
        timeout_abs_ns: deadline_ns,
        flags: 0,
    };
    // SAFETY: VCPUOP_set_singleshot_timer takes a pointer to a vcpu_set_singleshot_timer,
    // which lives across the call.
    check(unsafe {
        hypercall(
            HYPERVISOR_VCPU_OP,
            [VCPUOP_SET_SINGLESHOT_TIMER.into(), 0, pointer(&timer), 0, 0],
        )
    })
}

/// `VCPUOP_stop_singleshot_timer` (`periodic: false`) or `VCPUOP_stop_periodic_timer` on
/// vCPU 0.
pub(crate) fn stop_timer(periodic: bool) -> Result<i64, XenError> {
    let command = if periodic {
        VCPUOP_STOP_PERIODIC_TIMER
    } else {
        VCPUOP_STOP_SINGLESHOT_TIMER
    };
    // SAFETY: both commands take a null argument.
    check(unsafe { hypercall(HYPERVISOR_VCPU_OP, [command.into(), 0, 0, 0, 0]) })
}

/// `HYPERVISOR_console_io(CONSOLEIO_write)`: Xen's own console. Allowed for dom0 (and for a
/// domU only on a debug build of Xen).
pub(crate) fn console_io_write(bytes: &[u8]) -> Result<i64, XenError> {
    // SAFETY: CONSOLEIO_write reads `len` bytes at the pointer, all inside `bytes`.
    check(unsafe {
        hypercall(
            HYPERVISOR_CONSOLE_IO,
            [
                CONSOLEIO_WRITE.into(),
                bytes.len() as u64,
                bytes.as_ptr() as u64,
                0,
                0,
            ],
        )
    })
}

/// `XENMEM_machphys_mapping`: where the read-only M2P table is and how far it reaches.
pub(crate) fn machphys_mapping() -> Result<XenMachphysMapping, XenError> {
    let mut mapping = XenMachphysMapping::default();
    // SAFETY: XENMEM_machphys_mapping fills a xen_machphys_mapping; `mapping` is writable and
    // lives across the call.
    check(unsafe {
        hypercall(
            HYPERVISOR_MEMORY_OP,
            [
                XENMEM_MACHPHYS_MAPPING.into(),
                (&raw mut mapping) as u64,
                0,
                0,
                0,
            ],
        )
    })?;
    Ok(mapping)
}

/// `HYPERVISOR_mmu_update` of `requests`, in order, for our own domain (Xen PV).
///
/// # Safety
/// Each `ptr` must be the machine address of an entry of one of our page tables and each `val`
/// an entry that maps memory the kernel may map that way: Xen checks type and ownership, not
/// that the kernel's own data stays mapped.
pub(crate) unsafe fn mmu_update(requests: &[MmuUpdate]) -> Result<i64, XenError> {
    // SAFETY: `requests.len()` mmu_update structures that live across the call; the
    // success-count pointer is null (allowed). The caller vouches for what they map.
    check(unsafe {
        hypercall(
            HYPERVISOR_MMU_UPDATE,
            [
                requests.as_ptr() as u64,
                requests.len() as u64,
                0,
                u64::from(DOMID_SELF),
                0,
            ],
        )
    })
}

/// `HYPERVISOR_mmuext_op` of one operation for our own domain (Xen PV).
///
/// # Safety
/// The operation must not unmap or retype memory the kernel still uses (a TLB flush never
/// does).
pub(crate) unsafe fn mmuext_op(op: MmuextOp) -> Result<i64, XenError> {
    // SAFETY: one mmuext_op structure that lives across the call, null success count.
    check(unsafe {
        hypercall(
            HYPERVISOR_MMUEXT_OP,
            [pointer(&op), 1, 0, u64::from(DOMID_SELF), 0],
        )
    })
}

/// `HYPERVISOR_update_va_mapping`: sets the L1 entry that maps `va` (Xen PV).
///
/// # Safety
/// As for [`mmu_update`]: the new entry must not take away memory the kernel is using at `va`.
pub(crate) unsafe fn update_va_mapping(va: u64, entry: u64, flags: u64) -> Result<i64, XenError> {
    // SAFETY: no pointers; the caller vouches for the mapping.
    check(unsafe { hypercall(HYPERVISOR_UPDATE_VA_MAPPING, [va, entry, flags, 0, 0]) })
}

/// `HYPERVISOR_set_trap_table` (Xen PV). `table` ends with an all-zero entry.
///
/// # Safety
/// Every non-zero entry's address must be a PV exception entry point for its vector (one that
/// expects Xen's frame with %rcx and %r11 on top).
pub(crate) unsafe fn set_trap_table(table: &[TrapInfo]) -> Result<i64, XenError> {
    assert_eq!(
        table.last(),
        Some(&TrapInfo::default()),
        "unterminated trap table"
    );
    // SAFETY: Xen reads entries up to the terminator, which the assert proved is inside the
    // slice; the caller vouches for the handlers.
    check(unsafe {
        hypercall(
            HYPERVISOR_SET_TRAP_TABLE,
            [table.as_ptr() as u64, 0, 0, 0, 0],
        )
    })
}

/// `HYPERVISOR_set_callbacks` (x86_64 Xen PV): the event-upcall and failsafe entry points; no
/// syscall entry (there is no user mode).
///
/// # Safety
/// Both addresses must be entry points for Xen's bounce frames of those kinds.
pub(crate) unsafe fn set_callbacks(event: u64, failsafe: u64) -> Result<i64, XenError> {
    // SAFETY: no pointers to data; the caller vouches for the entry points.
    check(unsafe { hypercall(HYPERVISOR_SET_CALLBACKS, [event, failsafe, 0, 0, 0]) })
}

fn pointer<T>(value: &T) -> u64 {
    (value as *const T) as u64
}

/// Xen's debug port on HVM/PVH: each byte lands in Xen's own console as `(dN) ...`.
pub(crate) fn debug_port_write(bytes: &[u8]) {
    for &byte in bytes {
        // SAFETY: port 0xe9 is Xen's HVM debug console; writing it has no other effect.
        unsafe { cpu::outb(0xe9, byte) };
    }
}
