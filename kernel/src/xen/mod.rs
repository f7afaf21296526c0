//! Talking to Xen: detection, the hypercall page and the few typed hypercalls the kernel makes.
//!
//! Arguments go in rdi, rsi, rdx, r10, r8; the result comes back in rax; the stub clobbers rcx
//! and r11 (xen/include/public/arch-x86/xen-x86_64.h, "Hypercall interface"). Structures passed
//! by pointer live on our stack, whose virtual address Xen translates through our page tables
//! (PVH) or its own (PV).

use ringbolt_xen_abi::arch_x86::XEN_CPUID_SIGNATURE;
use ringbolt_xen_abi::event_channel::{EVTCHNOP_SEND, EvtchnSend};
use ringbolt_xen_abi::hvm::hvm_op::{HVMOP_GET_PARAM, XenHvmParam};
use ringbolt_xen_abi::memory::{XENMAPSPACE_SHARED_INFO, XENMEM_ADD_TO_PHYSMAP, XenAddToPhysmap};
use ringbolt_xen_abi::sched::{SCHEDOP_SHUTDOWN, SchedShutdown};
use ringbolt_xen_abi::xen::{
    DOMID_SELF, HYPERVISOR_EVENT_CHANNEL_OP, HYPERVISOR_HVM_OP, HYPERVISOR_MEMORY_OP,
    HYPERVISOR_SCHED_OP,
};

use crate::cpu;

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

/// `XENMEM_add_to_physmap` of `shared_info` at guest frame `gpfn` (HVM/PVH). The frame's old
/// contents are gone: Xen puts the shared page there.
pub(crate) fn map_shared_info(gpfn: u64) -> Result<(), XenError> {
    let request = XenAddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space: XENMAPSPACE_SHARED_INFO,
        idx: 0,
        gpfn,
    };
    // SAFETY: XENMEM_add_to_physmap takes a pointer to a xen_add_to_physmap. The target frame
    // is one the caller took from the frame allocator for this purpose.
    check(unsafe {
        hypercall(
            HYPERVISOR_MEMORY_OP,
            [XENMEM_ADD_TO_PHYSMAP.into(), pointer(&request), 0, 0, 0],
        )
    })?;
    Ok(())
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
