//! Hyper-V enlightenments on top of the PC platform: detection, the guest identity and
//! hypercall page, and the partition reference time (the reference TSC page, or the reference
//! counter MSR when Hyper-V marks the page invalid).
//!
//! Everything else a Hyper-V guest sees at boot is PC hardware (COM1, the local APIC, CMOS,
//! ACPI), which `platform::pvh_vmm` drives; VMBus devices come on top of SynIC.

use hermit_sync::OnceCell;
use raw_cpuid::native_cpuid::cpuid_count;
use ringbolt_hyperv_tlfs::{
    CPUID_FEATURES_LEAF, CPUID_INTERFACE_LEAF, CPUID_VENDOR_LEAF, MSR_ENABLE, ReferenceTscError,
    guest_os_id, is_hyperv, msr, privilege, read_reference_time, reference_tsc_page,
    tsc_hz_from_scale,
};
use ringbolt_shmem::SharedMemory;
use ringbolt_time::Instant;

use crate::cpu::{self, rdmsr, wrmsr};
use crate::memory;
use crate::shared_page::SharedPage;

unsafe extern "C" {
    /// The image's hypercall page (boot/src/entry.s), overlaid by Hyper-V once enabled.
    static hypercall_page: [u8; 4096];
}

/// Hypercall call codes and the status this kernel reports itself (TLFS "Hypercall
/// Interface").
pub(crate) struct HvCallCode;

impl HvCallCode {
    pub(crate) const POST_MESSAGE: u16 = 0x005c;
    pub(crate) const SIGNAL_EVENT: u16 = 0x005d;
    /// `HV_STATUS_INVALID_PARAMETER`, for requests refused before the hypercall.
    pub(crate) const INVALID_PARAMETER: u16 = 0x0005;
}

/// The "fast" bit of the hypercall input value: the input is in registers, not a page.
const FAST: u64 = 1 << 16;

/// Calls hypercall `code` through the hypercall page: with `fast`, `input` is the first
/// register argument; otherwise it is the guest physical address of the input page. No
/// output page. Returns the status (0 on success).
pub(crate) fn hypercall(code: u16, input: u64, fast: bool) -> u16 {
    let control = u64::from(code) | if fast { FAST } else { 0 };
    let page = (&raw const hypercall_page) as u64;
    let status: u64;
    // The page's code follows the Microsoft x64 convention: control in RCX, input in RDX,
    // output in R8, status in RAX, the other volatile registers clobbered (`win64`).
    // SAFETY: `identify` enabled the hypercall page before any caller runs (VMBus starts after
    // it); the two codes callers use read at most a 256-byte input page the caller filled and
    // write no memory.
    unsafe {
        core::arch::asm!(
            "call {page}",
            page = in(reg) page,
            inlateout("rcx") control => _,
            inlateout("rdx") input => _,
            inlateout("r8") 0u64 => _,
            lateout("rax") status,
            clobber_abi("win64"),
        );
    }
    status as u16
}

/// Nanoseconds per partition-reference-time unit.
const NANOS_PER_UNIT: u64 = 100;

pub(crate) struct HyperV {
    /// CPUID 0x40000003 EAX.
    privileges: u32,
    reference_tsc: OnceCell<SharedPage>,
    /// Reference time (100 ns units) at the kernel's entry: `Instant`s count from there.
    time_at_entry: OnceCell<u64>,
}

/// Hyper-V, if CPUID says this is it (see [`is_hyperv`]).
pub(crate) fn detect() -> Option<HyperV> {
    let vendor = cpuid_count(CPUID_VENDOR_LEAF, 0);
    let interface = cpuid_count(CPUID_INTERFACE_LEAF, 0).eax;
    is_hyperv(vendor.eax, [vendor.ebx, vendor.ecx, vendor.edx], interface).then(|| HyperV {
        privileges: cpuid_count(CPUID_FEATURES_LEAF, 0).eax,
        reference_tsc: OnceCell::new(),
        time_at_entry: OnceCell::new(),
    })
}

impl HyperV {
    fn has(&self, privilege: u32) -> bool {
        self.privileges & privilege != 0
    }

    /// Whether VMBus can run: SynIC MSRs and hypercalls.
    pub(crate) fn has_synic(&self) -> bool {
        self.has(privilege::SYNIC) && self.has(privilege::HYPERCALL)
    }

    /// Tells Hyper-V who we are and enables the hypercall page: no hypercall works before.
    pub(crate) fn identify(&self) {
        if !self.has(privilege::HYPERCALL) {
            log::warn!(
                "hyperv: no hypercall MSRs (privileges {:#x})",
                self.privileges
            );
            return;
        }
        let page = (&raw const hypercall_page) as u64;
        // SAFETY: CPUID 0x40000003 says both MSRs exist. The guest OS id has no memory effect;
        // the hypercall MSR overlays the image's page reserved for hypercall stubs (4 KiB
        // aligned, nothing else uses it) with Hyper-V's code.
        unsafe {
            wrmsr(msr::GUEST_OS_ID, guest_os_id(0, 1));
            wrmsr(msr::HYPERCALL, page | MSR_ENABLE);
        }
    }

    /// Starts the reference clock; returns the TSC frequency the reference TSC page implies,
    /// if it is in use.
    pub(crate) fn start_clock(&self, tsc_at_entry: u64) -> Option<u64> {
        if self.has(privilege::REFERENCE_TSC) {
            match memory::allocate_frame() {
                Some(frame) => {
                    // SAFETY: CPUID says the MSR exists; the frame is ours, identity-mapped
                    // and otherwise unused, and Hyper-V overlays it with the reference page.
                    unsafe { wrmsr(msr::REFERENCE_TSC, frame.as_u64() | MSR_ENABLE) };
                    let _ = self.reference_tsc.set(SharedPage::identity(frame));
                }
                None => log::warn!("hyperv: no frame for the reference TSC page"),
            }
        }
        let page = self.reference_tsc.get();
        let entry = page.and_then(|page| read_reference_time(page, || tsc_at_entry).ok());
        let _ = self
            .time_at_entry
            .set(entry.or_else(|| self.reference_time()).unwrap_or(0));
        let scale = page
            .filter(|_| entry.is_some())
            .and_then(|page| page.read_u64(reference_tsc_page::SCALE).ok());
        let hz = scale.and_then(tsc_hz_from_scale);
        log::info!(
            "hyperv: reference time from the {}, tsc {} kHz",
            if entry.is_some() {
                "TSC page"
            } else {
                "counter MSR"
            },
            hz.unwrap_or(0) / 1000
        );
        hz
    }

    /// Partition reference time in 100 ns units: the TSC page, else the counter MSR.
    fn reference_time(&self) -> Option<u64> {
        if let Some(page) = self.reference_tsc.get() {
            match read_reference_time(page, cpu::rdtsc) {
                Ok(time) => return Some(time),
                Err(ReferenceTscError::Invalid | ReferenceTscError::Unstable) => {}
                Err(ReferenceTscError::Access(e)) => log::error!("hyperv: {e}"),
            }
        }
        self.has(privilege::TIME_REF_COUNT).then(|| {
            // SAFETY: CPUID says the counter MSR exists; reading it has no side effect.
            unsafe { rdmsr(msr::TIME_REF_COUNT) }
        })
    }

    /// Time since entry, once [`start_clock`](Self::start_clock) ran.
    pub(crate) fn now(&self) -> Option<Instant> {
        let entry = *self.time_at_entry.get()?;
        let units = self.reference_time()?.saturating_sub(entry);
        Some(Instant::from_nanos(units.saturating_mul(NANOS_PER_UNIT)))
    }
}

/// Partition reference time now, in 100 ns units, from the reference counter MSR (0 if the
/// partition may not read it): what the time-sync service's version 4 samples are stamped in.
pub(crate) fn reference_counter() -> u64 {
    let privileges = cpuid_count(CPUID_FEATURES_LEAF, 0).eax;
    if privileges & privilege::TIME_REF_COUNT == 0 {
        return 0;
    }
    // SAFETY: CPUID just said the counter MSR exists; reading it has no side effect.
    unsafe { rdmsr(msr::TIME_REF_COUNT) }
}
